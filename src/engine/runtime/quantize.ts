/**
 * Block-wise weight quantisation in the layout of ONNX Runtime's MatMulNBits
 * (com.microsoft): for a linear weight W stored PyTorch-style as [N = out, K = in],
 * every row is cut into blocks of `blockSize` along K; each block gets a float scale
 * (and for 4 bits a zero point), and the quantised values are packed low nibble first.
 * That is exactly the row-major safetensors layout, so no transpose is needed.
 *
 * int8 is symmetric (zero point 128, MatMulNBits' default, so no zero-point input);
 * int4 is asymmetric (min/max per block, with zero points), which keeps small-magnitude
 * blocks precise where a symmetric 4-bit grid would waste half its levels.
 */

import { toFloat32 } from '../checkpoint/safetensors.ts';

export type QuantBits = 4 | 8;

/** x + ROUND − ROUND rounds a float64 |x| < 2^51 to the nearest integer, ties to even. */
export const ROUND = 6755399441055744; // 1.5 · 2^52

/**
 * A weight matrix's values: float32, or a bf16 tensor's raw words, which the quantisers read
 * as float32 on the fly (SafetensorsStore.readBf16Words): no float32 copy of the matrix.
 */
export type MatrixValues = Float32Array | { bf16: Uint16Array };

let bf16Table: Float32Array | undefined;

/** The float32 value of every bf16 word (its top half): 256 KB, built once. */
function bf16Values(): Float32Array {
  if (!bf16Table) {
    bf16Table = new Float32Array(65536);
    const bits = new Uint32Array(bf16Table.buffer);
    for (let i = 0; i < 65536; i++) bits[i] = i << 16;
  }
  return bf16Table;
}

/**
 * Float32 values of a matrix (bf16 words upcast exactly, by safetensors.ts toFloat32), into
 * the start of `into` when given (runtime/scratch.ts), else a fresh array.
 */
export function asFloat32(w: MatrixValues, into?: Uint8Array): Float32Array {
  if (w instanceof Float32Array) return w;
  const out = into ? new Float32Array(into.buffer, into.byteOffset, into.byteLength >> 2) : undefined;
  return toFloat32(new Uint8Array(w.bf16.buffer, w.bf16.byteOffset, w.bf16.byteLength), 'BF16', 'tensor', out);
}

/** `length` bytes: the start of `into` (a reused buffer, see runtime/scratch.ts) or fresh ones. */
function outputBytes(length: number, into: Uint8Array | undefined, what: string): Uint8Array {
  if (!into) return new Uint8Array(length);
  if (into.byteLength < length) throw new Error(`${what}: ${into.byteLength} bytes of room for ${length}`);
  return into.subarray(0, length);
}

export interface QuantizedMatrix {
  bits: QuantBits;
  blockSize: number;
  /** Output features. */
  n: number;
  /** Input features. */
  k: number;
  /** [n, kBlocks, blockSize * bits / 8] */
  packed: Uint8Array;
  /** [n * kBlocks] */
  scales: Float32Array;
  /** 4-bit only: [n * ceil(kBlocks / 2)], low nibble first. */
  zeroPoints?: Uint8Array;
}

/**
 * Block-quantises W [n, k] (see the top of this file). bf16 words are read a row at a time
 * into a float32 scratch row, so no float32 copy of the matrix is made. The packed values go
 * to the start of `into` when given (every byte written), else to a fresh array.
 */
