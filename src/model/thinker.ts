/**
 * What every checkpoint of the Qwen3-ASR family shares (the official code calls it the
 * "thinker"): config, tokenizer, feature extractor, audio encoder and text decoder. The ASR
 * model and the forced aligner differ only in their output head and in how they use it.
 */
import { loadFeatureConfig, type FeatureConfig } from '../audio/features.ts';
import { AudioEncoder } from './audio-encoder.ts';
import { loadModelConfig, type ModelConfig } from './config.ts';
import { type WeightPrecision } from './onnx/layers.ts';
import { defaultInt8Kernel, type Int8Kernel } from './onnx/int8-kernel.ts';
import { type SessionOptions } from './onnx/session.ts';
import { Scratch } from './onnx/scratch.ts';
import { stopQuantizeHelpers, useQuantizeHelpers } from './quantize-helpers.ts';
import { thisCpu } from './onnx/cpu-flags.ts';
import { intraOpThreads } from './onnx/cpu-threads.ts';
import { SafetensorsStore } from './safetensors.ts';
import { stepGraphRowsFor, TextDecoder, type DecoderLoadOptions, type KvCacheFormat } from './text-decoder.ts';
import { QwenTokenizer } from './tokenizer.ts';
import type { Device, Quantization } from '../pipeline/types.ts';

export interface ModelLoadOptions {
  device: Device;
  quant: Quantization;
  threads: number;
  /** Override the precision of single parts (defaults follow `quant`; see precisionsFor). */
  precisions?: Partial<PartPrecisions>;
  /** Compiled-graph cache folder; false disables it (default: see onnx/session.ts). */
  cacheDir?: string | false;
  log?: (msg: string) => void;
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
  /** How past keys and values are stored between passes (text-decoder.ts KvCacheFormat). */
  kvCache: KvCacheFormat;
  /** The integer kernel W8A8 products and the int8 cache are stored for (onnx/int8-kernel.ts): this CPU's. */
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

export interface ThinkerParts {
  config: ModelConfig;
  tokenizer: QwenTokenizer;
  features: FeatureConfig;
  encoder: AudioEncoder;
  decoder: TextDecoder;
  precisions: PartPrecisions;
}

/**
 * Loads a checkpoint folder of the expected kind; `decoderOptions` picks the output head and
 * the decoder precisions from the parsed config.
 */
export async function loadThinker(
  dir: string,
  kind: ModelConfig['kind'],
  opts: ModelLoadOptions,
  decoderOptions: (config: ModelConfig, precisions: PartPrecisions) => DecoderLoadOptions,
): Promise<ThinkerParts> {
  const config = loadModelConfig(dir);
  if (config.kind !== kind) {
    const name = kind === 'asr' ? 'Qwen3-ASR' : 'Qwen3-ForcedAligner';
    throw new Error(`${config.file}: this is an ${config.kind} checkpoint, not a ${name} model`);
  }
  const tokenizer = QwenTokenizer.load(dir);
  const features = loadFeatureConfig(dir);
  const store = SafetensorsStore.openDir(dir);
  const precisions = { ...precisionsFor(opts.quant, intraOpThreads(opts.threads)), ...opts.precisions };
  // One set of scratch buffers for every graph this load builds, let go when it is done.
  const scratch = new Scratch();
  useQuantizeHelpers(intraOpThreads(opts.threads)); // quantising on as many threads as the sessions run
  const session: SessionOptions = { device: opts.device, threads: opts.threads, cacheDir: opts.cacheDir, cacheSource: { dir, files: store.files }, scratch };
  try {
    const t0 = Date.now();
    const encoder = await AudioEncoder.load(store, config.audio, { precision: precisions.encoder, int8Kernel: precisions.int8Kernel }, session);
    // Which integer kernel the int8 products use (u8u8 on CPUs without VNNI; onnx/int8-kernel.ts).
    const kernel = precisions.encoder === 'w8a8' || precisions.kvCache === 'int8' ? `, ${precisions.int8Kernel} integer kernel` : '';
    opts.log?.(`${dir}: audio encoder ready (${precisions.encoder}${kernel}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const t1 = Date.now();
    const dec = { ...decoderOptions(config, precisions), int8Kernel: precisions.int8Kernel, stepGraphRows: precisions.stepGraphRows };
    const decoder = await TextDecoder.load(store, config.text, dec, session);
    const passes = decoder.twoGraphs
      ? `steps of 1–${decoder.stepGraphRows} sequences ${dec.linear.precision} + head ${dec.head.precision}, other passes ${dec.batchLinear?.precision} + head ${dec.batchHead?.precision}`
      : `${dec.linear.precision} + head ${dec.head.precision}`;
    opts.log?.(`${dir}: text decoder ready (${passes}, ${dec.kvCache ?? 'fp32'} KV cache) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    return { config, tokenizer, features, encoder, decoder, precisions };
  } finally {
    scratch.release();
    await stopQuantizeHelpers(); // they hold on to the scratch buffers
  }
}

/** Base of the ASR model and the forced aligner: the loaded parts and their release. */
export class ThinkerModel {
  readonly config: ModelConfig;
  readonly tokenizer: QwenTokenizer;
  readonly features: FeatureConfig;
  readonly encoder: AudioEncoder;
  readonly decoder: TextDecoder;
  readonly precisions: PartPrecisions;

  protected constructor(
    readonly dir: string,
    parts: ThinkerParts,
  ) {
    ({ config: this.config, tokenizer: this.tokenizer, features: this.features, encoder: this.encoder, decoder: this.decoder, precisions: this.precisions } = parts);
  }

  async release(): Promise<void> {
    await this.encoder.release();
    await this.decoder.release();
  }
}
