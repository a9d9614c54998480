/**
 * The contract between callers (HTTP APIs, CLI) and the transcription pipeline:
 * bytes/file -> decode (16 kHz mono f32) -> segmentation -> engine -> alignment -> result.
 * Nothing about HTTP appears here; response formats are built from TranscriptionResult.
 */

import type { Device, Quantization, WordTimestamp } from '../engine/types.ts';

export type { Device, Quantization, WordTimestamp };
/** How segment texts join into one transcript (a space unless both sides are written without). */
export { joinSegmentTexts } from '../engine/text/segment-text.ts';

export interface TranscriptSegment {
  id: number;
  /** Seconds from the start of the audio. */
  start: number;
  end: number;
  text: string;
  /** Canonical Qwen language name ("English"), "" when none was detected. */
  language: string;
  /** Raw decoded model output before parsing (e.g. "language English<asr_text>..."). */
  raw: string;
  /** Generated token ids, including the stop token when one was produced. */
  tokenIds: number[];
  /** The ids of the text alone (no language prefix, no stop token): verbose_json's `tokens`. */
  textTokenIds: number[];
  /** True when generation stopped at max_new_tokens instead of a stop token. */
  truncated: boolean;
  /** True when the repetition guard stopped a loop (the text is the loop collapsed, as the official parser gives it). */
  repetitionStopped: boolean;
  words?: WordTimestamp[];
}

export interface TranscribeOptions {
  /** Canonical Qwen language name to force (already normalised by the caller); undefined detects it. */
  language?: string;
  /** Context text for the system turn (names, terms). */
  context?: string;
  /** Word timestamps through the forced aligner; the pipeline throws PipelineError('aligner_unavailable') without one. */
  timestamps?: boolean;
  /** Explicit cap on generated tokens per segment (the budget otherwise grows with duration). */
  maxNewTokens?: number;
  /** Aborts queued or running work (client went away). */
  signal?: AbortSignal;
  /** Called as each segment finishes, in order (SSE streaming, CLI progress). */
  onSegment?: (segment: TranscriptSegment) => void;
  /**
   * Called as segment `index` is decoded, with its settled text so far (never retracted; the
   * finished segment's text extends it) and its language once known ("" before).
   */
  onPartial?: (index: number, text: string, language: string) => void;
  /** Called with seconds of audio done / total. */
  onProgress?: (doneSeconds: number, totalSeconds: number) => void;
}

export interface TranscriptionResult {
  text: string;
  /** Per-segment languages merged as the original does: empties dropped, consecutive duplicates dropped, joined with ",". */
  language: string;
  /** Audio duration in seconds. */
  duration: number;
  segments: TranscriptSegment[];
  /** All words, when timestamps were requested. */
  words?: WordTimestamp[];
}

export type PipelineErrorCode =
  | 'audio_empty'
  | 'audio_too_short'
  | 'audio_undecodable'
  | 'audio_too_long'
  | 'decode_timeout'
  | 'job_timeout'
  | 'bad_request'
  | 'shutting_down'
  | 'aligner_unavailable'
  | 'aligner_language_unsupported'
  | 'queue_full'
  | 'aborted'
  | 'model_not_ready'
  | 'internal';

/** Errors the pipeline raises on bad input or load; callers map `code` to HTTP statuses / exit codes. */
export class PipelineError extends Error {
  constructor(
    readonly code: PipelineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PipelineError';
  }
}

