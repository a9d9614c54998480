/**
 * Which of ONNX Runtime's integer matrix kernels the int8 products are built for.
 *
 * Every integer product here (W8A8 projections, the int8 KV cache's attention) takes its
 * A side (activations, queries, probabilities) as uint8 and its B side (weights, cached keys
 * and values) as int8 values in [-127, 127]. ONNX Runtime's CPU kernels multiply uint8 by
 * int8 ("u8s8") with the CPU's u8·s8 dot-product instruction: on CPUs with VNNI (AVX-512
 * VNNI, AVX-VNNI) or AMX that accumulates in 32 bits, exactly. Without them (AVX2 or AVX-512
 * without VNNI: Intel before Cascade Lake / Ice Lake, AMD before Zen 4) the kernel uses
 * vpmaddubsw, which adds each pair of u8·s8 products into a *saturating* int16: 2 · 255 · 127
 * overflows it, and the results are silently wrong (measured on an AMD EPYC Zen 3 VM: a
 * [1024 × 3072] product off by up to 140,222 of an exact integer result; tiny-a's int8 logits
 * 38% off fp32). ONNX Runtime's quantisation tool works around this with 7-bit weights
 * ("reduce_range"), which loses a bit of precision. Here the B side is stored instead as
 * uint8 with zero point 128 (the same values, offset), so the kernel is "u8u8", which widens to
 * 16 bits before multiplying and is exact on every x86 CPU: the same integers u8s8 computes
 * on a VNNI CPU. u8s8 stays where it is exact (VNNI and AMX): the benchmark figures of such
 * machines (docs/benchmarks.md) are of that form.
 *
 * - u8s8: B as int8.
 * - u8u8: B as uint8 = value + 128, with a B zero point of 128.
 */
import { parseCpuFlags } from './cpu-flags.ts';

export type Int8Kernel = 'u8s8' | 'u8u8';

export const INT8_KERNELS: readonly Int8Kernel[] = ['u8s8', 'u8u8'];

/** CPU flags (as /proc/cpuinfo names them) with which ONNX Runtime's u8s8 kernels accumulate exactly. */
const EXACT_U8S8_FLAGS = ['avx512_vnni', 'avx_vnni', 'amx_int8'];

/**
 * The kernel for a CPU: on x86-64, u8s8 only when /proc/cpuinfo's flags show VNNI or AMX,
 * u8u8 otherwise (also when the flags are unknown: exact everywhere). Other architectures
 * keep u8s8: ONNX Runtime's ARM64 kernels are not known to saturate, though this is unchecked
 * on ARM hardware — int8-kernel.test.ts's worst-case product checks it wherever the tests run.
 */
export function int8KernelFor(arch: string, cpuinfo: string | undefined): Int8Kernel {
  if (arch !== 'x64' && arch !== 'ia32') return 'u8s8';
  const flags = parseCpuFlags(cpuinfo);
  return EXACT_U8S8_FLAGS.some((f) => flags.has(f)) ? 'u8s8' : 'u8u8';
}

/**
 * The kernel a graph with W8A8 products was asked to store them for; the loader chooses it
 * (thinker/precision.ts defaultInt8Kernel), so a graph's bytes depend only on its inputs.
 */
export function requireInt8Kernel(kernel: Int8Kernel | undefined): Int8Kernel {
  if (!kernel) throw new Error('W8A8 products need their integer kernel (u8s8 or u8u8) chosen by the loader');
  return kernel;
}

/** The B side's zero point: what is added to an int8 value to store it for the kernel. */
export function int8Offset(kernel: Int8Kernel): 0 | 128 {
  return kernel === 'u8u8' ? 128 : 0;
}
