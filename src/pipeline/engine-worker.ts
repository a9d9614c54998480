/**
 * The engine worker: owns the models and does every CPU-heavy step of inference (features,
 * encoder, decoder, aligner) so the caller's event loop never waits on it; files arrive
 * decoded (decode-pool.ts), as raw float32 samples files. Jobs run side by side: their
 * segments meet in the ASR model's one shared batch, whose steps are counted for the metrics.
 */
import { readFile } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import { ForcedAligner } from '../engine/aligner/aligner-model.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { type ModelLoadOptions } from '../engine/thinker/thinker.ts';
import { resolveCheckpoint } from '../engine/checkpoint/resolve.ts';
import type { DownloadProgress } from '../engine/checkpoint/hub-download.ts';
import { AbortError } from '../engine/thinker/generate.ts';
import { SileroVad } from '../engine/vad/silero-vad.ts';
import { checkAudio, runTranscription } from './run-transcription.ts';
import { PipelineError, LIVE_DEFAULTS } from './types.ts';
import { closeLiveStreams, handleLiveMessage, type LiveWorkerContext } from './live-worker.ts';
import type { ToLiveWorker } from './live-protocol.ts';
import { serializeError as serializeAnyError, type DecodeStepStats, type FromWorker, type SerializedError, type ToWorker, type WorkerConfig } from './worker-protocol.ts';

if (!parentPort) throw new Error('engine-worker.ts must run in a worker thread');
const port = parentPort;

let asr: AsrModel | undefined;
let aligner: ForcedAligner | undefined;
let vad: SileroVad | undefined;
let config: WorkerConfig | undefined;
const running = new Map<number, AbortController>();

function send(msg: FromWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(msg, transfer ?? []);
}

function log(level: 'info' | 'warn' | 'error', msg: string): void {
  send({ type: 'log', level, msg });
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof AbortError) return { name: 'PipelineError', code: 'aborted', message: 'The request was cancelled.' };
  return serializeAnyError(err);
}

/** How often the shared batch's step counts are reported while it decodes (ms). */
const STATS_INTERVAL_MS = 1000;
let stepStats: DecodeStepStats | undefined;
let stepStatsStarted = 0;

/** Counts one decoding step of the shared batch; the counts go out once a second, only while it decodes. */
function countStep(rows: number): void {
  if (!stepStats) {
    stepStats = { steps: 0, tokens: 0, rows: [], seconds: 0 };
    stepStatsStarted = performance.now();
    setTimeout(() => {
      const stats = stepStats!;
      stepStats = undefined;
      stats.seconds = (performance.now() - stepStatsStarted) / 1000;
      send({ type: 'stats', ...stats });
    }, STATS_INTERVAL_MS).unref();
  }
  stepStats.steps++;
  stepStats.tokens += rows;
  const entry = stepStats.rows.find((r) => r[0] === rows);
  if (entry) entry[1]++;
  else stepStats.rows.push([rows, 1]);
}

async function load(cfg: WorkerConfig): Promise<void> {
  config = cfg;
  const resolveOpts = {
    hfHome: cfg.hfHome,
    endpoint: cfg.hfEndpoint,
    offline: cfg.hfOffline,
    token: cfg.hfToken,
    download: !cfg.hfOffline,
    log: (m: string) => log('info', m),
    onDownload: (p: DownloadProgress) => send({ type: 'load_progress', progress: { stage: 'download', ...p } }),
  };
  // Load progress counts the parts built: each model's encoder and decoder, and the VAD.
  const steps = (cfg.alignOnly ? 0 : 2 + (cfg.vad ? 1 : 0)) + (cfg.aligner ? 2 : 0);
  let stepsBefore = 0;
  const step = (part: string, index = 1) => send({ type: 'load_progress', progress: { stage: 'load', part, step: stepsBefore + index, steps } });
  const loadOpts = (prefix: string): ModelLoadOptions => ({
    device: cfg.device,
    quant: cfg.quant,
    threads: cfg.threads,
    cacheDir: cfg.cacheDir,
    log: (m) => log('info', m),
    onPart: (part, index) => step(prefix + part, index),
  });
  if (!cfg.alignOnly) {
    const dir = await resolveCheckpoint(cfg.model, resolveOpts);
    log('info', `loading ${cfg.model} from ${dir} (device ${cfg.device}, quant ${cfg.quant})`);
    asr = await AsrModel.load(dir, loadOpts(''));
    stepsBefore += 2;
    asr.setMaxBatchSize(cfg.maxBatchSize);
    asr.onSharedStep = countStep;
    if (cfg.vad) {
      step('voice activity detector');
      stepsBefore += 1;
      vad = await SileroVad.load();
      log('info', `voice activity detection on (Silero VAD, threshold ${cfg.vad.threshold}, non-speech of ${cfg.vad.minSilenceMs} ms or more skipped)`);
    }
  }
  if (cfg.aligner) {
    const alignerDir = await resolveCheckpoint(cfg.aligner, resolveOpts);
    log('info', `loading forced aligner ${cfg.aligner} from ${alignerDir}`);
    aligner = await ForcedAligner.load(alignerDir, loadOpts('aligner '));
  }
  send({ type: 'ready', languages: (asr ?? aligner)?.config.supportLanguages ?? [], alignerLanguages: aligner?.languages.slice() });
}

