/**
 * The Transcriber: the one pipeline both HTTP APIs and the CLI call. It owns the engine
 * worker and a FIFO queue of jobs: up to the batch size of jobs run in the worker at once,
 * their segments decoding together in one shared batch (engine/thinker/scheduler.ts), at most
 * `maxQueue` more wait here, and a job whose caller aborts leaves the queue, or has its rows
 * leave the batch at the next decoding step if it already runs (as does a job past its time
 * limit, `jobTimeoutMs`).
 *
 * A file is decoded and checked before its job joins the queue (decode-pool.ts): bad audio is
 * refused at once whatever the queue holds, and a waiting job holds the path of its decoded
 * samples, a file removed when the job ends, however it ends.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
  LIVE_DEFAULTS,
  type LiveEvent,
  type LiveOptions,
  type LiveSession,
  type PipelineStats,
} from './types.ts';
import { DecodePool, type DecodedFile } from './decode-pool.ts';
import { LiveSessionProxy } from './live-session.ts';
import type { FromLiveWorker } from './live-protocol.ts';
import { DEFAULT_SEGMENT_SECONDS } from './run-transcription.ts';
import { deserializeError, type FromWorker, type JobOptions, type ToWorker, type WorkerConfig } from './worker-protocol.ts';


/**
 * The most jobs in the worker at once, whatever MAX_INFERENCE_BATCH_SIZE allows: each holds its
 * decoded audio there, while waiting ones hold only their request.
 */
const MAX_ACTIVE_JOBS = 64;

/** Files decoded at once when the configuration does not say. */
const DEFAULT_DECODE_CONCURRENCY = 2;
/** Time limit of one file's decoding when the configuration does not say (ms). */
const DEFAULT_DECODE_TIMEOUT_MS = 120_000;

interface Job {
  id: number;
  message: ToWorker;
  opts: TranscribeOptions;
  /** Settles the caller's promise; the first call wins (a timed-out job's late answer is dropped). */
  resolve: (value: any) => void;
  reject: (err: Error) => void;
  cleanup: () => void;
  /** When it joined the queue (performance.now()). */
  queuedAt: number;
  /** Its time limit in the worker (jobTimeoutMs). */
  timer?: NodeJS.Timeout;
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
  /** Decodes files before their jobs are queued. */
  private readonly decoder: DecodePool;
  /** Decoded samples files of jobs not yet ended. */
  private readonly samplesFiles = new Set<string>();
  private readonly statsListeners = new Set<(stats: PipelineStats) => void>();
  private readonly loadStarted = performance.now();
  loadSeconds?: number;

  constructor(private readonly config: CreateTranscriberOptions) {
    this.modelName = config.model;
    this.device = config.device;
    this.maxActive = Math.max(1, Math.min(config.maxBatchSize, MAX_ACTIVE_JOBS));
    this.decoder = new DecodePool({
      concurrency: Math.max(1, config.decodeConcurrency ?? DEFAULT_DECODE_CONCURRENCY),
      timeoutMs: config.decodeTimeoutMs ?? DEFAULT_DECODE_TIMEOUT_MS,
      maxSeconds: config.maxAudioSeconds,
      dir: config.scratchDir ?? tmpdir(),
    });
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
    const { log: _log, onLoadProgress: _onLoadProgress, ...rest } = config;
    const workerConfig: WorkerConfig = { ...rest, segmentSeconds: config.segmentSeconds ?? DEFAULT_SEGMENT_SECONDS };
    this.post({ type: 'load', config: workerConfig });
  }

  get queueLength(): number {
    return this.queue.length;
  }

  get activeJobs(): number {
    return this.active.size;
  }

  get decoding(): { running: number; waiting: number } {
    return { running: this.decoder.running, waiting: this.decoder.queued };
  }

  onStats(listener: (stats: PipelineStats) => void): () => void {
    this.statsListeners.add(listener);
    return () => this.statsListeners.delete(listener);
  }

