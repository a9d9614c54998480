/**
 * What every checkpoint of the Qwen3-ASR family shares (the official code calls it the
 * "thinker"): config, tokenizer, feature extractor, audio encoder and text decoder. The ASR
 * model and the forced aligner differ only in their output head and in how they use it.
 */
import { loadFeatureConfig, type FeatureConfig } from '../../audio/features.ts';
import { AudioEncoder } from './audio-encoder.ts';
import { loadModelConfig, type ModelConfig } from '../checkpoint/config.ts';
import { type SessionOptions } from '../runtime/session.ts';
import { Scratch } from '../runtime/scratch.ts';
import { stopQuantizeHelpers, useQuantizeHelpers } from '../runtime/quantize-helpers.ts';
import { intraOpThreads } from '../runtime/cpu-threads.ts';
import { SafetensorsStore } from '../checkpoint/safetensors.ts';
import { TextDecoder, type DecoderLoadOptions } from './text-decoder.ts';
import { precisionsFor, type PartPrecisions } from './precision.ts';
import { QwenTokenizer } from '../text/tokenizer.ts';
import type { Device, Quantization } from '../types.ts';

export type { PartPrecisions };

export interface ModelLoadOptions {
  device: Device;
  quant: Quantization;
  threads: number;
  /** Override the precision of single parts (defaults follow `quant`; see precisionsFor). */
  precisions?: Partial<PartPrecisions>;
  /** Compiled-graph cache folder; false disables it (default: see runtime/session.ts). */
  cacheDir?: string | false;
  /** Whether cached sessions map ONNX Runtime's prepacked weights from the cache (default: QWEN3_ASR_PREPACKED_WEIGHTS, off; runtime/session.ts SessionOptions.prepacked). */
  prepacked?: boolean;
  log?: (msg: string) => void;
  /** Called as the build of each part (its graphs and sessions) starts: its name, its place from 1, how many parts. */
  onPart?: (part: 'audio encoder' | 'text decoder', index: number, parts: number) => void;
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
  decoderOptions: (config: ModelConfig, precisions: PartPrecisions) => Omit<DecoderLoadOptions, 'stepGraphRows'>,
): Promise<ThinkerParts> {
  const started = performance.now();
  const config = loadModelConfig(dir);
  if (config.kind !== kind) {
    const name = kind === 'asr' ? 'Qwen3-ASR' : 'Qwen3-ForcedAligner';
    throw new Error(`${config.file}: this is an ${config.kind} checkpoint, not a ${name} model`);
  }
  const tokenizer = QwenTokenizer.load(dir);
  const features = loadFeatureConfig(dir, config.audio.numMelBins);
  const store = SafetensorsStore.openDir(dir);
  opts.log?.(`${dir}: tokenizer and configuration read in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const precisions = { ...precisionsFor(opts.quant, intraOpThreads(opts.threads)), ...opts.precisions };
  // One set of scratch buffers for every graph this load builds, let go when it is done.
  const scratch = new Scratch();
  useQuantizeHelpers(intraOpThreads(opts.threads)); // quantising on as many threads as the sessions run
  const session: SessionOptions = { device: opts.device, threads: opts.threads, cacheDir: opts.cacheDir, cacheSource: { dir, files: store.files, code: [] }, scratch, log: opts.log, prepacked: opts.prepacked };
  try {
    const t0 = Date.now();
    opts.onPart?.('audio encoder', 1, 2);
    const encoder = await AudioEncoder.load(store, config.audio, { precision: precisions.encoder, int8Kernel: precisions.int8Kernel }, session);
    // Which integer kernel the int8 products use (u8u8 on CPUs without VNNI; runtime/int8-kernel.ts).
    const kernel = precisions.encoder === 'w8a8' || precisions.kvCache === 'int8' ? `, ${precisions.int8Kernel} integer kernel` : '';
    opts.log?.(`${dir}: audio encoder ready (${precisions.encoder}${kernel}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const t1 = Date.now();
    opts.onPart?.('text decoder', 2, 2);
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