/** A job's samples file (raw float32); a job cancelled meanwhile is reported as cancelled (its file may be gone). */
async function readSamples(path: string, signal: AbortSignal): Promise<Float32Array> {
  try {
    const bytes = await readFile(path);
    // A large file's buffer is its own allocation, aligned; a pooled small one may not be.
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
    return new Float32Array(new Uint8Array(bytes).buffer, 0, bytes.byteLength >> 2);
  } catch (err) {
    if (signal.aborted) throw new AbortError();
    throw err;
  }
}

async function transcribe(msg: Extract<ToWorker, { type: 'transcribe' }>): Promise<void> {
  const ctrl = new AbortController();
  running.set(msg.id, ctrl);
  try {
    if (!asr || !config) throw new PipelineError('model_not_ready', 'The model is not loaded yet.');
    const samples = msg.samplesFile ? await readSamples(msg.samplesFile, ctrl.signal) : msg.samples!;
    if (ctrl.signal.aborted) throw new AbortError();
    const { partials, ...options } = msg.options;
    const result = await runTranscription(
      asr,
      aligner,
      samples,
      {
        ...options,
        signal: ctrl.signal,
        onPartial: partials ? (index, text, language) => send({ type: 'partial', id: msg.id, index, text, language }) : undefined,
        onSegment: (segment) => send({ type: 'segment', id: msg.id, segment }),
        onProgress: (done, total) => send({ type: 'progress', id: msg.id, done, total }),
      },
      { segmentSeconds: config.segmentSeconds, maxNewTokens: config.maxNewTokens, vad: vad && config.vad ? { ...config.vad, model: vad } : undefined },
    );
    send({ type: 'result', id: msg.id, result });
  } catch (err) {
    send({ type: 'error', id: msg.id, error: serializeError(err) });
  } finally {
    running.delete(msg.id);
  }
}

async function align(msg: Extract<ToWorker, { type: 'align' }>): Promise<void> {
  const ctrl = new AbortController();
  running.set(msg.id, ctrl);
  try {
    if (!aligner) throw new PipelineError('aligner_unavailable', 'No forced aligner is configured.');
    if (!aligner.languages.some((l) => l.toLowerCase() === msg.language.toLowerCase())) {
      throw new PipelineError('aligner_language_unsupported', `The forced aligner does not support ${msg.language}; it supports ${aligner.languages.join(', ')}.`);
    }
    const samples = msg.samplesFile ? await readSamples(msg.samplesFile, ctrl.signal) : msg.samples!;
    if (ctrl.signal.aborted) throw new AbortError();
    checkAudio(samples);
    const [r] = await aligner.align([{ samples, text: msg.text, language: msg.language }], { signal: ctrl.signal });
    send({ type: 'aligned', id: msg.id, items: r.items });
  } catch (err) {
    send({ type: 'error', id: msg.id, error: serializeError(err) });
  } finally {
    running.delete(msg.id);
  }
}

/**
 * Cancels what still runs, waits (a few seconds at most) until no pass of the shared batch or
 * the aligner is under way, then releases the models: ONNX Runtime aborts the process when a
 * session is released during its run.
 */
async function closeModels(): Promise<void> {
  await closeLiveStreams().catch(() => undefined);
  for (const ctrl of running.values()) ctrl.abort();
  const settled = (async () => {
    await asr?.whenIdle();
    while (running.size > 0) await new Promise((r) => setTimeout(r, 10));
  })();
  await Promise.race([settled, new Promise((r) => setTimeout(r, 10_000))]);
  await Promise.all([asr?.release(), aligner?.release(), vad?.release()]).catch(() => undefined);
}

/** Live sessions (live-worker.ts): the same models, the file pipeline for each utterance's exact decode. */
const liveContext: LiveWorkerContext = {
  asr: () => asr,
  vad: () => vad,
  limits: () => config?.live ?? LIVE_DEFAULTS,
  transcribe: (samples, opts) => {
    if (!asr || !config) throw new PipelineError('model_not_ready', 'The model is not loaded yet.');
    return runTranscription(asr, undefined, samples, opts, { segmentSeconds: config.segmentSeconds, maxNewTokens: config.maxNewTokens, vad: vad && config.vad ? { ...config.vad, model: vad } : undefined });
  },
  send: (msg) => port.postMessage(msg),
  log,
};

port.on('message', (msg: ToWorker | ToLiveWorker) => {
  if (msg.type.startsWith('live.')) {
    handleLiveMessage(msg as ToLiveWorker, liveContext);
    return;
  }
  msg = msg as ToWorker;
  switch (msg.type) {
    case 'load':
      load(msg.config).catch((err) => send({ type: 'load_failed', error: serializeError(err) }));
      break;
    case 'transcribe':
      void transcribe(msg);
      break;
    case 'align':
      void align(msg);
      break;
    case 'cancel':
      running.get(msg.id)?.abort();
      break;
    case 'close':
      void closeModels().finally(() => send({ type: 'closed' }));
      break;
  }
});
