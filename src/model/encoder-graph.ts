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
import { type AudioEncoderConfig } from './config.ts';
import { type SafetensorsStore } from './safetensors.ts';
import { DataType, type GraphBuilder } from './onnx/graph.ts';
import { gelu, layerNorm, linear, linearGroup, quantizeActivations, reshape, transpose, weight, type LinearOptions, type WeightPrecision } from './onnx/layers.ts';
import { quantizePerChannelInt8 } from './quantize.ts';

const PREFIX = 'thinker.audio_tower';

/** Output length of a 3-wide, stride-2, pad-1 convolution along an axis of length n ≥ 1. */
function strideTwoOut(n: number): number {
  return Math.floor((n - 1) / 2) + 1;
}

/** Height (mel axis) after the three stride-2 convolutions. */
export function convFreqOut(numMelBins: number): number {
  return strideTwoOut(strideTwoOut(strideTwoOut(numMelBins)));
}

export function buildConvStemGraph(g: GraphBuilder, store: SafetensorsStore, cfg: AudioEncoderConfig, precision: WeightPrecision = 'fp32'): void {
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
    // nine taps; the second and third (~99%) are integer products: see conv3x3Stride2W8A8.
    x = firstConvChannelsLast(g, chunks, convWeights(1, 1), C, cfg.numMelBins);
    let height = strideTwoOut(cfg.numMelBins);
    for (const i of [2, 3]) {
      const { name, w, b } = convWeights(i, C);
      x = gelu(g, conv3x3Stride2W8A8(g, x, name, w, b, C, C, height));
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
  // form: with W8A8 convolutions it is a W8A8 product too (as fp32 Gemm it took 8.5 of the
  // 62 ms a run of four 0.6B chunks spent, profiled).
  const proj = linear(g, store, rows, `${PREFIX}.conv_out`, cfg.dModel, C * F, false, { precision: precision === 'w8a8' ? 'w8a8' : 'fp32' });
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
  const outW = g.op('Div', [g.op('Add', [g.op('Shape', [unpadded], { start: 2, end: 3 }), g.constInt64([1])]), g.constInt64([2])]);
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
 * A 3×3, stride-2, pad-1 convolution as nine integer products, one per kernel tap, on a
 * channels-last input x [n, H, W, Cin] (H static, W dynamic); returns [n, H', W', Cout] fp32
 * (bias added).
 *
 * Every input pixel's channel vector is quantised to int8 with its own scale (per-row, as
 * the W8A8 linear layers do for tokens), so each tap's product is a plain
 * [pixels, Cin] × [Cin, Cout] MatMulIntegerToFloat over a strided view of the quantised
 * input, with that tap's per-output-channel weight scales; the nine fp32 results are summed.
 * The fp32 Conv runs at the CPU's fp32 rate, the integer products at its int8 rate; the extra
 * passes (quantising the input once, nine strided copies of int8 pixels, one Sum) cost less
 * than that saves: 60 s of audio through the 0.6B encoder took a median 1.79–1.87 s instead of
 * 2.36–2.42 s with the fp32 Conv (two A/B runs of six, AMD EPYC, 2 threads; the integer
 * products ran at ~450 GOP/s, the fp32 Conv at ~140 GFLOP/s).
 */
export function conv3x3Stride2W8A8(g: GraphBuilder, x: string, name: string, w: Float32Array, bias: Float32Array, cin: number, cout: number, height: number): string {
  const outH = strideTwoOut(height);
  // Per-pixel uint8 channel vectors (zero point 128) and their scales [n, H, W, 1], as the
  // W8A8 linear layers quantise tokens.
  const { xq: quantised, rowScale: scale } = quantizeActivations(g, x, cin);
  const zp = g.constUint8(128);
  // Zero padding after quantisation (a quarter of the bytes of padding the fp32 input):
  // padded pixels hold the zero point, so they contribute nothing whatever their scale.
  const pads = g.constInt64([0, 1, 1, 0, 0, 1, 1, 0]);
  const q = g.op('Pad', [quantised, pads, zp]);
  const paddedScale = g.op('Pad', [scale, pads, g.constFloat([1])]);
  const tapView = strideTwoTaps(g, x, outH);
  const products: string[] = [];
  for (let dy = 0; dy < 3; dy++) {
    for (let dx = 0; dx < 3; dx++) {
      const view = (t: string, k: number) => g.op('Reshape', [tapView(t, dy, dx), g.constInt64([-1, k])]);
      const tap = new Float32Array(cout * cin);
      for (let o = 0; o < cout; o++) for (let i = 0; i < cin; i++) tap[o * cin + i] = w[((o * cin + i) * 3 + dy) * 3 + dx];
      const qw = quantizePerChannelInt8(tap, cout, cin);
      products.push(
        g.op(
          'MatMulIntegerToFloat',
          [
            view(q, cin),
            g.initializer(`${name}.tap${dy}${dx}.qweight_kn`, qw.weights, [cin, cout], DataType.INT8),
            view(paddedScale, 1),
            g.initializer(`${name}.tap${dy}${dx}.channel_scales`, qw.scales, [cout]),
            zp,
          ],
          {},
          'com.microsoft',
        ),
      );
    }
  }
  const sum = g.op('Add', [g.op('Sum', products), g.initializer(`${name}.bias`, bias, [cout])]);
  const outShape = g.op('Concat', [g.op('Shape', [x], { start: 0, end: 1 }), g.constInt64([outH, -1]), g.constInt64([cout])], { axis: 0 });
  return g.op('Reshape', [sum, outShape]);
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
