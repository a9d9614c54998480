/**
 * The decode pool: files are decoded and checked here, in worker threads (decode-worker.ts),
 * before their jobs wait for the engine. So an empty, undecodable or too long file is refused
 * at once, even while the engine's queue is full, and the queue holds only jobs whose audio is
 * known to be good.
 *
 * - Concurrency: at most `concurrency` files decode at once; more wait here, in order.
 * - Time limit: a decode that passes `timeoutMs` fails with PipelineError('decode_timeout'). Its
 *   worker is told to stop (which kills ffmpeg or the embedded decoder's thread) and is
 *   terminated if it does not answer within STOP_GRACE_MS (a decoder stuck in JavaScript).
 * - Memory: a worker writes the samples (raw 16 kHz mono float32) to a file in `dir`, so a job
 *   waiting in the queue holds a path instead of up to hours of samples; the caller removes the
 *   file when the job ends (transcriber.ts). A file of a decode that failed, was cancelled or
 *   timed out is removed here.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FromDecodeWorker, ToDecodeWorker } from './decode-worker.ts';
import { PipelineError } from './types.ts';
import { deserializeError } from './worker-protocol.ts';

/** How long a worker told to stop may take before it is terminated. */
const STOP_GRACE_MS = 1000;

export interface DecodePoolOptions {
  /** Files decoded at once. */
  concurrency: number;
  /** Time limit of one decode, from when a worker takes it (ms). */
  timeoutMs: number;
  /** Longest audio accepted (seconds); undefined: no limit. */
  maxSeconds?: number;
  /** Folder of the decoded samples files. */
  dir: string;
}

export interface DecodedFile {
  /** Raw 16 kHz mono float32 samples; the caller removes it. */
  path: string;
  /** Audio seconds. */
  audioSeconds: number;
  /** Seconds the decode took (without the wait for a worker). */
  seconds: number;
}

interface Task {
  input: string;
  signal?: AbortSignal;
  resolve: (file: DecodedFile) => void;
  reject: (err: Error) => void;
  onAbort: () => void;
}

/** A worker thread and the task it runs. */
class PoolWorker {
  readonly worker = new Worker(new URL('./decode-worker-entry.mjs', import.meta.url));
  /** Receives the worker's answer for the running task, or its exit (undefined). */
  listener?: (msg: FromDecodeWorker | undefined) => void;
  dead = false;

  constructor() {
    this.worker.on('message', (msg: FromDecodeWorker) => this.listener?.(msg));
    this.worker.on('error', () => undefined);
    this.worker.on('exit', () => {
      this.dead = true;
      this.listener?.(undefined);
    });
  }
}

