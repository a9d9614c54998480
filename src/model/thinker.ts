/**
 * What every checkpoint of the Qwen3-ASR family shares (the official code calls it the
 * "thinker"): config, tokenizer, feature extractor, audio encoder and text decoder. The ASR
 * model and the forced aligner differ only in their output head and in how they use it.
 */
import { loadFeatureConfig, type FeatureConfig } from '../audio/features.ts';
import { AudioEncoder } from './audio-encoder.ts';
import { loadModelConfig, type ModelConfig } from './config.ts';
import { type WeightPrecision } from './onnx/layers.ts';
import { type SessionOptions } from './onnx/session.ts';
import { SafetensorsStore } from './safetensors.ts';
import { TextDecoder, type DecoderLoadOptions, type KvCacheFormat } from './text-decoder.ts';
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
}

/**
 * Which weights a quantisation setting applies to (README "Precision and the default").
 * - Decoding one token streams all decoder weights through one-row products: block-quantised
 *   MatMulNBits (`decoder`, `head`) is fastest there, and the only choice with int4 weights.
 * - Prompts, the audio encoder and steps of large batches are many-row products: int8
 *   weights with int8 per-row activations (`w8a8`, MatMulInteger on the CPU's int8 matrix
 *   units) are 2-5x faster than MatMulNBits there (int4 MatMulNBits ran 1.7B prompts at only
 *   46 tokens/s against 152 for W8A8) and nearly flat from 1 to 16 rows, so both `int8` and
 *   `int4` build a second decoder graph (`batch`) for them, at the cost of a second, int8
 *   copy of the decoder weights.
 * - Attention reads the whole KV cache on every step: in fp32, at batch 8 and 800 positions,
 *   1.5 GB — about the bytes of the 1.7B int8 weights, more than twice 0.6B's. The quantised
 *   settings keep it in int8 with a scale per position and head.
 */
export function precisionsFor(quant: Quantization): PartPrecisions {
  switch (quant) {
    case 'none':
      return { encoder: 'fp32', decoder: 'fp32', head: 'fp32', batch: 'fp32', batchHead: 'fp32', kvCache: 'fp32' };
    case 'int8':
      return { encoder: 'w8a8', decoder: 'int8', head: 'int8', batch: 'w8a8', batchHead: 'w8a8', kvCache: 'int8' };
    case 'int4':
      return { encoder: 'w8a8', decoder: 'int4', head: 'int4', batch: 'w8a8', batchHead: 'w8a8', kvCache: 'int8' };
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
  const precisions = { ...precisionsFor(opts.quant), ...opts.precisions };
  const session: SessionOptions = { device: opts.device, threads: opts.threads, cacheDir: opts.cacheDir, cacheSource: { dir, files: store.files } };
  const t0 = Date.now();
  const encoder = await AudioEncoder.load(store, config.audio, { precision: precisions.encoder }, session);
  opts.log?.(`${dir}: audio encoder ready (${precisions.encoder}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const t1 = Date.now();
  const dec = decoderOptions(config, precisions);
  const decoder = await TextDecoder.load(store, config.text, dec, session);
  opts.log?.(`${dir}: text decoder ready (steps ${dec.linear.precision} + head ${dec.head.precision}, batches ${dec.batchLinear?.precision ?? dec.linear.precision} + head ${dec.batchHead?.precision ?? dec.head.precision}, ${dec.kvCache ?? 'fp32'} KV cache) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
  return { config, tokenizer, features, encoder, decoder, precisions };
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
