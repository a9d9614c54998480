/**
 * Block quantisation: the packing matches MatMulNBits, and the measured error of int8 / int4
 * weights against fp32, on single matrices and on the whole tiny-a model's logits.
 *
 * Bounds measured on this machine (tiny-a, all 18 cases, relative L2 error of the logits
 * against fp32; step 1 from the prompt graph, step 2 from the generation-step graph):
 *   int8: 0.029 / 0.031, first token 18/18 equal to fp32
 *   int4: 0.086 / 0.087, first token 16/18
 * The bounds below leave ~25-35% headroom over those measurements. (The tiny model's random
 * Gaussian weights are a hard case for 4 bits: a single random 256×256 matrix already loses 8%
 * to round-to-nearest int4 with blocks of 32.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { AsrModel } from './asr-model.ts';
import { DataType, GraphBuilder } from './onnx/graph.ts';
import { linearFromData } from './onnx/layers.ts';
import { dequantizeMatrix, quantizeMatrix } from './quantize.ts';
import { SafetensorsStore } from './safetensors.ts';
import { goldenPath, readJson } from '../testing/shared.ts';

function seededGaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uni = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uni())) * Math.cos(2 * Math.PI * uni());
}

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    e += (a[i] - b[i]) ** 2;
    d += b[i] ** 2;
  }
  return Math.sqrt(e / d);
}

const N = 96;
const K = 80; // not a multiple of the block size: the last block is padded
const randn = seededGaussian(7);
const W = Float32Array.from({ length: N * K }, () => randn() / Math.sqrt(K));
const X = Float32Array.from({ length: 4 * K }, randn);

function matmulT(x: Float32Array, w: Float32Array, m: number): Float64Array {
  const y = new Float64Array(m * N);
  for (let i = 0; i < m; i++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[i * K + k] * w[n * K + k];
    y[i * N + n] = s;
  }
  return y;
}

for (const bits of [8, 4] as const) {
  test(`int${bits}: dequantised weights stay within the grid's rounding error`, () => {
    const q = quantizeMatrix(W, N, K, bits, 32);
    const back = dequantizeMatrix(q);
    const err = relError(back, W);
    assert.ok(err < (bits === 8 ? 0.01 : 0.12), `relative weight error ${err}`);
    // Zero stays exactly zero (the int4 grid contains 0; int8 is symmetric).
    const z = quantizeMatrix(new Float32Array(N * K), N, K, bits, 32);
    assert.ok(dequantizeMatrix(z).every((v) => v === 0));
  });

  test(`int${bits}: MatMulNBits with our packing computes x·dequant(W)ᵀ`, async () => {
    const g = new GraphBuilder('q');
    const x = g.input('x', DataType.FLOAT, [4, K]);
    const y = linearFromData(g, x, 'lin', W, N, K, undefined, { precision: bits === 8 ? 'int8' : 'int4', blockSize: 32 });
    g.node('Identity', [y], {}, { outputs: ['y'] });
    g.output('y', DataType.FLOAT, [4, N]);
    const session = await ort.InferenceSession.create(g.toBytes());
    const out = (await session.run({ x: new ort.Tensor('float32', X, [4, K]) })).y.data as Float32Array;
    const viaDequant = matmulT(X, dequantizeMatrix(quantizeMatrix(W, N, K, bits, 32)), 4);
    // accuracy_level 4 quantises activations to int8 as well: ~1% on top of the weights.
    assert.ok(relError(out, viaDequant) < 0.02, `vs dequantised reference ${relError(out, viaDequant)}`);
    const exact = matmulT(X, W, 4);
    assert.ok(relError(out, exact) < (bits === 8 ? 0.02 : 0.12), `vs fp32 ${relError(out, exact)}`);
    await session.release();
  });
}

test('tiny-a logits: int8 and int4 error against fp32 stays within the measured bounds', async () => {
  // Step 1 comes from the prompt graph (W8A8 projections, quantised head), step 2 from the
  // generation-step graph (MatMulNBits int8 / int4): both are measured.
  const dir = goldenPath('tiny-a', 'checkpoint');
  const index = readJson(goldenPath('tiny-a', 'index.json'));
  const reqs = index.cases.map((c: any) => ({
    samples: SafetensorsStore.openFile(goldenPath('tiny-a', c.audio_file_golden)).readFloat32('waveform'),
    language: c.language ?? undefined,
    context: c.context || undefined,
    maxNewTokens: 2,
  }));
  const run = async (quant: 'none' | 'int8' | 'int4') => {
    const m = await AsrModel.load(dir, { device: 'cpu', quant, threads: 2, cacheDir: false });
    try {
      return await m.transcribe(reqs, { keepStepLogits: true, ignoreStopTokens: true });
    } finally {
      await m.release();
    }
  };
  const ref = await run('none');
  for (const [quant, bounds] of [['int8', [0.04, 0.04]], ['int4', [0.11, 0.11]]] as const) {
    const out = await run(quant);
    for (const step of [0, 1]) {
      // Step 2 is comparable only where both picked the same first token.
      const same = out.map((o, i) => i).filter((i) => step === 0 || out[i].tokenIds[0] === ref[i].tokenIds[0]);
      assert.ok(same.length >= 10, `${quant}: only ${same.length} cases comparable at step ${step + 1}`);
      const worst = Math.max(...same.map((i) => relError(out[i].stepLogits![step], ref[i].stepLogits![step])));
      assert.ok(worst <= bounds[step], `${quant} step ${step + 1}: worst relative logit error ${worst} > ${bounds[step]}`);
      process.stdout.write(`# ${quant} step ${step + 1}: worst relative logit error ${worst.toFixed(4)} over ${same.length} cases\n`);
    }
  }
});
