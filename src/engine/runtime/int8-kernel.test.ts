/**
 * The integer kernel choice: which CPUs get u8s8, that the chosen kernel is exact here on the
 * products' worst case (every pair of products at its largest, which saturates u8s8's 16-bit
 * pair sums on CPUs without VNNI), and that a model's graphs and cache follow the choice.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { DataType, GraphBuilder } from './onnx-graph.ts';
import { int8KernelFor, type Int8Kernel } from './int8-kernel.ts';
import { defaultInt8Kernel } from '../thinker/precision.ts';
import { linearFromData } from '../graphs/layers.ts';
import { AsrModel } from '../asr/asr-model.ts';
import { exactInt8Kernels, goldenPath } from '../../testing/shared.ts';

const cpuinfo = (flags: string) => `processor\t: 0\nvendor_id\t: X\nflags\t\t: ${flags}\nbugs\t\t: none\n\nprocessor\t: 1\nflags\t\t: ${flags}\n`;

test('int8 kernel: u8s8 only on x86 CPUs whose flags show VNNI or AMX', () => {
  const zen3 = 'fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2';
  assert.equal(int8KernelFor('x64', cpuinfo(zen3)), 'u8u8');
  assert.equal(int8KernelFor('x64', cpuinfo(`${zen3} avx512f avx512bw avx512vl`)), 'u8u8', 'AVX-512 without VNNI saturates too');
  assert.equal(int8KernelFor('x64', cpuinfo(`${zen3} avx512f avx512bw avx512_vnni`)), 'u8s8');
  assert.equal(int8KernelFor('x64', cpuinfo(`${zen3} avx_vnni`)), 'u8s8');
  assert.equal(int8KernelFor('x64', cpuinfo(`${zen3} avx512_vnni amx_bf16 amx_tile amx_int8`)), 'u8s8');
  assert.equal(int8KernelFor('x64', cpuinfo('avx512_vnni_x')), 'u8u8', 'whole flag names only');
  assert.equal(int8KernelFor('x64', undefined), 'u8u8', 'unknown flags: the kernel exact everywhere');
  assert.equal(int8KernelFor('x64', ''), 'u8u8');
  assert.equal(int8KernelFor('arm64', undefined), 'u8s8');
});

test('int8 kernel: QWEN3_ASR_INT8_KERNEL overrides the detection, and a bad value is named', () => {
  const saved = process.env.QWEN3_ASR_INT8_KERNEL;
  try {
    for (const k of ['u8s8', 'u8u8'] as Int8Kernel[]) {
      process.env.QWEN3_ASR_INT8_KERNEL = k;
      assert.equal(defaultInt8Kernel(), k);
    }
    process.env.QWEN3_ASR_INT8_KERNEL = 's8s8';
    assert.throws(() => defaultInt8Kernel(), /QWEN3_ASR_INT8_KERNEL: must be one of u8s8, u8u8; got "s8s8"/);
  } finally {
    if (saved === undefined) delete process.env.QWEN3_ASR_INT8_KERNEL;
    else process.env.QWEN3_ASR_INT8_KERNEL = saved;
  }
});

for (const int8Kernel of exactInt8Kernels()) {
  test(`int8 kernel ${int8Kernel}: exact on this machine where every product is at its largest`, async () => {
    // Activations and weights all ±1 quantise to ±127 (activations stored as 255 or 1): each
    // output is K·127·127 in the integer product, so K after both scales of 1/127.
    const K = 256;
    const N = 16;
    const g = new GraphBuilder('extremes');
    const x = g.input('x', DataType.FLOAT, [2, K]);
    const w = Float32Array.from({ length: N * K }, (_, i) => (Math.floor(i / K) % 2 ? -1 : 1)); // rows of +1, -1, +1, ...
    g.node('Identity', [linearFromData(g, x, 'lin', w, N, K, undefined, { precision: 'w8a8', int8Kernel })], {}, { outputs: ['y'] });
    g.output('y', DataType.FLOAT, [2, N]);
    const session = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: 1 });
    try {
      const input = Float32Array.from({ length: 2 * K }, (_, i) => (i < K ? 1 : -1));
      const y = (await session.run({ x: new ort.Tensor('float32', input, [2, K]) })).y.data as Float32Array;
      for (let r = 0; r < 2; r++)
        for (let n = 0; n < N; n++) {
          const want = (r ? -1 : 1) * (n % 2 ? -1 : 1) * K;
          assert.ok(Math.abs(y[r * N + n] - want) < 1e-3 * K, `row ${r} channel ${n}: ${y[r * N + n]}, expected ${want}`);
        }
    } finally {
      await session.release();
    }
  });
}

test('int8 kernel: a model loads its graphs and KV cache for the chosen kernel, and never graphs cached for the other', async () => {
  // A cache folder shared by machines of both kinds (a mounted volume) must never hand one
  // machine the other's graphs: u8s8 graphs give wrong results without VNNI. The kernel is a
  // derived choice in the cache key, so each kind's build replaces the other's (rather than
  // leaving superseded gigabytes behind when an update changes the choice).
  const cacheDir = mkdtempSync(join(tmpdir(), 'qwen3-asr-kernel-cache-'));
  try {
    const dir = goldenPath('tiny-a', 'checkpoint');
    const load = (int8Kernel: Int8Kernel) => AsrModel.load(dir, { device: 'cpu', quant: 'int8', threads: 1, cacheDir, precisions: { int8Kernel } });
    const entries = () => readdirSync(cacheDir).sort();
    const zeroPoints: number[] = [];
    const builds: string[][] = [];
    for (const kernel of ['u8u8', 'u8s8', 'u8u8'] as const) {
      const before = entries();
      const model = await load(kernel);
      zeroPoints.push(model.decoder.newCache(1, [0]).zeroPoint);
      assert.equal(model.precisions.int8Kernel, kernel);
      await model.release();
      builds.push(entries().filter((e) => !before.includes(e)));
      assert.deepEqual(entries(), builds.at(-1), `${kernel}: only its own builds remain`);
    }
    assert.deepEqual(zeroPoints, [128, 0, 128]);
    assert.ok(builds[0].length >= 3, `graphs built for u8u8: ${builds[0]}`);
    assert.equal(builds[1].length, builds[0].length, 'u8s8 builds every graph of its own');
    assert.deepEqual(builds[2], builds[0], 'u8u8 again: the same builds as the first time');
    // And a second load of the same kernel comes from the cache.
    await (await load('u8u8')).release();
    assert.deepEqual(entries(), builds[0]);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
