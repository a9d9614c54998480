/**
 * Qwen3-ASR end to end for a batch of audio segments: log-mel -> audio encoder -> prompt
 * (context, optional forced language) -> decoder with greedy generation -> decode -> parse.
 *
 * The model knows nothing of files, HTTP or segmentation: it takes 16 kHz mono samples.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadFeatureConfig, logMelSpectrogram, type FeatureConfig } from '../audio/features.ts';
import { AudioEncoder, type MelFeatures } from './audio-encoder.ts';
import { loadModelConfig, type ModelConfig } from './config.ts';
import { generateGreedy, type GenerationOutput } from './generate.ts';
import { type WeightPrecision } from './onnx/layers.ts';
import { type SessionOptions } from './onnx/session.ts';
import { parseAsrOutput } from './output-parser.ts';
import { buildAsrPrompt } from './prompt.ts';
import { SafetensorsStore } from './safetensors.ts';
import { embedPrompt, TextDecoder } from './text-decoder.ts';
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
  /** Decoder projections for generation steps (a few rows). */
  decoder: WeightPrecision;
  /** Decoder projections for prompts (many rows); a second graph when it differs from `decoder`. */
  prefill: WeightPrecision;
  head: WeightPrecision;
}

/**
 * Which weights a quantisation setting applies to (README "Precision and the default").
 * - Decoding one token streams all decoder weights through one-row products: block-quantised
 *   MatMulNBits (`decoder`, `head`) is fastest there.
 * - Prompts and the audio encoder are many-row products: int8 weights with int8 per-row
 *   activations (`w8a8`, MatMulInteger on the CPU's int8 matrix units) are 2-5x faster than
 *   MatMulNBits there, so `int8` builds a second decoder graph (`prefill`) for prompts. That
 *   costs a second copy of the decoder weights in int8; `int4` is the memory-lean setting and
 *   keeps one graph.
 */
export function precisionsFor(quant: Quantization): PartPrecisions {
  switch (quant) {
    case 'none':
      return { encoder: 'fp32', decoder: 'fp32', prefill: 'fp32', head: 'fp32' };
    case 'int8':
      return { encoder: 'w8a8', decoder: 'int8', prefill: 'w8a8', head: 'int8' };
    case 'int4':
      return { encoder: 'w8a8', decoder: 'int4', prefill: 'int4', head: 'int4' };
  }
}

export interface AsrRequest {
  /** 16 kHz mono float32. */
  samples: Float32Array;
  /** Canonical language name to force, or undefined to detect. */
  language?: string;
  context?: string;
  maxNewTokens: number;
}

export interface AsrResult {
  /** Decoded output before parsing (special tokens skipped). */
  raw: string;
  language: string;
  text: string;
  /** Generated ids, with the stop token when one was produced. */
  tokenIds: number[];
  truncated: boolean;
  audioTokens: number;
  promptIds: number[];
  firstLogits?: Float32Array;
}

export interface TranscribeBatchOptions {
  signal?: AbortSignal;
  keepFirstLogits?: boolean;
  prefillChunk?: number;
  /** Benchmarks: decode exactly maxNewTokens (random weights emit arbitrary tokens). */
  ignoreStopTokens?: boolean;
  onStep?: (generated: number[][]) => void;
}

/** Stop ids: <|im_end|> and <|endoftext|> (the official wrapper's list), plus generation_config's eos ids. */
export function stopTokenIds(dir: string, tok: QwenTokenizer): Set<number> {
  const ids = new Set<number>();
  for (const t of ['<|im_end|>', '<|endoftext|>']) {
    const id = tok.tokenToId(t);
    if (id !== undefined) ids.add(id);
  }
  const genFile = join(dir, 'generation_config.json');
  if (existsSync(genFile)) {
    try {
      const eos = JSON.parse(readFileSync(genFile, 'utf8')).eos_token_id;
      for (const id of Array.isArray(eos) ? eos : eos !== undefined ? [eos] : []) if (Number.isInteger(id)) ids.add(id);
    } catch {
      throw new Error(`${genFile}: not valid JSON`);
    }
  }
  if (ids.size === 0) throw new Error(`${dir}: no stop token (<|im_end|>) in the tokenizer files`);
  return ids;
}