/** How to build a Transcriber (src/pipeline/transcriber.ts). */
export interface TranscriberConfig {
  /** Checkpoint folder or Hugging Face repo id (resolved in the HF cache layout, downloaded if allowed). */
  model: string;
  /** Forced-aligner checkpoint folder or repo id; undefined/empty = no word timestamps. */
  aligner?: string;
  device: Device;
  quant: Quantization;
  /** ONNX Runtime intra-op threads (0 = one per physical core, engine/runtime/cpu-threads.ts). */
  threads: number;
  /** Segments decoded together as one batch. */
  maxBatchSize: number;
  /** Explicit cap on new tokens per segment; undefined = grows with duration only. */
  maxNewTokens?: number;
  /** Longest segment long audio is cut into, at quiet points (default DEFAULT_SEGMENT_SECONDS). */
  segmentSeconds?: number;
  /** Voice activity detection (Silero VAD): cuts in non-speech, long non-speech not decoded; undefined: off (the official cuts). */
  vad?: VadSettings;
  /** Jobs waiting for a place beside the running ones before new ones are refused with PipelineError('queue_full'). */
  maxQueue: number;
  /** Longest decoded audio accepted (seconds); longer files fail with 'audio_too_long'. Undefined: no limit. */
  maxAudioSeconds?: number;
  /** Files decoded at once (transcribeFile, alignFile), in worker threads, before their jobs wait for the engine (default 2). */
  decodeConcurrency?: number;
  /** Time limit on decoding one file (ms); past it the decoder is stopped and the job fails with 'decode_timeout' (default 120 000). */
  decodeTimeoutMs?: number;
  /** Time limit of a job once it runs in the engine worker (ms); past it the job is cancelled with 'job_timeout'. 0 or undefined: none. */
  jobTimeoutMs?: number;
  /** Folder for the decoded samples of files waiting for the engine (default: the OS temp dir). */
  scratchDir?: string;
  hfHome?: string;
  hfEndpoint?: string;
  hfOffline?: boolean;
  hfToken?: string;
  /** Live transcription (openLive); undefined: the defaults of LIVE_DEFAULTS. */
  live?: LiveLimits;
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** Called as the model downloads and loads (the CLI's progress); never after the transcriber is ready. */
  onLoadProgress?: (progress: LoadProgress) => void;
}

/**
 * How far loading is: a repo id's files downloading (bytes per file and of all of them, files
 * already cached counting whole), then the build of each part of the models, in order.
 */
export type LoadProgress =
  | { stage: 'download'; repo: string; file: string; fileIndex: number; files: number; fileBytes: number; fileSize?: number; bytes: number; totalBytes: number }
  | { stage: 'load'; part: string; step: number; steps: number };

export interface VadSettings {
  /** Speech probability at or above which a 32 ms window is speech. */
  threshold: number;
  /** Non-speech this long ends a speech region and is not decoded. */
  minSilenceMs: number;
}

export interface LiveLimits {
  /** Live sessions open at once; 0: live transcription is off. */
  maxSessions: number;
  /** Audio between two partial updates of an utterance (s). */
  updateSeconds: number;
  /** Longest utterance (s): past it the utterance is cut at its quietest point and completed. */
  maxUtteranceSeconds: number;
}

/** Live transcription's limits when the configuration gives none (the settings' defaults). */
export const LIVE_DEFAULTS: LiveLimits = { maxSessions: 32, updateSeconds: 1, maxUtteranceSeconds: 30 };

export type TranscriberState = 'loading' | 'ready' | 'failed';

/** What the pipeline measures as it works (Transcriber.onStats). */
export type PipelineStats =
  /** A file was decoded and checked, before its job waits for the engine. */
  | { type: 'decoded'; seconds: number; audioSeconds: number }
  /** A job left the queue for the engine worker after waiting `waitedSeconds`. */
  | { type: 'started'; waitedSeconds: number }
  /**
   * Decoding steps of the shared batch since the last report (about one a second while it
   * decodes): `rows` pairs a batch size with the steps that ran it; each row gets one token a step.
   */
  | { type: 'steps'; steps: number; tokens: number; rows: [number, number][]; seconds: number };

/**
 * The one pipeline both HTTP APIs and the CLI call. Inference runs in a worker thread;
 * every method returns without blocking the caller's event loop.
 */
export interface Transcriber {
  readonly state: TranscriberState;
  /** Why loading failed (state 'failed'). */
  readonly loadError?: string;
  /** Resolves when the model is loaded; rejects with the load error. */
  whenReady(): Promise<void>;
  /** The configured model name (repo id or folder as given). */
  readonly modelName: string;
  readonly device: Device;
  /** Language names the ASR checkpoint supports (its config's support_languages). */
  readonly languages: readonly string[];
  /** Languages the aligner supports; undefined when no aligner is configured. */
  readonly alignerLanguages?: readonly string[];
  /** Jobs waiting for a place in the worker. */
  readonly queueLength: number;
  /** Jobs in the worker, their segments decoding in one shared batch. */
  readonly activeJobs: number;
  /** Files in the decoding workers and files waiting for one (transcribeFile, alignFile). */
  readonly decoding?: { running: number; waiting: number };
  /** Seconds the model took to load, once it is ready. */
  readonly loadSeconds?: number;
  /** Subscribes to the pipeline's measurements (the server's metrics); returns the function that unsubscribes. */
  onStats?(listener: (stats: PipelineStats) => void): () => void;
  /** Decodes an audio file (any format) and transcribes it. */
  transcribeFile(path: string, opts?: TranscribeOptions): Promise<TranscriptionResult>;
  /** Transcribes 16 kHz mono float32 samples. */
  transcribeSamples(samples: Float32Array, opts?: TranscribeOptions): Promise<TranscriptionResult>;
  /** Aligns a given text to audio (forced aligner only), items in seconds. */
  align(samples: Float32Array, text: string, language: string, opts?: { signal?: AbortSignal }): Promise<WordTimestamp[]>;
  /** Decodes an audio file (any format) and aligns a given text to it. */
  alignFile(path: string, text: string, language: string, opts?: { signal?: AbortSignal }): Promise<WordTimestamp[]>;
  /**
   * Opens a live transcription: audio arrives in pieces, utterances are found (server VAD) or
   * committed by the caller, partial text arrives as deltas and each utterance ends in one
   * `completed` event. Throws PipelineError('model_not_ready') before the model is loaded and
   * 'queue_full' when LiveLimits.maxSessions are open.
   */
  openLive(options: LiveOptions, onEvent: (event: LiveEvent) => void): LiveSession;
  /** Live sessions open now. */
  readonly liveSessions: number;
  close(): Promise<void>;
}

/** How live audio arrives: 16-bit little-endian PCM at `rate` Hz, or G.711 µ-law / A-law at 8 kHz. */
export type LiveAudioFormat = { type: 'pcm16'; rate: number } | { type: 'pcmu' } | { type: 'pcma' };

/** Server-side turn detection (Silero VAD); null: the caller commits each utterance. */
export interface LiveTurnDetection {
  /** Speech probability at or above which audio is speech (0–1). */
  threshold: number;
  /** Audio kept before the detected start of speech (ms). */
  prefixPaddingMs: number;
  /** Silence that ends an utterance (ms). */
  silenceDurationMs: number;
}

export interface LiveOptions {
  format: LiveAudioFormat;
  /** Language hint (a name the checkpoint supports, or an ISO code the pipeline maps). */
  language?: string;
  /** Context text (the prompt's system message). */
  context?: string;
  turnDetection: LiveTurnDetection | null;
}

/** Events of a live session; `utterance` numbers them from 1 in the order they start. */
export type LiveEvent =
  | { type: 'speech_started'; utterance: number; audioStartMs: number }
  | { type: 'speech_stopped'; utterance: number; audioEndMs: number }
  /** The utterance's audio is complete (VAD silence, a commit, or its maximum length) and its final decode is under way. */
  | { type: 'committed'; utterance: number }
  /** Text that has become stable; deltas of an utterance are never retracted. */
  | { type: 'delta'; utterance: number; text: string }
  /** The exact decode of the whole utterance; `seconds` is its audio duration. */
  | { type: 'completed'; utterance: number; text: string; language: string; seconds: number }
  | { type: 'failed'; utterance: number; code: string; message: string }
  /** A problem with the session's input or the engine that belongs to no utterance. */
  | { type: 'error'; code: string; message: string };

export interface LiveSession {
  /** Changes the format, language, context or turn detection; applies to the next utterance (the format at once). */
  configure(options: Partial<LiveOptions>): void;
  /** Audio in the session's format. Throws PipelineError('bad_request') on a malformed piece (odd PCM length). */
  append(audio: Uint8Array): void;
  /**
   * Ends the current utterance at the audio so far (the engine thread decides, as its VAD may
   * have ended it already); resolves with its number once the `committed` event is sent.
   * Rejects with PipelineError('bad_request') when the buffer holds no uncommitted audio.
   */
  commit(): Promise<number>;
  /** Drops audio not yet committed (the current utterance is abandoned without events). */
  clear(): void;
  /** Frees the session's rows and buffers; pending utterances are abandoned. */
  close(): void;
}
