/**
 * Which weights and cache formats a quantisation setting chooses for each part of the model,
 * and how many sequences a generation step may have to run on int4's step graph.
 */
import { type WeightPrecision } from '../graphs/layers.ts';
import { thisCpu } from '../runtime/cpu-flags.ts';
import { intraOpThreads } from '../runtime/cpu-threads.ts';
import { defaultInt8Kernel, type Int8Kernel } from '../runtime/int8-kernel.ts';
import type { KvCacheFormat } from '../runtime/kv-cache.ts';
import type { Quantization } from '../types.ts';

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
  /** How past keys and values are stored between passes (text-decoder.ts KvCacheFormat). */
  kvCache: KvCacheFormat;
  /** The integer kernel W8A8 products and the int8 cache are stored for (runtime/int8-kernel.ts): this CPU's. */
  int8Kernel: Int8Kernel;
  /**
   * With two decoder graphs (`decoder` / `head` other than `batch` / `batchHead`): generation
   * steps of at most this many sequences run on the first, the step graph — this CPU's and
   * thread count's (text-decoder.ts stepGraphRowsFor: 2 with AMX, else 3 on one thread and 6
   * on more).
   */
  stepGraphRows: number;
}

/**
 * Which weights a quantisation setting applies to (README "Precision and the default").
 * - Prompts, the audio encoder and steps of batches are many-row products: int8 weights with
 *   int8 per-row activations (`w8a8`, MatMulInteger on the CPU's int8 dot-product units) are
 *   2-5x faster than block-quantised MatMulNBits there (int4 MatMulNBits ran 1.7B prompts at
 *   only 46 tokens/s against 152 for W8A8) and nearly flat in the row count.
 * - Decoding one token streams all decoder weights through one-row products. With 8-bit
 *   weights W8A8 is as fast there as MatMulNBits int8 and faster from 2 rows on (seventh
 *   session: a chain of 100 MB of weights, held in that VM's 480 MB L3, ms for 1 / 3 / 8
 *   rows: W8A8 2.71–2.87 / 2.85–2.90 / 3.39–3.51, MatMulNBits int8 2.83–3.26 / 4.15–4.71 /
 *   6.66–6.78; 1.7B steps from memory at 275 positions, 1 row 77–79 ms vs 84, 3 rows 86–88
 *   vs 113–116), so `int8` is W8A8 throughout and compiles one decoder graph. 4-bit weights exist only as MatMulNBits, which
 *   streams half the bytes: it wins for one row (int4 1.7B 69 ms vs 76 with W8A8), so `int4`
 *   builds a second decoder graph (`decoder`, `head`) for steps of 1–6 sequences (1–3 on one
 *   thread, 1–2 with AMX, whose W8A8 products are nearly flat in the row count;
 *   stepGraphRowsFor), at the cost
 *   of a second, 4-bit copy of the decoder weights.
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
 * so where the two cross depends on the CPU. Step graph against batch graph, int4 steps at
 * 275 positions, ms, alternating runs in one process:
 * - AMX (the seventh session's Intel VM): one row 29.7–30.0 vs 34.1 (0.6B) and 68.6–69.0 vs
 *   75.6–76.4 (1.7B); two rows even (0.6B 38.7–39.4 vs 38.8–39.9, 1.7B 80.7–82.2 vs
 *   78.7–82.0); three rows for the batch graph (0.6B 45.9–46.0 vs 42.7, 1.7B 100.1–101.4 vs
 *   82.3–86.0): up to 2 rows.
 * - AVX-512 VNNI without AMX (the AMD EPYC Zen 5 VM), one thread (eleventh session; medians
 *   of 24 steps, 3–5 runs each): three rows for the step graph (0.6B 32.7–36.3 vs 40.5–42.1,
 *   1.7B 79–94 vs 93–127); four even (0.6B 42.2–54.2 vs 42.7–46.2, 1.7B 92–95 vs 98–104); six
 *   and eight for the batch graph (1.7B 122–149 vs 112–115, 157–183 vs 137–140): up to 3 rows.
 *   (On the ninth session's AVX2 VM the weight products of a 0.6B step alone took 40–49 ms
 *   for 3 rows as 4-bit MatMulNBits against 49–57 as W8A8.)
 * - The same VM on two threads (fourteenth session; medians of 24 steps, three alternating
 *   rounds): MatMulNBits gains more from the second core than W8A8. 0.6B: 1 row 17.5–20.1 vs
 *   25.1–28.4, 3 rows 26.9–32.1 vs 34.5–43.5, 5 rows 35.0–38.1 vs 38.9–39.4, 6 even
 *   (46.9–50.9 vs 49.0–54.1), 8 for the batch graph (48.8–50.7 vs 46.3–46.5); 1.7B: 1 row
 *   31.9–33.4 vs 48.5–53.3, 3 rows 47.4–50.0 vs 70.8–73.6, 5 rows 66.3–68.9 vs 81.6–93.7, 6 rows
 *   84.7–93.0 vs 95.4–98.7, 8 for the batch graph (96.8–104.4 vs 88.3–92.8): up to 6 rows.
 * The AMX figures are one-thread figures too (ONNX Runtime's default then); more threads were
 * not measured there.
 */
export function stepGraphRowsFor(cpuFlags: ReadonlySet<string>, threads: number): number {
  if (cpuFlags.has('amx_int8')) return 2;
  return threads >= 2 ? 6 : 3;
}

