/**
 * Safetensors reader and writer.
 *
 * A safetensors file is an 8-byte little-endian header length H, H bytes of JSON
 * ({name: {dtype, shape, data_offsets: [begin, end]}}, optional "__metadata__"), then raw
 * row-major little-endian data. Sharded checkpoints add `model.safetensors.index.json`
 * whose `weight_map` maps each tensor name to its shard file.
 *
 * We read tensor by tensor with positioned reads instead of mapping whole files: Node's
 * Buffer tops out at 4 GiB and the 1.7B checkpoint is 4.7 GB, and every consumer converts
 * the data (bf16 -> f32, quantisation) anyway.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';

export type SafeDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafeDtype, number> = {
  F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: SafeDtype;
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** Absolute byte offset of the data inside `file`. */
  offset: number;
  byteLength: number;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** Parses the header of one safetensors file. Errors name the file and what is wrong. */
export function readSafetensorsHeader(file: string): { tensors: TensorInfo[]; metadata: Record<string, string> } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new SafetensorsError(`${file}: cannot open (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new SafetensorsError(`${file}: not a safetensors file (only ${size} bytes)`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 1 || 8 + headerLen > size || headerLen > 100_000_000) {
      throw new SafetensorsError(`${file}: corrupt safetensors header (header length ${headerLen}, file size ${size})`);
    }
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch {
      throw new SafetensorsError(`${file}: corrupt safetensors header (not valid JSON)`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
      throw new SafetensorsError(`${file}: corrupt safetensors header (not a JSON object)`);
    }
    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const tensors: TensorInfo[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (raw ?? {}) as Record<string, string>;
        continue;
      }
      const entry = raw as { dtype?: string; shape?: number[]; data_offsets?: number[] };
      const dtype = entry?.dtype as SafeDtype;
      if (!(dtype in DTYPE_BYTES)) throw new SafetensorsError(`${file}: tensor ${name} has unsupported dtype ${String(entry?.dtype)}`);
      if (!Array.isArray(entry.shape) || entry.shape.some((d) => !Number.isInteger(d) || d < 0)) {
        throw new SafetensorsError(`${file}: tensor ${name} has an invalid shape ${JSON.stringify(entry.shape)}`);
      }
      const [begin, end] = entry.data_offsets ?? [];
      const expected = entry.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
      if (!Number.isInteger(begin) || !Number.isInteger(end) || end - begin !== expected || end > dataLen || begin < 0) {
        throw new SafetensorsError(
          `${file}: tensor ${name} has data offsets ${JSON.stringify(entry.data_offsets)} that do not fit its ` +
            `${dtype}${JSON.stringify(entry.shape)} (${expected} bytes) inside the ${dataLen}-byte data section (truncated file?)`,
        );
      }
      tensors.push({ name, dtype, shape: entry.shape, file, offset: dataStart + begin, byteLength: expected });
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

function nonFinite(t: TensorInfo, name: string, i: number): SafetensorsError {
  return new SafetensorsError(`${t.file}: tensor ${name} holds a non-finite value at element ${i}`);
}

/** Copies bf16 / f16 / f32 / f64 raw little-endian bytes into a new Float32Array. */
export function toFloat32(raw: Uint8Array, dtype: SafeDtype, what = 'tensor', into?: Float32Array): Float32Array {
  const n = raw.byteLength / DTYPE_BYTES[dtype];
  if (into && into.length < n) throw new Error(`toFloat32: ${into.length} floats of room for ${n}`);
  const out = into ? into.subarray(0, n) : new Float32Array(n);
  // Copy into an aligned buffer first: the source may sit at an odd byte offset.
  const aligned = raw.byteOffset % 8 === 0 ? raw : new Uint8Array(raw);
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(aligned.buffer, aligned.byteOffset, n));
      break;
    case 'BF16': {
      // bf16 is the top half of an IEEE float32: an exact upcast is a 16-bit shift.
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      const dst = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
      break;
    }
    case 'F16': {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(src[i]);
      break;
    }
    case 'F64': {
      const src = new Float64Array(aligned.buffer, aligned.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = src[i];
      break;
    }
    default:
      throw new SafetensorsError(`${what}: dtype ${dtype} is not a floating-point type`);
  }
  return out;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even f32 -> bf16 bits. */
export function floatToBf16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0; // NaN
  return ((u + 0x7fff + ((u >> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * A set of safetensors files seen as one name -> tensor map: a single `model.safetensors`,
 * a sharded checkpoint with `model.safetensors.index.json`, or any one file.
 */
export class SafetensorsStore {
  readonly tensors = new Map<string, TensorInfo>();

  private constructor(readonly source: string) {}

  /** Opens one `.safetensors` file. */
  static openFile(file: string): SafetensorsStore {
    const store = new SafetensorsStore(file);
    for (const t of readSafetensorsHeader(file).tensors) store.tensors.set(t.name, t);
    return store;
  }

  /** Opens the weights of a checkpoint folder (sharded through the index when it exists). */
  static openDir(dir: string): SafetensorsStore {
    const indexFile = join(dir, 'model.safetensors.index.json');
    if (existsSync(indexFile)) {
      let index: { weight_map?: Record<string, string> };
      try {
        index = JSON.parse(readFileSync(indexFile, 'utf8'));
      } catch (err) {
        throw new SafetensorsError(`${indexFile}: not valid JSON (${(err as Error).message})`);
      }
      if (!index.weight_map || typeof index.weight_map !== 'object') {
        throw new SafetensorsError(`${indexFile}: missing "weight_map"`);
      }
      const store = new SafetensorsStore(indexFile);
      const shards = new Set(Object.values(index.weight_map));
      for (const shard of shards) {
        if (basename(shard) !== shard) throw new SafetensorsError(`${indexFile}: shard name ${shard} is not a plain file name`);
        const path = join(dir, shard);
        if (!existsSync(path)) throw new SafetensorsError(`${path}: shard listed in ${indexFile} is missing`);
        for (const t of readSafetensorsHeader(path).tensors) store.tensors.set(t.name, t);
      }
      for (const [name, shard] of Object.entries(index.weight_map)) {
        const t = store.tensors.get(name);
        if (!t) throw new SafetensorsError(`${join(dir, shard)}: tensor ${name} listed in ${indexFile} is not in the shard`);
      }
      return store;
    }
    const single = join(dir, 'model.safetensors');
    if (!existsSync(single)) {
      throw new SafetensorsError(`${dir}: no model.safetensors or model.safetensors.index.json in the checkpoint folder`);
    }
    return SafetensorsStore.openFile(single);
  }

  /** The files holding the tensors. */
  get files(): string[] {
    return [...new Set([...this.tensors.values()].map((t) => t.file))];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(`${this.source}: tensor ${name} is missing from the checkpoint`);
    return t;
  }

  /** Checks a tensor's shape; the error names the file, the tensor and both shapes. */
  expectShape(name: string, shape: number[]): TensorInfo {
    const t = this.info(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new SafetensorsError(
        `${t.file}: tensor ${name} has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)} from config.json`,
      );
    }
    return t;
  }

  /**
   * A tensor's bytes, read into a fresh buffer or, with `into`, into the buffer it returns
   * for the tensor's byte length (runtime/scratch.ts: weights read into a reused buffer).
   */
  readRaw(name: string, into?: (length: number) => Uint8Array): Buffer {
    const t = this.info(name);
    let buf: Buffer;
    if (into) {
      const given = into(t.byteLength);
      if (given.byteLength < t.byteLength) throw new Error(`readRaw ${name}: a buffer of ${given.byteLength} bytes for ${t.byteLength}`);
      buf = Buffer.from(given.buffer, given.byteOffset, t.byteLength);
    } else {
      buf = Buffer.allocUnsafe(t.byteLength);
    }
    const fd = openSync(t.file, 'r');
    try {
      let done = 0;
      while (done < t.byteLength) {
        const n = readSync(fd, buf, done, t.byteLength - done, t.offset + done);
        if (n <= 0) throw new SafetensorsError(`${t.file}: unexpected end of file while reading tensor ${name}`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return buf;
  }

  /** Reads a floating-point tensor as float32 (bf16 and f16 upcast exactly). */
  readFloat32(name: string, shape?: number[]): Float32Array {
    const t = shape ? this.expectShape(name, shape) : this.info(name);
    if (t.dtype === 'BF16' || t.dtype === 'F16') {
      const words = this.readWords16(name, t);
      return toFloat32(new Uint8Array(words.buffer, words.byteOffset, words.byteLength), t.dtype, `${t.file}: tensor ${name}`);
    }
    const data = toFloat32(this.readRaw(name), t.dtype, `${t.file}: tensor ${name}`);
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw nonFinite(t, name, i);
    return data;
  }

  /**
   * A BF16 tensor's raw 16-bit words (checked finite), for consumers that convert as they go
   * (quantize.ts: int8 weights straight from bf16, no float32 copy); undefined for other
   * dtypes, which readFloat32 reads.
   */
  readBf16Words(name: string, shape?: number[], into?: (length: number) => Uint8Array): Uint16Array | undefined {
    const t = shape ? this.expectShape(name, shape) : this.info(name);
    return t.dtype === 'BF16' ? this.readWords16(name, t, into) : undefined;
  }

  /** A 16-bit float tensor's words, aligned, with none of them Inf or NaN (exponent all ones). */
  private readWords16(name: string, t: TensorInfo, into?: (length: number) => Uint8Array): Uint16Array {
    const raw = this.readRaw(name, into);
    const words = raw.byteOffset % 2 === 0 ? new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength >> 1) : new Uint16Array(new Uint8Array(raw).buffer);
    // A word is Inf or NaN when its exponent bits are all ones. Checked two words at a time
    // through 32-bit reads: a word's exponent bits e ≤ mask, and e + (mask's lowest bit)
    // reaches bit 15 only when e = mask, without carrying into the other word. One word at a
    // time, the 1.7B checkpoint's 2.35 G words take 6.6 s of a first load (CPU profile, on an
    // AMD EPYC Zen 3 VM, 2 vCPUs).
    const mask = t.dtype === 'BF16' ? 0x7f80 : 0x7c00;
    const pair = (mask << 16) | mask;
    const carry = ((mask & -mask) << 16) | (mask & -mask);
    const pairs = words.byteOffset % 4 === 0 ? new Uint32Array(words.buffer, words.byteOffset, words.length >> 1) : new Uint32Array(0);
    let clean = true;
    for (let i = 0; i < pairs.length; i++) {
      if ((((pairs[i] & pair) + carry) & 0x80008000) !== 0) {
        clean = false;
        break;
      }
    }
    // Where the pairs found one (or could not be read as pairs), the words say which.
    const from = clean ? pairs.length * 2 : 0;
    for (let i = from; i < words.length; i++) if ((words[i] & mask) === mask) throw nonFinite(t, name, i);
    return words;
  }

  /** Reads an integer tensor as Int32Array (I32 or I64 within range). */
  readInt32(name: string): Int32Array {
    const t = this.info(name);
    const raw = new Uint8Array(this.readRaw(name));
    if (t.dtype === 'I32') return new Int32Array(raw.buffer, raw.byteOffset, t.byteLength / 4);
    if (t.dtype === 'I64') {
      const src = new BigInt64Array(raw.buffer, raw.byteOffset, t.byteLength / 8);
      return Int32Array.from(src, (v) => Number(v));
    }
    throw new SafetensorsError(`${t.file}: tensor ${name} is ${t.dtype}, expected an integer tensor`);
  }
}

export interface TensorToWrite {
  name: string;
  dtype: SafeDtype;
  shape: number[];
  /** Raw little-endian bytes, or a producer called at write time (keeps memory flat for big files). */
  data: Uint8Array | (() => Uint8Array);
}

/** Writes a safetensors file, streaming tensor data so multi-gigabyte files need little memory. */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data section starts 8-byte aligned (as the reference writer does).
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBuf = Buffer.from(json, 'utf8');
  const fd = openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(headerBuf.length));
    writeSync(fd, len);
    writeSync(fd, headerBuf);
    for (const t of tensors) {
      const bytes = typeof t.data === 'function' ? t.data() : t.data;
      const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
      if (bytes.byteLength !== expected) throw new SafetensorsError(`${file}: tensor ${t.name} has ${bytes.byteLength} bytes, expected ${expected}`);
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    }
  } finally {
    closeSync(fd);
  }
}