export class AsrModel {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    readonly tokenizer: QwenTokenizer,
    readonly features: FeatureConfig,
    readonly encoder: AudioEncoder,
    readonly decoder: TextDecoder,
    readonly stopIds: Set<number>,
    readonly precisions: PartPrecisions,
  ) {}

  static async load(dir: string, opts: ModelLoadOptions): Promise<AsrModel> {
    const config = loadModelConfig(dir);
    if (config.kind !== 'asr') throw new Error(`${config.file}: this is a ${config.kind} checkpoint, not a Qwen3-ASR model`);
    const tokenizer = QwenTokenizer.load(dir);
    const features = loadFeatureConfig(dir);
    const store = SafetensorsStore.openDir(dir);
    const precisions = { ...precisionsFor(opts.quant), ...opts.precisions };
    const session: SessionOptions = { device: opts.device, threads: opts.threads, cacheDir: opts.cacheDir, cacheSource: { dir, files: store.files } };
    const t0 = Date.now();
    const encoder = await AudioEncoder.load(store, config.audio, { precision: precisions.encoder }, session);
    opts.log?.(`audio encoder ready (${precisions.encoder}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const t1 = Date.now();
    const headWeight = config.text.tieWordEmbeddings ? 'thinker.model.embed_tokens.weight' : 'thinker.lm_head.weight';
    const decoder = await TextDecoder.load(
      store,
      config.text,
      { linear: { precision: precisions.decoder }, prefillLinear: { precision: precisions.prefill }, head: { precision: precisions.head }, headRows: config.text.vocabSize, headWeight },
      session,
    );
    opts.log?.(`text decoder ready (${precisions.decoder}, prompts ${precisions.prefill}, head ${precisions.head}) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    return new AsrModel(dir, config, tokenizer, features, encoder, decoder, stopTokenIds(dir, tokenizer), precisions);
  }

  /** Log-mel features of 16 kHz samples. */
  melFeatures(samples: Float32Array): MelFeatures {
    return logMelSpectrogram(samples, this.features);
  }

  /** Transcribes a batch of segments together (one encoder batch, one decoder batch). */
  async transcribe(requests: AsrRequest[], opts: TranscribeBatchOptions = {}): Promise<AsrResult[]> {
    if (requests.length === 0) return [];
    const feats = requests.map((r) => this.melFeatures(r.samples));
    const audio = await this.encoder.encode(feats);
    const H = this.config.text.hiddenSize;
    const prompts = requests.map((r, i) =>
      buildAsrPrompt(this.tokenizer, { context: r.context, language: r.language, audioTokens: audio[i].length / H }),
    );
    const inputs = prompts.map((p, i) => ({
      embeds: embedPrompt(this.decoder, p.ids, this.config.audioTokenId, audio[i]),
      length: p.ids.length,
      maxNewTokens: Math.max(1, Math.min(requests[i].maxNewTokens, this.config.text.maxPositionEmbeddings - p.ids.length)),
    }));
    const outs: GenerationOutput[] = await generateGreedy(this.decoder, inputs, {
      stopIds: opts.ignoreStopTokens ? new Set<number>() : this.stopIds,
      signal: opts.signal,
      onStep: opts.onStep,
      keepFirstLogits: opts.keepFirstLogits,
      prefillChunk: opts.prefillChunk,
    });
    return outs.map((o, i) => {
      const raw = this.tokenizer.decode(o.ids, { skipSpecialTokens: true });
      const parsed = parseAsrOutput(raw, requests[i].language);
      return {
        raw,
        language: parsed.language,
        text: parsed.text,
        tokenIds: o.ids,
        truncated: o.stopReason === 'max_new_tokens',
        audioTokens: audio[i].length / H,
        promptIds: prompts[i].ids,
        firstLogits: o.firstLogits,
      };
    });
  }

  async release(): Promise<void> {
    await this.encoder.release();
    await this.decoder.release();
  }
}
