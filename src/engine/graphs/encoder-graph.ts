/**
 * ONNX graphs of the audio encoder ("AuT", spec §5), in two parts because the host packs
 * tokens in between:
 *
 * 1. conv stem: mel chunks [n, 1, mels, frames] -> three stride-2 3x3 convs with GELU ->
 *    time-major, channel-major flatten (index c·F + f) -> conv_out -> + sinusoidal
 *    positions (restarting in every chunk, fed as an input) -> [n, T', D].
 * 2. transformer: windows [w, W, D] with an additive key mask [w, 1, 1, W] -> pre-LN layers
 *    (bidirectional attention inside each window only) -> ln_post -> proj1 -> GELU -> proj2
 *    -> [w, W, O].
 */
import { type AudioEncoderConfig } from '../checkpoint/config.ts';
import { type SafetensorsStore } from '../checkpoint/safetensors.ts';
import { DataType, type GraphBuilder } from '../runtime/onnx-graph.ts';
import { gelu, layerNorm, linear, linearGroup, quantizeActivations, reshape, rowScales, transpose, w8a8Product, weight, type LinearOptions } from './layers.ts';
import { requireInt8Kernel, type Int8Kernel } from '../runtime/int8-kernel.ts';

/** This module, whose import closure is the source a cached build of its graphs depends on (runtime/graph-cache.ts). */
export const ENCODER_GRAPH_SOURCE = import.meta.url;

const PREFIX = 'thinker.audio_tower';

/** Output length of a 3-wide, stride-2, pad-1 convolution along an axis of length n ≥ 1. */
function strideTwoOut(n: number): number {
  return Math.floor((n - 1) / 2) + 1;
}

/** strideTwoOut of a dynamic length n (a 1-D int64 tensor of one value), in the graph. */
function strideTwoOutDynamic(g: GraphBuilder, n: string): string {
  return g.op('Div', [g.op('Add', [n, g.constInt64([1])]), g.constInt64([2])]);
}

/** Height (mel axis) after the three stride-2 convolutions. */
export function convFreqOut(numMelBins: number): number {
  return strideTwoOut(strideTwoOut(strideTwoOut(numMelBins)));
}

export function buildConvStemGraph(g: GraphBuilder, store: SafetensorsStore, cfg: AudioEncoderConfig, opts: LinearOptions = { precision: 'fp32' }): void {
  const { precision } = opts;
  const int8Kernel = requireInt8Kernel(opts.int8Kernel);
  const C = cfg.convChannels;
  const chunks = g.input('chunks', DataType.FLOAT, ['n', 1, cfg.numMelBins, 'frames']);
  const positions = g.input('positions', DataType.FLOAT, ['t', cfg.dModel]);
  const convWeights = (i: number, inC: number) => {
    const name = `${PREFIX}.conv2d${i}`;
    return { name, w: weight(store, `${name}.weight`, [C, inC, 3, 3]), b: weight(store, `${name}.bias`, [C]) };
  };
  const fp32Conv = (x: string, i: number, inC: number) => {
    const { name, w, b } = convWeights(i, inC);
    const wName = g.initializer(`${name}.weight`, w, [C, inC, 3, 3]);
    const bName = g.initializer(`${name}.bias`, b, [C]);
    return gelu(g, g.op('Conv', [x, wName, bName], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }));
  };
  const F = convFreqOut(cfg.numMelBins);
  let rows: string;
  let x: string;
  if (precision === 'w8a8') {
    // All three convolutions channels-last ([n, H, W, C]), so no layout changes between them.
    // The first has one input channel (1% of the stem's arithmetic): an fp32 product of the
    // nine taps; the second and third (~99%) are integer products over patches: see
    // conv3x3Stride2W8A8.
    x = firstConvChannelsLast(g, chunks, convWeights(1, 1), C, cfg.numMelBins);
    let height = strideTwoOut(cfg.numMelBins);
    for (const i of [2, 3]) {
      const { name, w, b } = convWeights(i, C);
      x = gelu(g, conv3x3Stride2W8A8(g, x, name, w, b, C, C, height, int8Kernel));
      height = strideTwoOut(height);
    }
    // [n, F, T', C] -> [n, T', C, F] -> rows of C·F, flattened channel-major as conv_out expects.
    rows = reshape(g, transpose(g, x, [0, 2, 3, 1]), [-1, C * F]);
  } else {
    x = chunks;
    let inC = 1;
    for (const i of [1, 2, 3]) {
      x = fp32Conv(x, i, inC);
      inC = C;
    }
    // [n, C, F, T'] -> [n, T', C, F] -> rows of C·F, flattened channel-major as conv_out expects.
    rows = reshape(g, transpose(g, x, [0, 3, 1, 2]), [-1, C * F]);
  }
  // The projection of each token's C·F conv outputs to the model width follows the stem's
  // form: with W8A8 convolutions it is a W8A8 product too (as an fp32 Gemm it takes 8.5 ms of
  // a 62 ms run of four 0.6B chunks, on an AMD EPYC Zen 4 VM, 2 vCPUs).
  const proj = linear(g, store, rows, `${PREFIX}.conv_out`, cfg.dModel, C * F, false, { precision: precision === 'w8a8' ? 'w8a8' : 'fp32', int8Kernel });
  // Back to [n, T', D] using the input's chunk count and the conv output length.
  const nT = g.op('Shape', [chunks], { start: 0, end: 1 });
  const tT = g.op('Shape', [positions], { start: 0, end: 1 });
  const shape3 = g.op('Concat', [nT, tT, g.constInt64([cfg.dModel])], { axis: 0 });
  const seq = g.op('Reshape', [proj, shape3]);
  g.node('Add', [seq, positions], {}, { outputs: ['embeds'] });
  g.output('embeds', DataType.FLOAT, ['n', 't', cfg.dModel]);
}

