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
import { gelu, layerNorm, linear, linearGroup, reshape, transpose, weight, type LinearOptions } from './onnx/layers.ts';

const PREFIX = 'thinker.audio_tower';

/** Height (mel axis) after the three stride-2 convolutions. */
export function convFreqOut(numMelBins: number): number {
  let f = numMelBins;
  for (let i = 0; i < 3; i++) f = Math.floor((f - 1) / 2) + 1;
  return f;
}

export function buildConvStemGraph(g: GraphBuilder, store: SafetensorsStore, cfg: AudioEncoderConfig): void {
  const C = cfg.convChannels;
  const chunks = g.input('chunks', DataType.FLOAT, ['n', 1, cfg.numMelBins, 'frames']);
  const positions = g.input('positions', DataType.FLOAT, ['t', cfg.dModel]);
  let x = chunks;
  let inC = 1;
  for (const i of [1, 2, 3]) {
    const name = `${PREFIX}.conv2d${i}`;
    const w = g.initializer(`${name}.weight`, weight(store, `${name}.weight`, [C, inC, 3, 3]), [C, inC, 3, 3]);
    const b = g.initializer(`${name}.bias`, weight(store, `${name}.bias`, [C]), [C]);
    x = gelu(g, g.op('Conv', [x, w, b], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }));
    inC = C;
  }
  const F = convFreqOut(cfg.numMelBins);
  // [n, C, F, T'] -> [n, T', C, F] -> rows of C·F, flattened channel-major as conv_out expects.
  const rows = reshape(g, transpose(g, x, [0, 3, 1, 2]), [-1, C * F]);
  const proj = linear(g, store, rows, `${PREFIX}.conv_out`, cfg.dModel, C * F, false, { precision: 'fp32' });
  // Back to [n, T', D] using the input's chunk count and the conv output length.
  const nT = g.op('Shape', [x], { start: 0, end: 1 });
  const tT = g.op('Shape', [x], { start: 3, end: 4 });
  const shape3 = g.op('Concat', [nT, tT, g.constInt64([cfg.dModel])], { axis: 0 });
  const seq = g.op('Reshape', [proj, shape3]);
  g.node('Add', [seq, positions], {}, { outputs: ['embeds'] });
  g.output('embeds', DataType.FLOAT, ['n', 't', cfg.dModel]);
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
  const mask = g.input('mask', DataType.FLOAT, ['w', 1, 1, 'len']);
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
