/**
 * Building blocks shared by the encoder and decoder graphs: linear layers (fp32 Gemm or
 * block-quantised MatMulNBits), LayerNorm, RMSNorm, GELU, and reshapes.
 *
 * Activations stay 2-D ([rows, features]) between layers: Gemm needs 2-D inputs and every
 * norm / projection is row-wise, so sequences are only reshaped to 4-D inside attention.
 */
import { type SafetensorsStore } from '../checkpoint/safetensors.ts';
import { asFloat32, quantizeMatrix, quantizePerChannelInt8, type MatrixValues, type QuantBits } from '../runtime/quantize.ts';
import { DataType, type GraphBuilder } from '../runtime/onnx-graph.ts';
import { int8Offset, requireInt8Kernel, type Int8Kernel } from '../runtime/int8-kernel.ts';

/**
 * fp32: Gemm. int8 / int4: MatMulNBits, block-quantised weights (fast for a few rows: decoding).
 * w8a8: int8 per-channel weights and int8 per-row activations quantised on the fly, through
 * MatMulInteger, which ONNX Runtime runs on the CPU's int8 matrix units (AMX/VNNI): 2-5x
 * faster than MatMulNBits for many rows (prompts, the audio encoder), and as fast for one row
 * as 8-bit MatMulNBits (thinker/precision.ts precisionsFor).
 */
export type WeightPrecision = 'fp32' | 'int8' | 'int4' | 'w8a8';

export interface LinearOptions {
  precision: WeightPrecision;
  /** MatMulNBits block size along K (default DEFAULT_BLOCK_SIZE[precision]). */
  blockSize?: number;
  /** The integer kernel W8A8 weights are stored for (default: this machine's, int8-kernel.ts). */
  int8Kernel?: Int8Kernel;
}

/**
 * Block sizes of the quantised MatMulNBits weights.
 *
 * int8 uses 128: faster than blocks of 32 at nearly every row count (2048×6144 weight, on an
 * Intel Xeon VM with AMX, 2 vCPUs, onnxruntime-node 1.30: 0.91 against 1.64 ms for one row,
 * 55.9 against 82.4 ms for 512), and 8 bits leave accuracy to spare (tiny-a logits within 3%
 * of fp32 either way). QUANT=int8 itself uses W8A8 (thinker/precision.ts precisionsFor);
 * 8-bit MatMulNBits serves only explicit precision overrides.
 * int4 (QUANT=int4's step graph: steps of up to 2 sequences with AMX, else 3 on one thread
 * and 6 on two or more; thinker/precision.ts stepGraphRowsFor) uses 64: 1.7B steps at 275
 * positions take about 63 ms against 70 ms with blocks of 32 (on an Intel Xeon VM with AMX,
 * 2 vCPUs), while on tiny-a the one-row logit error against fp32 is 0.238 against 0.203 and
 * greedy tokens 2–6 agree with fp32 in 64 of 90 cases against 56 (random weights: both within
 * noise). 64 is a common 4-bit group size (MLX's default). Prompts never run through 4-bit
 * weights: with 4-bit prompts tiny-a's first tokens agree with fp32 in 3 of 18 cases against
 * 13, so prompts run W8A8 and only the step graph's one-to-few-row products use 4-bit blocks.
 */
export const DEFAULT_BLOCK_SIZE: Record<'int8' | 'int4', number> = { int8: 128, int4: 64 };

/** Reads a checkpoint weight as float32 after checking its shape against the config. */
export function weight(store: SafetensorsStore, name: string, shape: number[]): Float32Array {
  return store.readFloat32(name, shape);
}

/**
 * Reads a weight matrix for linearFromData: a bf16 tensor as its raw words (the quantisers
 * read them without a float32 copy; fp32 Gemm converts them), any other as float32. The
 * words are read into the graph's "weight" scratch buffer (runtime/scratch.ts): they stay valid
 * until the next matrixWeight of the same graph, so each is consumed before the next is read.
 */
