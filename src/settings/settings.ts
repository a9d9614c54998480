/**
 * Every environment variable the project reads, in one table, and the one parser of them.
 *
 * The server, the CLI, the engine, the audio decoder and the test harness all read their
 * settings here, so a value means the same everywhere: the CLI's flags are parsed by the same
 * parsers as the variables they override, and an invalid value stops start-up with an error
 * naming the variable (SettingError) instead of running with a default nobody asked for.
 *
 * The names of the original Python service (tehtommeh/qwen3-asr-1.7b-api) are kept so an
 * existing docker-compose file keeps working: MODEL_NAME, DEVICE, DTYPE,
 * MAX_INFERENCE_BATCH_SIZE, MAX_NEW_TOKENS, HF_HOME. Unlike the original (which fell back to
 * bfloat16 on an unknown DTYPE and crashed with a traceback on a non-integer batch size),
 * every value is checked.
 *
 * Rules shared by all variables: surrounding blanks are ignored and a blank value means "use
 * the default"; names of choices (QUANT, DEVICE, LOG_LEVEL, …) are case-insensitive.
 *
 * README's configuration table and the CLI's usage text are generated from SETTINGS
 * (`npm run docs:settings`), so the table below is the documentation.
 *
 * This is the lowest layer: it imports nothing from the project, and nothing else in src/
 * reads `process.env`.
 */
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** An environment: `process.env` or a test's object. */
export type Env = Readonly<Record<string, string | undefined>>;

export type SettingGroup = 'server' | 'model & engine' | 'Hugging Face hub' | 'audio' | 'development';

/** The order groups appear in, in README and the CLI's usage. */
export const SETTING_GROUPS: readonly SettingGroup[] = ['model & engine', 'Hugging Face hub', 'server', 'audio', 'development'];

export type DeviceSetting = 'cpu' | 'cuda' | `cuda:${number}`;
export type QuantSetting = 'none' | 'int8' | 'int4';
export type Dtype = 'bfloat16' | 'float16' | 'float32';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type Int8KernelSetting = 'u8s8' | 'u8u8';

export const DEFAULT_MODEL_NAME = 'Qwen/Qwen3-ASR-1.7B';
/** The aligner the CLI uses for --timestamps and align when neither --aligner nor FORCED_ALIGNER names one. */
export const DEFAULT_CLI_ALIGNER = 'Qwen/Qwen3-ForcedAligner-0.6B';
/**
 * Default longest segment without timestamps (README "Long recordings" explains the choice):
 * short segments decode as one batch (a 60 s recording as three rows), keep each row's
 * attention context short, and end in a quiet point within ±5 s of every 20 s.
 */
export const DEFAULT_SEGMENT_SECONDS = 20;
/**
 * Default number of segments decoded together. The batch graph's int8 products cost nearly
 * the same for 1 and 16 rows (src/engine/thinker/precision.ts), so wide batches are almost free until the
 * KV cache traffic catches up (per token and row, 0.06 MB in int8 and 0.23 MB in fp32 for
 * both the 1.7B and the 0.6B model: 28 layers × keys and values × 8 heads × 128).
 */
export const DEFAULT_MAX_BATCH_SIZE = 16;
export const DEFAULT_MAX_UPLOAD_MB = 500;
export const DEFAULT_MAX_QUEUE = 32;
/** Four hours: the longest recordings users bring; a 1.7B int8 model on two cores decodes it in about half an hour. */
export const DEFAULT_MAX_AUDIO_SECONDS = 14400;
/** Upstream silero-vad's threshold. */
export const DEFAULT_VAD_THRESHOLD = 0.5;
/**
 * Longer than most pauses inside a sentence (0.3–0.9 s in the notld clips), so a speech region
 * is an utterance rather than a phrase and a soft word in a pause is kept; short enough to skip
 * the pauses between turns (on the notld clips, 38% of the audio is not decoded, against 23%
 * with 3000). Upstream's 100 ms cuts at every breath.
 */
export const DEFAULT_VAD_MIN_SILENCE_MS = 1000;

