/**
 * Helper threads for the quantisers a first load spends most of its own time in (a CPU
 * profile of a 1.7B int8 first load on one thread: 11.8 s of 31.8 s in quantizePerChannelInt8
 * while the other core idles, on an AMD EPYC Zen 5 VM, 2 vCPUs). A load turns them on for its duration
 * (useQuantizeHelpers with the load's thread count, THREADS or one per core; then
 * stopQuantizeHelpers). Each pass is split across the calling thread and one
 * helper per further thread: for quantizePerChannelInt8
 * rows for the scales, then input columns (whole output lines) for the transposed values, so
 * no two threads write one cache line; for quantizeMatrix (MatMulNBits blocks) rows. The
 * output is the same, byte for byte (quantize.test.ts; the graph files of 1.7B int8 and int4
 * first loads compared equal with and without helpers).
 *
 * On an AMD EPYC Zen 5 VM, 2 vCPUs (so one helper), a first load of the 1.7B checkpoint with
 * an empty graph cache takes about 34 s for int4 (two decoder graphs) against 47–52 s on one
 * thread, and 20–29 s for int8 against 33–34 s.
 *
 * The graph builders are synchronous, so the calling thread waits for its helpers with
 * Atomics.wait, which needs the matrix and the outputs in shared memory: runtime/scratch.ts
 * allocates SharedArrayBuffers, and a matrix in ordinary memory is quantised on the calling
 * thread alone, as are small ones. Helpers start on the first large matrix and must say they
 * are ready within READY_MS; otherwise they are stopped and every matrix is done on one
 * thread. They are unref'd: an idle helper never keeps the process alive. A load stops them
 * when it is done: an idle helper's heap still refers to the last
 * buffers it was handed, and nothing makes it collect them, so the load's scratch buffers
 * would outlive the load (a bench process that loads the 0.6B model twice would peak 300 MB
 * higher).
 */
import { Worker } from 'node:worker_threads';
import { runQuantizePass, setParallelRunner, type QuantizeJob, type QuantizePass } from './quantize.ts';

/** Matrices of fewer values are quantised on the calling thread (a pass costs less than a hand-over). */
const MIN_VALUES = 1 << 20;
/** How long helpers may take to start (loading the TypeScript hooks in a fresh thread takes ~0.2 s on an AMD EPYC Zen 5 VM). */
const READY_MS = 20_000;
/** How long one pass of one helper may take (the 1.7B head, 311 M values, takes ~2 s on one thread of an AMD EPYC Zen 5 VM). */
const PASS_MS = 120_000;

/** What a helper is sent: the job (typed arrays over shared memory), its pass and range, and where to say it is done. */
export interface HelperTask {
  job: QuantizeJob;
  pass: QuantizePass;
  from: number;
  to: number;
  /** done[index]: 1 done, 2 failed. */
  done: Int32Array;
  index: number;
}

let helpers: Worker[] | undefined;
/** Set when helpers failed to start: this process quantises on one thread from then on. */
let unavailable = false;
/** Threads a quantisation pass may use, the caller's included (useQuantizeHelpers). */
let threads = 1;
let splitJobs = 0;

/** How many matrices helpers have taken part in (for tests). */
export function helperJobs(): number {
  return splitJobs;
}

/** The helpers, started on first use; empty when the load uses one thread or they could not start. */
function pool(): Worker[] {
  if (helpers || unavailable) return helpers ?? [];
  // One thread (THREADS=1) is this load's choice, not a failure: a later load may use more.
  const count = Math.min(7, threads - 1);
  if (count <= 0) return [];
  const ready = new Int32Array(new SharedArrayBuffer(4 * count));
  const started = Array.from({ length: count }, (_, index) => {
    const worker = new Worker(new URL('./quantize-helper-entry.mjs', import.meta.url), { workerData: { ready, index } });
    worker.unref();
    return worker;
  });
  for (let i = 0; i < count; i++) {
    if (Atomics.wait(ready, i, 0, READY_MS) === 'timed-out' && Atomics.load(ready, i) === 0) {
      for (const worker of started) void worker.terminate();
      unavailable = true;
      return [];
    }
  }
  helpers = started;
  return helpers;
}

/** Runs one pass over [0, total) split between this thread (the first part) and the helpers. */
function split(job: QuantizeJob, pass: QuantizePass, total: number, workers: Worker[]): void {
  const parts = workers.length + 1;
  const bound = (j: number) => Math.round((total * j) / parts);
  const done = new Int32Array(new SharedArrayBuffer(4 * workers.length));
  workers.forEach((worker, index) => worker.postMessage({ job, pass, from: bound(index + 1), to: bound(index + 2), done, index } satisfies HelperTask));
  runQuantizePass(job, pass, 0, bound(1));
  for (let index = 0; index < workers.length; index++) {
    Atomics.wait(done, index, 0, PASS_MS);
    const state = Atomics.load(done, index);
    // A helper that failed or hangs is a bug, not a slow machine: stop rather than return
    // weights with a part missing (or written later into a reused buffer).
    if (state !== 1) throw new Error(`quantisation: helper thread ${index + 1} ${state === 2 ? 'failed' : `did not finish within ${PASS_MS / 1000} s`} (${pass} pass)`);
  }
}

/**
 * Lets large matrices be quantised on `count` threads (the caller's and count − 1 helpers,
 * started on the first such matrix) until stopQuantizeHelpers. Called when a load starts
 * (thinker.ts), with the load's thread count.
 */
export function useQuantizeHelpers(count: number): void {
  threads = Math.max(1, count);
  setParallelRunner(runInParallel);
}

/**
 * Back to the calling thread alone: stops the helpers, freeing their threads and the shared
 * buffers they still refer to. Called when a load is done (thinker.ts).
 */
export async function stopQuantizeHelpers(): Promise<void> {
  setParallelRunner(() => false);
  threads = 1;
  const workers = helpers ?? [];
  helpers = undefined;
  await Promise.all(workers.map((worker) => worker.terminate()));
}

function isShared(a: ArrayBufferView): boolean {
  return a.buffer instanceof SharedArrayBuffer;
}

function runInParallel(job: QuantizeJob): boolean {
  const values = job.w instanceof Float32Array ? job.w : job.w.bf16;
  const outputs = job.kind === 'blocks' ? [job.packed, job.scales, ...(job.zeroPoints ? [job.zeroPoints] : [])] : [job.weights, job.scales, job.inv];
  if (job.n * job.k < MIN_VALUES || ![values, ...outputs].every(isShared)) return false;
  const workers = pool();
  if (workers.length === 0) return false;
  if (job.kind === 'blocks') split(job, 'blocks', job.n, workers);
  else {
    split(job, 'scales', job.n, workers);
    split(job, 'transpose', job.k, workers);
  }
  splitJobs++;
  return true;
}