export function matrixWeight(g: GraphBuilder, store: SafetensorsStore, name: string, shape: number[]): MatrixValues {
  const words = store.readBf16Words(name, shape, g.scratch.slot('weight'));
  return words ? { bf16: words } : store.readFloat32(name, shape);
}

/**
 * y = x·Wᵀ (+ b) for a PyTorch-layout weight W [n, k]. fp32 uses Gemm(transB=1), which ONNX
 * Runtime pre-packs at session creation; int8/int4 use MatMulNBits with accuracy_level 4
 * (int8 activations): the fp32-compute fallback of 8-bit MatMulNBits is ~60x slower
 * (../shared/docs/onnxruntime-node.md §3).
 */
export function linearFromData(
  g: GraphBuilder,
  x: string,
  name: string,
  w: MatrixValues,
  n: number,
  k: number,
  bias: Float32Array | undefined,
  opts: LinearOptions,
): string {
  if (opts.precision === 'fp32') {
    const wName = g.initializer(`${name}.weight`, asFloat32(w, g.scratch.bytes('float32', n * k * 4)), [n, k]);
    const inputs = [x, wName];
    if (bias) inputs.push(g.initializer(`${name}.bias`, bias, [n]));
    return g.op('Gemm', inputs, { transB: 1 });
  }
  if (opts.precision === 'w8a8') return w8a8Linear(g, x, name, w, n, k, bias, requireInt8Kernel(opts.int8Kernel));
  const bits: QuantBits = opts.precision === 'int8' ? 8 : 4;
  // Never wider than the (power-of-two-rounded) input: tiny test models have K = 64.
  const blockSize = Math.min(opts.blockSize ?? DEFAULT_BLOCK_SIZE[opts.precision], Math.max(16, 2 ** Math.ceil(Math.log2(k))));
  const kBlocks = Math.ceil(k / blockSize);
  const q = quantizeMatrix(w, n, k, bits, blockSize, g.scratch.bytes('quantized', (n * kBlocks * blockSize * bits) / 8));
  const inputs = [
    x,
    g.initializer(`${name}.qweight`, q.packed, [n, kBlocks, (blockSize * bits) / 8], DataType.UINT8),
    g.initializer(`${name}.scales`, q.scales, [n * kBlocks]),
    q.zeroPoints ? g.initializer(`${name}.zero_points`, q.zeroPoints, [q.zeroPoints.length], DataType.UINT8) : '',
    '', // g_idx
    bias ? g.initializer(`${name}.bias`, bias, [n]) : '',
  ];
  while (inputs[inputs.length - 1] === '') inputs.pop();
  return g.op('MatMulNBits', inputs, { K: k, N: n, bits, block_size: blockSize, accuracy_level: 4 }, 'com.microsoft');
}

/**
 * y = dequant(quant(x) · Wq) (+ b) with symmetric per-row activation scales
 * s_r = max|x_r| / 127, x_q = round(x / s_r) + 128 as uint8 (MatMulInteger's fast u8·s8
 * kernels want unsigned activations; the 128 offset is its zero point), and per-channel
 * weight scales. Per-row (per-token) scales keep one loud token from flattening the others.
 *
 * Few passes over full-size tensors, because for a prompt every elementwise pass over the
 * [rows, k] input or [rows, n] output costs memory traffic (and for a handful of rows every
 * node costs more than its arithmetic): one QuantizeLinear (a block of k per row) quantises the
 * input, and one MatMulIntegerToFloat applies the row scales and the channel scales inside
 * the product, whose output is then written once (plus the bias Add, if any) — 8 nodes where
 * quantising and scaling with separate elementwise nodes takes 12 (Div/Round/Add/Cast for the
 * input, Cast/Mul/Mul on the output).
 */
function w8a8Linear(g: GraphBuilder, x: string, name: string, w: MatrixValues, n: number, k: number, bias: Float32Array | undefined, kernel: Int8Kernel): string {
  return w8a8Product(g, quantizeActivations(g, x, k), name, w, n, k, bias, kernel);
}