/**
 * Strided views of a padded input for a 3×3, stride-2 convolution: tap (dy, dx) of output
 * pixel (i, j) reads padded pixel (dy + 2i, dx + 2j). Axes 1 and 2 are the image's height
 * (static, `outH` outputs) and width (dynamic: `outW` = floor((W + 1) / 2) outputs of the
 * unpadded width W read from `unpadded`'s axis 2).
 */
function strideTwoTaps(g: GraphBuilder, unpadded: string, outH: number): (t: string, dy: number, dx: number) => string {
  const outW = strideTwoOutDynamic(g, g.op('Shape', [unpadded], { start: 2, end: 3 }));
  const spanW = g.op('Sub', [g.op('Mul', [outW, g.constInt64([2])]), g.constInt64([1])]);
  return (t, dy, dx) => {
    const ends = g.op('Concat', [g.constInt64([dy + 2 * outH - 1]), g.op('Add', [spanW, g.constInt64([dx])])], { axis: 0 });
    return g.op('Slice', [t, g.constInt64([dy, dx]), ends, g.constInt64([1, 2]), g.constInt64([2, 2])]);
  };
}

/**
 * The first convolution (one input channel) of mel chunks [n, 1, mels, W] as an fp32 product
 * of its nine taps: [n·H'·W', 9] × [9, C], GELU, returned channels-last [n, H', W', C].
 * (ONNX Runtime's Conv works in a blocked channels-first layout; converting its 480-channel
 * output to channels-last cost more than the convolution itself.)
 */
function firstConvChannelsLast(g: GraphBuilder, chunks: string, conv: { name: string; w: Float32Array; b: Float32Array }, C: number, mels: number): string {
  const outH = strideTwoOut(mels);
  const image = g.op('Reshape', [chunks, g.constInt64([0, mels, -1])]); // [n, mels, W]
  const padded = g.op('Pad', [image, g.constInt64([0, 1, 1, 0, 1, 1])]);
  const tap = strideTwoTaps(g, image, outH);
  const taps: string[] = [];
  for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) taps.push(g.op('Unsqueeze', [tap(padded, dy, dx), g.constInt64([-1])]));
  const patches = g.op('Concat', taps, { axis: -1 }); // [n, H', W', 9]
  // Weight [C, 1, 3, 3] is already [C, 9] in tap order dy·3 + dx: Gemm with transB.
  const y = g.op('Gemm', [g.op('Reshape', [patches, g.constInt64([-1, 9])]), g.initializer(`${conv.name}.weight`, conv.w, [C, 9]), g.initializer(`${conv.name}.bias`, conv.b, [C])], { transB: 1 });
  const outShape = g.op('Concat', [g.op('Shape', [patches], { start: 0, end: 3 }), g.constInt64([C])], { axis: 0 });
  return g.op('Reshape', [gelu(g, y), outShape]);
}

