/**
 * The decoder's host-owned KV cache: per-layer keys and values of a batch, stored in fp32 or
 * int8, grown in place, stacked from separately prefilled prompts and compacted as rows
 * finish. The decoder graph takes it as input (inputs are not copied) and returns only each
 * pass's new rows, which are appended here.
 */
import ort from 'onnxruntime-node';
import { ROUND } from './quantize.ts';

/** The cache grows in steps of this many positions (attention over unused slack is masked). */
const CACHE_STEP = 64;
/** The most positions KvCache.reserve makes room for beyond those already stored. */
const MAX_RESERVE = 1024;

/**
 * How the cache stores past keys and values.
 * - `fp32`: as the graph computed them, [B, kvH, cap, hd] each (exact; QUANT=none).
 * - `int8`: one int8 vector per position and head with its own scale (max |x| / 127), keys
 *   transposed to [B, kvH, hd, cap] so the graph's integer product needs no transpose, values
 *   [B, kvH, cap, hd]; scales [B, kvH, cap]. A quarter of the bytes: at batch 8 and 800
 *   positions a 1.7B step reads 0.38 GB of cache instead of 1.53 GB, and attention over it
 *   takes 39 ms instead of 107 (MatMulInteger vs fp32 MatMul, 2 threads, on an Intel Xeon VM
 *   with AMX, 2 vCPUs).
 *   For the u8u8 integer kernel (int8-kernel.ts) the bytes hold each value + 128 and go to
 *   the graph as uint8 (KvCache.zeroPoint); the arrays stay Int8Array views of those bytes.
 */
export type KvCacheFormat = 'fp32' | 'int8';

/**
 * New positions of every layer as the decoder graph returns them, in the cache's format:
 * fp32 keys and values [B, kvH, S, hd]; or int8 keys [B, kvH, hd, S] and values
 * [B, kvH, S, hd] with per-position scales [B, kvH, S].
 */
export type NewKvRows =
  | { format: 'fp32'; keys: Float32Array[]; values: Float32Array[] }
  | { format: 'int8'; keys: Int8Array[]; values: Int8Array[]; keyScales: Float32Array[]; valueScales: Float32Array[] };

/** Per-layer keys and values of a batch; positions < len are filled. */
export class KvCache {
  keys: (Float32Array | Int8Array)[];
  values: (Float32Array | Int8Array)[];
  /** int8 only: per-position scales [B, kvH, cap]. */
  keyScales: Float32Array[];
  valueScales: Float32Array[];
  cap = 0;
  len = 0;
  /** Per kind, each layer's region of one shared buffer, with room for roomCap positions per head row (see reallocate). */
  private regions: { keys: (Float32Array | Int8Array)[]; values: (Float32Array | Int8Array)[]; keyScales: Float32Array[]; valueScales: Float32Array[] } | undefined;
  private roomCap = 0;

  constructor(
    readonly layers: number,
    public batch: number,
    readonly kvHeads: number,
    readonly headDim: number,
    /** Left-padding positions of each row (masked forever). */
    public padStart: number[],
    readonly format: KvCacheFormat = 'fp32',
    /** int8: what each stored value has been offset by (128: uint8 bytes for the u8u8 kernel). */
    readonly zeroPoint: 0 | 128 = 0,
  ) {
    this.keys = Array.from({ length: layers }, () => this.tensor(0));
    this.values = Array.from({ length: layers }, () => this.tensor(0));
    this.keyScales = Array.from({ length: layers }, () => new Float32Array(0));
    this.valueScales = Array.from({ length: layers }, () => new Float32Array(0));
    // The int8 graph's row reductions need at least one (masked) past position; one, not a
    // growth step's worth, so a first prompt pass does not attend to 64 empty slots.
    if (format === 'int8') this.reallocate(1);
  }

  private tensor(n: number): Float32Array | Int8Array {
    return this.format === 'int8' ? new Int8Array(n) : new Float32Array(n);
  }

  /** Real tokens of row b so far (its next position id). */
  position(b: number): number {
    return this.len - this.padStart[b];
  }

