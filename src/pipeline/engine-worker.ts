/**
 * The engine worker: owns the models and does every CPU-heavy step (audio decoding,
 * features, encoder, decoder, aligner) so the caller's event loop never waits on inference.
 * Jobs run side by side: their segments meet in the ASR model's one shared batch.
 */
import { parentPort } from 'node:worker_threads';
import { decodeAudio } from '../audio/decode.ts';
import { ForcedAligner } from '../engine/aligner/aligner-model.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { type ModelLoadOptions } from '../engine/thinker/thinker.ts';
import { resolveCheckpoint } from '../engine/checkpoint/resolve.ts';
import { AbortError } from '../engine/thinker/generate.ts';
import { SileroVad } from '../engine/vad/silero-vad.ts';
import { checkAudio, runTranscription } from './run-transcription.ts';
import { PipelineError } from './types.ts';
import type { FromWorker, SerializedError, ToWorker, WorkerConfig } from './worker-protocol.ts';

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
  const e = err as Error & { code?: string };
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), code: e?.code };
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
  };
  const loadOpts: ModelLoadOptions = {
    device: cfg.device,
    quant: cfg.quant,
    threads: cfg.threads,
    cacheDir: cfg.cacheDir,
    log: (m) => log('info', m),
  };
  if (!cfg.alignOnly) {
    const dir = await resolveCheckpoint(cfg.model, resolveOpts);
    log('info', `loading ${cfg.model} from ${dir} (device ${cfg.device}, quant ${cfg.quant})`);
    asr = await AsrModel.load(dir, loadOpts);
    asr.setMaxBatchSize(cfg.maxBatchSize);
    if (cfg.vad) {
      vad = await SileroVad.load();
      log('info', `voice activity detection on (Silero VAD, threshold ${cfg.vad.threshold}, non-speech of ${cfg.vad.minSilenceMs} ms or more skipped)`);
    }
  }
  if (cfg.aligner) {
    const alignerDir = await resolveCheckpoint(cfg.aligner, resolveOpts);
    log('info', `loading forced aligner ${cfg.aligner} from ${alignerDir}`);
    aligner = await ForcedAligner.load(alignerDir, loadOpts);
  }
  send({ type: 'ready', languages: (asr ?? aligner)?.config.supportLanguages ?? [], alignerLanguages: aligner?.languages.slice() });
}

/** A job's audio file; a job cancelled meanwhile is reported as cancelled (its upload may be gone). */
async function decodeFile(path: string, signal: AbortSignal): Promise<Float32Array> {
  try {
    return (await decodeAudio(path)).samples;
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
    const samples = msg.path ? await decodeFile(msg.path, ctrl.signal) : msg.samples!;
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
    const samples = msg.path ? await decodeFile(msg.path, ctrl.signal) : msg.samples!;
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

port.on('message', (msg: ToWorker) => {
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
      Promise.all([asr?.release(), aligner?.release(), vad?.release()])
        .catch(() => undefined)
        .finally(() => send({ type: 'closed' }));
      break;
  }
});
