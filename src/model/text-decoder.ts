/**
 * Runs the Qwen3 decoder graph: embedding lookup on the host, a host-owned KV cache, and
 * batched forward passes (prefill chunks and single-token steps).
 *
 * Up to two compiled graphs: the step graph for passes of a few rows (one token per
 * sequence, small batches) and the batch graph for passes of many rows (prompts, steps of
 * large batches), when the precisions chosen for the two differ (thinker.ts precisionsFor).
 *
 * Batches are left-padded so every row's newest token sits at the same index; padded
 * positions are masked out of attention and each row's positions count from its own first
 * real token (spec §6.2).
 */
import ort from 'onnxruntime-node';
import { type TextDecoderConfig } from './config.ts';
import { buildDecoderGraph, type DecoderGraphOptions } from './decoder-graph.ts';
import { type SafetensorsStore, toFloat32 } from './safetensors.ts';
import { createSession, type SessionOptions } from './onnx/session.ts';
import { type LinearOptions } from './onnx/layers.ts';
import { defaultInt8Kernel, int8Offset } from './onnx/int8-kernel.ts';
import { thisCpu } from './onnx/cpu-flags.ts';
import { intraOpThreads } from './onnx/cpu-threads.ts';
import { ROUND } from './quantize.ts';

const NEG = -1e30;
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
 *   took 39 ms instead of 107 (MatMulInteger vs fp32 MatMul, 2 threads, this machine).
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
   * first-touching a fresh cache-sized array each time cost more in page faults than the copy
   * (batch 8, 0.6B, 275 positions: 62–100 ms of faults in 106–133 ms a growth; 185–236 ms at
   * 792 positions, i.e. 2–4 ms a step). Instead each kind of array (keys, values, their
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
   * (batch 8, 0.6B: 300–400 ms each time at 400–450 positions). Room beyond the current
   * length is capped at MAX_RESERVE positions; past it growth doubles the room as usual.
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
function int8View(a: ort.Tensor['data']): Int8Array {
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

export interface DecoderLoadOptions extends DecoderGraphOptions {
  /**
   * Projections and head for passes of many rows; when either differs from `linear` / `head`,
   * a second graph (the batch graph) is built for them.
   */
  batchLinear?: LinearOptions;
  batchHead?: LinearOptions;
  /** With two graphs: steps of at most this many rows run on the step graph (default: stepGraphRowsFor this CPU). */
  stepGraphRows?: number;
}

/**
 * Generation steps of at most this many rows run on the step graph (when there is one:
 * QUANT=int4, whose steps use 4-bit MatMulNBits); every other pass (steps of larger batches,
 * prompts) on the batch graph (W8A8). MatMulNBits costs more with every row; W8A8 costs less
 * per row the more rows share its weights, and with AMX it is nearly flat in the row count,
 * so where the two cross depends on the CPU. Step graph against batch graph, int4 steps at
 * 275 positions, ms, alternating runs in one process:
 * - AMX (the seventh session's Intel VM): one row 29.7–30.0 vs 34.1 (0.6B) and 68.6–69.0 vs
 *   75.6–76.4 (1.7B); two rows even (0.6B 38.7–39.4 vs 38.8–39.9, 1.7B 80.7–82.2 vs
 *   78.7–82.0); three rows for the batch graph (0.6B 45.9–46.0 vs 42.7, 1.7B 100.1–101.4 vs
 *   82.3–86.0): up to 2 rows.
 * - AVX-512 VNNI without AMX (the AMD EPYC Zen 5 VM), one thread (eleventh session; medians
 *   of 24 steps, 3–5 runs each): three rows for the step graph (0.6B 32.7–36.3 vs 40.5–42.1,
 *   1.7B 79–94 vs 93–127); four even (0.6B 42.2–54.2 vs 42.7–46.2, 1.7B 92–95 vs 98–104); six
 *   and eight for the batch graph (1.7B 122–149 vs 112–115, 157–183 vs 137–140): up to 3 rows.
 *   (On the ninth session's AVX2 VM the weight products of a 0.6B step alone took 40–49 ms
 *   for 3 rows as 4-bit MatMulNBits against 49–57 as W8A8.)
 * - The same VM on two threads (fourteenth session; medians of 24 steps, three alternating
 *   rounds): MatMulNBits gains more from the second core than W8A8. 0.6B: 1 row 17.5–20.1 vs
 *   25.1–28.4, 3 rows 26.9–32.1 vs 34.5–43.5, 5 rows 35.0–38.1 vs 38.9–39.4, 6 even
 *   (46.9–50.9 vs 49.0–54.1), 8 for the batch graph (48.8–50.7 vs 46.3–46.5); 1.7B: 1 row
 *   31.9–33.4 vs 48.5–53.3, 3 rows 47.4–50.0 vs 70.8–73.6, 5 rows 66.3–68.9 vs 81.6–93.7, 6 rows
 *   84.7–93.0 vs 95.4–98.7, 8 for the batch graph (96.8–104.4 vs 88.3–92.8): up to 6 rows.
 * The AMX figures are one-thread figures too (ONNX Runtime's default then); more threads were
 * not measured there.
 */
export function stepGraphRowsFor(cpuFlags: ReadonlySet<string>, threads: number): number {
  if (cpuFlags.has('amx_int8')) return 2;
  return threads >= 2 ? 6 : 3;
}

export class TextDecoder {
  /** Per session, its outputs without `logits` (what a generation step fetches). */
  private readonly fetchesWithoutLogits = new Map<ort.InferenceSession, readonly string[]>();

  private constructor(
    readonly cfg: TextDecoderConfig,
    private readonly session: ort.InferenceSession,
    private readonly batchSession: ort.InferenceSession | undefined,
    /** Embedding table, raw checkpoint dtype (bf16 stays 2 bytes a value in memory). */
    private readonly embedRaw: Uint8Array,
    private readonly embedDtype: 'BF16' | 'F16' | 'F32',
    readonly vocabRows: number,
    /** Logits per row: the output head's rows (vocabulary, or the aligner's timestamp classes). */
    readonly headRows: number,
    readonly kvCache: KvCacheFormat,
    /** The int8 cache's offset for the graph's integer kernel (KvCache.zeroPoint). */
    private readonly kvZeroPoint: 0 | 128,
    /** Steps of at most this many rows run on the step graph (when there is a batch graph). */
    readonly stepGraphRows: number,
  ) {}

  /** Whether steps of small batches have a graph of their own (QUANT=int4). */
  get twoGraphs(): boolean {
    return this.batchSession !== undefined;
  }

  static async load(store: SafetensorsStore, cfg: TextDecoderConfig, opts: DecoderLoadOptions, session: SessionOptions): Promise<TextDecoder> {
    const embName = 'thinker.model.embed_tokens.weight';
    const info = store.info(embName);
    if (info.shape.length !== 2 || info.shape[1] !== cfg.hiddenSize || info.shape[0] < cfg.vocabSize) {
      throw new Error(`${info.file}: tensor ${embName} has shape ${JSON.stringify(info.shape)}, expected [${cfg.vocabSize}, ${cfg.hiddenSize}] from config.json`);
    }
    if (info.dtype !== 'BF16' && info.dtype !== 'F16' && info.dtype !== 'F32') throw new Error(`${info.file}: tensor ${embName} has unsupported dtype ${info.dtype}`);
    // Cache keys: what the caller chose (precisions, head) names the entry; what the code
    // derives — the graph's form, this CPU's integer kernel (int8-kernel.ts) — is in the key
    // but not the name, so an entry built otherwise is replaced rather than kept beside it.
    const int8Kernel = opts.int8Kernel ?? defaultInt8Kernel();
    const chosen = { linear: opts.linear, head: opts.head, headRows: opts.headRows, headWeight: opts.headWeight, kvCache: opts.kvCache };
    const chosenBatch = { ...chosen, linear: opts.batchLinear ?? opts.linear, head: opts.batchHead ?? opts.head };
    const twoGraphs = chosenBatch.linear.precision !== chosen.linear.precision || chosenBatch.head.precision !== chosen.head.precision;
    // One integer kernel for every product of the graphs.
    const built = (c: typeof chosen): DecoderGraphOptions => ({ ...c, linear: { ...c.linear, int8Kernel }, head: { ...c.head, int8Kernel }, int8Kernel });
    // With two graphs the step graph only runs steps (one position per row) of at most
    // stepGraphRows rows, and takes the form made for them.
    const derived = { singlePosition: twoGraphs, int8Kernel };
    const sess = await createSession('text_decoder', (g) => buildDecoderGraph(g, store, cfg, { ...built(chosen), singlePosition: twoGraphs }), session, chosen, derived);
    let batch: ort.InferenceSession | undefined;
    if (twoGraphs) {
      batch = await createSession('text_decoder_batch', (g) => buildDecoderGraph(g, store, cfg, built(chosenBatch)), session, chosenBatch, { int8Kernel });
    }
    const kvCache = opts.kvCache ?? 'fp32';
    // The table stays in the buffer it was read into (a copy of the 1.7B model's 622 MB took
    // 2.7 s of page faults on the twelfth session's VM, and doubled the table's memory until
    // the read buffer was collected).
    const embRaw = store.readRaw(embName);
    return new TextDecoder(cfg, sess, batch, new Uint8Array(embRaw.buffer, embRaw.byteOffset, embRaw.byteLength), info.dtype, info.shape[0], opts.headRows, kvCache, kvCache === 'int8' ? int8Offset(int8Kernel) : 0, opts.stepGraphRows ?? stepGraphRowsFor(thisCpu().flags, intraOpThreads(session.threads)));
  }

  /** Writes the embedding of `id` into out[offset .. offset + H). */
  embed(id: number, out: Float32Array, offset: number): void {
    const H = this.cfg.hiddenSize;
    if (!(id >= 0 && id < this.vocabRows)) throw new Error(`token id ${id} is outside the embedding table (${this.vocabRows} rows)`);
    const bytes = this.embedDtype === 'F32' ? 4 : 2;
    const row = this.embedRaw.subarray(id * H * bytes, (id + 1) * H * bytes);
    out.set(toFloat32(row, this.embedDtype), offset);
  }

  newCache(batch: number, padStart: number[]): KvCache {
    return new KvCache(this.cfg.layers, batch, this.cfg.kvHeads, this.cfg.headDim, padStart, this.kvCache, this.kvZeroPoint);
  }

  /**
   * One forward pass of S new positions for every row of the cache's batch. `embeds` is
   * [B, S, H]; `logitRows` are indices into the flattened [B·S] positions. Returns, for those
   * rows, logits [R, headRows] (unless `logits` is false: a generation step only needs
   * `nextIds`, and then the logits are neither copied out of the session nor scanned) and
   * each row's argmax, and appends the new keys/values to the cache.
   */
  async forward(cache: KvCache, embeds: Float32Array, S: number, logitRows: number[], opts: { logits?: boolean } = {}): Promise<{ logits?: Float32Array; nextIds: number[] }> {
    const B = cache.batch;
    const L = this.cfg.layers;
    const P = cache.cap;
    // Steps of small batches go to the step graph (when there are two; it takes one position
    // per row and no new-position mask), everything else to the batch graph.
    const step = !this.twoGraphs || (S === 1 && B <= this.stepGraphRows);
    const session = step ? this.session : this.batchSession!;
    const singlePosition = step && this.twoGraphs;
    // Masks per row of the graph's grouped query layout: row g·S + i is position i (g < grp).
    const grp = this.cfg.heads / this.cfg.kvHeads;
    const rows = grp * S;
    const positions = new BigInt64Array(B * S);
    const pastMask = new Float32Array(B * rows * P);
    const newMask = singlePosition ? undefined : new Float32Array(B * rows * S);
    for (let b = 0; b < B; b++) {
      const pad = cache.padStart[b];
      for (let i = 0; i < S; i++) {
        const abs = cache.len + i; // absolute slot of this query
        positions[b * S + i] = BigInt(Math.max(0, abs - pad));
        const pm = (b * rows + i) * P;
        for (let j = 0; j < P; j++) if (j < pad || j >= cache.len) pastMask[pm + j] = NEG;
        const nm = (b * rows + i) * S;
        if (newMask) for (let j = 0; j < S; j++) if (j > i || cache.len + j < pad) newMask[nm + j] = NEG;
      }
      for (let g = 1; g < grp; g++) {
        pastMask.copyWithin((b * rows + g * S) * P, b * rows * P, (b * rows + S) * P);
        newMask?.copyWithin((b * rows + g * S) * S, b * rows * S, (b * rows + S) * S);
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, S, this.cfg.hiddenSize]),
      position_ids: new ort.Tensor('int64', positions, [B, S]),
      past_mask: new ort.Tensor('float32', pastMask, [B, 1, rows, P]),
      logit_rows: new ort.Tensor('int64', BigInt64Array.from(logitRows.map(BigInt)), [logitRows.length]),
    };
    if (newMask) feeds.new_mask = new ort.Tensor('float32', newMask, [B, 1, rows, S]);
    for (let l = 0; l < L; l++) cache.feeds(l, feeds);
    const wantLogits = opts.logits !== false;
    let fetches = session.outputNames;
    if (!wantLogits) {
      fetches = this.fetchesWithoutLogits.get(session) ?? session.outputNames.filter((n) => n !== 'logits');
      this.fetchesWithoutLogits.set(session, fetches);
    }
    const out = await session.run(feeds, fetches);
    const layer = (name: string) => Array.from({ length: L }, (_, l) => out[`${name}.${l}`].data);
    if (cache.format === 'fp32') {
      cache.append({ format: 'fp32', keys: layer('new_key') as Float32Array[], values: layer('new_value') as Float32Array[] }, S);
    } else if (singlePosition) {
      // fp32 [B, kvH, 1, hd]: quantised here, one vector per head (the int8 key layout
      // [B, kvH, hd, 1] is the same bytes when S = 1).
      const keys = (layer('new_key') as Float32Array[]).map((x) => quantizeVectorsInt8(x, this.cfg.headDim, cache.zeroPoint));
      const values = (layer('new_value') as Float32Array[]).map((x) => quantizeVectorsInt8(x, this.cfg.headDim, cache.zeroPoint));
      cache.append({ format: 'int8', keys: keys.map((k) => k.q), values: values.map((v) => v.q), keyScales: keys.map((k) => k.scales), valueScales: values.map((v) => v.scales) }, S);
    } else {
      cache.append(
        {
          format: 'int8',
          keys: layer('new_key').map(int8View),
          values: layer('new_value').map(int8View),
          keyScales: layer('new_key_scale') as Float32Array[],
          valueScales: layer('new_value_scale') as Float32Array[],
        },
        S,
      );
    }
    return { logits: wantLogits ? (out.logits.data as Float32Array) : undefined, nextIds: Array.from(out.next_ids.data as BigInt64Array, Number) };
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.batchSession?.release();
  }
}

/**
 * Token embeddings of a prompt with the `<|audio_pad|>` rows replaced, in order, by the
 * audio encoder's output (spec §6.1). The number of pads must equal the audio tokens.
 */
export function embedPrompt(decoder: TextDecoder, ids: number[], audioTokenId: number, audio: Float32Array): Float32Array {
  const H = decoder.cfg.hiddenSize;
  const out = new Float32Array(ids.length * H);
  let used = 0;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === audioTokenId) {
      if ((used + 1) * H > audio.length) break;
      out.set(audio.subarray(used * H, (used + 1) * H), i * H);
      used++;
    } else decoder.embed(ids[i], out, i * H);
  }
  const pads = ids.filter((id) => id === audioTokenId).length;
  if (pads * H !== audio.length) throw new Error(`prompt has ${pads} audio positions for ${audio.length / H} audio tokens`);
  return out;
}