  /** One layer's arrays, with the positions per head they are laid out for. */
  private layer(l: number): LayerPositions {
    return { keys: this.keys[l], values: this.values[l], keyScales: this.keyScales[l], valueScales: this.valueScales[l], cap: this.cap };
  }

  /**
   * Widens every head row to `cap` positions, keeping the `len` stored so far.
   *
   * Why not a fresh array per growth: steps grow the cache every CACHE_STEP positions, and
   * first-touching a fresh cache-sized array each time costs more in page faults than the copy
   * (batch 8, 0.6B, 275 positions: 62–100 ms of a 106–133 ms growth are page faults, on an AMD
   * EPYC Zen 3 VM, AVX2 without VNNI, 2 vCPUs). Instead each kind of array (keys, values, their
   * scales) is one buffer for all layers with room for twice the stride, layer after layer;
   * until that room is used up a growth moves rows up inside each layer's region (widenRows),
   * which touches only the pages the wider rows reach. One buffer of all layers is also
   * large enough (past glibc's 32 MB mmap threshold at full size) to come as fresh zero pages
   * that cost nothing until touched, where 28 smaller ones may come from the heap and be
   * cleared in full.
   */
  private reallocate(cap: number, roomCap?: number): void {
    const { kvHeads: kvH, headDim: hd, len, layers: L, cap: old } = this;
    const BH = this.batch * kvH;
    if (roomCap !== undefined || cap > this.roomCap) {
      roomCap ??= 2 * cap;
      const regions = (base: Float32Array | Int8Array, size: number) => Array.from({ length: L }, (_, l) => base.subarray(l * size, (l + 1) * size));
      const keys = this.format === 'int8' ? new Int8Array(L * BH * hd * roomCap) : new Float32Array(L * BH * hd * roomCap);
      const values = this.format === 'int8' ? new Int8Array(L * BH * hd * roomCap) : new Float32Array(L * BH * hd * roomCap);
      const scales = this.format === 'int8' ? BH * roomCap : 0;
      this.regions = {
        keys: regions(keys, BH * hd * roomCap),
        values: regions(values, BH * hd * roomCap),
        keyScales: regions(new Float32Array(L * scales), scales) as Float32Array[],
        valueScales: regions(new Float32Array(L * scales), scales) as Float32Array[],
      };
      this.roomCap = roomCap;
    }
    const room = this.regions!;
    for (let l = 0; l < L; l++) {
      if (this.format === 'int8') {
        this.keys[l] = widenRows(room.keys[l], this.keys[l], BH * hd, old, cap, len); // [B·kvH·hd, cap]
        this.keyScales[l] = widenRows(room.keyScales[l], this.keyScales[l], BH, old, cap, len);
        this.valueScales[l] = widenRows(room.valueScales[l], this.valueScales[l], BH, old, cap, len);
      } else {
        this.keys[l] = widenRows(room.keys[l], this.keys[l], BH, old * hd, cap * hd, len * hd);
      }
      this.values[l] = widenRows(room.values[l], this.values[l], BH, old * hd, cap * hd, len * hd);
    }
    this.cap = cap;
  }

  /**
   * Makes room for `positions` per head row (a prompt and the most tokens it may generate),
   * so growing up to that many moves rows only inside their regions, never to a new buffer
   * (which at 400–450 positions costs 300–400 ms each time for batch 8 of the 0.6B model, on
   * an AMD EPYC Zen 3 VM, 2 vCPUs). Room beyond the current length is capped at MAX_RESERVE
   * positions; past it growth doubles the room as usual.
   * Reserved pages that are never reached are never touched (see reallocate).
   */
  reserve(positions: number): void {
    const room = Math.ceil(Math.min(positions, this.len + MAX_RESERVE) / CACHE_STEP) * CACHE_STEP;
    if (room > this.roomCap) this.reallocate(this.cap, room);
  }