/** A variable (or the CLI flag standing for it) with an invalid value; the message names it. */
export class SettingError extends Error {
  constructor(
    /** The environment variable. */
    readonly variable: string,
    /** What held the value: the variable, or the CLI flag (`--threads`) that overrides it. */
    readonly source: string,
    /** What is wrong, without the name: `must be an integer; got "x"`. */
    readonly problem: string,
  ) {
    super(`${source}: ${problem}`);
    this.name = 'SettingError';
  }
}

/** Thrown by a parser; turned into a SettingError naming where the value came from. */
class Invalid extends Error {}

/** How a variable's value is read and shown. */
interface Kind<T> {
  /** What the value is, for the docs: integer, number, boolean, choice, text, path. */
  readonly type: string;
  /** The default as README shows it (markdown): `` `8000` ``, `unset`, `OS temp dir`. */
  readonly default: string;
  /** Allowed values or range, as README shows it (markdown); absent for free text. */
  readonly values?: string;
  /** The trimmed value, undefined when unset or blank, to the typed value; throws Invalid. */
  readonly parse: (value: string | undefined) => T;
}

/** A CLI flag that overrides a variable. */
export interface CliFlag {
  /** Flag name without the dashes. */
  readonly name: string;
  /** Placeholder of its value in the usage text. */
  readonly arg: string;
  /** The CLI's doc and default where they differ from the variable's. */
  readonly doc?: string;
  readonly default?: string;
}

export interface Setting<T = unknown> extends Kind<T> {
  readonly env: string;
  readonly group: SettingGroup;
  /** One line: what it does (the allowed values are added from `values`). */
  readonly doc: string;
  readonly cli?: CliFlag;
}

const code = (v: string | number) => `\`${v}\``;
const quoted = (v: string) => JSON.stringify(v);

/** Free text; unset or blank: undefined (`shown` is how README shows that). */
function text(shown = 'unset'): Kind<string | undefined> {
  return { type: 'text', default: shown, parse: (v) => v };
}

function textOr(fallback: string): Kind<string> {
  return { type: 'text', default: code(fallback), parse: (v) => v ?? fallback };
}

function path(shown: string, fallback?: () => string): Kind<string | undefined> {
  return { type: 'path', default: shown, parse: (v) => v ?? fallback?.() };
}

function choice<const T extends string>(allowed: readonly T[], fallback: T): Kind<T>;
function choice<const T extends string>(allowed: readonly T[], fallback: undefined, shown: string): Kind<T | undefined>;
function choice<const T extends string>(allowed: readonly T[], fallback: T | undefined, shown?: string): Kind<T | undefined> {
  return {
    type: 'choice',
    default: shown ?? code(fallback!),
    values: allowed.map(code).join(', '),
    parse: (v) => {
      if (v === undefined) return fallback;
      const hit = allowed.find((a) => a === v.toLowerCase());
      if (!hit) throw new Invalid(`must be one of ${allowed.join(', ')}; got ${quoted(v)}`);
      return hit;
    },
  };
}

function parseInteger(v: string, min: number, max: number | undefined): number {
  if (!/^[+-]?\d+$/.test(v)) throw new Invalid(`must be an integer; got ${quoted(v)}`);
  const n = Number(v);
  if (max === undefined && n < min) throw new Invalid(`must be at least ${min}; got ${n}`);
  if (max !== undefined && (n < min || n > max)) throw new Invalid(`must be between ${min} and ${max}; got ${n}`);
  return n;
}

const range = (min: number, max: number | undefined) => (max === undefined ? `≥ ${min}` : `${min}–${max}`);

function integer(min: number, max: number | undefined, fallback: number): Kind<number>;
function integer(min: number, max: number | undefined, fallback: undefined, shown: string): Kind<number | undefined>;
function integer(min: number, max: number | undefined, fallback: number | undefined, shown?: string): Kind<number | undefined> {
  return {
    type: 'integer',
    default: shown ?? code(fallback!),
    values: range(min, max),
    parse: (v) => (v === undefined ? fallback : parseInteger(v, min, max)),
  };
}