/**
 * A 3×3, stride-2, pad-1 convolution as one integer product over patches, on a channels-last
 * input x [n, H, W, Cin] (H static, W dynamic); returns [n, H', W', Cout] fp32 (bias added).
 *
 * Each output pixel's patch (its nine input pixels' channel vectors, tap-major, padding read
 * from an appended zero pixel) is gathered into a row of 9·Cin, quantised to int8 with the
 * row's own scale (as the W8A8 linear layers quantise tokens) and multiplied by the kernel as
 * a [9·Cin, Cout] int8 matrix with per-output-channel scales (stored for `int8Kernel`, see
 * w8a8Product): one MatMulIntegerToFloat with K = 4320 for the real widths. The row scales
 * come from the pixels' own maxima (nine per patch) rather than from an Abs pass over the
 * nine-times-larger patches.
 *
 * One product over patches beats nine per-tap products of K = 480 (over strided views of
 * per-pixel int8 input), and one Gather beats building the patches by Slice and Concat: on an
 * AMD EPYC Zen 4 VM, 2 threads, a run of four 1 s chunks of the 0.6B model takes 68 ms against
 * 94 ms per tap and 96 ms with Slice and Concat, and the three pipeline segments of a 60 s
 * recording go through the whole 0.6B encoder in 1.79 s against 2.01 s per tap.
 * A patch's scale covers nine pixels instead of one, which costs little accuracy: tiny-a's stem
 * is within 0.19% / 0.20% of fp32 (0.16% / 0.17% with per-pixel scales; the test's bound is
 * 0.5%).
 */
export function conv3x3Stride2W8A8(g: GraphBuilder, x: string, name: string, w: Float32Array, bias: Float32Array, cin: number, cout: number, height: number, int8Kernel: Int8Kernel): string {
  const outH = strideTwoOut(height);
  const W = g.op('Shape', [x], { start: 2, end: 3 }); // [1]
  const outW = strideTwoOutDynamic(g, W);
  // Pixel index of tap (dy, dx) of output pixel (i, j): row 2i + dy - 1 (static, [outH, 1, 3, 1])
  // times W plus column 2j + dx - 1 ([1, outW, 1, 3]); taps in the padding read pixel H·W (zero).
  const rowIdx: number[] = [];
  const rowInside: number[] = [];
  for (let i = 0; i < outH; i++) {
    for (let dy = 0; dy < 3; dy++) {
      const r = 2 * i + dy - 1;
      rowIdx.push(r);
      rowInside.push(r >= 0 && r < height ? 1 : 0);
    }
  }
  const rows = g.constInt64(rowIdx, [outH, 1, 3, 1]);
  const rowsInside = g.op('Cast', [g.constInt64(rowInside, [outH, 1, 3, 1])], { to: DataType.BOOL });
  const evenCols = g.op('Mul', [g.op('Range', [g.constInt64([0], []), g.op('Squeeze', [outW]), g.constInt64([1], [])]), g.constInt64([2])]);
  const cols = g.op('Add', [g.op('Reshape', [evenCols, g.constInt64([1, -1, 1, 1])]), g.constInt64([-1, 0, 1], [1, 1, 1, 3])]);
  const colsInside = g.op('And', [g.op('GreaterOrEqual', [cols, g.constInt64([0])]), g.op('Less', [cols, W])]);
  const zeroPixel = g.op('Mul', [g.constInt64([height]), W]);
  const taps = g.op('Where', [g.op('And', [rowsInside, colsInside]), g.op('Add', [g.op('Mul', [rows, W]), cols]), zeroPixel]); // [outH, outW, 3, 3]
  // [n, H·W + 1, Cin]: the pixels, then one zero pixel for the padding.
  const zero = g.op('Expand', [g.constFloat([0]), g.op('Concat', [g.op('Shape', [x], { start: 0, end: 1 }), g.constInt64([1, cin])], { axis: 0 })]);
  const pixels = g.op('Concat', [g.op('Reshape', [x, g.constInt64([0, -1, cin])]), zero], { axis: 1 });
  const patches = g.op('Reshape', [g.op('Gather', [pixels, taps], { axis: 1 }), g.constInt64([-1, 9 * cin])]);
  // max|x| of each patch = max over its nine pixels' maxima.
  const pixelMax = g.op('ReduceMax', [g.op('Abs', [pixels]), g.constInt64([-1])], { keepdims: 1 }); // [n, H·W + 1, 1]
  const patchMax = g.op('Reshape', [g.op('Gather', [pixelMax, taps], { axis: 1 }), g.constInt64([-1, 9])]);
  const quantised = quantizeActivations(g, patches, 9 * cin, rowScales(g, patchMax, 127, { nonNegative: true }));
  // Kernel [Cout, Cin, 3, 3] as rows of 9·Cin in the patches' order (tap, then channel).
  const taps9 = new Float32Array(cout * 9 * cin);
  for (let o = 0; o < cout; o++) for (let t = 0; t < 9; t++) for (let i = 0; i < cin; i++) taps9[(o * 9 + t) * cin + i] = w[(o * cin + i) * 9 + t];
  const y = w8a8Product(g, quantised, name, taps9, cout, 9 * cin, bias, int8Kernel);
  const outShape = g.op('Concat', [g.op('Shape', [x], { start: 0, end: 1 }), g.constInt64([outH, -1]), g.constInt64([cout])], { axis: 0 });
  return g.op('Reshape', [y, outShape]);
}