/**
 * The per-row uint8 activations of a W8A8 product (see w8a8Linear) and their row scales
 * (x's shape with a last axis of 1); rows are the last axis, of length k. `knownRowScale`
 * supplies rowScales(x, 127) when the caller can compute it more cheaply than from x.
 */
export function quantizeActivations(g: GraphBuilder, x: string, k: number, knownRowScale?: string): { xq: string; rowScale: string } {
  const rowScale = knownRowScale ?? rowScales(g, x, 127); // [rows, 1]
  // One block of k per row (blocked QuantizeLinear): the zero point has the scales' shape,
  // 128 for every row.
  const zp = g.constUint8(128);
  const xq = g.op('QuantizeLinear', [x, rowScale, g.op('Expand', [zp, g.op('Shape', [rowScale])])], { axis: -1, block_size: k });
  return { xq, rowScale };
}

/**
 * The integer product of w8a8Linear on activations already quantised by quantizeActivations,
 * with the weights stored for `kernel` (int8-kernel.ts: as int8, or as uint8 + 128 with a
 * zero point of 128 — the same integer product either way).
 */
export function w8a8Product(g: GraphBuilder, a: { xq: string; rowScale: string }, name: string, w: MatrixValues, n: number, k: number, bias: Float32Array | undefined, kernel: Int8Kernel): string {
  const offset = int8Offset(kernel);
  const unsigned = offset !== 0;
  const q = quantizePerChannelInt8(w, n, k, offset, g.scratch.bytes('quantized', n * k));
  const inputs = [
    a.xq,
    g.initializer(`${name}.qweight_kn`, unsigned ? new Uint8Array(q.weights.buffer, q.weights.byteOffset, q.weights.length) : q.weights, [k, n], unsigned ? DataType.UINT8 : DataType.INT8),
    a.rowScale,
    g.initializer(`${name}.channel_scales`, q.scales, [n]),
    g.constUint8(128),
  ];
  if (unsigned) inputs.push(g.constUint8(128));
  const y = g.op('MatMulIntegerToFloat', inputs, {}, 'com.microsoft');
  // (MatMulIntegerToFloat's own bias input is ignored by the CPU kernel in this onnxruntime
  // build — the exact-definition test caught it — so the bias is a separate Add.)
  return bias ? g.op('Add', [y, g.initializer(`${name}.bias`, bias, [n])]) : y;
}

/**
 * Scales for symmetric per-row quantisation along the last axis: max|x| / maxAbs per row (x's
 * shape with a last axis of 1), at least 1e-30 so all-zero rows quantise to zero instead of
 * NaN. `nonNegative` skips the Abs for rows known to be ≥ 0; `name` names the output.
 */
export function rowScales(g: GraphBuilder, x: string, maxAbs: number, o: { nonNegative?: boolean; name?: string } = {}): string {
  const rowMax = g.op('ReduceMax', [o.nonNegative ? x : g.op('Abs', [x]), g.constInt64([-1])], { keepdims: 1 });
  return g.node('Max', [g.op('Div', [rowMax, g.constFloat([maxAbs])]), g.constFloat([1e-30])], {}, { outputs: o.name ? [o.name] : 1 })[0];
}

/** Linear layer read from the checkpoint (`{prefix}.weight`, optional `{prefix}.bias`). */
export function linear(
  g: GraphBuilder,
  store: SafetensorsStore,
  x: string,
  prefix: string,
  n: number,
  k: number,
  hasBias: boolean,
  opts: LinearOptions,
): string {
  const w = matrixWeight(g, store, `${prefix}.weight`, [n, k]);
  const b = hasBias ? weight(store, `${prefix}.bias`, [n]) : undefined;
  return linearFromData(g, x, prefix, w, n, k, b, opts);
}

