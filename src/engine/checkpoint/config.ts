/**
 * config.json of a Qwen3-ASR / Qwen3-ForcedAligner checkpoint, reduced to the numbers the
 * engine needs. Every dimension, id and flag comes from the file: the Python config classes'
 * defaults are Qwen3-Omni values and must never be used (spec §2.1).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface AudioEncoderConfig {
  numMelBins: number;
  dModel: number;
  layers: number;
  heads: number;
  ffnDim: number;
  outputDim: number;
  /** Conv stem channels (`downsample_hidden_size`). */
  convChannels: number;
  /** Half a conv chunk in mel frames; a conv chunk is 2·nWindow frames (1 s). */
  nWindow: number;
  /** Attention window in mel frames (800 = 8 s). */
  nWindowInfer: number;
  maxSourcePositions: number;
  layerNormEps: number;
}

export interface TextDecoderConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
}

export interface ModelConfig {
  /** `asr` for Qwen3-ASR, `aligner` for Qwen3-ForcedAligner (from thinker_config.model_type). */
  kind: 'asr' | 'aligner';
  /** Where the config came from (for error messages). */
  file: string;
  supportLanguages: string[];
  audioTokenId: number;
  audioStartTokenId: number;
  audioEndTokenId: number;
  audio: AudioEncoderConfig;
  text: TextDecoderConfig;
  /** Aligner only: number of timestamp classes of the head. */
  classifyNum?: number;
  /** Aligner only: `<timestamp>` token id. */
  timestampTokenId?: number;
  /** Aligner only: milliseconds per timestamp class. */
  timestampSegmentTime?: number;
}

