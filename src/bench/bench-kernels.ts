/**
 * The machine's ceilings for this engine, measured with the very products its graphs use
 * (`bench.ts` runs it in its own process): every weight product of one Qwen3-ASR-0.6B decoder
 * step — per layer q, k and v from one input, o, gate, up and down, then the output head
 * (shapes from the released model's config.json) — chained with no attention, norms or cache,
 * 596 MB of int8 (pseudo-random values: speed does not depend on them). So many distinct
 * bytes stream from memory as a real step's do; a smaller chain would sit in a large L3 (an
 * Intel Xeon VM with AMX, 2 vCPUs, reports 480 MB) and measure the cache instead.
 *
 * - one row, W8A8 (QUANT=int8's product everywhere) and 4-bit MatMulNBits (QUANT=int4's for
 *   steps of up to 2 sequences with AMX, else 3 on one thread and 6 on two or more): the
 *   floor of a 0.6B batch-1 decode step;
 * - 3 and 8 rows against 1 (W8A8, as batches decode): how far batch-8 decoding can beat batch
 *   1 at all, even with no attention, no cache and no host work: b8/b1 ≤ 8 / that ratio;
 * - 512 rows (W8A8): the integer rate that prompts and the encoder can reach.
 *
 *   node --import tsx src/bench/bench-kernels.ts [--threads N]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { parseModelConfig } from '../engine/checkpoint/config.ts';
import { DataType, GraphBuilder } from '../engine/runtime/onnx-graph.ts';
import { linearFromData, type WeightPrecision } from '../engine/graphs/layers.ts';
import { intraOpThreads } from '../engine/runtime/cpu-threads.ts';
import { defaultInt8Kernel } from '../engine/thinker/precision.ts';
import { referenceConfig } from '../tools/random-checkpoint.ts';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '0' } } });
const text = parseModelConfig(referenceConfig('0.6b'), 'Qwen3-ASR-0.6B config.json').text;
const H = text.hiddenSize;
const shapes = {
  q: [text.heads * text.headDim, H],
  k: [text.kvHeads * text.headDim, H],
  v: [text.kvHeads * text.headDim, H],
  o: [H, text.heads * text.headDim],
  gate: [text.intermediateSize, H],
  up: [text.intermediateSize, H],
  down: [H, text.intermediateSize],
};
const perLayer = Object.values(shapes).reduce((s, [n, k]) => s + n * k, 0);
const weightCount = text.layers * perLayer + text.vocabSize * H;
/** The integer kernel W8A8 products are stored for: this CPU's, as the engine's loads choose it. */
const int8Kernel = defaultInt8Kernel();

/** Deterministic pseudo-random weights (a linear congruential sequence), one stream per matrix. */
function weights(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed * 7919 + 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 0.05;
  }
  return a;
}

async function decoderProducts(precision: WeightPrecision): Promise<ort.InferenceSession> {
  const g = new GraphBuilder('kernels');
  let x = g.input('x', DataType.FLOAT, ['rows', H]);
  let seed = 1;
  const product = (input: string, name: string, [n, k]: number[]) => linearFromData(g, input, name, weights(n * k, seed++), n, k, undefined, { precision, int8Kernel });
  const rowSum = (y: string) => g.op('ReduceSum', [y, g.constInt64([1])], { keepdims: 1 });
  for (let l = 0; l < text.layers; l++) {
    const q = product(x, `l${l}.q`, shapes.q);
    // k and v feed only a row sum, so every product stays in the graph.
    const kv = g.op('Add', [rowSum(product(x, `l${l}.k`, shapes.k)), rowSum(product(x, `l${l}.v`, shapes.v))]);
    const a = g.op('Add', [product(q, `l${l}.o`, shapes.o), kv]);
    const act = g.op('Mul', [product(a, `l${l}.gate`, shapes.gate), product(a, `l${l}.up`, shapes.up)]);
    x = product(act, `l${l}.down`, shapes.down);
  }
  const logits = product(x, 'head', [text.vocabSize, H]);
  g.node('ReduceMax', [logits, g.constInt64([1])], { keepdims: 1 }, { outputs: ['y'] });
  g.output('y', DataType.FLOAT, ['rows', 1]);
  const threads = intraOpThreads(Number(values.threads)); // as the engine's sessions
  return ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
}

/** Median ms of a pass of `rows` rows through the products (after warm-up). */
async function time(session: ort.InferenceSession, rows: number, runs: number): Promise<number> {
  const feed = { x: new ort.Tensor('float32', weights(rows * H, 999), [rows, H]) };
  for (let i = 0; i < 2; i++) await session.run(feed);
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await session.run(feed);
    t.push(performance.now() - s);
  }
  return t.sort((a, b) => a - b)[t.length >> 1];
}

const result: Record<string, number | string> = { weightMB: weightCount / 1e6, int8Kernel };
const int4 = await decoderProducts('int4');
const n1 = await time(int4, 1, 15);
await int4.release();
const w8a8 = await decoderProducts('w8a8');
const w1 = await time(w8a8, 1, 15);
const w3 = await time(w8a8, 3, 15);
const w8 = await time(w8a8, 8, 15);
const w512 = await time(w8a8, 512, 5);
await w8a8.release();
result.w8a8Row1Ms = w1;
result.w8a8StreamGBps = weightCount / w1 / 1e6;
result.int4Row1Ms = n1;
result.w8a8Rows3Over1 = w3 / w1;
result.w8a8Rows8Over1 = w8 / w1;
result.batch8CeilingOverBatch1 = 8 / result.w8a8Rows8Over1;
result.w8a8GopsAt512Rows = (2 * weightCount * 512) / w512 / 1e6;
console.log(JSON.stringify(result));