  /**
   * Appends S new positions per row from the graph's outputs, which come in the cache's own
   * format (NewKvRows).
   */
  append(rows: NewKvRows, S: number): void {
    if (this.format !== rows.format) throw new Error(`KV cache: ${rows.format} rows appended to a ${this.format} cache`);
    if (this.len + S > this.cap) {
      this.reallocate(Math.ceil((this.len + S) / CACHE_STEP) * CACHE_STEP);
    }
    const { kvHeads: kvH, headDim: hd, cap, len } = this;
    const BH = this.batch * kvH;
    for (let l = 0; l < this.layers; l++) {
      if (rows.format === 'int8' && S === 1) {
        // A generation step: one position, element by element in monomorphic loops (no call
        // or subarray per element); int8 keys are [hd, positions] per head.
        const k = this.keys[l] as Int8Array;
        const nk = rows.keys[l];
        for (let r = 0; r < BH * hd; r++) k[r * cap + len] = nk[r];
        for (let bh = 0; bh < BH; bh++) {
          this.values[l].set(rows.values[l].subarray(bh * hd, (bh + 1) * hd), (bh * cap + len) * hd);
          this.keyScales[l][bh * cap + len] = rows.keyScales[l][bh];
          this.valueScales[l][bh * cap + len] = rows.valueScales[l][bh];
        }
        continue;
      }
      // The new rows have the cache's layouts, with S positions per head.
      const fresh: LayerPositions =
        rows.format === 'int8'
          ? { keys: rows.keys[l], values: rows.values[l], keyScales: rows.keyScales[l], valueScales: rows.valueScales[l], cap: S }
          : { keys: rows.keys[l], values: rows.values[l], keyScales: NO_SCALES, valueScales: NO_SCALES, cap: S };
      for (let bh = 0; bh < BH; bh++) copyPositions(this.format, hd, fresh, bh, 0, this.layer(l), bh, len, S);
    }
    this.len += S;
  }