export function quantizeMatrix(values: MatrixValues, n: number, k: number, bits: QuantBits, blockSize: number, into?: Uint8Array): QuantizedMatrix {
  const count = (values instanceof Float32Array ? values : values.bf16).length;
  if (count !== n * k) throw new Error(`quantizeMatrix: ${count} values for [${n}, ${k}]`);
  const kBlocks = Math.ceil(k / blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const packed = outputBytes(n * kBlocks * blockBytes, into, 'quantizeMatrix');
  // Shared memory when helper threads may take part (quantize-helpers.ts).
  const memory = (bytes: number) => (packed.buffer instanceof SharedArrayBuffer ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  const scales = new Float32Array(memory(4 * n * kBlocks));
  const zpStride = Math.ceil(kBlocks / 2);
  const zeroPoints = bits === 4 ? new Uint8Array(memory(n * zpStride)) : undefined;
  const job: BlockJob = { kind: 'blocks', w: values, n, k, bits, blockSize, packed, scales, zeroPoints };
  if (!inParallel(job)) blockRows(job, 0, n);
  return { bits, blockSize, n, k, packed, scales, zeroPoints };
}

/** What quantizeMatrix reads and writes. */
export interface BlockJob {
  kind: 'blocks';
  w: MatrixValues;
  n: number;
  k: number;
  bits: QuantBits;
  blockSize: number;
  packed: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array | undefined;
}

/** quantizeMatrix for rows [r0, r1) (rows are independent: their blocks, scales and zero points). */
export function blockRows(job: BlockJob, r0: number, r1: number): void {
  const { w: values, k, bits, blockSize, packed, scales, zeroPoints } = job;
  const f32 = values instanceof Float32Array ? values : undefined;
  const words = values instanceof Float32Array ? undefined : values.bf16;
  const table = bf16Values();
  const scratch = new Float32Array(f32 ? 0 : k);
  const kBlocks = Math.ceil(k / blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const zpStride = Math.ceil(kBlocks / 2);

  // Tight loops without helper calls: this runs over every weight of the model at load
  // (≈2 billion values for the 1.7B model), so a few nanoseconds per value matter.
  // Rounding uses the float64 magic constant (x + 1.5·2^52 − 1.5·2^52 rounds to the nearest
  // integer, ties to even): Math.round costs ~15 ns a call here, this ~1 ns.
  for (let row = r0; row < r1; row++) {
    // w[rowBase ..] is this row: the matrix itself, or the scratch row filled from the words.
    let w = f32!;
    let rowBase = row * k;
    if (words) {
      for (let i = 0; i < k; i++) scratch[i] = table[words[rowBase + i]];
      w = scratch;
      rowBase = 0;
    }
    for (let b = 0; b < kBlocks; b++) {
      const start = rowBase + b * blockSize;
      const end = rowBase + Math.min((b + 1) * blockSize, k);
      let out = (row * kBlocks + b) * blockBytes;
      if (bits === 8) {
        let maxAbs = 0;
        for (let i = start; i < end; i++) {
          const a = Math.abs(w[i]);
          if (a > maxAbs) maxAbs = a;
        }
        const scale = maxAbs / 127 || 1;
        const inv = 1 / scale;
        scales[row * kBlocks + b] = scale;
        for (let i = start; i < end; i++) {
          let q = w[i] * inv + ROUND - ROUND;
          if (q > 127) q = 127;
          else if (q < -128) q = -128;
          packed[out++] = q + 128;
        }
        for (let i = end - start; i < blockSize; i++) packed[out++] = 128;
      } else {
        // The grid must contain 0 exactly so padded (and true-zero) weights stay zero.
        let lo = 0;
        let hi = 0;
        for (let i = start; i < end; i++) {
          const v = w[i];
          if (v < lo) lo = v;
          else if (v > hi) hi = v;
        }
        const scale = (hi - lo) / 15 || 1;
        const inv = 1 / scale;
        let zp = -lo * inv + ROUND - ROUND;
        if (zp > 15) zp = 15;
        scales[row * kBlocks + b] = scale;
        for (let j = 0; j < blockSize; j += 2) {
          const i = start + j;
          let q0 = zp;
          let q1 = zp;
          if (i < end) {
            q0 = w[i] * inv + ROUND - ROUND + zp;
            q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
          }
          if (i + 1 < end) {
            q1 = w[i + 1] * inv + ROUND - ROUND + zp;
            q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
          }
          packed[out++] = q0 | (q1 << 4);
        }
        zeroPoints![row * zpStride + (b >> 1)] |= b & 1 ? zp << 4 : zp;
      }
    }
  }
}

/** Reconstructs the float weights (tests and error measurements). */
export function dequantizeMatrix(m: QuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize } = m;
  const kBlocks = Math.ceil(k / blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const zpStride = Math.ceil(kBlocks / 2);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < kBlocks; b++) {
      const scale = m.scales[row * kBlocks + b];
      const base = (row * kBlocks + b) * blockBytes;
      let zp = 128;
      if (bits === 4) {
        const z = m.zeroPoints![row * zpStride + (b >> 1)];
        zp = b & 1 ? z >> 4 : z & 15;
      }
      for (let i = 0; i < blockSize && b * blockSize + i < k; i++) {
        const qv = bits === 8 ? m.packed[base + i] : i & 1 ? m.packed[base + (i >> 1)] >> 4 : m.packed[base + (i >> 1)] & 15;
        out[row * k + b * blockSize + i] = (qv - zp) * scale;
      }
    }
  }
  return out;
}

/** Side of the square tiles quantizePerChannelInt8 transposes in (128 × 128 int8 outputs). */
const TRANSPOSE_TILE = 128;

/**
 * Per-output-channel symmetric int8 weights for MatMulInteger, transposed to [k, n]
 * (MatMulInteger multiplies A [m, k] by B [k, n]); scales [n]. With `offset` 128 each value is
 * stored + 128: the bytes are then uint8 with zero point 128 (runtime/int8-kernel.ts u8u8), read
 * through an Int8Array as the same bits.
 *
 * From bf16 words the result is the same, bit for bit, without a float32 copy of the matrix:
 * the row maxima come from the words themselves (a finite bf16's magnitude bits order as its
 * value does) and each value is looked up as it is quantised. The 0.6B embedding (151,936 ×
 * 1024) takes 2.1 s this way against over 3 s read as float32 and then quantised (on an AMD
 * EPYC Zen 3 VM, AVX2 without VNNI, 2 vCPUs). The
 * weights go to the start of `into` when given, else to a fresh array.
 */
export function quantizePerChannelInt8(w: MatrixValues, n: number, k: number, offset: 0 | 128 = 0, into?: Uint8Array): { weights: Int8Array; scales: Float32Array } {
  const count = (w instanceof Float32Array ? w : w.bf16).length;
  if (count !== n * k) throw new Error(`quantizePerChannelInt8: ${count} values for [${n}, ${k}]`);
  const bytes = outputBytes(k * n, into, 'quantizePerChannelInt8');
  const weights = new Int8Array(bytes.buffer, bytes.byteOffset, k * n); // every value is written below
  // Shared memory when helper threads may take part (quantize-helpers.ts): they write the
  // scales of their rows and read every row's inverse.
  const shared = bytes.buffer instanceof SharedArrayBuffer;
  const scales = new Float32Array(shared ? new SharedArrayBuffer(4 * n) : new ArrayBuffer(4 * n));
  const inv = new Float64Array(shared ? new SharedArrayBuffer(8 * n) : new ArrayBuffer(8 * n));
  const job: PerChannelJob = { kind: 'perChannel', w, n, k, offset, weights, scales, inv };
  if (!inParallel(job)) {
    perChannelScales(job, 0, n);
    perChannelTranspose(job, 0, k);
  }
  return { weights, scales };
}

/** What quantizePerChannelInt8's two passes read and write. */
export interface PerChannelJob {
  kind: 'perChannel';
  w: MatrixValues;
  n: number;
  k: number;
  offset: 0 | 128;
  weights: Int8Array;
  scales: Float32Array;
  inv: Float64Array;
}

/** A quantiser's work, as helper threads are handed it. */
export type QuantizeJob = PerChannelJob | BlockJob;

/** A pass over part of a job: per-channel jobs take two (scales, then transpose), block jobs one. */
export type QuantizePass = 'scales' | 'transpose' | 'blocks';

/** Runs `pass` of `job` over [from, to): rows, or for the transpose input columns. */
export function runQuantizePass(job: QuantizeJob, pass: QuantizePass, from: number, to: number): void {
  if (job.kind === 'blocks') blockRows(job, from, to);
  else if (pass === 'scales') perChannelScales(job, from, to);
  else perChannelTranspose(job, from, to);
}

/**
 * Runs a job split across helper threads when it may (quantize-helpers.ts installs this);
 * false: the caller runs it on its own.
 */
let inParallel: (job: QuantizeJob) => boolean = () => false;

export function setParallelRunner(run: (job: QuantizeJob) => boolean): void {
  inParallel = run;
}

/** quantizePerChannelInt8's first pass, for rows [r0, r1): each row's scale and its inverse. */
export function perChannelScales(job: PerChannelJob, r0: number, r1: number): void {
  const { w, k, scales, inv } = job;
  const f32 = w instanceof Float32Array ? w : undefined;
  const words = w instanceof Float32Array ? undefined : w.bf16;
  const table = bf16Values();
  for (let row = r0; row < r1; row++) {
    const base = row * k;
    let maxAbs = 0;
    if (f32) {
      // Math.abs, not a sign test: on random-signed weights the branch mispredicts half the
      // time (the 0.6B head, 155 M values: 0.37 s for this pass against 1.07 s with a sign
      // test, on an Intel Xeon VM with AMX, 2 vCPUs).
      for (let i = 0; i < k; i++) {
        const a = Math.abs(f32[base + i]);
        if (a > maxAbs) maxAbs = a;
      }
    } else {
      let maxBits = 0;
      for (let i = 0; i < k; i++) {
        const m = words![base + i] & 0x7fff;
        if (m > maxBits) maxBits = m;
      }
      maxAbs = table[maxBits];
    }
    const scale = maxAbs / 127 || 1;
    inv[row] = 1 / scale;
    scales[row] = scale;
  }
}

/**
 * quantizePerChannelInt8's second pass, for input columns [c0, c1) — output rows of the
 * transposed [k, n] result, so threads given different columns write different cache lines.
 * Needs every row's inverse scale (the first pass over all rows).
 */
export function perChannelTranspose(job: PerChannelJob, c0: number, c1: number): void {
  const { w, n, k, offset, weights, inv } = job;
  const f32 = w instanceof Float32Array ? w : undefined;
  const words = w instanceof Float32Array ? undefined : w.bf16;
  const table = bf16Values();
  // The transpose goes tile by tile, so the output lines a tile writes stay in cache while
  // all its rows fill them (the output row stride is n bytes: one byte per cache line per
  // input value). Tiling about halves the time of a 6144 × 2048 float32 weight against going
  // row by row (on an Intel Xeon VM with AMX, 2 vCPUs). TRANSPOSE_TILE is 128 because that size
  // is fastest from bf16 words on an AMD EPYC Zen 3 VM (AVX2, no VNNI), 2 vCPUs: 61 ms for a
  // 6144 × 2048 weight against 91 ms with tiles of 32 (docs/benchmarks.md has the other sizes).
  for (let r0 = 0; r0 < n; r0 += TRANSPOSE_TILE) {
    const r1 = Math.min(n, r0 + TRANSPOSE_TILE);
    for (let i0 = c0; i0 < c1; i0 += TRANSPOSE_TILE) {
      const i1 = Math.min(c1, i0 + TRANSPOSE_TILE);
      for (let row = r0; row < r1; row++) {
        const base = row * k;
        const f = inv[row];
        if (f32) for (let i = i0; i < i1; i++) weights[i * n + row] = f32[base + i] * f + ROUND - ROUND + offset;
        else for (let i = i0; i < i1; i++) weights[i * n + row] = table[words![base + i]] * f + ROUND - ROUND + offset;
      }
    }
  }
}
