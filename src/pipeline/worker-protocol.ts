/** Messages between the main thread's Transcriber and the engine worker. */
import type { TranscriberConfig, TranscriptionResult, TranscriptSegment, WordTimestamp, PipelineErrorCode } from './types.ts';

export type WorkerConfig = Omit<TranscriberConfig, 'log'> & { segmentSeconds: number; cacheDir?: string | false; alignOnly?: boolean };

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
  | { type: 'transcribe'; id: number; path?: string; samples?: Float32Array; options: JobOptions }
  | { type: 'align'; id: number; path?: string; samples?: Float32Array; text: string; language: string }
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export interface SerializedError {
  name: string;
  message: string;
  code?: PipelineErrorCode | string;
}

export type FromWorker =
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | { type: 'ready'; languages: string[]; alignerLanguages?: string[] }
  | { type: 'load_failed'; error: SerializedError }
  | { type: 'partial'; id: number; index: number; text: string; language: string }
  | { type: 'segment'; id: number; segment: TranscriptSegment }
  | { type: 'progress'; id: number; done: number; total: number }
  | { type: 'result'; id: number; result: TranscriptionResult }
  | { type: 'aligned'; id: number; items: WordTimestamp[] }
  | { type: 'error'; id: number; error: SerializedError }
  | { type: 'closed' };
