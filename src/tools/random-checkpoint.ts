/**
 * Full-size random checkpoints in the official Qwen3-ASR / Qwen3-ForcedAligner format, so that
 * loading, conversion and inference speed can be measured without the real weights.
 *
 * What is written matches the released snapshots: `config.json`, bf16 safetensors under the official
 * tensor names and shapes (spec §3.2), the 1.7B model split into two shards with
 * `model.safetensors.index.json`, `thinker.lm_head.weight` stored even when the head is tied to the
 * embeddings (as the ASR releases do), and the tokenizer/processor files copied from a snapshot.
 *
 * Values are random but scaled like a real initialisation (linear and conv weights N(0, 1/fan_in),
 * norm weights 1 + N(0, 0.05²), biases N(0, 0.02²), embeddings N(0, initializer_range²)), so every
 * activation stays finite. Each tensor is drawn from its own stream, seeded by (seed, tensor name):
 * the values do not depend on tensor order or sharding, and a tied head is byte-identical to the
 * embedding it is tied to.
 *
 * Speed: 2.35 B parameters must not take minutes. Normal samples come from a 65,536-entry table of
 * bf16 quantiles of N(mean, std) indexed by 16 random bits, so one 32-bit xorshift step yields two
 * bf16 values with no float math, and tensors are produced one at a time into a reused buffer
 * while writeSafetensors streams them to disk.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import { convOutLength, parseModelConfig, type ModelConfig } from '../engine/checkpoint/config.ts';
import { floatToBf16Bits, writeSafetensors, type TensorToWrite } from '../engine/checkpoint/safetensors.ts';

export type CheckpointSize = '1.7b' | '0.6b' | 'aligner';
export const CHECKPOINT_SIZES: readonly CheckpointSize[] = ['1.7b', '0.6b', 'aligner'];

// ---------------------------------------------------------------------------------------------
// config.json of the released models
// ---------------------------------------------------------------------------------------------

/**
 * The generic fields transformers writes into every sub-config dump (PretrainedConfig defaults).
 * The real files carry them; the engine ignores them.
 */
const PRETRAINED_CONFIG_FIELDS: Record<string, unknown> = {
  _name_or_path: '',
  add_cross_attention: false,
  architectures: null,
  bad_words_ids: null,
  begin_suppress_tokens: null,
  bos_token_id: null,
  chunk_size_feed_forward: 0,
  cross_attention_hidden_size: null,
  decoder_start_token_id: null,
  diversity_penalty: 0.0,
  do_sample: false,
  dtype: null,
  early_stopping: false,
  encoder_no_repeat_ngram_size: 0,
  eos_token_id: null,
  exponential_decay_length_penalty: null,
  finetuning_task: null,
  forced_bos_token_id: null,
  forced_eos_token_id: null,
  id2label: { 0: 'LABEL_0', 1: 'LABEL_1' },
  is_decoder: false,
  is_encoder_decoder: false,
  label2id: { LABEL_0: 0, LABEL_1: 1 },
  length_penalty: 1.0,
  max_length: 20,
  min_length: 0,
  no_repeat_ngram_size: 0,
  num_beam_groups: 1,
  num_beams: 1,
  num_return_sequences: 1,
  output_attentions: false,
  output_hidden_states: false,
  output_scores: false,
  pad_token_id: null,
  prefix: null,
  problem_type: null,
  pruned_heads: {},
  remove_invalid_values: false,
  repetition_penalty: 1.0,
  return_dict: true,
  return_dict_in_generate: false,
  sep_token_id: null,
  suppress_tokens: null,
  task_specific_params: null,
  temperature: 1.0,
  tf_legacy_loss: false,
  tie_encoder_decoder: false,
  tie_word_embeddings: true,
  tokenizer_class: null,
  top_k: 50,
  top_p: 1.0,
  torchscript: false,
  typical_p: 1.0,
  use_bfloat16: false,
};

/** transformers serialises sub-configs with sorted keys; do the same so the files compare equal. */
function sortedKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(sortedKeys) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortedKeys((value as Record<string, unknown>)[key]);
    return out as T;
  }
  return value;
}

function subConfig(fields: Record<string, unknown>): Record<string, unknown> {
  return sortedKeys({ ...PRETRAINED_CONFIG_FIELDS, ...fields });
}