function num(obj: Record<string, unknown>, key: string, where: string, file: string, fallback?: number): number {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`${file}: ${where}.${key} is missing`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${file}: ${where}.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function posInt(obj: Record<string, unknown>, key: string, where: string, file: string, fallback?: number): number {
  const v = num(obj, key, where, file, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${file}: ${where}.${key} must be a positive integer, got ${v}`);
  return v;
}

export function parseModelConfig(json: unknown, file: string): ModelConfig {
  if (!json || typeof json !== 'object') throw new ConfigError(`${file}: not a JSON object`);
  const top = json as Record<string, unknown>;
  const thinker = top.thinker_config as Record<string, unknown> | undefined;
  if (top.model_type !== 'qwen3_asr' || !thinker || typeof thinker !== 'object') {
    throw new ConfigError(
      `${file}: unknown model_type ${JSON.stringify(top.model_type)}; expected "qwen3_asr" with a thinker_config ` +
        `(a Qwen3-ASR or Qwen3-ForcedAligner checkpoint in the original, non "-hf" layout)`,
    );
  }
  const thinkerType = thinker.model_type;
  let kind: 'asr' | 'aligner';
  if (thinkerType === 'qwen3_asr') kind = 'asr';
  else if (typeof thinkerType === 'string' && thinkerType.includes('forced_aligner')) kind = 'aligner';
  else throw new ConfigError(`${file}: unknown thinker_config.model_type ${JSON.stringify(thinkerType)}`);

  const a = thinker.audio_config as Record<string, unknown> | undefined;
  const t = thinker.text_config as Record<string, unknown> | undefined;
  if (!a || typeof a !== 'object') throw new ConfigError(`${file}: thinker_config.audio_config is missing`);
  if (!t || typeof t !== 'object') throw new ConfigError(`${file}: thinker_config.text_config is missing`);
  const A = 'thinker_config.audio_config';
  const T = 'thinker_config.text_config';

  const act = a.activation_function ?? 'gelu';
  if (act !== 'gelu') throw new ConfigError(`${file}: ${A}.activation_function ${JSON.stringify(act)} is not supported (gelu only)`);
  const hiddenAct = t.hidden_act ?? 'silu';
  if (hiddenAct !== 'silu') throw new ConfigError(`${file}: ${T}.hidden_act ${JSON.stringify(hiddenAct)} is not supported (silu only)`);
  if (t.attention_bias === true) throw new ConfigError(`${file}: ${T}.attention_bias true is not supported`);

  const audio: AudioEncoderConfig = {
    numMelBins: posInt(a, 'num_mel_bins', A, file),
    dModel: posInt(a, 'd_model', A, file),
    layers: posInt(a, 'encoder_layers', A, file),
    heads: posInt(a, 'encoder_attention_heads', A, file),
    ffnDim: posInt(a, 'encoder_ffn_dim', A, file),
    outputDim: posInt(a, 'output_dim', A, file),
    convChannels: posInt(a, 'downsample_hidden_size', A, file),
    nWindow: posInt(a, 'n_window', A, file),
    nWindowInfer: posInt(a, 'n_window_infer', A, file),
    maxSourcePositions: posInt(a, 'max_source_positions', A, file),
    layerNormEps: 1e-5,
  };
  if (audio.dModel % audio.heads !== 0) throw new ConfigError(`${file}: ${A}.d_model ${audio.dModel} is not divisible by encoder_attention_heads ${audio.heads}`);
  if (audio.dModel % 2 !== 0) throw new ConfigError(`${file}: ${A}.d_model must be even (sinusoidal positions)`);

  const heads = posInt(t, 'num_attention_heads', T, file);
  const hiddenSize = posInt(t, 'hidden_size', T, file);
  const text: TextDecoderConfig = {
    vocabSize: posInt(t, 'vocab_size', T, file),
    hiddenSize,
    intermediateSize: posInt(t, 'intermediate_size', T, file),
    layers: posInt(t, 'num_hidden_layers', T, file),
    heads,
    kvHeads: posInt(t, 'num_key_value_heads', T, file),
    headDim: posInt(t, 'head_dim', T, file, hiddenSize / heads),
    rmsNormEps: num(t, 'rms_norm_eps', T, file, 1e-6),
    ropeTheta: num(t, 'rope_theta', T, file),
    maxPositionEmbeddings: posInt(t, 'max_position_embeddings', T, file, 65536),
    // transformers' PretrainedConfig default for tie_word_embeddings is true.
    tieWordEmbeddings: t.tie_word_embeddings === undefined ? true : t.tie_word_embeddings === true,
  };
  if (text.heads % text.kvHeads !== 0) throw new ConfigError(`${file}: ${T}.num_attention_heads ${text.heads} is not a multiple of num_key_value_heads ${text.kvHeads}`);
  if (text.headDim % 2 !== 0) throw new ConfigError(`${file}: ${T}.head_dim must be even (rotary embedding)`);
  if (audio.outputDim !== text.hiddenSize) {
    throw new ConfigError(`${file}: ${A}.output_dim ${audio.outputDim} differs from ${T}.hidden_size ${text.hiddenSize}`);
  }

  const cfg: ModelConfig = {
    kind,
    file,
    supportLanguages: Array.isArray(top.support_languages) ? (top.support_languages as string[]) : [],
    audioTokenId: posInt(thinker, 'audio_token_id', 'thinker_config', file),
    audioStartTokenId: posInt(thinker, 'audio_start_token_id', 'thinker_config', file),
    audioEndTokenId: posInt(thinker, 'audio_end_token_id', 'thinker_config', file),
    audio,
    text,
  };
  if (kind === 'aligner') {
    cfg.classifyNum = posInt(thinker, 'classify_num', 'thinker_config', file);
    cfg.timestampTokenId = posInt(top, 'timestamp_token_id', '(top level)', file);
    cfg.timestampSegmentTime = num(top, 'timestamp_segment_time', '(top level)', file);
  }
  return cfg;
}

export function loadModelConfig(dir: string): ModelConfig {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseModelConfig(json, file);
}

/** Audio tokens for F mel frames: 13 per full 100-frame chunk, ceil(r/8) for a tail of r frames (spec §5.5). */
export function audioTokenCount(frames: number, chunkFrames = 100): number {
  const full = Math.floor(frames / chunkFrames);
  const r = frames % chunkFrames;
  return full * convOutLength(chunkFrames) + convOutLength(r);
}

/** Output length of the three stride-2 convolutions (kernel 3, padding 1) for `n` input frames. */
export function convOutLength(n: number): number {
  let x = n;
  for (let i = 0; i < 3; i++) x = x === 0 ? 0 : Math.floor((x - 1) / 2) + 1;
  return x;
}