  private emit(stats: PipelineStats): void {
    for (const listener of this.statsListeners) {
      try {
        listener(stats);
      } catch (err) {
        this.config.log?.('warn', `a stats listener failed: ${(err as Error).message}`);
      }
    }
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
      case 'load_progress':
        this.config.onLoadProgress?.(msg.progress);
        return;
      case 'ready':
        this.languages = msg.languages;
        this.alignerLanguages = msg.alignerLanguages;
        this.loadSeconds = (performance.now() - this.loadStarted) / 1000;
        this.state = 'ready';
        this.decoder.warm();
        resolveReady();
        this.pump();
        return;
      case 'load_failed':
        this.state = 'failed';
        this.loadError = msg.error.message;
        this.config.log?.('error', `model load failed: ${msg.error.message}`);
        rejectReady(deserializeError(msg.error));
        for (const job of this.queue.splice(0)) {
          job.cleanup();
          job.reject(new PipelineError('model_not_ready', `The model failed to load: ${msg.error.message}`));
        }
        return;
      case 'stats':
        this.emit({ type: 'steps', steps: msg.steps, tokens: msg.tokens, rows: msg.rows, seconds: msg.seconds });
        return;
      case 'closed':
        return;
    }
    if ((msg as { type: string }).type.startsWith('live.')) {
      const live = msg as unknown as FromLiveWorker;
      this.live.get(live.id)?.deliver(live);
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
        this.finish(job, () => job.reject(deserializeError(msg.error)));
        break;
    }
  }

  private finish(job: Job, settle: () => void): void {
    job.cleanup();
    this.active.delete(job.id);
    settle();
    this.pump();
  }

  /**
   * A job past its time limit: its rows leave the batch at the next step (as on an abort) and
   * its caller is answered now; it keeps its place until the worker confirms, so the batch
   * never holds more jobs than it takes.
   */
  private timeOut(job: Job): void {
    const seconds = (this.config.jobTimeoutMs ?? 0) / 1000;
    job.reject(new PipelineError('job_timeout', `The transcription did not finish within ${seconds} s and was cancelled.`));
    this.post({ type: 'cancel', id: job.id });
  }

  private pump(): void {
    while (this.state === 'ready' && this.active.size < this.maxActive && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.active.set(job.id, job);
      this.emit({ type: 'started', waitedSeconds: (performance.now() - job.queuedAt) / 1000 });
      if (this.config.jobTimeoutMs) job.timer = setTimeout(() => this.timeOut(job), this.config.jobTimeoutMs);
      const transfer: ArrayBuffer[] = [];
      const m = job.message;
      if ((m.type === 'transcribe' || m.type === 'align') && m.samples) transfer.push(m.samples.buffer as ArrayBuffer);
      this.post(m, transfer);
    }
  }

  /** Why a job cannot be taken now (closed, model not loaded), or undefined. */
  private refusal(): PipelineError | undefined {
    if (this.closed) return new PipelineError('shutting_down', 'The transcriber is closed.');
    if (this.state === 'failed') return new PipelineError('model_not_ready', `The model failed to load: ${this.loadError}`);
    if (this.state === 'loading') return new PipelineError('model_not_ready', 'The model is still loading; try again shortly.');
    return undefined;
  }

  private submit<T>(message: ToWorker & { id: number }, opts: TranscribeOptions): Promise<T> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    if (this.queue.length >= this.config.maxQueue && this.active.size >= this.maxActive) {
      return Promise.reject(new PipelineError('queue_full', `The server is busy: ${this.queue.length} requests are already waiting.`));
    }
    if (opts.signal?.aborted) return Promise.reject(new PipelineError('aborted', 'The request was cancelled.'));
    return new Promise<T>((resolveJob, rejectJob) => {
      let settled = false;
      const once =
        <A>(settle: (a: A) => void) =>
        (a: A) => {
          if (settled) return;
          settled = true;
          clearTimeout(job.timer);
          settle(a);
        };
      const resolve = once(resolveJob);
      const reject = once(rejectJob);
      const job: Job = { id: message.id, message, opts, resolve, reject, cleanup: () => undefined, queuedAt: performance.now() };
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

  /**
   * Decodes `path` (decode pool), then queues the job `make` builds around its samples file;
   * the file is removed when the job ends, whatever the outcome.
   */
  private async decodeThenSubmit<T>(path: string, opts: TranscribeOptions, make: (file: DecodedFile) => ToWorker & { id: number }): Promise<T> {
    const refused = this.refusal();
    if (refused) throw refused;
    const file = await this.decoder.decode(path, opts.signal);
    this.samplesFiles.add(file.path);
    try {
      this.emit({ type: 'decoded', seconds: file.seconds, audioSeconds: file.audioSeconds });
      return await this.submit<T>(make(file), opts);
    } finally {
      this.samplesFiles.delete(file.path);
      await rm(file.path, { force: true }).catch(() => undefined);
    }
  }

  transcribeFile(path: string, opts: TranscribeOptions = {}): Promise<TranscriptionResult> {
    return this.decodeThenSubmit(path, opts, (file) => ({ type: 'transcribe', id: this.nextId++, samplesFile: file.path, options: this.jobOptions(opts) }));
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
    return this.decodeThenSubmit(path, opts, (file) => ({ type: 'align', id: this.nextId++, samplesFile: file.path, text, language }));
  }

  /** Open live sessions, by id (their streams run in the worker). */
  private readonly live = new Map<number, LiveSessionProxy>();

  get liveSessions(): number {
    return this.live.size;
  }

  openLive(options: LiveOptions, onEvent: (event: LiveEvent) => void): LiveSession {
    if (this.closed) throw new PipelineError('shutting_down', 'The server is shutting down.');
    if (this.state === 'failed') throw new PipelineError('model_not_ready', `The model failed to load: ${this.loadError}`);
    if (this.state === 'loading') throw new PipelineError('model_not_ready', 'The model is still loading; try again shortly.');
    const limits = this.config.live ?? LIVE_DEFAULTS;
    if (limits.maxSessions === 0) throw new PipelineError('bad_request', 'Live transcription is turned off (REALTIME_MAX_SESSIONS=0).');
    if (this.live.size >= limits.maxSessions) throw new PipelineError('queue_full', `The server is busy: ${this.live.size} live sessions are open (REALTIME_MAX_SESSIONS=${limits.maxSessions}).`);
    const id = this.nextId++;
    const session = new LiveSessionProxy(
      id,
      options,
      (msg, transfer) => this.worker.postMessage(msg, transfer ?? []),
      onEvent,
      () => this.languages,
      () => this.live.delete(id),
    );
    this.live.set(id, session);
    return session;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new PipelineError('shutting_down', 'The server is shutting down; the transcription was cancelled.');
    for (const session of [...this.live.values()]) session.close();
    const decoding = this.decoder.close();
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
    await decoding;
    await Promise.all([...this.samplesFiles].map((p) => rm(p, { force: true }).catch(() => undefined)));
  }
}

/** Starts the engine worker and begins loading; returns at once (state 'loading'). */
export function createTranscriber(config: CreateTranscriberOptions): Transcriber {
  return new WorkerTranscriber(config);
}