  /**
   * A new batch cache whose row i holds the filled positions of `parts[i]` (a row of another
   * cache, e.g. of a prompt prefilled on its own), left-padded to the longest part. Every
   * stored value is copied as it is (int8 rows keep their scales), so decoding on from the
   * stacked cache computes what decoding on from each part would. Room is reserved for
   * `extraPositions` more (see reserve).
   */
  static stack(parts: { cache: KvCache; row: number }[], extraPositions = 0): KvCache {
    if (parts.length === 0) throw new Error('KV cache: nothing to stack');
    const { layers, kvHeads: kvH, headDim: hd, format, zeroPoint } = parts[0].cache;
    for (const { cache } of parts) {
      if (cache.layers !== layers || cache.kvHeads !== kvH || cache.headDim !== hd || cache.format !== format || cache.zeroPoint !== zeroPoint) {
        throw new Error('KV cache: stacked caches differ in layers, heads, head size or format');
      }
    }
    const lengths = parts.map((p) => p.cache.position(p.row));
    const len = Math.max(...lengths);
    const out = new KvCache(layers, parts.length, kvH, hd, lengths.map((n) => len - n), format, zeroPoint);
    out.reserve(len + extraPositions);
    out.reallocate(Math.max(CACHE_STEP, Math.ceil(len / CACHE_STEP) * CACHE_STEP));
    parts.forEach(({ cache: src, row }, b) => {
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < kvH; h++) {
          copyPositions(format, hd, src.layer(l), row * kvH + h, src.padStart[row], out.layer(l), b * kvH + h, out.padStart[b], lengths[b]);
        }
      }
    });
    out.len = len;
    return out;
  }

  /**
   * Keeps only the given rows, ascending (finished rows leave the batch). Rows move down in
   * place and the arrays become views of their first rows: no allocation, and no copy at all
   * of the rows before the first one that left.
   */
  keepRows(rows: number[]): void {
    if (rows.some((b, i) => b < i || (i > 0 && b <= rows[i - 1]) || b >= this.batch)) throw new Error(`KV cache: keepRows needs ascending rows of the batch, got ${rows}`);
    const { kvHeads: kvH, headDim: hd, cap } = this;
    const block = kvH * cap * hd; // one row of keys or values
    const scaleBlock = kvH * cap;
    const compact = <T extends Float32Array | Int8Array>(a: T, n: number): T => {
      rows.forEach((b, nb) => {
        if (b !== nb) a.copyWithin(nb * n, b * n, (b + 1) * n);
      });
      return a.subarray(0, rows.length * n) as T;
    };
    for (let l = 0; l < this.layers; l++) {
      this.keys[l] = compact(this.keys[l], block);
      this.values[l] = compact(this.values[l], block);
      if (this.format === 'int8') {
        this.keyScales[l] = compact(this.keyScales[l], scaleBlock);
        this.valueScales[l] = compact(this.valueScales[l], scaleBlock);
      }
    }
    this.padStart = rows.map((b) => this.padStart[b]);
    this.batch = rows.length;
  }

  /** Dequantised (or copied) key and value of one position, for tests: [hd] each. */
  read(layer: number, b: number, h: number, pos: number): { key: Float32Array; value: Float32Array } {
    const { kvHeads: kvH, headDim: hd, cap } = this;
    const bh = b * kvH + h;
    const key = new Float32Array(hd);
    const value = new Float32Array(hd);
    const stored = (x: number) => (this.zeroPoint ? (x & 0xff) - this.zeroPoint : x); // the int8 value of a stored byte
    for (let d = 0; d < hd; d++) {
      if (this.format === 'fp32') {
        key[d] = this.keys[layer][(bh * cap + pos) * hd + d];
        value[d] = this.values[layer][(bh * cap + pos) * hd + d];
      } else {
        key[d] = stored(this.keys[layer][(bh * hd + d) * cap + pos]) * this.keyScales[layer][bh * cap + pos];
        value[d] = stored(this.values[layer][(bh * cap + pos) * hd + d]) * this.valueScales[layer][bh * cap + pos];
      }
    }
    return { key, value };
  }

  /** The graph inputs of one layer's past. */
  feeds(layer: number, into: Record<string, ort.Tensor>): void {
    const { batch: B, kvHeads: kvH, headDim: hd, cap: P } = this;
    if (this.format === 'fp32') {
      into[`past_key.${layer}`] = new ort.Tensor('float32', this.keys[layer] as Float32Array, [B, kvH, P, hd]);
      into[`past_value.${layer}`] = new ort.Tensor('float32', this.values[layer] as Float32Array, [B, kvH, P, hd]);
      return;
    }
    // Offset values go to the graph as the uint8 they are (a view of the same bytes).
    const tensor = (a: Int8Array, dims: number[]) => (this.zeroPoint ? new ort.Tensor('uint8', new Uint8Array(a.buffer, a.byteOffset, a.length), dims) : new ort.Tensor('int8', a, dims));
    into[`past_key.${layer}`] = tensor(this.keys[layer] as Int8Array, [B, kvH, hd, P]);
    into[`past_value.${layer}`] = tensor(this.values[layer] as Int8Array, [B, kvH, P, hd]);
    into[`past_key_scale.${layer}`] = new ort.Tensor('float32', this.keyScales[layer], [B, kvH, 1, P]);
    into[`past_value_scale.${layer}`] = new ort.Tensor('float32', this.valueScales[layer], [B, kvH, 1, P]);
  }
}

const FLOOR = Math.fround(1e-30);