export function buildEncoderTransformerGraph(
  g: GraphBuilder,
  store: SafetensorsStore,
  cfg: AudioEncoderConfig,
  linearOpts: LinearOptions,
): void {
  const D = cfg.dModel;
  const h = cfg.heads;
  const d = D / h;
  const eps = cfg.layerNormEps;
  const hidden = g.input('hidden', DataType.FLOAT, ['w', 'len', D]);
  // Additive, per query and key: rows hold several attention windows (audio-encoder.ts packWindows).
  const mask = g.input('mask', DataType.FLOAT, ['w', 1, 'len', 'len']);
  const shape4 = g.op('Concat', [g.op('Shape', [hidden], { start: 0, end: 2 }), g.constInt64([h, d])], { axis: 0 });

  let x = reshape(g, hidden, [-1, D]);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `${PREFIX}.layers.${l}`;
    const a = layerNorm(g, store, x, `${p}.self_attn_layer_norm`, D, eps);
    const qkv = linearGroup(g, store, a, ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}.self_attn.${n}`), [D, D, D], D, true, linearOpts, `${p}.self_attn.qkv_proj`);
    const [q, k, v] = qkv.map((y) => transpose(g, g.op('Reshape', [y, shape4]), [0, 2, 1, 3]));
    const scores = g.op('FusedMatMul', [q, k], { transB: 1, alpha: { float: 1 / Math.sqrt(d) } }, 'com.microsoft');
    const probs = g.op('Softmax', [g.op('Add', [scores, mask])], { axis: -1 });
    const ctx = reshape(g, transpose(g, g.op('MatMul', [probs, v]), [0, 2, 1, 3]), [-1, D]);
    x = g.op('Add', [x, linear(g, store, ctx, `${p}.self_attn.out_proj`, D, D, true, linearOpts)]);
    const b = layerNorm(g, store, x, `${p}.final_layer_norm`, D, eps);
    const ff = linear(g, store, gelu(g, linear(g, store, b, `${p}.fc1`, cfg.ffnDim, D, true, linearOpts)), `${p}.fc2`, D, cfg.ffnDim, true, linearOpts);
    x = g.op('Add', [x, ff]);
  }
  const y = layerNorm(g, store, x, `${PREFIX}.ln_post`, D, eps);
  const p1 = gelu(g, linear(g, store, y, `${PREFIX}.proj1`, D, D, true, linearOpts));
  const p2 = linear(g, store, p1, `${PREFIX}.proj2`, cfg.outputDim, D, true, linearOpts);
  const outShape = g.op('Concat', [g.op('Shape', [hidden], { start: 0, end: 2 }), g.constInt64([cfg.outputDim])], { axis: 0 });
  g.node('Reshape', [p2, outShape], {}, { outputs: ['audio_embeds'] });
  g.output('audio_embeds', DataType.FLOAT, ['w', 'len', cfg.outputDim]);
}

/**
 * Sinusoidal positions [length, D] exactly as the official module computes them in float32:
 * inc = ln(10000)/(D/2 − 1) (float64), inv = exp(−inc·j) in float32, angle = p·inv in float32,
 * [sin | cos] halves (not interleaved).
 */
export function sinusoidPositions(length: number, channels: number): Float32Array {
  const half = channels / 2;
  const inc = Math.log(10000) / (half - 1);
  const inv = new Float32Array(half);
  for (let j = 0; j < half; j++) inv[j] = Math.fround(Math.exp(Math.fround(-inc * j)));
  const out = new Float32Array(length * channels);
  for (let p = 0; p < length; p++) {
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(p * inv[j]);
      out[p * channels + j] = Math.sin(angle);
      out[p * channels + half + j] = Math.cos(angle);
    }
  }
  return out;
}
