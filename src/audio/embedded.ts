/**
 * The embedded decoder: `audio-decode` (pure JS/WASM codecs from npm) for machines without
 * ffmpeg. It reads wav, mp3, flac, ogg/vorbis, opus, m4a/aac/alac, webm/mkv, mp4/mov/3gp,
 * avi, aiff, caf and more, returning planar float32 at the native rate.
 *
 * It decodes a whole file in one synchronous WASM call, so it runs in a worker thread: the
 * caller's event loop stays free (the HTTP server keeps answering), and a decoder stuck on a
 * hostile file is terminated at the timeout. The worker is plain JavaScript loaded from a
 * data: URL (workers do not inherit tsx's TypeScript loader) that imports the package by its
 * resolved file URL; the decoded channels come back as transferred buffers (no copy).
 */
import { Worker } from 'node:worker_threads';
import { AudioDecodeError } from './errors.ts';

export interface EmbeddedDecodeResult {
  channelData: Float32Array[];
  sampleRate: number;
}

const WORKER_SOURCE = `
import { parentPort, workerData } from 'node:worker_threads';
import { readFile } from 'node:fs/promises';
let message;
try {
  const { default: decode } = await import(workerData.decoderUrl);
  const bytes = await readFile(workerData.path);
  const r = await decode(bytes);
  message = { ok: true, sampleRate: r.sampleRate, channelData: r.channelData };
} catch (err) {
  message = { ok: false, error: String(err && err.message || err), code: err && err.code };
}
parentPort.postMessage(message, message.ok ? message.channelData.map((c) => c.buffer) : []);
`;
const WORKER_URL = new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`);

let decoderUrl: string | undefined;

/** Maps audio-decode's error messages to the front end's error codes. */
function classify(file: string, message: string): AudioDecodeError {
  if (/Unknown audio format/i.test(message)) {
    return new AudioDecodeError('undecodable', file, 'not a recognised audio or video format');
  }
  if (/No audio track/i.test(message)) return new AudioDecodeError('empty', file, `contains no audio track (${message})`);
  if (/No decoder for|not supported|unsupported/i.test(message)) {
    return new AudioDecodeError('unsupported', file, `the embedded decoder does not support its encoding (${message})`);
  }
  if (/greater than 2 GiB|ERR_FS_FILE_TOO_LARGE/.test(message)) {
    return new AudioDecodeError('unsupported', file, 'larger than 2 GiB, too large for the embedded decoder (install ffmpeg for such files)');
  }
  if (/ENOENT|EACCES|EISDIR/.test(message)) return new AudioDecodeError('undecodable', file, `cannot read file (${message})`);
  return new AudioDecodeError('undecodable', file, `corrupt or truncated audio (embedded decoder: ${message})`);
}

/** Decodes `file` with audio-decode in a worker; planar float32 at the native rate. */
export function decodeEmbedded(file: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<EmbeddedDecodeResult> {
  decoderUrl ??= import.meta.resolve('audio-decode');
  return new Promise<EmbeddedDecodeResult>((done, fail) => {
    opts.signal?.throwIfAborted();
    const worker = new Worker(WORKER_URL, { workerData: { decoderUrl, path: file } });
    let settled = false;
    const finish = (err: Error | undefined, result?: EmbeddedDecodeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      void worker.terminate();
      if (err) fail(err);
      else done(result!);
    };
    const timer = setTimeout(
      () => finish(new AudioDecodeError('undecodable', file, `the embedded decoder did not finish within ${opts.timeoutMs / 1000} s; decoding aborted`, { timedOut: true })),
      opts.timeoutMs,
    );
    const onAbort = (): void => finish(opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error('aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: { ok: boolean; error?: string; sampleRate?: number; channelData?: Float32Array[] }) => {
      if (!m.ok) return finish(classify(file, m.error ?? 'unknown error'));
      finish(undefined, { channelData: m.channelData!, sampleRate: m.sampleRate! });
    });
    worker.on('error', (err) => finish(new AudioDecodeError('undecodable', file, `the embedded decoder crashed (${err.message})`)));
    worker.on('exit', (code) => finish(new AudioDecodeError('undecodable', file, `the embedded decoder exited unexpectedly (code ${code})`)));
  });
}
