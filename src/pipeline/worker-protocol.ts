/** Messages between the main thread's Transcriber and the engine worker. */
import { PipelineError, type LoadProgress, type TranscriberConfig, type TranscriptionResult, type TranscriptSegment, type WordTimestamp, type PipelineErrorCode } from './types.ts';

export type WorkerConfig = Omit<TranscriberConfig, 'log' | 'onLoadProgress'> & { segmentSeconds: number; cacheDir?: string | false; alignOnly?: boolean };

export interface JobOptions {
  language?: string;
  context?: string;
  timestamps?: boolean;
  maxNewTokens?: number;
  /** Send `partial` messages as segments are decoded (the caller streams). */
  partials?: boolean;
}

export type ToWorker =
  | { type: 'load'; config: WorkerConfig }
  /** The audio: `samples`, or `samplesFile`, raw 16 kHz mono float32 written by the decode pool (decode-pool.ts). */
  | { type: 'transcribe'; id: number; samplesFile?: string; samples?: Float32Array; options: JobOptions }
  | { type: 'align'; id: number; samplesFile?: string; samples?: Float32Array; text: string; language: string }
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export interface SerializedError {
  name: string;
  message: string;
  code?: PipelineErrorCode | string;
}

export type FromWorker =
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | { type: 'load_progress'; progress: LoadProgress }
  | { type: 'ready'; languages: string[]; alignerLanguages?: string[] }
  | { type: 'load_failed'; error: SerializedError }
  | { type: 'partial'; id: number; index: number; text: string; language: string }
  | { type: 'segment'; id: number; segment: TranscriptSegment }
  | { type: 'progress'; id: number; done: number; total: number }
  | { type: 'result'; id: number; result: TranscriptionResult }
  | { type: 'aligned'; id: number; items: WordTimestamp[] }
  | { type: 'error'; id: number; error: SerializedError }
  | ({ type: 'stats' } & DecodeStepStats)
  | { type: 'closed' };

/** The shared batch's decoding steps since the last report (sent about once a second while it decodes). */
export interface DecodeStepStats {
  steps: number;
  /** Tokens decoded: one per running row per step. */
  tokens: number;
  /** [rows, steps that ran that many rows] pairs. */
  rows: [number, number][];
  /** Seconds from the first of these steps to the report. */
  seconds: number;
}

/** An error as it crosses a thread boundary: its name, message and code survive. */
export function serializeError(err: unknown): SerializedError {
  const e = err as Error & { code?: unknown };
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), code: typeof e?.code === 'string' ? e.code : undefined };
}

/** The error again on this side: a PipelineError as one, others as an Error with the same name and code. */
export function deserializeError(e: SerializedError): Error {
  if (e.name === 'PipelineError') return new PipelineError(e.code as PipelineErrorCode, e.message);
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code) (err as Error & { code?: string }).code = e.code;
  return err;
}
