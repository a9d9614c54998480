/**
 * The Transcriber: the one pipeline both HTTP APIs and the CLI call. It owns the engine
 * worker and a FIFO queue of jobs: up to the batch size of jobs run in the worker at once,
 * their segments decoding together in one shared batch (engine/thinker/scheduler.ts), at most
 * `maxQueue` more wait here, and a job whose caller aborts leaves the queue, or has its rows
 * leave the batch at the next decoding step if it already runs.
 */
import { Worker } from 'node:worker_threads';
import {
  PipelineError,
  type Device,
  type TranscribeOptions,
  type Transcriber,
  type TranscriberConfig,
  type TranscriberState,
  type TranscriptionResult,
  type WordTimestamp,
  type LiveEvent,
  type LiveOptions,
  type LiveSession,
} from './types.ts';
import { DEFAULT_SEGMENT_SECONDS } from './run-transcription.ts';
import type { FromWorker, JobOptions, SerializedError, ToWorker, WorkerConfig } from './worker-protocol.ts';


/**
 * The most jobs in the worker at once, whatever MAX_INFERENCE_BATCH_SIZE allows: each holds its
 * decoded audio there, while waiting ones hold only their request.
 */
const MAX_ACTIVE_JOBS = 64;

interface Job {
  id: number;
  message: ToWorker;
  opts: TranscribeOptions;
  resolve: (value: any) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

function toError(e: SerializedError): Error {
  if (e.name === 'PipelineError') return new PipelineError(e.code as any, e.message);
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code) (err as Error & { code?: string }).code = e.code;
  return err;
}

export interface CreateTranscriberOptions extends TranscriberConfig {
  /** Compiled-graph cache folder; false disables it. */
  cacheDir?: string | false;
  /** Load only the forced aligner (for align-only use such as `qwen3-asr align`). */
  alignOnly?: boolean;
}

class WorkerTranscriber implements Transcriber {
  state: TranscriberState = 'loading';
  loadError?: string;
  languages: readonly string[] = [];
  alignerLanguages?: readonly string[];
  readonly modelName: string;
  readonly device: Device;

  private worker: Worker;
  private readyPromise: Promise<void>;
  private queue: Job[] = [];
  /** Jobs in the worker, by id: their segments decode in one shared batch. */
  private readonly active = new Map<number, Job>();
  /** The most jobs in the worker at once (the batch's rows; jobs beyond wait here, in order). */
  private readonly maxActive: number;
  private nextId = 1;
  private closed = false;

  constructor(private readonly config: CreateTranscriberOptions) {
    this.modelName = config.model;
    this.device = config.device;
    this.maxActive = Math.max(1, Math.min(config.maxBatchSize, MAX_ACTIVE_JOBS));
    this.worker = new Worker(new URL('./engine-worker-entry.mjs', import.meta.url));
    let resolveReady!: () => void;
    let rejectReady!: (e: Error) => void;
    this.readyPromise = new Promise((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    // Callers that never await whenReady() must not see an unhandled rejection.
    this.readyPromise.catch(() => undefined);
    this.worker.on('message', (msg: FromWorker) => this.onMessage(msg, resolveReady, rejectReady));
    this.worker.on('error', (err) => this.fail(`engine worker crashed: ${err.message}`, rejectReady));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.fail(`engine worker exited (code ${code})`, rejectReady);
    });
    const { log: _log, ...rest } = config;
    const workerConfig: WorkerConfig = { ...rest, segmentSeconds: config.segmentSeconds ?? DEFAULT_SEGMENT_SECONDS };
    this.post({ type: 'load', config: workerConfig });
  }

  get queueLength(): number {
    return this.queue.length;
  }

  get activeJobs(): number {
    return this.active.size;
  }

  whenReady(): Promise<void> {
    return this.readyPromise;
  }

  private post(msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(msg, transfer);
  }

  private fail(message: string, rejectReady: (e: Error) => void): void {
    if (this.state !== 'failed') {
      this.state = 'failed';
      this.loadError = message;
      this.config.log?.('error', message);
    }
    rejectReady(new PipelineError('model_not_ready', message));
    const err = new PipelineError('internal', message);
    for (const job of [...this.active.values()]) this.finish(job, () => job.reject(err));
    for (const job of this.queue.splice(0)) {
      job.cleanup();
      job.reject(err);
    }
  }

