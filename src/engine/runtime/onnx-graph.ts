/**
 * Builds ONNX models in memory: a small graph builder over ONNX's protobuf schema.
 *
 * Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
 * TensorProto, ValueInfoProto, TypeProto). Large initializers are written to an external
 * data file as they are added, so a multi-gigabyte model never sits in one JS buffer; the
 * model is then loaded by path and ONNX Runtime reads (or maps) the weights from that file.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { ProtoWriter } from './protobuf.ts';
import { Scratch } from './scratch.ts';

export const enum DataType {
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  INT32 = 6,
  INT64 = 7,
  BOOL = 9,
  FLOAT16 = 10,
  BFLOAT16 = 16,
}

const BYTES_PER: Record<number, number> = { 1: 4, 2: 1, 3: 1, 6: 4, 7: 8, 9: 1, 10: 2, 16: 2 };

export type Dim = number | string;
export type AttrValue = number | string | number[] | { floats: number[] } | { float: number } | Uint8Array;

interface TensorRecord {
  name: string;
  type: DataType;
  dims: number[];
  raw?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

interface NodeRecord {
  op: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  name: string;
}

interface ValueInfo {
  name: string;
  type: DataType;
  dims: Dim[];
}

/** Appends tensor bytes to one file, page-aligned so ONNX Runtime can map them. */
export class ExternalDataFile {
  private fd: number;
  private offset = 0;
  readonly location: string;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
    this.location = basename(path);
  }

  append(data: Uint8Array): { location: string; offset: number; length: number } {
    const pad = (4096 - (this.offset % 4096)) % 4096;
    if (pad) {
      writeSync(this.fd, new Uint8Array(pad));
      this.offset += pad;
    }
    const at = this.offset;
    let done = 0;
    while (done < data.byteLength) done += writeSync(this.fd, data, done, data.byteLength - done);
    this.offset += data.byteLength;
    return { location: this.location, offset: at, length: data.byteLength };
  }

  get bytesWritten(): number {
    return this.offset;
  }

  close(): void {
    closeSync(this.fd);
  }
}

