/**
 * The integer kernel choice: which CPUs get u8s8, and that the chosen kernel is exact here on
 * the products' worst case (every pair of products at its largest, which saturates u8s8's
 * 16-bit pair sums on CPUs without VNNI).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { DataType, GraphBuilder } from './graph.ts';
import { defaultInt8Kernel, int8KernelFor, type Int8Kernel } from './int8-kernel.ts';
import { linearFromData } from './layers.ts';
import { exactInt8Kernels } from '../../testing/shared.ts';

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
    assert.throws(() => defaultInt8Kernel(), /QWEN3_ASR_INT8_KERNEL="s8s8": use u8s8 or u8u8/);
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