/**
 * Several linear layers reading the same input, run as one where that pays:
 * - block-quantised and fp32 weights are stacked along the output axis and the result split
 *   again: numerically identical (each output row keeps its own weights and quantisation
 *   blocks), but one product instead of several small ones — for a single decoded token,
 *   per-call overhead is a large part of each small product;
 * - W8A8 (many-row passes) quantises the input once and runs one product per layer on it:
 *   a Split would copy every output (in a 512-row 0.6B prompt pass, 10,240 floats a row per
 *   layer, ~4% of the pass in a profile), while the products lose nothing by being
 *   separate at hundreds of rows.
 */
export function linearGroup(
  g: GraphBuilder,
  store: SafetensorsStore,
  x: string,
  prefixes: string[],
  ns: number[],
  k: number,
  hasBias: boolean,
  opts: LinearOptions,
  name: string,
): string[] {
  const names = prefixes.map((prefix) => `${prefix}.weight`);
  names.forEach((n, i) => store.expectShape(n, [ns[i], k])); // every weight checked before any is read
  const biases = prefixes.map((prefix, i) => (hasBias ? weight(store, `${prefix}.bias`, [ns[i]]) : undefined));
  if (opts.precision === 'w8a8') {
    const a = quantizeActivations(g, x, k);
    // Each weight is read when its product is built (matrixWeight's buffer is reused).
    return prefixes.map((prefix, i) => w8a8Product(g, a, prefix, matrixWeight(g, store, names[i], [ns[i], k]), ns[i], k, biases[i], requireInt8Kernel(opts.int8Kernel)));
  }
  const total = ns.reduce((a, b) => a + b, 0);
  const b = hasBias ? new Float32Array(total) : undefined;
  let row = 0;
  const offsets = ns.map((n) => ((row += n) - n) * k);
  prefixes.forEach((_, i) => b?.set(biases[i]!, offsets[i] / k));
  let w: MatrixValues;
  if (names.every((n) => store.info(n).dtype === 'BF16')) {
    // bf16 words stacked as they are read, each straight into its place: the quantisers read
    // words, so no float32 copy of the stack is made.
    const stack = g.scratch.bytes('stacked', total * k * 2);
    names.forEach((n, i) => store.readBf16Words(n, [ns[i], k], () => stack.subarray(offsets[i] * 2)));
    w = { bf16: new Uint16Array(stack.buffer, stack.byteOffset, total * k) };
  } else {
    w = new Float32Array(total * k);
    for (let i = 0; i < names.length; i++) w.set(asFloat32(matrixWeight(g, store, names[i], [ns[i], k])), offsets[i]);
  }
  const y = linearFromData(g, x, name, w, total, k, b, opts);
  return g.node('Split', [y, g.constInt64(ns)], { axis: -1 }, { outputs: ns.length });
}

export function layerNorm(g: GraphBuilder, store: SafetensorsStore, x: string, prefix: string, dim: number, eps: number): string {
  const w = g.initializer(`${prefix}.weight`, weight(store, `${prefix}.weight`, [dim]), [dim]);
  const b = g.initializer(`${prefix}.bias`, weight(store, `${prefix}.bias`, [dim]), [dim]);
  return g.op('LayerNormalization', [x, w, b], { axis: -1, epsilon: { float: eps } });
}

/** RMSNorm over the last axis: w ⊙ x / sqrt(mean(x²) + eps), statistics in float32. */
export function rmsNorm(g: GraphBuilder, store: SafetensorsStore, x: string, name: string, dim: number, eps: number): string {
  const w = g.initializer(name, weight(store, name, [dim]), [dim]);
  return g.op('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: { float: eps } });
}

/** Exact (erf) GELU. */
export function gelu(g: GraphBuilder, x: string): string {
  return g.op('Gelu', [x], {}, 'com.microsoft');
}

export function reshape(g: GraphBuilder, x: string, shape: number[]): string {
  return g.op('Reshape', [x, g.constInt64(shape)]);
}

export function transpose(g: GraphBuilder, x: string, perm: number[]): string {
  return g.op('Transpose', [x], { perm });
}
