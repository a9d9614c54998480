/**
 * ONNX graph of the Qwen3 text decoder (spec §6): one form for passes of any length (prompts,
 * steps), and a leaner one for generation steps of one position per row (singlePosition).
 *
 * Inputs: inputs_embeds [B, S, H] (the host looks up embeddings and inserts the audio rows),
 * position_ids [B, S], past_mask [B, 1, g·S, P] and new_mask [B, 1, g·S, S] (additive: 0 or a
 * large negative; one row per query row of the grouped layout used below, where row r is
 * position r mod S, so they apply to the scores without reshapes), logit_rows [R] (rows of
 * the flattened [B·S] sequence whose logits are wanted), and past_key.i / past_value.i
 * [B, kvH, P, hd] per layer — or, with an int8 cache, past_key.i int8 [B, kvH, hd, P],
 * past_value.i int8 [B, kvH, P, hd] and their per-position scales past_key_scale.i /
 * past_value_scale.i [B, kvH, 1, P].
 * Outputs: logits [R, V], next_ids [R] (int64: each row's argmax, the lowest id on ties, as
 * greedy decoding takes it — a step that fetches only these skips copying B × 151,936
 * logits out of the session and scanning them on the host) and new_key.i / new_value.i
 * [B, kvH, S, hd] — or, with an int8 cache, the new rows already quantised in the cache's
 * layouts: new_key.i int8 [B, kvH, hd, S], new_value.i int8 [B, kvH, S, hd] and their scales
 * new_key_scale.i / new_value_scale.i [B, kvH, S, 1] (quantising 29 M values of a 512-row
 * 0.6B prompt pass on the host takes ~0.5 s on an Intel Xeon VM with AMX, 2 vCPUs; in the
 * graph it is a few elementwise passes, and the outputs copied back are a quarter of the
 * bytes). The singlePosition form has no new_mask and returns fp32 rows
 * [B, kvH, 1, hd] for the host to quantise (57,344 values a step for one 0.6B sequence).
 *
 * Why attention is split into a "past" and a "new" part instead of concatenating the KV
 * cache: onnxruntime-node copies every output into a fresh buffer, so a graph that returns
 * the whole grown cache copies it on every token (../shared/docs/onnxruntime-node.md §3). Here the host
 * owns the cache (inputs are passed without copies), the graph returns only the new rows,
 * and scores against the past and the new keys are computed separately and joined before a
 * single softmax, so no cache-sized tensor is ever copied inside the graph either.
 */
import { type TextDecoderConfig } from '../checkpoint/config.ts';
import { type SafetensorsStore } from '../checkpoint/safetensors.ts';
import { DataType, type GraphBuilder } from '../runtime/onnx-graph.ts';
import { linear, linearFromData, linearGroup, matrixWeight, rmsNorm, rowScales, transpose, weight, type LinearOptions } from './layers.ts';
import { int8Offset, requireInt8Kernel, type Int8Kernel } from '../runtime/int8-kernel.ts';

/** This module, whose import closure is the source a cached build of its graphs depends on (runtime/graph-cache.ts). */
export const DECODER_GRAPH_SOURCE = import.meta.url;

const PREFIX = 'thinker.model';

export interface DecoderGraphOptions {
  linear: LinearOptions;
  /** Precision of the output head (the tied embedding is 150k rows: quantising it matters for speed). */
  head: LinearOptions;
  /** Rows of the output head: vocabulary (ASR) or timestamp classes (aligner). */
  headRows: number;
  /** Name of the head weight: the embedding when tied, else thinker.lm_head.weight. */
  headWeight: string;
  /** How the host stores the past (runtime/kv-cache.ts KvCacheFormat); default fp32. */
  kvCache?: 'fp32' | 'int8';
  /**
   * The integer kernel an int8 cache's attention products are built for (int8-kernel.ts;
   * default this machine's): with u8u8 the cache holds keys and values as uint8 + 128.
   */
  int8Kernel?: Int8Kernel;
  /**
   * A graph for generation steps only: one new position per row (S = 1), for small batches.
   * Each node of a one-token step costs more in overhead than in work, so this form drops
   * what S = 1 makes unnecessary: the new-position mask (a position always sees itself), the
   * transposes between [B, S, heads, hd] and [B, heads, S, hd] (the same bytes when S = 1),
   * the shape arithmetic (shapes are constants but for the batch), and, with an int8 cache,
   * the quantisation of the new keys and values (the host quantises them, runtime/kv-cache.ts
   * quantizeVectorsInt8: 2·kvH vectors of hd per row and layer) — it attends to its own new
   * position in fp32. Inputs: no new_mask, past_mask [B, 1, g, P]; outputs new_key.i and
   * new_value.i are fp32 [B, kvH, 1, hd] whatever the cache format.
   */
  singlePosition?: boolean;
}