const ASR_LANGUAGES = [
  'Chinese', 'English', 'Cantonese', 'Arabic', 'German', 'French', 'Spanish', 'Portuguese', 'Indonesian', 'Italian',
  'Korean', 'Russian', 'Thai', 'Vietnamese', 'Japanese', 'Turkish', 'Hindi', 'Malay', 'Dutch', 'Swedish', 'Danish',
  'Finnish', 'Polish', 'Czech', 'Filipino', 'Persian', 'Greek', 'Romanian', 'Hungarian', 'Macedonian',
];
const ALIGNER_LANGUAGES = ['Chinese', 'Cantonese', 'English', 'German', 'Spanish', 'French', 'Italian', 'Portuguese', 'Russian', 'Korean', 'Japanese'];

/** `Qwen/Qwen3-ASR-0.6B` config.json (the released file's content and key order). */
function qwen3Asr06bConfig(): Record<string, unknown> {
  return {
    architectures: ['Qwen3ASRForConditionalGeneration'],
    model_type: 'qwen3_asr',
    support_languages: [...ASR_LANGUAGES],
    thinker_config: {
      model_type: 'qwen3_asr',
      architectures: ['Qwen3ASRForConditionalGeneration'],
      audio_config: subConfig({
        activation_dropout: 0,
        activation_function: 'gelu',
        attention_dropout: 0,
        conv_chunksize: 500,
        d_model: 896,
        downsample_hidden_size: 480,
        dropout: 0,
        encoder_attention_heads: 14,
        encoder_ffn_dim: 3584,
        encoder_layers: 18,
        initializer_range: 0.02,
        max_source_positions: 1500,
        model_type: 'qwen3_asr_audio_encoder',
        n_window: 50,
        n_window_infer: 800,
        num_hidden_layers: 18,
        num_mel_bins: 128,
        output_dim: 1024,
        scale_embedding: false,
      }),
      audio_end_token_id: 151670,
      audio_start_token_id: 151669,
      audio_token_id: 151676,
      dtype: 'bfloat16',
      initializer_range: 0.02,
      text_config: subConfig({
        attention_bias: false,
        attention_dropout: 0.0,
        head_dim: 128,
        hidden_act: 'silu',
        hidden_size: 1024,
        initializer_range: 0.02,
        intermediate_size: 3072,
        max_position_embeddings: 65536,
        model_type: 'qwen3',
        num_attention_heads: 16,
        num_hidden_layers: 28,
        num_key_value_heads: 8,
        rms_norm_eps: 1e-6,
        rope_scaling: { interleaved: true, mrope_interleaved: true, mrope_section: [24, 20, 20], rope_type: 'default', type: 'default' },
        rope_theta: 1000000,
        use_cache: true,
        vocab_size: 151936,
      }),
    },
    transformers_version: '4.57.6',
  };
}

type Json = Record<string, any>;

/**
 * `Qwen/Qwen3-ASR-1.7B`: its config.json has not been published in a form we could read, so it is
 * the 0.6B file with the 1.7B dimensions that several ports of the real checkpoint agree on
 * (wider encoder and decoder; everything else, including the tied head, as in the 0.6B).
 */
function qwen3Asr17bConfig(): Json {
  const cfg: Json = qwen3Asr06bConfig();
  Object.assign(cfg.thinker_config.audio_config, {
    d_model: 1024,
    encoder_attention_heads: 16,
    encoder_ffn_dim: 4096,
    encoder_layers: 24,
    num_hidden_layers: 24,
    output_dim: 2048,
  });
  Object.assign(cfg.thinker_config.text_config, { hidden_size: 2048, intermediate_size: 6144 });
  return cfg;
}

/**
 * `Qwen/Qwen3-ForcedAligner-0.6B` (the released file's content and key order): the 1.7B encoder,
 * the 0.6B decoder with a 152,064-row embedding, an untied 5,000-class timestamp head, and the
 * timestamp fields at the top level.
 */
function qwen3ForcedAligner06bConfig(): Json {
  const asr = qwen3Asr06bConfig() as Json;
  const audio = { ...asr.thinker_config.audio_config, d_model: 1024, encoder_attention_heads: 16, encoder_ffn_dim: 4096, encoder_layers: 24, num_hidden_layers: 24, tie_word_embeddings: false };
  const text = { ...asr.thinker_config.text_config, max_position_embeddings: 8192, tie_word_embeddings: false, vocab_size: 152064 };
  const { model_type: _type, architectures, ...thinkerRest } = asr.thinker_config;
  return {
    architectures: asr.architectures,
    timestamp_token_id: 151705,
    timestamp_segment_time: 80,
    model_type: 'qwen3_asr',
    support_languages: [...ALIGNER_LANGUAGES],
    thinker_config: {
      model_type: 'qwen3_forced_aligner',
      classify_num: 5000,
      architectures,
      ...thinkerRest,
      audio_config: audio,
      text_config: text,
    },
    transformers_version: asr.transformers_version,
  };
}

