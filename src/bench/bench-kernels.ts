/**
 * The machine's ceilings for this engine, measured with the very products its graphs use
 * (`bench.ts` runs it in its own process): a chain of distinct [1024 → 3072 → 1024] weight
 * pairs, 100 MB of int8 in all so they stream from memory as a decoder step's weights do.
 *
 * - weight streaming at one row, W8A8 (QUANT=int8's product everywhere) and 4-bit
 *   MatMulNBits (QUANT=int4's product for steps of 1–2 sequences; the same weights in half the
 *   bytes): the floor of a batch-1 decode step is the model's weight bytes at this rate;
 * - the time of 8 rows against 1 (W8A8, as batches decode): how far batch-8 decoding can beat
 *   batch 1 at all, even with no attention, no cache and no host work: b8/b1 ≤ 8 / that ratio;
 * - W8A8 products of 512 rows (prompts, the encoder): the integer rate the compute-bound
 *   phases can reach.
 *
 *   node --import tsx src/bench/bench-kernels.ts [--threads N]
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { DataType, GraphBuilder } from '../model/onnx/graph.ts';
import { linearFromData, type WeightPrecision } from '../model/onnx/layers.ts';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '0' } } });
const H = 1024;
const F = 3072;
const PAIRS = 16;
const weightCount = 2 * PAIRS * H * F;

/** Deterministic pseudo-random weights (a linear congruential sequence), one stream per matrix. */
function weights(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed * 7919 + 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 0.1;
  }
  return a;
}

const matrices = Array.from({ length: 2 * PAIRS }, (_, i) => weights(H * F, i + 1));

async function chain(precision: WeightPrecision): Promise<ort.InferenceSession> {
  const g = new GraphBuilder('kernels');
  let x = g.input('x', DataType.FLOAT, ['rows', H]);
  for (let p = 0; p < PAIRS; p++) {
    const h = linearFromData(g, x, `p${p}.up`, matrices[2 * p], F, H, undefined, { precision });
    x = linearFromData(g, h, `p${p}.down`, matrices[2 * p + 1], H, F, undefined, { precision });
  }
  g.node('Identity', [x], {}, { outputs: ['y'] });
  g.output('y', DataType.FLOAT, ['rows', H]);
  const threads = Number(values.threads);
  return ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
}

/** Median ms of a pass of `rows` rows through the chain (after warm-up). */
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

const result: Record<string, number> = {};
const int4 = await chain('int4');
const n1 = await time(int4, 1, 15);
await int4.release();
const w8a8 = await chain('w8a8');
const w1 = await time(w8a8, 1, 15);
const w8 = await time(w8a8, 8, 15);
const w512 = await time(w8a8, 512, 5);
await w8a8.release();
// GB/s of the int8 weights' bytes (the int4 chain holds half as many bytes).
result.w8a8StreamGBps = weightCount / w1 / 1e6;
result.int4StreamGBps = weightCount / 2 / n1 / 1e6;
result.int4Row1OverW8a8Row1 = n1 / w1;
result.w8a8Rows8Over1 = w8 / w1;
result.batch8CeilingOverBatch1 = 8 / result.w8a8Rows8Over1;
result.w8a8GopsAt512Rows = (2 * weightCount * 512) / w512 / 1e6;
console.log(JSON.stringify(result));