export function buildDecoderGraph(g: GraphBuilder, store: SafetensorsStore, cfg: TextDecoderConfig, opts: DecoderGraphOptions): void {
  const H = cfg.hiddenSize;
  const nH = cfg.heads;
  const kvH = cfg.kvHeads;
  const hd = cfg.headDim;
  const grp = nH / kvH;
  const eps = cfg.rmsNormEps;
  const L = cfg.layers;

  const one = opts.singlePosition === true;
  const embeds = g.input('inputs_embeds', DataType.FLOAT, ['batch', one ? 1 : 'seq', H]);
  const positions = g.input('position_ids', DataType.INT64, ['batch', one ? 1 : 'seq']);
  // Masks per query row of the grouped layout (row g·S + i is position i; see below).
  const pastMask = g.input('past_mask', DataType.FLOAT, ['batch', 1, one ? grp : 'query_rows', 'past']);
  const newMask = one ? '' : g.input('new_mask', DataType.FLOAT, ['batch', 1, 'query_rows', 'seq']);
  const logitRows = g.input('logit_rows', DataType.INT64, ['rows']);
  const int8Cache = opts.kvCache === 'int8';
  // The cache's element type: int8, or uint8 holding value + 128 (int8-kernel.ts).
  const offset = int8Cache ? int8Offset(requireInt8Kernel(opts.int8Kernel)) : 0;
  const cacheType = offset ? DataType.UINT8 : DataType.INT8;
  const pastK: string[] = [];
  const pastV: string[] = [];
  const pastKScale: string[] = [];
  const pastVScale: string[] = [];
  for (let l = 0; l < L; l++) {
    if (int8Cache) {
      pastK.push(g.input(`past_key.${l}`, cacheType, ['batch', kvH, hd, 'past']));
      pastV.push(g.input(`past_value.${l}`, cacheType, ['batch', kvH, 'past', hd]));
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
  const sT = one ? g.constInt64([1]) : g.op('Shape', [embeds], { start: 1, end: 2 });
  const pT = g.op('Shape', [pastV[0]], { start: 2, end: 3 });
  const c = (...v: number[]) => g.constInt64(v);
  const shape = (...parts: string[]) => g.op('Concat', parts, { axis: 0 });
  const reshapeTo = (x: string, s: string) => g.op('Reshape', [x, s], { allowzero: 1 });
  // Shapes are built once per graph (each is a node run on every pass), not once per layer;
  // with one position per row they are constants but for the batch (-1).
  const shapeBSHd = (heads: number) => (one ? c(-1, heads, 1, hd) : shape(bT, sT, c(heads), c(hd)));
  const [shapeBSHdQ, shapeBSHdKv] = [shapeBSHd(nH), shapeBSHd(kvH)];
  const shapeGroupedQ = one ? c(-1, kvH, grp, hd) : shape(bT, c(kvH), c(-1), c(hd)); // [B, kvH, g·S, hd]
  const shapeProbsPast = int8Cache ? shape(bT, c(kvH), c(-1), pT) : '';
  const shapeProbsNew = int8Cache && !one ? shape(bT, c(kvH), c(-1), sT) : '';
  const shapeCtx = one ? '' : shape(bT, c(nH), sT, c(hd));
  // Row views for per-row quantisation of probability rows over the past or the new
  // positions (their length is dynamic); queries' zero point 128 per row [B, kvH, g·S, 1].
  const pastRows = int8Cache ? shape(c(-1), pT) : '';
  const newRows = int8Cache && !one ? shape(c(-1), sT) : '';
  const queryZeroPoints = int8Cache ? g.op('Expand', [g.constUint8(128), shape(bT, c(kvH), one ? c(grp) : g.op('Mul', [sT, c(grp)]), c(1))]) : '';
  // New keys' and values' zero points [B, kvH, S, 1] when the cache stores them as uint8 + 128.
  const newRowZeroPoints = int8Cache && !one && offset ? g.op('Expand', [g.constUint8(offset), shape(bT, c(kvH), sT, c(1))]) : undefined;
  const zero = c(0);
  const big = c(2 ** 62);
  const lastAxis = c(-1);
  const scale = { float: 1 / Math.sqrt(hd) };
  // Per-position scales [B, kvH, S, 1] of new rows as the [B, kvH, 1, S] the products take.
  const asColumns = (scales: string) => g.op('Transpose', [scales], { perm: [0, 1, 3, 2] });

  // The residual stream x; each branch's output is added to it by the norm that follows
  // (SkipSimplifiedLayerNormalization: one node for the sum and the RMSNorm).
  let x = g.op('Reshape', [embeds, g.constInt64([-1, H])]);
  const addAndNorm = (branch: string | undefined, gammaName: string): string => {
    if (!branch) return rmsNorm(g, store, x, gammaName, H, eps);
    const gamma = g.initializer(gammaName, weight(store, gammaName, [H]), [H]);
    const [normed, , , sum] = g.node('SkipSimplifiedLayerNormalization', [x, branch, gamma], { epsilon: { float: eps } }, {
      domain: 'com.microsoft',
      outputs: [g.fresh('normed'), '', '', g.fresh('residual')],
    });
    x = sum;
    return normed;
  };
  let mlpOut: string | undefined;
  for (let l = 0; l < L; l++) {
    const p = `${PREFIX}.layers.${l}`;
    const a = addAndNorm(mlpOut, `${p}.input_layernorm.weight`);

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
    // [B·S, heads·hd] -> [B, heads, S, hd] (a transpose unless S = 1), then the per-head
    // RMSNorm and RoPE in that layout. Graph outputs are named where they are computed (an
    // Identity would copy them).
    const heads = (y: string, n: number, output?: string) => {
      const shaped = n === nH ? shapeBSHdQ : shapeBSHdKv;
      if (one) return g.node('Reshape', [y, shaped], { allowzero: 1 }, { outputs: output ? [output] : 1 })[0];
      return g.node('Transpose', [reshapeTo(y, shaped)], { perm: [0, 2, 1, 3] }, { outputs: output ? [output] : 1 })[0];
    };
    const normRope = (y: string, norm: string, n: number, output?: string) => {
      const normed = rmsNorm(g, store, heads(y, n), `${p}.self_attn.${norm}.weight`, hd, eps);
      return g.node('RotaryEmbedding', [normed, positions, cosName, sinName], { interleaved: 0 }, { domain: 'com.microsoft', outputs: output ? [output] : 1 })[0];
    };
    // fp32 outputs when the cache is fp32 or the host quantises them (singlePosition).
    const fp32Out = !int8Cache || one;
    const q = reshapeTo(normRope(qProj, 'q_norm', nH), shapeGroupedQ);
    const k = normRope(kProj, 'k_norm', kvH, fp32Out ? `new_key.${l}` : undefined);
    const v = heads(vProj, kvH, fp32Out ? `new_value.${l}` : undefined);
    // Otherwise, with an int8 cache, the graph hands the cache its new rows already
    // quantised, in the cache's layouts, and attends to them in that form too (like to the past).
    const asInt8 = (x: string, names: { q?: string; scale: string }) => quantizeVectors(g, x, { hd, maxAbs: 127, type: cacheType, zeroPoints: newRowZeroPoints, names });
    const qk = fp32Out ? undefined : asInt8(k, { scale: `new_key_scale.${l}` });
    const qv = fp32Out ? undefined : asInt8(v, { q: `new_value.${l}`, scale: `new_value_scale.${l}` });
    if (qk) g.node('Transpose', [qk.q], { perm: [0, 1, 3, 2] }, { outputs: [`new_key.${l}`] });

    // Query head j uses kv head floor(j / grp): grouping q as [B, kvH, grp·S, hd] lines them up
    // (row g·S + i is head kvh·grp + g at position i).
    const fp32Scores = (keys: string) => g.op('FusedMatMul', [q, keys], { transB: 1, alpha: scale }, 'com.microsoft');
    let sPastRaw: string;
    let sNewRaw: string;
    if (int8Cache) {
      const qq = quantizeVectors(g, q, { hd, maxAbs: 127, zeroPoints: queryZeroPoints });
      const queryScale = g.op('Mul', [qq.scale, g.constFloat([scale.float])]); // 1/√hd folded into the row scales
      sPastRaw = int8Scores(g, qq.q, queryScale, pastK[l], pastKScale[l], offset);
      sNewRaw = qk ? int8Scores(g, qq.q, queryScale, `new_key.${l}`, asColumns(qk.scale), offset) : fp32Scores(k);
    } else {
      sPastRaw = fp32Scores(pastK[l]);
      sNewRaw = fp32Scores(k);
    }
    const sPast = g.op('Add', [sPastRaw, pastMask]);
    // (One new position per row always sees itself: no mask.)
    const sNew = one ? sNewRaw : g.op('Add', [sNewRaw, newMask]);
    const probs = g.op('Softmax', [g.op('Concat', [sPast, sNew], { axis: -1 })], { axis: -1 });
    const pPast = g.op('Slice', [probs, zero, pT, lastAxis]);
    const pNew = g.op('Slice', [probs, pT, big, lastAxis]);
    const ctxPast = int8Cache ? int8Context(g, pPast, pastRows, shapeProbsPast, pastV[l], pastVScale[l], offset) : g.op('MatMul', [pPast, pastV[l]]);
    const ctxNew = qv ? int8Context(g, pNew, newRows, shapeProbsNew, qv.q, asColumns(qv.scale), offset) : g.op('MatMul', [pNew, v]);
    const ctx = g.op('Add', [ctxPast, ctxNew]);
    // [B, kvH, g·S, hd] is [B, heads, S, hd]; back to rows of heads·hd (with S = 1, the same bytes).
    const ctx2d = one ? g.op('Reshape', [ctx, c(-1, nH * hd)]) : g.op('Reshape', [transpose(g, reshapeTo(ctx, shapeCtx), [0, 2, 1, 3]), c(-1, nH * hd)]);
    const attnOut = linear(g, store, ctx2d, `${p}.self_attn.o_proj`, H, nH * hd, false, opts.linear);

    const b = addAndNorm(attnOut, `${p}.post_attention_layernorm.weight`);
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
    mlpOut = linear(g, store, act, `${p}.mlp.down_proj`, H, cfg.intermediateSize, false, opts.linear);
  }
  if (mlpOut) x = g.op('Add', [x, mlpOut]);
  const rows = g.op('Gather', [x, logitRows], { axis: 0 });
  const normed = rmsNorm(g, store, rows, `${PREFIX}.norm.weight`, H, eps);
  const headW = matrixWeight(g, store, opts.headWeight, [opts.headRows, H]);
  g.node('Identity', [linearFromData(g, normed, 'lm_head', headW, opts.headRows, H, undefined, opts.head)], {}, { outputs: ['logits'] });
  g.output('logits', DataType.FLOAT, ['rows', opts.headRows]);
  // ONNX ArgMax returns the first maximal index (select_last_index = 0): ties go to the lowest id.
  g.node('ArgMax', ['logits'], { axis: 1, keepdims: 0 }, { outputs: ['next_ids'] });
  g.output('next_ids', DataType.INT64, ['rows']);
  for (let l = 0; l < L; l++) {
    if (one) {
      g.output(`new_key.${l}`, DataType.FLOAT, ['batch', kvH, 1, hd]);
      g.output(`new_value.${l}`, DataType.FLOAT, ['batch', kvH, 1, hd]);
    } else if (int8Cache) {
      g.output(`new_key.${l}`, cacheType, ['batch', kvH, hd, 'seq']);
      g.output(`new_key_scale.${l}`, DataType.FLOAT, ['batch', kvH, 'seq', 1]);
      g.output(`new_value.${l}`, cacheType, ['batch', kvH, 'seq', hd]);
      g.output(`new_value_scale.${l}`, DataType.FLOAT, ['batch', kvH, 'seq', 1]);
    } else {
      g.output(`new_key.${l}`, DataType.FLOAT, ['batch', kvH, 'seq', hd]);
      g.output(`new_value.${l}`, DataType.FLOAT, ['batch', kvH, 'seq', hd]);
    }
  }
}

/**
 * Per-row quantisation of non-negative rows of dynamic length (probabilities times value
 * scales) to uint8 (zero point 0, 255 for the row's largest value) with one QuantizeLinear:
 * x is viewed as 2-D rows (`rows`, a shape tensor), quantised with per-axis scales on axis 0,
 * and viewed back as `shape`, so a score-sized tensor is read twice (max, quantise) rather
 * than through a chain of elementwise nodes. Returns the quantised tensor and the scales.
 */
function quantizeProbabilityRows(g: GraphBuilder, x: string, rows: string, shape: string): { q: string; scale: string } {
  const scale = rowScales(g, x, 255, { nonNegative: true });
  const q = g.op('QuantizeLinear', [g.op('Reshape', [x, rows]), g.op('Reshape', [scale, g.constInt64([-1])])], { axis: 0 });
  return { q: g.op('Reshape', [q, shape]), scale };
}

/**
 * Per-row quantisation of vectors of static length `hd` (queries, keys, values) along the last
 * axis: one blocked QuantizeLinear with a block of the whole row, so no reshapes are needed
 * around it (rows of dynamic length need the 2-D view of quantizeProbabilityRows instead).
 * `zeroPoints` must have the scales' shape (x's shape with a last axis of 1).
 */
export function quantizeVectors(
  g: GraphBuilder,
  x: string,
  o: { hd: number; maxAbs: number; zeroPoints?: string; type?: DataType; names?: { q?: string; scale?: string } },
): { q: string; scale: string } {
  const scale = rowScales(g, x, o.maxAbs, { name: o.names?.scale });
  const inputs = o.zeroPoints ? [x, scale, o.zeroPoints] : [x, scale];
  const attrs: Record<string, number> = { axis: -1, block_size: o.hd };
  if (o.type !== undefined) attrs.output_dtype = o.type;
  const q = g.node('QuantizeLinear', inputs, attrs, { outputs: o.names?.q ? [o.names.q] : 1 })[0];
  return { q, scale };
}

/**
 * Scores of queries [B, kvH, g·S, hd] (quantised per row, +128 as uint8 for the integer
 * kernels; `queryScale` [B, kvH, g·S, 1] includes 1/√hd) against int8 keys [B, kvH, hd, N]
 * (stored + `offset` as uint8 when it is 128) with per-position scales [B, kvH, 1, N]: one
 * MatMulIntegerToFloat applies both scales inside the product. Returns [B, kvH, g·S, N].
 */
function int8Scores(g: GraphBuilder, queries: string, queryScale: string, keys: string, keyScales: string, offset: number): string {
  const inputs = [queries, keys, queryScale, keyScales, g.constUint8(128)];
  if (offset) inputs.push(g.constUint8(offset));
  return g.op('MatMulIntegerToFloat', inputs, {}, 'com.microsoft');
}

/**
 * Attention probabilities p [B, kvH, g·S, N] times int8 values [B, kvH, N, hd] with
 * per-position scales [B, kvH, 1, N]: the scales fold into p (p_j · s_j), which is then
 * quantised per row to uint8 (non-negative, zero point 0) for the integer product (values
 * stored + `offset` as uint8 when it is 128). Returns [B, kvH, g·S, hd].
 */
function int8Context(g: GraphBuilder, probs: string, rows: string, shape: string, values: string, valueScales: string, offset: number): string {
  const p = quantizeProbabilityRows(g, g.op('Mul', [probs, valueScales]), rows, shape);
  const inputs = [p.q, values, p.scale, g.constFloat([1])];
  if (offset) inputs.push(g.constUint8(0), g.constUint8(offset));
  return g.op('MatMulIntegerToFloat', inputs, {}, 'com.microsoft');
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
