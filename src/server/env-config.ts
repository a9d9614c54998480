/**
 * Server configuration from environment variables.
 *
 * The names of the original Python service (tehtommeh/qwen3-asr-1.7b-api) are kept so an
 * existing docker-compose file keeps working: MODEL_NAME, DEVICE, DTYPE,
 * MAX_INFERENCE_BATCH_SIZE, MAX_NEW_TOKENS, HF_HOME. The rest are ours.
 *
 * Unlike the original (which silently fell back to bfloat16 on an unknown DTYPE and crashed
 * with a Python traceback on a non-integer batch size), every value is checked here and an
 * invalid one stops start-up with a message naming the variable: a typo in a deployment
 * should fail loudly, not run with a default nobody asked for.
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | MODEL_NAME | Qwen/Qwen3-ASR-1.7B | Hugging Face repo id or local checkpoint folder |
 * | DEVICE | cpu | cpu, cuda or cuda:N. The original defaulted to cuda:0; our engine is CPU-first, so cpu is the default and CUDA is opt-in |
 * | DTYPE | bfloat16 | bfloat16, float16 or float32; accepted for compatibility only: the ONNX engine computes in float32 from the checkpoint's bf16 weights whatever the value. Use QUANT for smaller, faster weights |
 * | QUANT | int8 | none (fp32), int8 or int4 weights (README "Precision and the default" gives the measurements behind int8) |
 * | THREADS | 0 | ONNX Runtime intra-op threads (0 = one per physical core) |
 * | MAX_INFERENCE_BATCH_SIZE | 16 | segments decoded together; -1 = no limit (as in the original). Each sequence's KV cache takes 0.06 MB per token in int8, 0.23 MB in fp32 (≈20 / 80 MB for a 20 s segment) |
 * | SEGMENT_SECONDS | 20 | longest piece audio is cut into, at quiet points (10–1200; 180 at most with timestamps) |
 * | MAX_NEW_TOKENS | (unset) | cap on generated tokens per segment. The original's 256 per 20-minute chunk silently truncated long files; our segments are short and the budget grows with their duration, so unset means "no fixed cap" |
 * | FORCED_ALIGNER | (empty) | Qwen3-ForcedAligner repo id or folder; empty = word timestamps off |
 * | HF_HOME, HF_ENDPOINT, HF_TOKEN | (unset) | Hugging Face cache folder, mirror, token |
 * | HF_HUB_OFFLINE | false | 1/true: never download, use the cache only |
 * | HOST | 0.0.0.0 | listen address |
 * | PORT | 8000 | listen port (0 = any free port) |
 * | MAX_UPLOAD_MB | 500 | largest accepted upload, in MiB (fractions allowed); larger uploads get 413 |
 * | MAX_QUEUE | 32 | transcriptions waiting behind the running one before new ones get 503 |
 * | API_KEY | (empty) | when set, every route except /health and the docs needs `Authorization: Bearer <key>` |
 * | LOG_LEVEL | info | fatal, error, warn, info, debug, trace or silent |
 * | UPLOAD_DIR | OS temp dir | where uploads are streamed while they are transcribed |
 */
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_SEGMENT_SECONDS } from '../pipeline/run-transcription.ts';
import type { Device, Quantization, TranscriberConfig } from '../pipeline/types.ts';

export type Dtype = 'bfloat16' | 'float16' | 'float32';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ServerConfig {
  host: string;
  port: number;
  /** MODEL_NAME as given: echoed by `/`, `/health` and the responses' metadata. */
  modelName: string;
  device: Device;
  /** Accepted for compatibility with the original; see the table above. */
  dtype: Dtype;
  quant: Quantization;
  threads: number;
  /** -1 (no limit) is already mapped to the largest safe integer. */
  maxBatchSize: number;
  maxNewTokens?: number;
  /** Longest segment long audio is cut into (seconds). */
  segmentSeconds: number;
  /** Empty/undefined: no aligner, word timestamps are refused with a 400. */
  forcedAligner?: string;
  hfHome?: string;
  hfEndpoint?: string;
  hfOffline: boolean;
  hfToken?: string;
  maxUploadBytes: number;
  maxQueue: number;
  apiKey?: string;
  logLevel: LogLevel;
  uploadDir: string;
}