/** The config.json object of a released model (a fresh copy each call). */
export function referenceConfig(size: CheckpointSize): Json {
  switch (size) {
    case '0.6b':
      return qwen3Asr06bConfig();
    case '1.7b':
      return qwen3Asr17bConfig();
    case 'aligner':
      return qwen3ForcedAligner06bConfig();
    default:
      throw new Error(`unknown checkpoint size ${JSON.stringify(size)}; expected one of ${CHECKPOINT_SIZES.join(', ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor list
// ---------------------------------------------------------------------------------------------

/** How a tensor's values are drawn: N(mean, std²), from the random stream named `stream` (default: the tensor's own name). */
export interface TensorInit {
  mean: number;
  std: number;
  stream?: string;
}

export interface TensorSpec {
  name: string;
  shape: number[];
  init: TensorInit;
}

export function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const NORM_WEIGHT: TensorInit = { mean: 1, std: 0.05 };
const BIAS: TensorInit = { mean: 0, std: 0.02 };
const linear = (fanIn: number): TensorInit => ({ mean: 0, std: 1 / Math.sqrt(fanIn) });

/**
 * Every tensor of the checkpoint described by `cfg`, with the official names and shapes, in module
 * order (audio tower, decoder, head). `storeTiedHead` adds `thinker.lm_head.weight` for a config whose
 * head is tied to the embeddings, as the released ASR files do (the tiny golden checkpoints, written
 * by transformers' tied save, leave it out). `initializerRange` is the embedding std.
 */
export function checkpointTensors(cfg: ModelConfig, opts: { storeTiedHead?: boolean; initializerRange?: number } = {}): TensorSpec[] {
  const out: TensorSpec[] = [];
  const add = (name: string, shape: number[], init: TensorInit) => out.push({ name, shape, init });
  const a = cfg.audio;
  const t = cfg.text;

  // Audio encoder: three 3x3 stride-2 convs over (time, mel), a linear from the flattened
  // channels x remaining mel bins to d_model, transformer layers, then the projector.
  const A = 'thinker.audio_tower';
  const C = a.convChannels;
  add(`${A}.conv2d1.weight`, [C, 1, 3, 3], linear(9));
  add(`${A}.conv2d1.bias`, [C], BIAS);
  add(`${A}.conv2d2.weight`, [C, C, 3, 3], linear(C * 9));
  add(`${A}.conv2d2.bias`, [C], BIAS);
  add(`${A}.conv2d3.weight`, [C, C, 3, 3], linear(C * 9));
  add(`${A}.conv2d3.bias`, [C], BIAS);
  const convOutIn = C * convOutLength(a.numMelBins);
  add(`${A}.conv_out.weight`, [a.dModel, convOutIn], linear(convOutIn));
  for (let i = 0; i < a.layers; i++) {
    const L = `${A}.layers.${i}`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      add(`${L}.self_attn.${p}.weight`, [a.dModel, a.dModel], linear(a.dModel));
      add(`${L}.self_attn.${p}.bias`, [a.dModel], BIAS);
    }
    add(`${L}.self_attn_layer_norm.weight`, [a.dModel], NORM_WEIGHT);
    add(`${L}.self_attn_layer_norm.bias`, [a.dModel], BIAS);
    add(`${L}.fc1.weight`, [a.ffnDim, a.dModel], linear(a.dModel));
    add(`${L}.fc1.bias`, [a.ffnDim], BIAS);
    add(`${L}.fc2.weight`, [a.dModel, a.ffnDim], linear(a.ffnDim));
    add(`${L}.fc2.bias`, [a.dModel], BIAS);
    add(`${L}.final_layer_norm.weight`, [a.dModel], NORM_WEIGHT);
    add(`${L}.final_layer_norm.bias`, [a.dModel], BIAS);
  }
  add(`${A}.ln_post.weight`, [a.dModel], NORM_WEIGHT);
  add(`${A}.ln_post.bias`, [a.dModel], BIAS);
  add(`${A}.proj1.weight`, [a.dModel, a.dModel], linear(a.dModel));
  add(`${A}.proj1.bias`, [a.dModel], BIAS);
  add(`${A}.proj2.weight`, [a.outputDim, a.dModel], linear(a.dModel));
  add(`${A}.proj2.bias`, [a.outputDim], BIAS);

  // Qwen3 decoder: no biases; q/k RMSNorm over head_dim; q is heads*head_dim wide, which can
  // differ from hidden_size (0.6B: 2048 vs 1024).
  const M = 'thinker.model';
  const H = t.hiddenSize;
  const embed = `${M}.embed_tokens.weight`;
  add(embed, [t.vocabSize, H], { mean: 0, std: opts.initializerRange ?? 0.02 });
  for (let i = 0; i < t.layers; i++) {
    const L = `${M}.layers.${i}`;
    add(`${L}.input_layernorm.weight`, [H], NORM_WEIGHT);
    add(`${L}.self_attn.q_proj.weight`, [t.heads * t.headDim, H], linear(H));
    add(`${L}.self_attn.k_proj.weight`, [t.kvHeads * t.headDim, H], linear(H));
    add(`${L}.self_attn.v_proj.weight`, [t.kvHeads * t.headDim, H], linear(H));
    add(`${L}.self_attn.o_proj.weight`, [H, t.heads * t.headDim], linear(t.heads * t.headDim));
    add(`${L}.self_attn.q_norm.weight`, [t.headDim], NORM_WEIGHT);
    add(`${L}.self_attn.k_norm.weight`, [t.headDim], NORM_WEIGHT);
    add(`${L}.post_attention_layernorm.weight`, [H], NORM_WEIGHT);
    add(`${L}.mlp.gate_proj.weight`, [t.intermediateSize, H], linear(H));
    add(`${L}.mlp.up_proj.weight`, [t.intermediateSize, H], linear(H));
    add(`${L}.mlp.down_proj.weight`, [H, t.intermediateSize], linear(t.intermediateSize));
  }
  add(`${M}.norm.weight`, [H], NORM_WEIGHT);

  // Head: the aligner's timestamp classifier, an untied vocabulary head, or (optionally) the stored
  // copy of a tied one, drawn from the embedding's stream so it equals the embedding.
  const head = 'thinker.lm_head.weight';
  if (cfg.kind === 'aligner') {
    if (!cfg.classifyNum) throw new Error(`${cfg.file}: an aligner config needs thinker_config.classify_num`);
    add(head, [cfg.classifyNum, H], linear(H));
  } else if (!t.tieWordEmbeddings) {
    add(head, [t.vocabSize, H], linear(H));
  } else if (opts.storeTiedHead) {
    const e = out.find((s) => s.name === embed)!;
    add(head, [t.vocabSize, H], { ...e.init, stream: embed });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Random values
// ---------------------------------------------------------------------------------------------

/** Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`normalQuantile: p must be in (0, 1), got ${p}`);
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - low) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

const quantileTables = new Map<string, Uint16Array>();

/** bf16 bits of the 65,536 midpoint quantiles of N(mean, std²): 16 uniform bits -> one normal sample. */
function bf16NormalTable(mean: number, std: number): Uint16Array {
  const key = `${mean}/${std}`;
  let table = quantileTables.get(key);
  if (!table) {
    table = new Uint16Array(65536);
    for (let k = 0; k < 65536; k++) table[k] = floatToBf16Bits(mean + std * normalQuantile((k + 0.5) / 65536));
    quantileTables.set(key, table);
  }
  return table;
}

/** 32-bit FNV-1a of a string, then a murmur3 finaliser: a well-mixed seed per (seed, name). */
function streamSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h ^= Math.floor(seed / 2 ** 32);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Fills `out` (or a new buffer) with the bf16 little-endian bytes of `spec`'s random values for
 * `seed`. The same (seed, stream) always gives the same bytes.
 */
export function randomTensorBytes(spec: TensorSpec, seed: number, out?: Uint8Array): Uint8Array {
  const n = elementCount(spec.shape);
  const bytes = n * 2;
  let buf: Uint8Array;
  if (out) {
    if (out.byteLength < bytes) throw new Error(`randomTensorBytes: buffer of ${out.byteLength} bytes is too small for ${spec.name} (${bytes} bytes)`);
    buf = out.subarray(0, bytes);
  } else {
    buf = new Uint8Array(bytes);
  }
  if (buf.byteOffset % 4 !== 0) throw new Error('randomTensorBytes: buffer must be 4-byte aligned');
  const table = bf16NormalTable(spec.init.mean, spec.init.std);

  // xorshift128 (Marsaglia): 4 words of state, period 2^128 - 1, seeded through splitmix-style mixing.
  let s = streamSeed(seed, spec.init.stream ?? spec.name);
  const next = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let x = next() | 1;
  let y = next();
  let z = next();
  let w = next();

  // Two bf16 values per 32-bit step: low half then high half, which is element order on a
  // little-endian machine (checked by writeRandomCheckpoint).
  const pairs = n >>> 1;
  const out32 = new Uint32Array(buf.buffer, buf.byteOffset, pairs);
  for (let i = 0; i < pairs; i++) {
    const tt = x ^ (x << 11);
    x = y;
    y = z;
    z = w;
    w = w ^ (w >>> 19) ^ (tt ^ (tt >>> 8));
    out32[i] = table[w & 0xffff] | (table[w >>> 16] << 16);
  }
  if (n & 1) {
    const tt = x ^ (x << 11);
    w = w ^ (w >>> 19) ^ (tt ^ (tt >>> 8));
    const last = table[w & 0xffff];
    buf[bytes - 2] = last & 0xff;
    buf[bytes - 1] = last >>> 8;
  }
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Writing a checkpoint
// ---------------------------------------------------------------------------------------------

/** Shard size limit (bytes, decimal as in transformers' "4GB"): splits the 1.7B's 4.7 GB in two as released. */
export const DEFAULT_MAX_SHARD_BYTES = 4e9;

/** Tokenizer and processor files of a snapshot; the first three are required. */
const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'generation_config.json', 'preprocessor_config.json', 'chat_template.json', 'tokenizer.json'];
const REQUIRED_TOKENIZER_FILES = new Set(['vocab.json', 'merges.txt', 'tokenizer_config.json', 'generation_config.json', 'preprocessor_config.json', 'chat_template.json']);

export interface RandomCheckpointOptions {
  /** Default 0. */
  seed?: number;
  /** A snapshot folder to copy the tokenizer/processor files from (required). */
  tokenizerFrom: string;
  /** Shard when the weights exceed this many bytes. Default DEFAULT_MAX_SHARD_BYTES. */
  maxShardBytes?: number;
  log?: (msg: string) => void;
}

export interface RandomCheckpointResult {
  dir: string;
  files: { name: string; bytes: number }[];
  tensors: number;
  parameters: number;
  weightBytes: number;
  seconds: number;
}

/**
 * Splits tensors into shards of at most `maxBytes` in order, the way transformers does: a new
 * shard starts when the next tensor would overflow the current one (a tensor larger than the
 * limit gets a shard of its own).
 */
export function planShards(specs: TensorSpec[], maxBytes: number): TensorSpec[][] {
  const shards: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let size = 0;
  for (const spec of specs) {
    const bytes = elementCount(spec.shape) * 2;
    if (current.length > 0 && size + bytes > maxBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(spec);
    size += bytes;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

/** The tokenizer must know the special tokens the config refers to, or prompts cannot be built. */
function checkTokenizer(dir: string, cfg: ModelConfig): void {
  const file = join(dir, 'tokenizer_config.json');
  let decoder: Record<string, { content?: string }>;
  try {
    decoder = JSON.parse(readFileSync(file, 'utf8')).added_tokens_decoder ?? {};
  } catch (err) {
    throw new Error(`${file}: cannot read the tokenizer config (${(err as Error).message})`);
  }
  const needed: [string, number | undefined][] = [
    ['audio_token_id', cfg.audioTokenId],
    ['audio_start_token_id', cfg.audioStartTokenId],
    ['audio_end_token_id', cfg.audioEndTokenId],
    ['timestamp_token_id', cfg.timestampTokenId],
  ];
  for (const [field, id] of needed) {
    if (id !== undefined && !decoder[String(id)]) {
      throw new Error(
        `${file} has no added token ${id} (config.json ${field}); the tokenizer files must come from a matching ` +
          `${cfg.kind === 'aligner' ? 'Qwen3-ForcedAligner' : 'Qwen3-ASR'} snapshot (--tokenizer-from DIR)`,
      );
    }
  }
}

function formatBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

/**
 * Writes a random checkpoint for `config` (a config.json object) into `outDir`: config.json, the
 * weights (one `model.safetensors`, or `model-0000i-of-0000N.safetensors` shards plus
 * `model.safetensors.index.json` beyond `maxShardBytes`), and the tokenizer files. Weight files
 * left in `outDir` by an earlier run are removed first, so a stale index cannot shadow new weights.
 */
export function writeRandomCheckpoint(config: Json, outDir: string, opts: RandomCheckpointOptions): RandomCheckpointResult {
  if (endianness() !== 'LE') throw new Error('random checkpoints are written with little-endian typed arrays; this machine is big-endian');
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  const maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShardBytes > 0)) throw new Error(`maxShardBytes must be positive, got ${maxShardBytes}`);
  const dir = resolve(outDir);

  const cfg = parseModelConfig(config, `${join(dir, 'config.json')} (to be written)`);
  const tokDir = resolve(opts.tokenizerFrom);
  if (!existsSync(tokDir) || !statSync(tokDir).isDirectory()) {
    throw new Error(`tokenizer folder ${tokDir} does not exist; pass --tokenizer-from with a Qwen3-ASR snapshot folder (it holds vocab.json, merges.txt, tokenizer_config.json)`);
  }
  for (const name of REQUIRED_TOKENIZER_FILES) {
    if (!existsSync(join(tokDir, name))) throw new Error(`tokenizer folder ${tokDir} lacks ${name}; pass --tokenizer-from with a complete Qwen3-ASR snapshot folder`);
  }
  checkTokenizer(tokDir, cfg);

  const initializerRange = Number(config.thinker_config?.text_config?.initializer_range ?? config.thinker_config?.initializer_range ?? 0.02);
  const specs = checkpointTensors(cfg, { storeTiedHead: true, initializerRange });
  const totalBytes = specs.reduce((sum, s) => sum + elementCount(s.shape) * 2, 0);
  const parameters = totalBytes / 2;
  const shards = totalBytes > maxShardBytes ? planShards(specs, maxShardBytes) : [specs];

  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(dir)) {
    if (/^model(-\d+-of-\d+)?\.safetensors$/.test(name) || name === 'model.safetensors.index.json') {
      rmSync(join(dir, name));
      log(`removed the old ${name}`);
    }
  }
  const files: { name: string; bytes: number }[] = [];
  const writeText = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    files.push({ name, bytes: Buffer.byteLength(text) });
  };
  writeText('config.json', `${JSON.stringify(config, null, 2)}\n`);
  for (const name of TOKENIZER_FILES) {
    if (!existsSync(join(tokDir, name))) continue;
    copyFileSync(join(tokDir, name), join(dir, name));
    files.push({ name, bytes: statSync(join(dir, name)).size });
  }

  // One buffer, as large as the largest tensor, is reused for every tensor: memory stays at one
  // tensor (the 1.7B embedding, 622 MB) however large the checkpoint.
  const largest = Math.max(...specs.map((s) => elementCount(s.shape) * 2));
  const scratch = new Uint8Array(new ArrayBuffer(largest));
  const weightMap: Record<string, string> = {};
  log(`${cfg.kind === 'aligner' ? 'aligner' : 'ASR'} checkpoint: ${specs.length} tensors, ${(parameters / 1e9).toFixed(3)} B parameters, ${formatBytes(totalBytes)} bf16 in ${shards.length} file(s), seed ${seed}`);
  shards.forEach((shard, i) => {
    const name = shards.length === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const ts = performance.now();
    const tensors: TensorToWrite[] = shard.map((spec) => ({
      name: spec.name,
      dtype: 'BF16',
      shape: spec.shape,
      data: () => randomTensorBytes(spec, seed, scratch),
    }));
    writeSafetensors(join(dir, name), tensors, { format: 'pt' });
    const bytes = statSync(join(dir, name)).size;
    files.push({ name, bytes });
    for (const spec of shard) weightMap[spec.name] = name;
    const s = (performance.now() - ts) / 1000;
    log(`wrote ${name}: ${shard.length} tensors, ${formatBytes(bytes)} in ${s.toFixed(1)} s (${(bytes / 1e6 / Math.max(s, 1e-3)).toFixed(0)} MB/s)`);
  });
  if (shards.length > 1) {
    const sortedMap: Record<string, string> = {};
    for (const key of Object.keys(weightMap).sort()) sortedMap[key] = weightMap[key];
    writeText('model.safetensors.index.json', `${JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: sortedMap }, null, 2)}\n`);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { dir, files, tensors: specs.length, parameters, weightBytes: totalBytes, seconds };
}