function bytesOf(data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Tensors smaller than this stay inline in the model (shape inputs must be inline anyway). */
const INLINE_LIMIT = 64 * 1024;

export class GraphBuilder {
  private nodes: NodeRecord[] = [];
  private inits: TensorRecord[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private names = new Set<string>();
  private initNames = new Set<string>();
  private counter = 0;
  private constCache = new Map<string, string>();

  constructor(
    readonly graphName: string,
    private external?: ExternalDataFile,
    /** Buffers the weights of this graph pass through on their way in (scratch.ts). */
    readonly scratch: Scratch = new Scratch(),
  ) {}

  /** A fresh, unique value name with a readable prefix. */
  fresh(prefix: string): string {
    let n: string;
    do n = `${prefix}_${this.counter++}`;
    while (this.names.has(n));
    this.names.add(n);
    return n;
  }

  input(name: string, type: DataType, dims: Dim[]): string {
    this.names.add(name);
    this.inputs.push({ name, type, dims });
    return name;
  }

  output(name: string, type: DataType, dims: Dim[]): void {
    this.outputs.push({ name, type, dims });
  }

  /** Adds a weight; large ones go to the external data file when the builder has one. */
  initializer(
    name: string,
    data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array,
    dims: number[],
    type: DataType = DataType.FLOAT,
  ): string {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count * BYTES_PER[type] !== data.byteLength) {
      throw new Error(`initializer ${name}: ${data.byteLength} bytes do not match dims ${JSON.stringify(dims)}`);
    }
    if (this.initNames.has(name)) throw new Error(`initializer ${name}: name already used`);
    this.initNames.add(name);
    this.names.add(name);
    const raw = bytesOf(data);
    if (this.external && raw.byteLength > INLINE_LIMIT) {
      this.inits.push({ name, type, dims, external: this.external.append(raw) });
    } else {
      // Copy: callers may reuse their buffers after this returns.
      this.inits.push({ name, type, dims, raw: new Uint8Array(raw) });
    }
    return name;
  }

  /** Small constant tensors (shapes, axes, scalars), de-duplicated. */
  constInt64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.initializer(this.fresh('const_i64'), BigInt64Array.from(values.map(BigInt)), dims, DataType.INT64);
    this.constCache.set(key, name);
    return name;
  }

  /** A scalar uint8 constant (zero points). */
  constUint8(value: number): string {
    return this.constByte(value, DataType.UINT8);
  }

  /** A scalar int8 constant (zero points). */
  constInt8(value: number): string {
    return this.constByte(value, DataType.INT8);
  }

  private constByte(value: number, type: DataType.UINT8 | DataType.INT8): string {
    const key = `${type === DataType.UINT8 ? 'u8' : 'i8'}:${value}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const data = type === DataType.UINT8 ? Uint8Array.from([value]) : Int8Array.from([value]);
    const name = this.initializer(this.fresh(type === DataType.UINT8 ? 'const_u8' : 'const_i8'), data, [], type);
    this.constCache.set(key, name);
    return name;
  }

  constFloat(values: number[], dims: number[] = [values.length]): string {
    const key = `f32:${dims.join('x')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.initializer(this.fresh('const_f32'), Float32Array.from(values), dims, DataType.FLOAT);
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node and returns its output names (fresh ones unless given). */
  node(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { domain?: string; outputs?: number | string[]; name?: string } = {},
  ): string[] {
    const outs =
      Array.isArray(opts.outputs)
        ? opts.outputs
        : Array.from({ length: opts.outputs ?? 1 }, () => this.fresh(op.toLowerCase()));
    for (const o of outs) if (o) this.names.add(o);
    this.nodes.push({ op, domain: opts.domain ?? '', inputs, outputs: outs, attrs, name: opts.name ?? this.fresh(`n_${op}`) });
    return outs;
  }

  /** Single-output shorthand. */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.node(op, inputs, attrs, { domain })[0];
  }

  /** Serialises the model. Opsets: default domain 21, com.microsoft 1. */
  toBytes(opts: { opset?: number; producer?: string } = {}): Uint8Array {
    const w = new ProtoWriter();
    w.int(1, 10); // ir_version 10 (ONNX 1.16+)
    w.string(2, opts.producer ?? 'qwen3-asr');
    w.string(3, '1');
    w.message(7, (g) => this.writeGraph(g));
    w.message(8, (o) => o.string(1, '').int(2, opts.opset ?? 21));
    w.message(8, (o) => o.string(1, 'com.microsoft').int(2, 1));
    return w.finish();
  }

  private writeGraph(g: ProtoWriter): void {
    for (const n of this.nodes) {
      g.message(1, (m) => {
        for (const i of n.inputs) m.string(1, i);
        for (const o of n.outputs) m.string(2, o);
        m.string(3, n.name);
        m.string(4, n.op);
        for (const [k, v] of Object.entries(n.attrs)) m.message(5, (a) => writeAttr(a, k, v));
        if (n.domain) m.string(7, n.domain);
      });
    }
    g.string(2, this.graphName);
    for (const t of this.inits) g.message(5, (m) => writeTensor(m, t));
    for (const v of this.inputs) g.message(11, (m) => writeValueInfo(m, v));
    for (const v of this.outputs) g.message(12, (m) => writeValueInfo(m, v));
  }
}

function writeAttr(a: ProtoWriter, name: string, v: AttrValue): void {
  a.string(1, name);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use {float: x} for float attributes`);
    a.int(3, v).int(20, 2); // INT
  } else if (typeof v === 'string') {
    a.string(4, v).int(20, 3); // STRING
  } else if (v instanceof Uint8Array) {
    a.bytes(4, v).int(20, 3);
  } else if (Array.isArray(v)) {
    a.packedInts(8, v).int(20, 7); // INTS
  } else if ('floats' in v) {
    a.packedFloats(7, v.floats).int(20, 6); // FLOATS
  } else {
    a.float(2, v.float).int(20, 1); // FLOAT
  }
}

function writeTensor(m: ProtoWriter, t: TensorRecord): void {
  m.packedInts(1, t.dims);
  m.int(2, t.type);
  m.string(8, t.name);
  if (t.external) {
    m.message(13, (e) => e.string(1, 'location').string(2, t.external!.location));
    m.message(13, (e) => e.string(1, 'offset').string(2, String(t.external!.offset)));
    m.message(13, (e) => e.string(1, 'length').string(2, String(t.external!.length)));
    m.int(14, 1); // data_location = EXTERNAL
  } else {
    m.bytes(9, t.raw!);
  }
}

function writeValueInfo(m: ProtoWriter, v: ValueInfo): void {
  m.string(1, v.name);
  m.message(2, (type) =>
    type.message(1, (tt) => {
      tt.int(1, v.type);
      tt.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}