/** An environment variable with an invalid value; the message names it. */
export class EnvConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'EnvConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** A variable's trimmed value, or undefined when unset or blank (blank = "use the default"). */
function read(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const v = read(env, name);
  if (v === undefined) return fallback;
  const lower = v.toLowerCase();
  const hit = allowed.find((a) => a === lower);
  if (!hit) throw new EnvConfigError(name, `must be one of ${allowed.join(', ')}; got ${JSON.stringify(v)}`);
  return hit;
}

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = read(env, name);
  if (v === undefined) return fallback;
  if (!/^[+-]?\d+$/.test(v)) throw new EnvConfigError(name, `must be an integer; got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new EnvConfigError(name, `must be between ${min} and ${max}; got ${n}`);
  return n;
}

function positiveNumber(env: Env, name: string, fallback: number): number {
  const v = read(env, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!/^[+]?(\d+\.?\d*|\.\d+)$/.test(v) || !Number.isFinite(n) || n <= 0) {
    throw new EnvConfigError(name, `must be a positive number; got ${JSON.stringify(v)}`);
  }
  return n;
}

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const v = read(env, name);
  if (v === undefined) return fallback;
  const lower = v.toLowerCase();
  if (TRUE_WORDS.includes(lower)) return true;
  if (FALSE_WORDS.includes(lower)) return false;
  throw new EnvConfigError(name, `must be a boolean (1/0, true/false, yes/no, on/off); got ${JSON.stringify(v)}`);
}

function device(env: Env): Device {
  const v = read(env, 'DEVICE');
  if (v === undefined) return 'cpu';
  const lower = v.toLowerCase();
  if (lower === 'cpu' || lower === 'cuda') return lower;
  const m = /^cuda:(\d{1,3})$/.exec(lower);
  if (m) return `cuda:${Number(m[1])}`;
  throw new EnvConfigError('DEVICE', `must be cpu, cuda or cuda:N (N = GPU index); got ${JSON.stringify(v)}`);
}

export const DEFAULT_MODEL_NAME = 'Qwen/Qwen3-ASR-1.7B';
export const DEFAULT_MAX_UPLOAD_MB = 500;
export const DEFAULT_MAX_QUEUE = 32;

/** Reads and checks the whole configuration; throws EnvConfigError on the first invalid variable. */
export function parseEnvConfig(env: Env = process.env): ServerConfig {
  const maxBatch = integer(env, 'MAX_INFERENCE_BATCH_SIZE', DEFAULT_MAX_BATCH_SIZE, -1);
  if (maxBatch === 0) throw new EnvConfigError('MAX_INFERENCE_BATCH_SIZE', 'must be a positive integer or -1 (no limit); got 0');
  const maxNewTokensRaw = read(env, 'MAX_NEW_TOKENS');
  const uploadMb = positiveNumber(env, 'MAX_UPLOAD_MB', DEFAULT_MAX_UPLOAD_MB);
  const uploadDir = read(env, 'UPLOAD_DIR');
  return {
    host: read(env, 'HOST') ?? '0.0.0.0',
    port: integer(env, 'PORT', 8000, 0, 65535),
    modelName: read(env, 'MODEL_NAME') ?? DEFAULT_MODEL_NAME,
    device: device(env),
    dtype: oneOf(env, 'DTYPE', ['bfloat16', 'float16', 'float32'] as const, 'bfloat16'),
    quant: oneOf(env, 'QUANT', ['none', 'int8', 'int4'] as const, 'int8'),
    threads: integer(env, 'THREADS', 0, 0, 1024),
    maxBatchSize: maxBatch === -1 ? Number.MAX_SAFE_INTEGER : maxBatch,
    maxNewTokens: maxNewTokensRaw === undefined ? undefined : integer(env, 'MAX_NEW_TOKENS', 0, 1),
    segmentSeconds: integer(env, 'SEGMENT_SECONDS', DEFAULT_SEGMENT_SECONDS, 10, 1200),
    forcedAligner: read(env, 'FORCED_ALIGNER'),
    hfHome: read(env, 'HF_HOME'),
    hfEndpoint: read(env, 'HF_ENDPOINT'),
    hfOffline: boolean(env, 'HF_HUB_OFFLINE', false),
    hfToken: read(env, 'HF_TOKEN'),
    maxUploadBytes: Math.floor(uploadMb * 1024 * 1024),
    maxQueue: integer(env, 'MAX_QUEUE', DEFAULT_MAX_QUEUE, 0),
    apiKey: read(env, 'API_KEY'),
    logLevel: oneOf(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    uploadDir: uploadDir ? resolve(uploadDir) : tmpdir(),
  };
}

/** The pipeline's share of the configuration. */
export function toTranscriberConfig(config: ServerConfig, log?: TranscriberConfig['log']): TranscriberConfig {
  return {
    model: config.modelName,
    aligner: config.forcedAligner,
    device: config.device,
    quant: config.quant,
    threads: config.threads,
    maxBatchSize: config.maxBatchSize,
    maxNewTokens: config.maxNewTokens,
    segmentSeconds: config.segmentSeconds,
    maxQueue: config.maxQueue,
    hfHome: config.hfHome,
    hfEndpoint: config.hfEndpoint,
    hfOffline: config.hfOffline,
    hfToken: config.hfToken,
    log,
  };
}