function positiveNumber(fallback: number): Kind<number> {
  return {
    type: 'number',
    default: code(fallback),
    values: '> 0 (fractions allowed)',
    parse: (v) => {
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!/^[+]?(\d+\.?\d*|\.\d+)$/.test(v) || !Number.isFinite(n) || n <= 0) throw new Invalid(`must be a positive number; got ${quoted(v)}`);
      return n;
    },
  };
}

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

function boolean(fallback: boolean): Kind<boolean> {
  return {
    type: 'boolean',
    default: code(fallback ? 1 : 0),
    values: '`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`',
    parse: (v) => {
      if (v === undefined) return fallback;
      const lower = v.toLowerCase();
      if (TRUE_WORDS.includes(lower)) return true;
      if (FALSE_WORDS.includes(lower)) return false;
      throw new Invalid(`must be a boolean (1/0, true/false, yes/no, on/off); got ${quoted(v)}`);
    },
  };
}

function device(): Kind<DeviceSetting> {
  return {
    type: 'choice',
    default: code('cpu'),
    values: '`cpu`, `cuda`, `cuda:N`',
    parse: (v) => {
      if (v === undefined) return 'cpu';
      const lower = v.toLowerCase();
      if (lower === 'cpu' || lower === 'cuda') return lower;
      const m = /^cuda:(\d{1,3})$/.exec(lower);
      if (m) return `cuda:${Number(m[1])}`;
      throw new Invalid(`must be cpu, cuda or cuda:N (N = GPU index); got ${quoted(v)}`);
    },
  };
}

/** A positive integer, or -1 for "no limit" (as in the original), read as the largest safe integer. */
function batchSize(fallback: number): Kind<number> {
  return {
    type: 'integer',
    default: code(fallback),
    values: '≥ 1 or `-1` (no limit)',
    parse: (v) => {
      if (v === undefined) return fallback;
      if (!/^[+-]?\d+$/.test(v)) throw new Invalid(`must be an integer; got ${quoted(v)}`);
      const n = Number(v);
      if (n === -1) return Number.MAX_SAFE_INTEGER;
      if (n < 1) throw new Invalid(`must be a positive integer or -1 (no limit); got ${n}`);
      return n;
    },
  };
}

/** A number strictly between 0 and 1 (a probability). */
function fraction(fallback: number): Kind<number> {
  return {
    type: 'number',
    default: code(fallback),
    values: '> 0 and < 1',
    parse: (v) => {
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!/^[+]?(\d+\.?\d*|\.\d+)$/.test(v) || !(n > 0 && n < 1)) throw new Invalid(`must be a number between 0 and 1 (exclusive); got ${quoted(v)}`);
      return n;
    },
  };
}

/** A Kind whose parsed value goes through `f` (for defaults computed at parse time). */
function mapped<T, U>(kind: Kind<T>, f: (v: T) => U): Kind<U> {
  return { ...kind, parse: (v) => f(kind.parse(v)) };
}

/**
 * The table. Each entry: variable, group, one line of doc, how it is parsed (type, default,
 * allowed values) and, where the CLI has one, the flag that overrides it.
 */
