/**
 * ONNX graph of the Qwen3 text decoder (spec §6), one graph for prefill and for every
 * generation step.
 *
 * Inputs: inputs_embeds [B, S, H] (the host looks up embeddings and inserts the audio rows),
 * position_ids [B, S], past_mask [B, 1, 1, S, P] and new_mask [B, 1, 1, S, S] (additive:
 * 0 or a large negative), logit_rows [R] (rows of the flattened [B·S] sequence whose logits
 * are wanted), and past_key.i / past_value.i [B, kvH, P, hd] per layer — or, with an int8
 * cache, past_key.i int8 [B, kvH, hd, P], past_value.i int8 [B, kvH, P, hd] and their
 * per-position scales past_key_scale.i / past_value_scale.i [B, kvH, 1, P].
 * Outputs: logits [R, V] and new_key.i / new_value.i [B, kvH, S, hd].
 *
 * Why attention is split into a "past" and a "new" part instead of concatenating the KV
 * cache: onnxruntime-node copies every output into a fresh buffer, so a graph that returns
 * the whole grown cache copies it on every token (docs/onnxruntime-node.md §3). Here the host
 * owns the cache (inputs are passed without copies), the graph returns only the new rows,
 * and scores against the past and the new keys are computed separately and joined before a
 * single softmax, so no cache-sized tensor is ever copied inside the graph either.
 */
import { type TextDecoderConfig } from './config.ts';
import { type SafetensorsStore } from './safetensors.ts';
import { DataType, type GraphBuilder } from './onnx/graph.ts';
import { linear, linearFromData, linearGroup, rmsNorm, transpose, weight, type LinearOptions } from './onnx/layers.ts';

const PREFIX = 'thinker.model';

export interface DecoderGraphOptions {
  linear: LinearOptions;
  /** Precision of the output head (the tied embedding is 150k rows: quantising it matters for speed). */
  head: LinearOptions;
  /** Rows of the output head: vocabulary (ASR) or timestamp classes (aligner). */
  headRows: number;
  /** Name of the head weight: the embedding when tied, else thinker.lm_head.weight. */
  headWeight: string;
  /** How the host stores the past (text-decoder.ts KvCacheFormat); default fp32. */
  kvCache?: 'fp32' | 'int8';
}

