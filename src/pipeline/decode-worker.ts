/**
 * A decoding worker of the decode pool (decode-pool.ts): decodes one file at a time to 16 kHz
 * mono float32, checks it (empty, too short, too long), and writes the samples to the file the
 * pool names. The samples never cross to the caller's thread, and a job waiting for the engine
 * holds a path, not its audio.
 *
 * Decoding runs here so that the caller's event loop never runs a decoder (the WAV reader and
 * the resampler are JavaScript, the embedded decoders WASM): a cancel aborts the decoder (ffmpeg
 * is killed, the embedded decoder's worker terminated), and the pool terminates this thread
 * when it does not answer in time.
 */
import { rm, writeFile } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import { decodeAudio, type DecodeOptions } from '../audio/decode.ts';
import { checkAudio, SAMPLE_RATE } from './run-transcription.ts';
import { PipelineError } from './types.ts';
import { serializeError, type SerializedError } from './worker-protocol.ts';

export type ToDecodeWorker =
  | { type: 'decode'; id: number; input: string; output: string; maxSeconds?: number; timeoutMs: number }
  | { type: 'cancel'; id: number };

export type FromDecodeWorker = { type: 'decoded'; id: number; seconds: number } | { type: 'failed'; id: number; error: SerializedError };

if (!parentPort) throw new Error('decode-worker.ts must run in a worker thread');
const port = parentPort;
const running = new Map<number, AbortController>();

function formatSeconds(s: number): string {
  return s >= 3600 ? `${(s / 3600).toFixed(2)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`;
}

async function decode(msg: Extract<ToDecodeWorker, { type: 'decode' }>): Promise<void> {
  const ctrl = new AbortController();
  running.set(msg.id, ctrl);
  try {
    // maxSeconds lets the decoder stop as soon as the audio passes the limit; the check below
    // holds whatever the decoder does.
    const options: DecodeOptions = { timeoutMs: msg.timeoutMs, signal: ctrl.signal, maxSeconds: msg.maxSeconds };
    let samples: Float32Array;
    try {
      samples = (await decodeAudio(msg.input, options)).samples;
    } catch (err) {
      if ((err as { details?: { timedOut?: boolean } }).details?.timedOut) {
        throw new PipelineError('decode_timeout', `Decoding the audio took longer than ${msg.timeoutMs / 1000} s; it was stopped.`);
      }
      throw err;
    }
    checkAudio(samples);
    const seconds = samples.length / SAMPLE_RATE;
    if (msg.maxSeconds !== undefined && seconds > msg.maxSeconds) {
      throw new PipelineError('audio_too_long', `The audio is ${formatSeconds(seconds)} long; the longest accepted is ${formatSeconds(msg.maxSeconds)}.`);
    }
    ctrl.signal.throwIfAborted();
    try {
      await writeFile(msg.output, new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength), { flag: 'wx' });
    } catch (err) {
      await rm(msg.output, { force: true }).catch(() => undefined);
      throw err;
    }
    port.postMessage({ type: 'decoded', id: msg.id, seconds } satisfies FromDecodeWorker);
  } catch (err) {
    port.postMessage({ type: 'failed', id: msg.id, error: serializeError(err) } satisfies FromDecodeWorker);
  } finally {
    running.delete(msg.id);
  }
}

port.on('message', (msg: ToDecodeWorker) => {
  if (msg.type === 'decode') void decode(msg);
  else running.get(msg.id)?.abort(new PipelineError('aborted', 'Decoding was cancelled.'));
});