export const SETTINGS = {
  // model & engine
  modelName: {
    env: 'MODEL_NAME',
    group: 'model & engine',
    doc: 'Hugging Face repo id (resolved in the HF cache, downloaded if missing) or checkpoint folder',
    cli: { name: 'model', arg: 'M', doc: 'checkpoint folder or Hugging Face repo id' },
    ...textOr(DEFAULT_MODEL_NAME),
  },
  forcedAligner: {
    env: 'FORCED_ALIGNER',
    group: 'model & engine',
    doc: 'Qwen3-ForcedAligner repo id or folder (e.g. `Qwen/Qwen3-ForcedAligner-0.6B`) for word timestamps; empty: timestamps off',
    cli: { name: 'aligner', arg: 'A', doc: 'forced-aligner repo id or folder, for --timestamps and align', default: `\`${DEFAULT_CLI_ALIGNER}\`` },
    ...text('empty'),
  },
  device: {
    env: 'DEVICE',
    group: 'model & engine',
    doc: 'where the engine runs; the original defaulted to `cuda:0`, this engine is CPU-first',
    cli: { name: 'device', arg: 'D', doc: 'where the engine runs' },
    ...device(),
  },
  dtype: {
    env: 'DTYPE',
    group: 'model & engine',
    doc: 'accepted for compatibility; the engine computes in float32 from the bf16 weights whatever the value — use `QUANT` for smaller, faster weights',
    ...choice(['bfloat16', 'float16', 'float32'], 'bfloat16'),
  },
  quant: { env: 'QUANT', group: 'model & engine', doc: 'weight precision on the CPU; `none` is fp32 — see [Precision](#precision-and-the-default)', cli: { name: 'quant', arg: 'Q' }, ...choice(['none', 'int8', 'int4'], 'int8') },
  threads: {
    env: 'THREADS',
    group: 'model & engine',
    doc: 'ONNX Runtime intra-op threads; `0` is one per physical core the process may use, within a cgroup CPU quota such as `docker run --cpus` sets',
    cli: { name: 'threads', arg: 'N' },
    ...integer(0, 1024, 0),
  },
  maxBatchSize: {
    env: 'MAX_INFERENCE_BATCH_SIZE',
    group: 'model & engine',
    doc: 'segments decoded together as one batch',
    cli: { name: 'batch-size', arg: 'N' },
    ...batchSize(DEFAULT_MAX_BATCH_SIZE),
  },
  maxNewTokens: {
    env: 'MAX_NEW_TOKENS',
    group: 'model & engine',
    doc: "cap on generated tokens per segment; unset, the budget grows with each segment's duration so nothing is cut off",
    cli: { name: 'max-new-tokens', arg: 'N', doc: 'cap on generated tokens per segment', default: 'grows with duration' },
    ...integer(1, undefined, undefined, 'unset'),
  },
  segmentSeconds: {
    env: 'SEGMENT_SECONDS',
    group: 'model & engine',
    doc: "longest piece audio is cut into, at quiet points; 180 at most with timestamps, `1200` reproduces the official wrapper's cuts — see [Long recordings](#long-recordings)",
    cli: { name: 'segment-seconds', arg: 'N' },
    ...integer(10, 1200, DEFAULT_SEGMENT_SECONDS),
  },
  vad: {
    env: 'VAD',
    group: 'model & engine',
    doc: 'voice activity detection (Silero VAD): cuts fall in non-speech and non-speech of `VAD_MIN_SILENCE_MS` or more is not decoded; `off` cuts at quiet points as the official wrapper does',
    cli: { name: 'vad', arg: 'on|off' },
    ...choice(['on', 'off'], 'on'),
  },
  vadThreshold: {
    env: 'VAD_THRESHOLD',
    group: 'model & engine',
    doc: 'speech probability at or above which a 32 ms window is speech; speech ends below this minus 0.15',
    cli: { name: 'vad-threshold', arg: 'P' },
    ...fraction(DEFAULT_VAD_THRESHOLD),
  },
  vadMinSilenceMs: {
    env: 'VAD_MIN_SILENCE_MS',
    group: 'model & engine',
    doc: 'non-speech (ms) that ends a speech region and is then skipped; shorter pauses are decoded with the speech around them',
    cli: { name: 'vad-min-silence-ms', arg: 'N' },
    ...integer(100, 10000, DEFAULT_VAD_MIN_SILENCE_MS),
  },
  cache: { env: 'QWEN3_ASR_CACHE', group: 'model & engine', doc: 'keep compiled graphs in `QWEN3_ASR_CACHE_DIR` so later loads skip building them; off, they are built in a temporary folder each load', ...boolean(true) },
  prepackedWeights: {
    env: 'QWEN3_ASR_PREPACKED_WEIGHTS',
    group: 'model & engine',
    doc: "keep ONNX Runtime's packed weights in the graph cache and map them at load, instead of packing them into the process's memory: a cached 1.7B int8 load in about 4.5 s instead of 5.5–7.5 s and with 1.9 GB less memory, transcription about 7% slower, each cache entry twice the size — for one-shot CLI runs on short clips; see [Benchmarks](#benchmarks)",
    ...boolean(false),
  },
  cacheDir: {
    env: 'QWEN3_ASR_CACHE_DIR',
    group: 'model & engine',
    doc: 'compiled-graph cache folder',
    ...mapped(path('`~/.cache/qwen3-asr`'), (v) => v ?? join(homedir(), '.cache', 'qwen3-asr')),
  },
  int8Kernel: {
    env: 'QWEN3_ASR_INT8_KERNEL',
    group: 'model & engine',
    doc: 'how int8 products store weights and KV cache — see [Precision](#integer-kernels-and-cpus-without-vnni); for diagnosis only, as `u8s8` is wrong on CPUs without VNNI',
    ...choice(['u8s8', 'u8u8'], undefined, "this CPU's"),
  },
  glibcTunables: {
    env: 'GLIBC_TUNABLES',
    group: 'model & engine',
    doc: "read only to report huge pages: `npm start`, `npx qwen3-asr` and `npm run bench` run node through `scripts/node.sh`, which adds `glibc.malloc.hugetlb=1` (transparent huge pages for malloc: faster loads — see [Benchmarks](#benchmarks)) unless the variable names it already; `glibc.malloc.hugetlb=0` turns it off; the server logs `huge_pages: on (…)` or `off (why)`",
    ...text('`glibc.malloc.hugetlb=1` added'),
  },

  // Hugging Face hub
  hfHome: {
    env: 'HF_HOME',
    group: 'Hugging Face hub',
    doc: 'Hugging Face cache root (`hub/models--…` inside)',
    cli: { name: 'hf-home', arg: 'DIR' },
    ...path('`~/.cache/huggingface`'),
  },
  hfHubCache: { env: 'HF_HUB_CACHE', group: 'Hugging Face hub', doc: 'the hub cache folder itself, instead of `$HF_HOME/hub`', ...path('unset') },
  huggingfaceHubCache: { env: 'HUGGINGFACE_HUB_CACHE', group: 'Hugging Face hub', doc: 'older name of `HF_HUB_CACHE`', ...path('unset') },
  xdgCacheHome: { env: 'XDG_CACHE_HOME', group: 'Hugging Face hub', doc: 'the hub cache is `$XDG_CACHE_HOME/huggingface/hub` when neither `HF_HUB_CACHE` nor `HF_HOME` is set', ...path('`~/.cache`') },
  hfEndpoint: { env: 'HF_ENDPOINT', group: 'Hugging Face hub', doc: 'hub address (a mirror)', ...text('`https://huggingface.co`') },
  hfOffline: { env: 'HF_HUB_OFFLINE', group: 'Hugging Face hub', doc: 'never contact the hub; use the cache only', ...boolean(false) },
  hfToken: { env: 'HF_TOKEN', group: 'Hugging Face hub', doc: 'token for gated or private repos (sent to the hub only)', ...text() },

  // server
  host: { env: 'HOST', group: 'server', doc: 'listen address; `0.0.0.0` listens on every interface (the Docker image sets it), so set `API_KEY` too', ...textOr('127.0.0.1') },
  port: { env: 'PORT', group: 'server', doc: 'listen port; `0` picks any free port', ...integer(0, 65535, 8000) },
  apiKey: { env: 'API_KEY', group: 'server', doc: 'when set, every route but `/health`, `/ready`, the page and the docs needs `Authorization: Bearer <key>` (`/v1/realtime` also takes it as the `openai-insecure-api-key.<key>` subprotocol browsers send)', ...text('empty') },
  maxUploadMb: { env: 'MAX_UPLOAD_MB', group: 'server', doc: 'largest accepted upload in MiB; larger ones get 413', ...positiveNumber(DEFAULT_MAX_UPLOAD_MB) },
  maxQueue: { env: 'MAX_QUEUE', group: 'server', doc: 'requests waiting for a place beside the running ones (up to the batch size run at once) before new ones get 503', ...integer(0, undefined, DEFAULT_MAX_QUEUE) },
  maxAudioSeconds: {
    env: 'MAX_AUDIO_SECONDS',
    group: 'server',
    doc: 'longest decoded audio accepted (by the server and the CLI); longer uploads get 413 as soon as decoding passes the limit, so a small file cannot expand into days of audio',
    ...integer(1, undefined, DEFAULT_MAX_AUDIO_SECONDS),
  },
  decodeConcurrency: {
    env: 'DECODE_CONCURRENCY',
    group: 'server',
    doc: 'uploads decoded at once; each is decoded and checked before it waits for inference, so an undecodable one gets 400 even when the queue is full',
    ...integer(1, 64, 2),
  },
  decodeTimeoutSeconds: {
    env: 'DECODE_TIMEOUT_SECONDS',
    group: 'server',
    doc: 'time limit on decoding one upload to samples; past it the request gets 408',
    ...positiveNumber(120),
  },
  jobTimeoutSeconds: {
    env: 'JOB_TIMEOUT_SECONDS',
    group: 'server',
    doc: 'time limit on one transcription once it runs (decoding steps, alignment); past it the job is cancelled and gets 503; `0`: no limit',
    ...integer(0, undefined, 3600),
  },
  corsOrigins: {
    env: 'CORS_ORIGINS',
    group: 'server',
    doc: 'comma-separated origins browsers may call the API from (`*`: any); empty: no CORS headers',
    ...text('empty'),
  },
  tlsCertFile: { env: 'TLS_CERT_FILE', group: 'server', doc: 'PEM certificate (chain): with `TLS_KEY_FILE` the server speaks HTTPS and `wss://`', ...path('unset') },
  tlsKeyFile: { env: 'TLS_KEY_FILE', group: 'server', doc: "PEM private key of `TLS_CERT_FILE`", ...path('unset') },
  shutdownGraceSeconds: {
    env: 'SHUTDOWN_GRACE_SECONDS',
    group: 'server',
    doc: 'on SIGTERM or SIGINT, how long running and queued jobs may take to finish before the process exits anyway',
    ...positiveNumber(30),
  },
  realtimeMaxSessions: {
    env: 'REALTIME_MAX_SESSIONS',
    group: 'server',
    doc: 'live transcription sockets (`/v1/realtime`) open at once; more are refused; `0` turns the endpoint off',
    ...integer(0, 1024, 32),
  },
  realtimeUpdateSeconds: {
    env: 'REALTIME_UPDATE_SECONDS',
    group: 'server',
    doc: 'audio between two partial-transcript updates of a live utterance',
    ...positiveNumber(1),
  },
  realtimeMaxUtteranceSeconds: {
    env: 'REALTIME_MAX_UTTERANCE_SECONDS',
    group: 'server',
    doc: 'longest live utterance: past it the utterance is cut at its quietest point and completed, so every prompt stays bounded',
    ...integer(5, 600, 30),
  },
  logLevel: {
    env: 'LOG_LEVEL',
    group: 'server',
    doc: "the server's log level; the CLI prints the engine's messages only when it is `info` or `debug`",
    ...choice(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  },
  uploadDir: { env: 'UPLOAD_DIR', group: 'server', doc: 'where uploads are streamed while they are transcribed', ...mapped(path('OS temp dir'), (v) => (v ? resolve(v) : tmpdir())) },

  // audio
  ffmpeg: { env: 'QWEN3_ASR_FFMPEG', group: 'audio', doc: 'the ffmpeg binary (from `PATH`) that decodes compressed audio and video; without one, the embedded decoder does', ...textOr('ffmpeg') },

  // development
  ortProfile: {
    env: 'QWEN3_ASR_ORT_PROFILE',
    group: 'development',
    doc: "file prefix for ONNX Runtime's per-op profile (JSON, one file per graph); unset: no profiling",
    ...text(),
  },
  testShared: { env: 'QWEN3_ASR_SHARED', group: 'development', doc: 'test data folder (golden checkpoints, audio)', ...path('`../shared` beside the repository') },
  goldenExtra: {
    env: 'QWEN3_ASR_GOLDEN_EXTRA',
    group: 'development',
    doc: 'more golden sets for the conformance tests: folders, path-list separated',
    ...text(),
  },
} satisfies Record<string, Setting<unknown>>;

export type SettingKey = keyof typeof SETTINGS;

/** Every setting's typed value. */
export type SettingValues = { -readonly [K in SettingKey]: ReturnType<(typeof SETTINGS)[K]['parse']> };

export interface Settings extends SettingValues {
  /** The settings given explicitly (by a non-blank variable or a flag), as opposed to defaulted. */
  readonly given: ReadonlySet<SettingKey>;
}

export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

/** The trimmed value, or undefined when unset or blank. */
function trimmed(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

function parseOne<K extends SettingKey>(key: K, raw: string | undefined, source: string): SettingValues[K] {
  const spec = SETTINGS[key] as Setting<SettingValues[K]>;
  try {
    return spec.parse(trimmed(raw));
  } catch (err) {
    if (err instanceof Invalid) throw new SettingError(spec.env, source, err.message);
    throw err;
  }
}

/**
 * One setting from the environment (default `process.env`), parsed afresh each call: what the
 * engine reads for its own defaults. Throws SettingError naming the variable.
 */
export function readSetting<K extends SettingKey>(key: K, env: Env = process.env): SettingValues[K] {
  return parseOne(key, env[SETTINGS[key].env], SETTINGS[key].env);
}

/**
 * Every setting from the environment (default `process.env`), with the CLI's flag values
 * (keyed by flag name; undefined: not given) overriding the variables they stand for. Throws
 * a SettingError naming the variable, or the flag, on the first invalid value.
 */
export function parseSettings(env: Env = process.env, flags: Readonly<Record<string, string | undefined>> = {}): Settings {
  const values: Partial<Record<SettingKey, unknown>> = {};
  const given = new Set<SettingKey>();
  for (const key of SETTING_KEYS) {
    const spec: Setting = SETTINGS[key];
    const flag = spec.cli && flags[spec.cli.name] !== undefined ? spec.cli.name : undefined;
    const raw = flag ? flags[flag] : env[spec.env];
    if (trimmed(raw) !== undefined) given.add(key);
    values[key] = parseOne(key, raw, flag ? `--${flag}` : spec.env);
  }
  return { ...(values as SettingValues), given };
}

/** The settings a CLI flag overrides, in table order. */
export function cliSettings(): { key: SettingKey; setting: Setting; flag: CliFlag }[] {
  return SETTING_KEYS.flatMap((key) => {
    const setting: Setting = SETTINGS[key];
    return setting.cli ? [{ key, setting, flag: setting.cli }] : [];
  });
}

/** A setting's meaning led by its allowed values or range, as README shows it. */
export function settingMeaning(s: Setting, doc = s.doc): string {
  return s.values ? `${s.values}: ${doc}` : doc;
}

function row(s: Setting): string {
  const cell = (t: string) => t.replace(/\|/g, '\\|');
  return `| ${code(s.env)} | ${cell(s.default)} | ${cell(settingMeaning(s))} |`;
}

/**
 * README's configuration tables (markdown): every variable but the development ones, by group,
 * then the development ones in a small table of their own.
 */
export function settingsMarkdown(): string {
  const all: Setting[] = SETTING_KEYS.map((k) => SETTINGS[k]);
  const ordered = (groups: SettingGroup[]) => groups.flatMap((g) => all.filter((s) => s.group === g));
  const head = ['| variable | default | meaning |', '|---|---|---|'];
  return [
    ...head,
    ...ordered(SETTING_GROUPS.filter((g) => g !== 'development')).map(row),
    '',
    'For development only:',
    '',
    ...head,
    ...ordered(['development']).map(row),
  ].join('\n');
}
