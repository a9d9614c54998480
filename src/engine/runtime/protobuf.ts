/**
 * A minimal protocol-buffers writer and field reader, just enough to serialise ONNX ModelProto
 * messages and to edit a written one (prepacked.ts). Handling the handful of ONNX messages by
 * hand keeps the engine free of a 20 MB generated protobuf package and lets large tensors go
 * straight to an external data file.
 */

export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private cur: number[] = [];
  private size = 0;

  private flush(): void {
    if (this.cur.length) {
      this.chunks.push(Uint8Array.from(this.cur));
      this.size += this.cur.length;
      this.cur = [];
    }
  }

  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.cur.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.cur.push(Number(x));
  }

  private smallVarint(v: number): void {
    // Fast path for non-negative values below 2^31 (tags, lengths, most ints).
    if (v < 0 || v > 0x7fffffff) return this.varint(v);
    while (v >= 0x80) {
      this.cur.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.cur.push(v);
  }

  private tag(field: number, wire: number): void {
    this.smallVarint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0x7fffffff) this.smallVarint(v);
    else this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.cur.push(...b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.smallVarint(data.byteLength);
    this.flush();
    this.chunks.push(data);
    this.size += data.byteLength;
    return this;
  }

  /** Bytes already encoded as fields (a message's fields copied from another), as they are. */
  raw(data: Uint8Array): this {
    this.flush();
    this.chunks.push(data);
    this.size += data.byteLength;
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const sub = new ProtoWriter();
    build(sub);
    return this.bytes(field, sub.finish());
  }

  /** Packed repeated int64 (ONNX `dims`, `ints`). */
  packedInts(field: number, values: ReadonlyArray<number | bigint>): this {
    const sub = new ProtoWriter();
    for (const v of values) {
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0x7fffffff) sub.smallVarint(v);
      else sub.varint(v);
    }
    return this.bytes(field, sub.finish());
  }

  /** Packed repeated float (ONNX attribute `floats`). */
  packedFloats(field: number, values: ArrayLike<number>): this {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i], true);
    return this.bytes(field, b);
  }

  finish(): Uint8Array {
    this.flush();
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.byteLength;
    }
    return out;
  }
}

/** One field of an encoded message. */
export interface ProtoField {
  field: number;
  /** The whole field, tag included. */
  start: number;
  end: number;
  /** Length-delimited fields: the payload. */
  body?: [number, number];
}

/** The fields of the message encoded in b[start, end), in order. */
export function* protoFields(b: Uint8Array, start: number, end: number): Generator<ProtoField> {
  let p = start;
  const varint = (): number => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (p >= end) throw new Error('truncated protobuf');
      const byte = b[p++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  };
  while (p < end) {
    const at = p;
    const key = varint();
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        varint();
        yield { field, start: at, end: p };
        break;
      case 1:
        p += 8;
        yield { field, start: at, end: p };
        break;
      case 2: {
        const length = varint();
        const body: [number, number] = [p, p + length];
        p += length;
        if (p > end) throw new Error('truncated protobuf');
        yield { field, start: at, end: p, body };
        break;
      }
      case 5:
        p += 4;
        yield { field, start: at, end: p };
        break;
      default:
        throw new Error(`unsupported protobuf wire type ${key & 7}`);
    }
  }
}
