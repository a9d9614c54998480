/**
 * The embedded decoder: `audio-decode` (pure JS/WASM codecs from npm) for machines without
 * ffmpeg. It reads wav, mp3, flac, ogg/vorbis, opus, m4a/aac/alac, webm/mkv, mp4/mov/3gp,
 * avi, aiff, caf and more, returning planar float32 at the native rate.
 *
 * Its codecs run synchronously in WASM, so they run in a worker thread: the caller's event
 * loop stays free (the HTTP server keeps answering), and a decoder stuck on a hostile file is
 * terminated at the timeout. The worker is plain JavaScript loaded from a data: URL (workers do
 * not inherit tsx's TypeScript loader) that imports the package by its resolved file URL.
 *
 * The file is fed to the codec's streaming decoder in CHUNK_BYTES pieces, so that the decoded
 * length is known as decoding goes: the worker stops as soon as it passes `maxSeconds` (an hour
 * of silence is a 640 kB FLAC; decoded whole it would be hundreds of MB before anyone could
 * look at its length), and refuses a source rate below `minSampleRate` at the first block.
 * Each block is mixed to mono (the channel mean) in the worker and sent on as a transferred
 * buffer, so the caller resamples while the worker decodes and the full-rate multichannel
 * signal never exists in one piece. MP4-family files whose index (moov) follows the audio
 * decode in one block at the end: for them decode.ts reads the length from the index first
 * (mp4.ts), and the check here applies once that block is out.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { audioTooLongError, AudioDecodeError, checkSourceRate } from './errors.ts';

export interface EmbeddedDecodeOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Stop with AudioDecodeError('too_long') once more than this many seconds are decoded. */
  maxSeconds?: number;
  /** Sources below this rate are refused (AudioDecodeError 'unsupported', conclusive). */
  minSampleRate: number;
  /** Each decoded block, mono, at the source rate, in order; the next waits for its promise. */
  onBlock: (mono: Float32Array, sampleRate: number) => void | Promise<void>;
}

export interface EmbeddedDecodeResult {
  /** 0 when nothing was decoded. */
  sampleRate: number;
  /** Most channels any block had (dual-mono MP3/AAC is reported as 1 by audio-decode). */
  channels: number;
  /** Source frames decoded. */
  frames: number;
}

/** Encoded bytes per streaming-decoder call: the granularity of the length check. */
const CHUNK_BYTES = 32 * 1024;

const WORKER_SOURCE = `
import { parentPort, workerData } from 'node:worker_threads';
import { readFile } from 'node:fs/promises';
const { decoderUrl, typeUrl, path, maxSeconds, minSampleRate, chunkBytes } = workerData;
let rate = 0, channels = 0, frames = 0;
const post = (m, transfer) => parentPort.postMessage(m, transfer || []);
function mono(channelData) {
  if (channelData.length === 1) return channelData[0].slice();
  const n = channelData[0].length, k = channelData.length, out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < k; c++) s += channelData[c][i];
    out[i] = s / k;
  }
  return out;
}
/** false: stop decoding (the reason has been posted). */
function take(r) {
  if (!r || !r.channelData || !r.channelData.length || !r.channelData[0].length) return true;
  if (!rate) {
    rate = r.sampleRate;
    if (!(rate >= minSampleRate)) { post({ type: 'rate', sampleRate: rate }); return false; }
  }
  channels = Math.max(channels, r.channelData.length);
  const m = mono(r.channelData);
  frames += m.length;
  if (maxSeconds !== undefined && frames > maxSeconds * rate) { post({ type: 'too_long' }); return false; }
  post({ type: 'block', samples: m, sampleRate: rate }, [m.buffer]);
  return true;
}
async function run() {
  const { default: decode } = await import(decoderUrl);
  const { default: getType } = await import(typeUrl);
  const bytes = await readFile(path);
  const buf = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = getType(buf);
  if (!type) throw new Error('Unknown audio format');
  if (typeof decode[type] !== 'function') throw new Error('No decoder for ' + type);
  const dec = await decode[type]();
  try {
    for (let at = 0; at < buf.length; at += chunkBytes) {
      if (!take(await dec(buf.subarray(at, at + chunkBytes)))) return;
    }
    if (!take(await dec())) return;
  } finally {
    dec.free();
  }
  post({ type: 'end', sampleRate: rate, channels, frames });
}
try {
  await run();
} catch (err) {
  post({ type: 'error', error: String(err && err.message || err), code: err && err.code });
}
`;
const WORKER_URL = new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`);

let urls: { decoderUrl: string; typeUrl: string } | undefined;

/**
 * audio-decode, and the format sniffer it uses (audio-type) as that package resolves it, so the
 * worker detects formats exactly as audio-decode's whole-file entry point does.
 */
function moduleUrls(): { decoderUrl: string; typeUrl: string } {
  if (urls) return urls;
  const decoderUrl = import.meta.resolve('audio-decode');
  let typePath: string;
  try {
    const scoped = createRequire(decoderUrl).resolve('@audio/decode');
    typePath = createRequire(scoped).resolve('audio-type');
  } catch {
    typePath = createRequire(import.meta.url).resolve('audio-type');
  }
  urls = { decoderUrl, typeUrl: pathToFileURL(typePath).href };
  return urls;
}

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

type WorkerMessage =
  | { type: 'block'; samples: Float32Array; sampleRate: number }
  | { type: 'end'; sampleRate: number; channels: number; frames: number }
  | { type: 'rate'; sampleRate: number }
  | { type: 'too_long' }
  | { type: 'error'; error: string; code?: string };

/** Decodes `file` with audio-decode in a worker, handing mono blocks at the native rate to `onBlock`. */
export function decodeEmbedded(file: string, opts: EmbeddedDecodeOptions): Promise<EmbeddedDecodeResult> {
  const { decoderUrl, typeUrl } = moduleUrls();
  return new Promise<EmbeddedDecodeResult>((done, fail) => {
    opts.signal?.throwIfAborted();
    const worker = new Worker(WORKER_URL, {
      workerData: { decoderUrl, typeUrl, path: file, maxSeconds: opts.maxSeconds, minSampleRate: opts.minSampleRate, chunkBytes: CHUNK_BYTES },
    });
    let settled = false;
    // Blocks are handed on one at a time, in order; 'end' waits for the last of them.
    let chain: Promise<void> = Promise.resolve();
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
    worker.on('message', (m: WorkerMessage) => {
      if (settled) return;
      switch (m.type) {
        case 'block':
          chain = chain.then(() => (settled ? undefined : opts.onBlock(m.samples, m.sampleRate)));
          chain.catch((err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
          return;
        case 'end':
          chain.then(() => finish(undefined, { sampleRate: m.sampleRate, channels: m.channels, frames: m.frames }), () => undefined);
          return;
        case 'rate':
          try {
            checkSourceRate(file, m.sampleRate, opts.minSampleRate);
          } catch (err) {
            finish(err as Error);
          }
          return;
        case 'too_long':
          return finish(audioTooLongError(file, opts.maxSeconds!));
        case 'error':
          return finish(classify(file, m.error));
      }
    });
    worker.on('error', (err) => finish(new AudioDecodeError('undecodable', file, `the embedded decoder crashed (${err.message})`)));
    worker.on('exit', (code) => {
      // A clean exit after 'end' settles through the chain; anything else is a failure.
      chain.then(() => finish(new AudioDecodeError('undecodable', file, `the embedded decoder exited unexpectedly (code ${code})`)), () => undefined);
    });
  });
}
