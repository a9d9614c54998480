/**
 * Which weights and cache formats a quantisation setting chooses for each part of the model,
 * and how many sequences a generation step may have to run on int4's step graph.
 */
import { type WeightPrecision } from '../graphs/layers.ts';
import { thisCpu } from '../runtime/cpu-flags.ts';
import { intraOpThreads } from '../runtime/cpu-threads.ts';
import { int8KernelFor, type Int8Kernel } from '../runtime/int8-kernel.ts';
import { readSetting } from '../../settings/settings.ts';
import type { KvCacheFormat } from '../runtime/kv-cache.ts';
import type { Quantization } from '../types.ts';

let detected: Int8Kernel | undefined;

/**
 * This machine's integer kernel: `QWEN3_ASR_INT8_KERNEL` (u8s8 or u8u8) when set, else
 * int8KernelFor this CPU (runtime/int8-kernel.ts).
 */
export function defaultInt8Kernel(): Int8Kernel {
  const chosen = readSetting('int8Kernel');
  if (chosen) return chosen;
  detected ??= int8KernelFor(process.arch, thisCpu().cpuinfo);
  return detected;
}

export interface PartPrecisions {
  encoder: WeightPrecision;
  /** Decoder projections for passes of a few rows (generation steps of small batches). */
  decoder: WeightPrecision;
  /** Output head for those passes. */
  head: WeightPrecision;
  /**
   * Decoder projections and head for passes of many rows (prompts, steps of large batches);
   * a second graph when they differ from `decoder` / `head`.
   */
  batch: WeightPrecision;
  batchHead: WeightPrecision;
  /** How past keys and values are stored between passes (runtime/kv-cache.ts KvCacheFormat). */
  kvCache: KvCacheFormat;
  /** The integer kernel W8A8 products and the int8 cache are stored for (runtime/int8-kernel.ts): this CPU's. */
  int8Kernel: Int8Kernel;
  /**
   * With two decoder graphs (`decoder` / `head` other than `batch` / `batchHead`): generation
   * steps of at most this many sequences run on the first, the step graph — this CPU's and
   * thread count's (stepGraphRowsFor below: 2 with AMX, else 3 on one thread and 6 on more).
   */
  stepGraphRows: number;
}

/**
 * Which weights a quantisation setting applies to (README "Precision and the default").
 * - Prompts, the audio encoder and steps of batches are many-row products: int8 weights with
 *   int8 per-row activations (`w8a8`, MatMulInteger on the CPU's int8 dot-product units) are
 *   2-5x faster than block-quantised MatMulNBits there and nearly flat in the row count (1.7B
 *   prompts: 152 tokens/s against 46 with int4 MatMulNBits, on an Intel Xeon VM with AMX,
 *   2 vCPUs).
 * - Decoding one token streams all decoder weights through one-row products. With 8-bit
 *   weights W8A8 is as fast there as MatMulNBits int8 and faster from 2 rows on (1.7B steps at
 *   275 positions: 1 row 77–79 ms against 84, 3 rows 86–88 against 113–116, on an Intel Xeon
 *   VM with AMX, 2 vCPUs), so `int8` is W8A8 throughout and compiles one decoder graph.
 *   4-bit weights exist only as MatMulNBits, which streams half the bytes: it wins for few
 *   rows (int4 1.7B one-row steps 69 ms against 76 with W8A8, same VM), so `int4` builds a
 *   second decoder graph (`decoder`, `head`) for steps of up to 6 sequences (3 on one thread,
 *   2 with AMX, whose W8A8 products are nearly flat in the row count; stepGraphRowsFor), at
 *   the cost of a second, 4-bit copy of the decoder weights.
 * - Attention reads the whole KV cache on every step: in fp32, at batch 8 and 800 positions,
 *   1.5 GB — about the bytes of the 1.7B int8 weights, more than twice 0.6B's. The quantised
 *   settings keep it in int8 with a scale per position and head.
 */
export function precisionsFor(quant: Quantization, threads = intraOpThreads(0)): PartPrecisions {
  const int8Kernel = defaultInt8Kernel();
  const stepGraphRows = stepGraphRowsFor(thisCpu().flags, threads);
  switch (quant) {
    case 'none':
      return { encoder: 'fp32', decoder: 'fp32', head: 'fp32', batch: 'fp32', batchHead: 'fp32', kvCache: 'fp32', int8Kernel, stepGraphRows };
    case 'int8':
      return { encoder: 'w8a8', decoder: 'w8a8', head: 'w8a8', batch: 'w8a8', batchHead: 'w8a8', kvCache: 'int8', int8Kernel, stepGraphRows };
    case 'int4':
      return { encoder: 'w8a8', decoder: 'int4', head: 'int4', batch: 'w8a8', batchHead: 'w8a8', kvCache: 'int8', int8Kernel, stepGraphRows };
  }
}

/**
 * Generation steps of at most this many rows run on the step graph (when there is one:
 * QUANT=int4, whose steps use 4-bit MatMulNBits); every other pass (steps of larger batches,
 * prompts) on the batch graph (W8A8). MatMulNBits costs more with every row; W8A8 costs less
 * per row the more rows share its weights, and with AMX it is nearly flat in the row count,
 * so where the two cross depends on the CPU and the thread count. Step graph against batch
 * graph, int4 steps at 275 positions, alternating runs (docs/benchmarks.md has the full
 * figures):
 * - AMX (an Intel Xeon VM with AMX, 2 vCPUs, one thread): two rows are even, three favour the
 *   batch graph (1.7B 100–101 ms against 82–86): up to 2 rows.
 * - AVX-512 VNNI without AMX (an AMD EPYC Zen 5 VM, 2 vCPUs), one thread: three rows favour
 *   the step graph (0.6B 33–36 ms against 41–42), four are even, six favour the batch graph
 *   (1.7B 122–149 ms against 112–115): up to 3 rows. Without VNNI (an AMD EPYC Zen 3 VM, AVX2,
 *   2 vCPUs) the 4-bit weight products of 3 rows are faster than W8A8's too.
 * - The same Zen 5 VM on two threads: MatMulNBits gains more from the second core than W8A8;
 *   six rows are even, eight favour the batch graph (1.7B 97–104 ms against 88–93): up to 6
 *   rows.
 * With AMX only one thread is measured, so AMX keeps 2 rows at any thread count.
 */
export function stepGraphRowsFor(cpuFlags: ReadonlySet<string>, threads: number): number {
  if (cpuFlags.has('amx_int8')) return 2;
  return threads >= 2 ? 6 : 3;
}