  private onMessage(msg: FromWorker, resolveReady: () => void, rejectReady: (e: Error) => void): void {
    switch (msg.type) {
      case 'log':
        this.config.log?.(msg.level, msg.msg);
        return;
      case 'ready':
        this.languages = msg.languages;
        this.alignerLanguages = msg.alignerLanguages;
        this.state = 'ready';
        resolveReady();
        this.pump();
        return;
      case 'load_failed':
        this.state = 'failed';
        this.loadError = msg.error.message;
        this.config.log?.('error', `model load failed: ${msg.error.message}`);
        rejectReady(toError(msg.error));
        for (const job of this.queue.splice(0)) {
          job.cleanup();
          job.reject(new PipelineError('model_not_ready', `The model failed to load: ${msg.error.message}`));
        }
        return;
      case 'closed':
        return;
    }
    const job = this.active.get(msg.id);
    if (!job) return; // a cancelled job's late messages
    switch (msg.type) {
      case 'partial':
        job.opts.onPartial?.(msg.index, msg.text, msg.language);
        break;
      case 'segment':
        job.opts.onSegment?.(msg.segment);
        break;
      case 'progress':
        job.opts.onProgress?.(msg.done, msg.total);
        break;
      case 'result':
        this.finish(job, () => job.resolve(msg.result));
        break;
      case 'aligned':
        this.finish(job, () => job.resolve(msg.items));
        break;
      case 'error':
        this.finish(job, () => job.reject(toError(msg.error)));
        break;
    }
  }

  private finish(job: Job, settle: () => void): void {
    job.cleanup();
    this.active.delete(job.id);
    settle();
    this.pump();
  }

  private pump(): void {
    while (this.state === 'ready' && this.active.size < this.maxActive && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.active.set(job.id, job);
      const transfer: ArrayBuffer[] = [];
      const m = job.message;
      if ((m.type === 'transcribe' || m.type === 'align') && m.samples) transfer.push(m.samples.buffer as ArrayBuffer);
      this.post(m, transfer);
    }
  }

  private submit<T>(message: ToWorker & { id: number }, opts: TranscribeOptions): Promise<T> {
    if (this.closed) return Promise.reject(new PipelineError('model_not_ready', 'The transcriber is closed.'));
    if (this.state === 'failed') return Promise.reject(new PipelineError('model_not_ready', `The model failed to load: ${this.loadError}`));
    if (this.state === 'loading') return Promise.reject(new PipelineError('model_not_ready', 'The model is still loading; try again shortly.'));
    if (this.queue.length >= this.config.maxQueue && this.active.size >= this.maxActive) {
      return Promise.reject(new PipelineError('queue_full', `The server is busy: ${this.queue.length} requests are already waiting.`));
    }
    if (opts.signal?.aborted) return Promise.reject(new PipelineError('aborted', 'The request was cancelled.'));
    return new Promise<T>((resolve, reject) => {
      const job: Job = { id: message.id, message, opts, resolve, reject, cleanup: () => undefined };
      const onAbort = () => {
        const i = this.queue.indexOf(job);
        if (i >= 0) {
          this.queue.splice(i, 1);
          job.cleanup();
          reject(new PipelineError('aborted', 'The request was cancelled.'));
        } else if (this.active.has(job.id)) {
          this.post({ type: 'cancel', id: job.id });
        }
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      job.cleanup = () => opts.signal?.removeEventListener('abort', onAbort);
      this.queue.push(job);
      this.pump();
    });
  }

  private jobOptions(opts: TranscribeOptions): JobOptions {
    return { language: opts.language, context: opts.context, timestamps: opts.timestamps, maxNewTokens: opts.maxNewTokens, partials: opts.onPartial !== undefined };
  }

  transcribeFile(path: string, opts: TranscribeOptions = {}): Promise<TranscriptionResult> {
    const id = this.nextId++;
    return this.submit({ type: 'transcribe', id, path, options: this.jobOptions(opts) }, opts);
  }

  transcribeSamples(samples: Float32Array, opts: TranscribeOptions = {}): Promise<TranscriptionResult> {
    const id = this.nextId++;
    // Copy: the buffer is transferred to the worker.
    return this.submit({ type: 'transcribe', id, samples: samples.slice(), options: this.jobOptions(opts) }, opts);
  }

  align(samples: Float32Array, text: string, language: string, opts: { signal?: AbortSignal } = {}): Promise<WordTimestamp[]> {
    const id = this.nextId++;
    return this.submit({ type: 'align', id, samples: samples.slice(), text, language }, opts);
  }

  alignFile(path: string, text: string, language: string, opts: { signal?: AbortSignal } = {}): Promise<WordTimestamp[]> {
    const id = this.nextId++;
    return this.submit({ type: 'align', id, path, text, language }, opts);
  }

  get liveSessions(): number {
    return 0;
  }

  openLive(_options: LiveOptions, _onEvent: (event: LiveEvent) => void): LiveSession {
    throw new PipelineError('internal', 'Live transcription is not available yet.');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new PipelineError('aborted', 'The transcriber was closed.');
    for (const job of this.queue.splice(0)) {
      job.cleanup();
      job.reject(err);
    }
    for (const job of [...this.active.values()]) {
      this.post({ type: 'cancel', id: job.id });
      this.active.delete(job.id);
      job.cleanup();
      job.reject(err);
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      this.worker.once('message', (m: FromWorker) => {
        if (m.type === 'closed') {
          clearTimeout(timer);
          resolve();
        }
      });
      this.post({ type: 'close' });
    });
    await this.worker.terminate();
  }
}

/** Starts the engine worker and begins loading; returns at once (state 'loading'). */
export function createTranscriber(config: CreateTranscriberOptions): Transcriber {
  return new WorkerTranscriber(config);
}