export class DecodePool {
  private readonly idle: PoolWorker[] = [];
  private readonly waiting: Task[] = [];
  /** The running decodes' stop functions. */
  private readonly stops = new Set<(err: Error) => void>();
  /** Files written or being written by running decodes, removed unless handed to the caller. */
  private readonly pending = new Set<Promise<void>>();
  private busy = 0;
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: DecodePoolOptions) {}

  get running(): number {
    return this.busy;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Starts a worker ahead of the first file (a worker takes a fraction of a second to start). */
  warm(): void {
    if (this.closed || this.idle.length > 0 || this.busy > 0) return;
    const pw = new PoolWorker();
    pw.worker.unref();
    this.idle.push(pw);
  }

  /** Decodes and checks `input`; resolves with its samples file, rejects with the decoder's or a PipelineError. */
  decode(input: string, signal?: AbortSignal): Promise<DecodedFile> {
    if (this.closed) return Promise.reject(new PipelineError('shutting_down', 'The server is shutting down.'));
    if (signal?.aborted) return Promise.reject(new PipelineError('aborted', 'The request was cancelled.'));
    return new Promise<DecodedFile>((resolve, reject) => {
      const task: Task = {
        input,
        signal,
        resolve,
        reject,
        onAbort: () => {
          const i = this.waiting.indexOf(task);
          if (i < 0) return;
          this.waiting.splice(i, 1);
          reject(new PipelineError('aborted', 'The request was cancelled.'));
        },
      };
      signal?.addEventListener('abort', task.onAbort, { once: true });
      this.waiting.push(task);
      this.next();
    });
  }

  private next(): void {
    while (!this.closed && this.busy < this.opts.concurrency && this.waiting.length > 0) {
      const task = this.waiting.shift()!;
      task.signal?.removeEventListener('abort', task.onAbort);
      let worker = this.idle.pop();
      while (worker?.dead) worker = this.idle.pop();
      this.run(worker ?? new PoolWorker(), task);
    }
  }

  private run(pw: PoolWorker, task: Task): void {
    this.busy++;
    pw.worker.ref();
    const id = this.nextId++;
    const output = join(this.opts.dir, `qwen3-asr-samples-${randomUUID()}.f32`);
    const started = performance.now();
    let settled = false;
    let released = false;
    let fileDone!: () => void;
    const fileSettled = new Promise<void>((r) => (fileDone = r));
    this.pending.add(fileSettled);

    const settle = (err: Error | undefined, file?: DecodedFile): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      task.signal?.removeEventListener('abort', onAbort);
      this.stops.delete(stop);
      if (err) task.reject(err);
      else task.resolve(file!);
    };
    // The worker is free again (it answered, or is gone): the slot goes to the next file.
    const release = (keepFile: boolean): void => {
      if (released) return;
      released = true;
      clearTimeout(killTimer);
      pw.listener = undefined;
      this.busy--;
      const removed = keepFile ? Promise.resolve() : rm(output, { force: true }).then(() => undefined, () => undefined);
      void removed.then(() => {
        this.pending.delete(fileSettled);
        fileDone();
      });
      if (!pw.dead && !this.closed) {
        pw.worker.unref();
        this.idle.push(pw);
      } else if (!pw.dead) void pw.worker.terminate();
      this.next();
    };
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (err: Error): void => {
      if (settled) return;
      settle(err);
      pw.worker.postMessage({ type: 'cancel', id } satisfies ToDecodeWorker);
      killTimer = setTimeout(() => {
        pw.dead = true;
        // The file is removed once the thread is gone, so that it cannot write it afterwards.
        void pw.worker.terminate().finally(() => release(false));
      }, STOP_GRACE_MS);
    };
    this.stops.add(stop);
    const onAbort = (): void => stop(new PipelineError('aborted', 'The request was cancelled.'));
    task.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => stop(new PipelineError('decode_timeout', `Decoding the audio took longer than ${this.opts.timeoutMs / 1000} s; it was stopped.`)),
      this.opts.timeoutMs,
    );

    pw.listener = (msg) => {
      if (msg === undefined) {
        settle(new PipelineError('internal', 'The audio decoder stopped unexpectedly.'));
        return release(false);
      }
      if (msg.id !== id) return;
      if (msg.type === 'decoded' && !settled) {
        settle(undefined, { path: output, audioSeconds: msg.seconds, seconds: (performance.now() - started) / 1000 });
        return release(true);
      }
      if (msg.type === 'failed') settle(deserializeError(msg.error));
      release(false);
    };
    // Past the decoder's own time limit the pool's timer has fired: the pool's error is the one the caller sees.
    pw.worker.postMessage({ type: 'decode', id, input: task.input, output, maxSeconds: this.opts.maxSeconds, timeoutMs: this.opts.timeoutMs + STOP_GRACE_MS } satisfies ToDecodeWorker);
  }

  /** Refuses new files, fails waiting and running ones with 'shutting_down', stops the workers and removes their files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new PipelineError('shutting_down', 'The server is shutting down.');
    for (const task of this.waiting.splice(0)) {
      task.signal?.removeEventListener('abort', task.onAbort);
      task.reject(err);
    }
    for (const stop of [...this.stops]) stop(err);
    await Promise.all(this.pending);
    await Promise.all(this.idle.splice(0).map((pw) => pw.worker.terminate()));
  }
}