export function buildDecoderGraph(g: GraphBuilder, store: SafetensorsStore, cfg: TextDecoderConfig, opts: DecoderGraphOptions): void {
  const H = cfg.hiddenSize;
  const nH = cfg.heads;
  const kvH = cfg.kvHeads;
  const hd = cfg.headDim;
  const grp = nH / kvH;
  const eps = cfg.rmsNormEps;
  const L = cfg.layers;

  const embeds = g.input('inputs_embeds', DataType.FLOAT, ['batch', 'seq', H]);
  const positions = g.input('position_ids', DataType.INT64, ['batch', 'seq']);
  const pastMask = g.input('past_mask', DataType.FLOAT, ['batch', 1, 1, 'seq', 'past']);
  const newMask = g.input('new_mask', DataType.FLOAT, ['batch', 1, 1, 'seq', 'seq']);
  const logitRows = g.input('logit_rows', DataType.INT64, ['rows']);
  const int8Cache = opts.kvCache === 'int8';
  const pastK: string[] = [];
  const pastV: string[] = [];
  const pastKScale: string[] = [];
  const pastVScale: string[] = [];
  for (let l = 0; l < L; l++) {
    if (int8Cache) {
      pastK.push(g.input(`past_key.${l}`, DataType.INT8, ['batch', kvH, hd, 'past']));
      pastV.push(g.input(`past_value.${l}`, DataType.INT8, ['batch', kvH, 'past', hd]));
      pastKScale.push(g.input(`past_key_scale.${l}`, DataType.FLOAT, ['batch', kvH, 1, 'past']));
      pastVScale.push(g.input(`past_value_scale.${l}`, DataType.FLOAT, ['batch', kvH, 1, 'past']));
    } else {
      pastK.push(g.input(`past_key.${l}`, DataType.FLOAT, ['batch', kvH, 'past', hd]));
      pastV.push(g.input(`past_value.${l}`, DataType.FLOAT, ['batch', kvH, 'past', hd]));
    }
  }

  const { cos, sin } = rotaryTables(cfg);
  const cosName = g.initializer('rotary.cos', cos, [cfg.maxPositionEmbeddings, hd / 2]);
  const sinName = g.initializer('rotary.sin', sin, [cfg.maxPositionEmbeddings, hd / 2]);

  // Dynamic sizes as 1-D int64 tensors, for building shapes.
  const bT = g.op('Shape', [embeds], { start: 0, end: 1 });
  const sT = g.op('Shape', [embeds], { start: 1, end: 2 });
  const pT = g.op('Shape', [pastV[0]], { start: 2, end: 3 });
  const c = (v: number) => g.constInt64([v]);
  const shape = (...parts: string[]) => g.op('Concat', parts, { axis: 0 });
  const reshapeTo = (x: string, s: string) => g.op('Reshape', [x, s], { allowzero: 1 });
  const shapeBSHd = (heads: number) => shape(bT, sT, c(heads), c(hd));
  const shapeBSN = (heads: number) => shape(bT, sT, c(heads * hd));
  const shapeGroupedQ = shape(bT, c(kvH), c(-1), c(hd)); // [B, kvH, g·S, hd]
  const shapeScoresPast = shape(bT, c(kvH), c(grp), sT, pT);
  const shapeScoresNew = shape(bT, c(kvH), c(grp), sT, sT);
  const shapeProbsPast = shape(bT, c(kvH), c(-1), pT);
  const shapeProbsNew = shape(bT, c(kvH), c(-1), sT);
  const shapeCtx = shape(bT, c(nH), sT, c(hd));
  const zero = c(0);
  const big = c(2 ** 62);
  const lastAxis = c(-1);
  const scale = { float: 1 / Math.sqrt(hd) };

  let x = g.op('Reshape', [embeds, g.constInt64([-1, H])]);
  for (let l = 0; l < L; l++) {
    const p = `${PREFIX}.layers.${l}`;
    const a = rmsNorm(g, store, x, `${p}.input_layernorm.weight`, H, eps);

    // q, k and v in one product; q/k then get per-head RMSNorm (before RoPE) and RoPE.
    const [qProj, kProj, vProj] = linearGroup(
      g,
      store,
      a,
      ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}.self_attn.${n}`),
      [nH * hd, kvH * hd, kvH * hd],
      H,
      false,
      opts.linear,
      `${p}.self_attn.qkv_proj`,
    );
    const normRope = (y: string, norm: string, heads: number) => {
      const normed = rmsNorm(g, store, reshapeTo(y, shapeBSHd(heads)), `${p}.self_attn.${norm}.weight`, hd, eps);
      const roped = g.op(
        'RotaryEmbedding',
        [reshapeTo(normed, shapeBSN(heads)), positions, cosName, sinName],
        { num_heads: heads, interleaved: 0 },
        'com.microsoft',
      );
      return transpose(g, reshapeTo(roped, shapeBSHd(heads)), [0, 2, 1, 3]); // [B, heads, S, hd]
    };
    const q = reshapeTo(normRope(qProj, 'q_norm', nH), shapeGroupedQ);
    const k = normRope(kProj, 'k_norm', kvH);
    const v = transpose(g, reshapeTo(vProj, shapeBSHd(kvH)), [0, 2, 1, 3]);
    g.node('Identity', [k], {}, { outputs: [`new_key.${l}`] });
    g.node('Identity', [v], {}, { outputs: [`new_value.${l}`] });

    // Query head j uses kv head floor(j / grp): grouping q as [B, kvH, grp·S, hd] lines them up.
    const pastScores = int8Cache
      ? int8PastScores(g, q, pastK[l], pastKScale[l], scale.float)
      : g.op('FusedMatMul', [q, pastK[l]], { transB: 1, alpha: scale }, 'com.microsoft');
    const sPast = g.op('Add', [reshapeTo(pastScores, shapeScoresPast), pastMask]);
    const sNew = g.op('Add', [reshapeTo(g.op('FusedMatMul', [q, k], { transB: 1, alpha: scale }, 'com.microsoft'), shapeScoresNew), newMask]);
    const probs = g.op('Softmax', [g.op('Concat', [sPast, sNew], { axis: -1 })], { axis: -1 });
    const pPast = reshapeTo(g.op('Slice', [probs, zero, pT, lastAxis]), shapeProbsPast);
    const pNew = reshapeTo(g.op('Slice', [probs, pT, big, lastAxis]), shapeProbsNew);
    const pastCtx = int8Cache ? int8PastContext(g, pPast, pastV[l], pastVScale[l]) : g.op('MatMul', [pPast, pastV[l]]);
    const ctx = g.op('Add', [pastCtx, g.op('MatMul', [pNew, v])]);
    const ctx2d = g.op('Reshape', [transpose(g, reshapeTo(ctx, shapeCtx), [0, 2, 1, 3]), g.constInt64([-1, nH * hd])]);
    x = g.op('Add', [x, linear(g, store, ctx2d, `${p}.self_attn.o_proj`, H, nH * hd, false, opts.linear)]);

    const b = rmsNorm(g, store, x, `${p}.post_attention_layernorm.weight`, H, eps);
    const [gate, up] = linearGroup(
      g,
      store,
      b,
      [`${p}.mlp.gate_proj`, `${p}.mlp.up_proj`],
      [cfg.intermediateSize, cfg.intermediateSize],
      H,
      false,
      opts.linear,
      `${p}.mlp.gate_up_proj`,
    );
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, linear(g, store, act, `${p}.mlp.down_proj`, H, cfg.intermediateSize, false, opts.linear)]);
  }
  const rows = g.op('Gather', [x, logitRows], { axis: 0 });
  const normed = rmsNorm(g, store, rows, `${PREFIX}.norm.weight`, H, eps);
  const headW = weight(store, opts.headWeight, [opts.headRows, H]);
  const logits = linearFromData(g, normed, 'lm_head', headW, opts.headRows, H, undefined, opts.head);
  g.node('Identity', [logits], {}, { outputs: ['logits'] });
  g.output('logits', DataType.FLOAT, ['rows', opts.headRows]);
  for (let l = 0; l < L; l++) {
    g.output(`new_key.${l}`, DataType.FLOAT, ['batch', kvH, 'seq', hd]);
    g.output(`new_value.${l}`, DataType.FLOAT, ['batch', kvH, 'seq', hd]);
  }
}

/**
 * Scores of queries q [B, kvH, g·S, hd] against an int8 key cache [B, kvH, hd, P] with
 * per-position scales [B, kvH, 1, P]: q is quantised per row (symmetric, +128 as uint8 for
 * the u8·s8 integer kernels), multiplied in integers, then scaled back. Returns [B, kvH, g·S, P].
 */
function int8PastScores(g: GraphBuilder, q: string, keys: string, keyScales: string, alpha: number): string {
  const rowScale = g.op('Max', [g.op('Div', [g.op('ReduceMax', [g.op('Abs', [q]), g.constInt64([-1])], { keepdims: 1 }), g.constFloat([127])]), g.constFloat([1e-30])]);
  const qU8 = g.op('Cast', [g.op('Add', [g.op('Round', [g.op('Div', [q, rowScale])]), g.constFloat([128])])], { to: DataType.UINT8 });
  const acc = g.op('MatMulInteger', [qU8, keys, g.constUint8(128)]);
  return g.op('Mul', [g.op('Mul', [g.op('Cast', [acc], { to: DataType.FLOAT }), g.op('Mul', [rowScale, g.constFloat([alpha])])]), keyScales]);
}

/**
 * Attention probabilities p [B, kvH, g·S, P] times an int8 value cache [B, kvH, P, hd] with
 * per-position scales: the scales fold into p (p_j · s_j), which is then quantised per row to
 * uint8 (non-negative, zero point 0) for the integer product. Returns [B, kvH, g·S, hd].
 */
function int8PastContext(g: GraphBuilder, probs: string, values: string, valueScales: string): string {
  const weighted = g.op('Mul', [probs, valueScales]);
  const rowScale = g.op('Max', [g.op('Div', [g.op('ReduceMax', [weighted, g.constInt64([-1])], { keepdims: 1 }), g.constFloat([255])]), g.constFloat([1e-30])]);
  const pU8 = g.op('Cast', [g.op('Round', [g.op('Div', [weighted, rowScale])])], { to: DataType.UINT8 });
  const acc = g.op('MatMulInteger', [pU8, values]);
  return g.op('Mul', [g.op('Cast', [acc], { to: DataType.FLOAT }), rowScale]);
}

/**
 * cos/sin tables [maxPos, hd/2] as the official rotary module computes them in float32:
 * inv_freq = 1 / θ^(2i/d), angle = pos · inv_freq (float32 product), then cos/sin.
 */
export function rotaryTables(cfg: TextDecoderConfig): { cos: Float32Array; sin: Float32Array } {
  const half = cfg.headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const expo = Math.fround(Math.fround(2 * i) / cfg.headDim);
    inv[i] = Math.fround(1 / Math.fround(Math.pow(cfg.ropeTheta, expo)));
  }
  const n = cfg.maxPositionEmbeddings;
  const cos = new Float32Array(n * half);
  const sin = new Float32Array(n * half);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * inv[i]);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