/** The bytes of a graph's int8 or uint8 output as an Int8Array (the cache's storage). */
export function int8View(a: ort.Tensor['data']): Int8Array {
  const bytes = a as Int8Array | Uint8Array;
  return bytes instanceof Int8Array ? bytes : new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * Symmetric int8 quantisation of consecutive vectors of `hd` values, exactly as the decoder
 * graph's quantizeVectors computes it in float32: scale = max(max|x| / 127, 1e-30), then
 * x / scale rounded half to even (no saturation needed: |x / scale| ≤ 127), plus `zeroPoint`
 * (128 for a cache of uint8 bytes: the result then holds their bits, KvCache.zeroPoint).
 */
export function quantizeVectorsInt8(x: Float32Array, hd: number, zeroPoint: 0 | 128 = 0): { q: Int8Array; scales: Float32Array } {
  const n = x.length / hd;
  const q = new Int8Array(x.length);
  const scales = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    const at = r * hd;
    let max = 0;
    for (let i = 0; i < hd; i++) {
      const a = Math.abs(x[at + i]);
      if (a > max) max = a;
    }
    const scale = Math.max(Math.fround(max / 127), FLOOR);
    scales[r] = scale;
    for (let i = 0; i < hd; i++) {
      // The float32 quotient, rounded half to even by quantize.ts's ROUND (no Math.round: it
      // rounds ties up, and costs several times more in this V8).
      q[at + i] = Math.fround(x[at + i] / scale) + ROUND - ROUND + zeroPoint;
    }
  }
  return { q, scales };
}

/** One layer of a cache (or of a pass's new rows): arrays laid out for `cap` positions per head. */
interface LayerPositions {
  keys: Float32Array | Int8Array;
  values: Float32Array | Int8Array;
  keyScales: Float32Array;
  valueScales: Float32Array;
  cap: number;
}

const NO_SCALES = new Float32Array(0);

/**
 * `rows` rows of `a` (a view of `region`'s start, or an array elsewhere) re-laid in `region`
 * from a stride of `from` elements to one of `to` (≥ from): the first `used` of each row kept,
 * the rest zeroed (slack positions are masked, and zeros keep one row's old bytes out of
 * another's slack). Returns region's first rows·to elements.
 *
 * In place, rows move up the last first: row r's new place [r·to, r·to + used) lies above
 * every row not yet moved (those end by r·from), and copyWithin handles its overlap with its
 * own old place. Native calls only: no view object per row (an int8 key cache has B·kvH·hd
 * rows per layer).
 */
function widenRows<T extends Float32Array | Int8Array>(region: T, a: T, rows: number, from: number, to: number, used: number): T {
  if (a.buffer !== region.buffer || a.byteOffset !== region.byteOffset) region.set(a.subarray(0, rows * from));
  const out = region.subarray(0, rows * to) as T;
  for (let r = rows - 1; r >= 0; r--) {
    if (to !== from && used > 0) out.copyWithin(r * to, r * from, r * from + used);
    out.fill(0, r * to + used, (r + 1) * to);
  }
  return out;
}

/**
 * Copies positions [from, from + n) of head row `srcBh` (batch row × kvH + head) of `src` to
 * positions [to, to + n) of head row `dstBh` of `dst`, in the format's layouts (int8 keys
 * are [hd, cap] per head, so each dimension is a run of its own).
 */
function copyPositions(format: KvCacheFormat, hd: number, src: LayerPositions, srcBh: number, from: number, dst: LayerPositions, dstBh: number, to: number, n: number): void {
  if (n <= 0) return;
  copyRun(dst.values, (dstBh * dst.cap + to) * hd, src.values, (srcBh * src.cap + from) * hd, n * hd);
  if (format === 'fp32') {
    copyRun(dst.keys, (dstBh * dst.cap + to) * hd, src.keys, (srcBh * src.cap + from) * hd, n * hd);
    return;
  }
  for (let d = 0; d < hd; d++) copyRun(dst.keys, (dstBh * hd + d) * dst.cap + to, src.keys, (srcBh * hd + d) * src.cap + from, n);
  copyRun(dst.keyScales, dstBh * dst.cap + to, src.keyScales, srcBh * src.cap + from, n);
  copyRun(dst.valueScales, dstBh * dst.cap + to, src.valueScales, srcBh * src.cap + from, n);
}

/** dst[dstAt .. dstAt + n) = src[srcAt .. srcAt + n): a plain loop for short runs, a block copy for long ones. */
function copyRun<T extends Float32Array | Int8Array>(dst: T, dstAt: number, src: T, srcAt: number, n: number): void {
  if (n >= 64) dst.set(src.subarray(srcAt, srcAt + n), dstAt);
  else for (let i = 0; i < n; i++) dst[dstAt + i] = src[srcAt + i];
}
