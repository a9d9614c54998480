/**
 * Audio file → 16 kHz mono float32, peak-normalised (spec §4.1). Three decoders:
 *
 * - `wav`: the built-in WAV reader (wav.ts); exact libsndfile scaling, streamed from disk.
 *   Used for every WAV it can read, except that a WAV at another rate goes to ffmpeg when
 *   ffmpeg is there and preferred (its soxr resampler is native code, ~10× faster than ours).
 * - `ffmpeg`: a system ffmpeg (ffmpeg.ts), for everything else when it is on PATH.
 * - `embedded`: audio-decode from npm (embedded.ts), the fallback that needs no system
 *   packages (wav, mp3, m4a/aac, flac, ogg/vorbis, opus, webm, mp4/mov/mkv audio tracks, …).
 *
 * When a decoder fails with 'undecodable'/'unsupported' the next one is tried; the error
 * thrown at the end is the most specific one (see decodeAudio). `decoder` forces a single
 * decoder with no fallback (tests, diagnostics).
 *
 * Bounds on what a small file can turn into: `maxSeconds` stops every decoder as soon as its
 * output passes the limit (a WAV is refused from its header and an MP4-family file from its
 * index, before any sample is decoded), and a source rate below MIN_SOURCE_SAMPLE_RATE
 * (normalize.ts) is refused by every decoder. Both are verdicts about the audio, so no other
 * decoder is tried after them.
 *
 * Mono is the channel mean, resampling is resample.ts (or ffmpeg's soxr), peak handling
 * divides by the peak only when it exceeds 1 and clips to [−1, 1] (normalize.ts).
 */
import { open, stat } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { decodeEmbedded } from './embedded.ts';
import { audioTooLongError, AudioDecodeError, checkSourceRate } from './errors.ts';
import { decodeWithFfmpeg, defaultFfmpegPath, findFfmpeg, type FfmpegInfo } from './ffmpeg.ts';
import { looksLikeMp4, mp4AudioSeconds } from './mp4.ts';
import { MIN_SOURCE_SAMPLE_RATE, MonoResampler, TARGET_SAMPLE_RATE } from './normalize.ts';
import { looksLikeWav, readWavFile, wavFrameCount, WavStreamReader, type WavHeader } from './wav.ts';

export { AudioDecodeError, type AudioDecodeErrorCode, type AudioDecodeErrorDetails } from './errors.ts';
export { MIN_SOURCE_SAMPLE_RATE, TARGET_SAMPLE_RATE } from './normalize.ts';

export type AudioDecoderName = 'wav' | 'ffmpeg' | 'embedded';

export interface DecodedAudio {
  /** 16 kHz mono, peak-normalised (|x| ≤ 1). */
  samples: Float32Array;
  sampleRate: 16000;
  /** Seconds: samples.length / 16000. */
  duration: number;
  /** Rate of the source stream (ffmpeg: as it reports it for the input stream). */
  sourceSampleRate: number;
  /** Channels of the source stream (the embedded decoder reports dual-mono MP3/AAC as 1). */
  channels: number;
  decoder: AudioDecoderName;
}

export interface DecodeOptions {
  /** Use ffmpeg (when it is on PATH) before the embedded decoder. Default true. */
  preferFfmpeg?: boolean;
  /** Use exactly this decoder, no fallback. */
  decoder?: AudioDecoderName;
  /** ffmpeg command or path; default $QWEN3_ASR_FFMPEG or `ffmpeg`. */
  ffmpegPath?: string;
  /** Limit for one decoder run (ffmpeg process / embedded worker). Default 300 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Longest audio accepted, in seconds (> 0): longer audio is refused with
   * AudioDecodeError('too_long') as soon as decoding passes the limit. Default: no limit.
   */
  maxSeconds?: number;
}

const DEFAULT_TIMEOUT_MS = 300_000;
/** Source frames mixed/resampled per slice before yielding to the event loop. */
const SLICE_FRAMES = 1 << 16;

/** Reads the first bytes of a file (format sniffing). */
async function readHead(path: string, size: number): Promise<Uint8Array> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new AudioDecodeError('undecodable', path, `cannot read file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const buf = new Uint8Array(Math.min(size, 65536));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * What the built-in WAV reader makes of the file's first bytes: not a WAV, a WAV it cannot
 * read (unsupported encoding, broken header), or one it can read (`header` is undefined when
 * the data chunk lies beyond the sniffed bytes, e.g. after a large metadata chunk).
 */
function probeWav(path: string, head: Uint8Array, size: number): { readable: boolean; header?: WavHeader; error?: AudioDecodeError } | undefined {
  if (!looksLikeWav(head)) return undefined;
  const reader = new WavStreamReader(path, size);
  try {
    reader.push(head);
  } catch (err) {
    if (!(err instanceof AudioDecodeError)) throw err;
    return { readable: false, error: err };
  }
  return { readable: true, header: reader.header };
}

/**
 * What a WAV header alone says against the limits: a rate below the floor, or (the header's
 * frame count, else the bytes after it in a file of `fileBytes`) more audio than `maxSeconds`.
 */
function checkWavHeader(path: string, header: WavHeader, fileBytes: number, maxSeconds: number | undefined): void {
  checkSourceRate(path, header.sampleRate, MIN_SOURCE_SAMPLE_RATE);
  if (maxSeconds === undefined) return;
  const frames = wavFrameCount(header, fileBytes);
  if (frames !== undefined && frames > maxSeconds * header.sampleRate) throw audioTooLongError(path, maxSeconds, frames / header.sampleRate);
}

/**
 * An MP4-family file whose index gives its audio more than `maxSeconds` (plus a second for
 * encoder priming and edit lists, which the index counts) is refused before decoding.
 */
async function checkMp4Index(path: string, maxSeconds: number): Promise<void> {
  const seconds = await mp4AudioSeconds(path).catch(() => undefined);
  if (seconds !== undefined && seconds > maxSeconds + 1) throw audioTooLongError(path, maxSeconds, seconds);
}

async function decodeWavFile(path: string, maxSeconds: number | undefined, signal?: AbortSignal): Promise<DecodedAudio> {
  let sink: MonoResampler | undefined;
  let maxFrames = Infinity;
  const header = await readWavFile(path, {
    onHeader: (h, fileBytes) => {
      checkWavHeader(path, h, fileBytes, maxSeconds);
      if (maxSeconds !== undefined) maxFrames = maxSeconds * h.sampleRate;
      sink = new MonoResampler(h.sampleRate, h.channels);
    },
    onSamples: (interleaved) => {
      signal?.throwIfAborted();
      sink!.pushInterleaved(interleaved);
      // The header check is exact for a file; this guards the reader against any miscount.
      if (sink!.sourceFrames > maxFrames) throw audioTooLongError(path, maxSeconds!);
    },
  });
  if (!sink || sink.sourceFrames === 0) throw new AudioDecodeError('empty', path, 'WAV file contains no audio samples');
  const samples = sink.finish();
  return result(samples, header.sampleRate, header.channels, 'wav');
}

async function decodeEmbeddedFile(path: string, timeoutMs: number, maxSeconds: number | undefined, signal?: AbortSignal): Promise<DecodedAudio> {
  let sink: MonoResampler | undefined;
  const r = await decodeEmbedded(path, {
    timeoutMs,
    signal,
    maxSeconds,
    minSampleRate: MIN_SOURCE_SAMPLE_RATE,
    onBlock: async (mono, sampleRate) => {
      sink ??= new MonoResampler(sampleRate, 1);
      // Resampling is synchronous: work in slices so that a long block (an MP4 decodes in one)
      // does not stall the event loop for seconds.
      for (let start = 0; start < mono.length; start += SLICE_FRAMES) {
        sink.pushMono(mono.subarray(start, Math.min(mono.length, start + SLICE_FRAMES)));
        if (start + SLICE_FRAMES < mono.length) {
          await nextTurn();
          signal?.throwIfAborted();
        }
      }
    },
  });
  if (!sink || sink.sourceFrames === 0 || !(r.sampleRate > 0)) {
    throw new AudioDecodeError('undecodable', path, 'no audio could be decoded (truncated or corrupt file?)');
  }
  return result(sink.finish(), r.sampleRate, r.channels, 'embedded');
}

async function decodeFfmpegFile(path: string, info: FfmpegInfo, timeoutMs: number, maxSeconds: number | undefined, signal?: AbortSignal): Promise<DecodedAudio> {
  const r = await decodeWithFfmpeg(path, info, { timeoutMs, signal, maxSeconds, minSampleRate: MIN_SOURCE_SAMPLE_RATE });
  return result(r.samples, r.sourceSampleRate, r.channels, 'ffmpeg');
}

function result(samples: Float32Array, sourceSampleRate: number, channels: number, decoder: AudioDecoderName): DecodedAudio {
  return { samples, sampleRate: TARGET_SAMPLE_RATE, duration: samples.length / TARGET_SAMPLE_RATE, sourceSampleRate, channels, decoder };
}

/**
 * Decodes an audio or video file (by path) to 16 kHz mono float32.
 * Throws AudioDecodeError ('empty' | 'undecodable' | 'unsupported' | 'too_long') naming the
 * file; a bad option is a RangeError naming it.
 */
export async function decodeAudio(input: string, opts: DecodeOptions = {}): Promise<DecodedAudio> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { signal, maxSeconds } = opts;
  if (maxSeconds !== undefined && !(typeof maxSeconds === 'number' && Number.isFinite(maxSeconds) && maxSeconds > 0)) {
    throw new RangeError(`decodeAudio: maxSeconds must be a positive number of seconds, got ${String(maxSeconds)}`);
  }
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) throw new RangeError(`decodeAudio: timeoutMs must be a positive number of milliseconds, got ${String(timeoutMs)}`);
  signal?.throwIfAborted();
  if (typeof input !== 'string' || input === '') throw new AudioDecodeError('undecodable', String(input), 'no file path given');

  let size: number;
  try {
    const st = await stat(input);
    if (!st.isFile()) throw new AudioDecodeError('undecodable', input, 'not a regular file');
    size = st.size;
  } catch (err) {
    if (err instanceof AudioDecodeError) throw err;
    throw new AudioDecodeError('undecodable', input, `cannot read file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (size === 0) throw new AudioDecodeError('empty', input, 'file is empty (0 bytes)');

  const head = await readHead(input, size);
  if (maxSeconds !== undefined && looksLikeMp4(head)) await checkMp4Index(input, maxSeconds);

  if (opts.decoder === 'wav') {
    if (!looksLikeWav(head)) throw new AudioDecodeError('undecodable', input, 'not a WAV file (no RIFF/RF64 WAVE header)');
    return decodeWavFile(input, maxSeconds, signal);
  }
  if (opts.decoder === 'embedded') return decodeEmbeddedFile(input, timeoutMs, maxSeconds, signal);
  if (opts.decoder === 'ffmpeg') {
    const info = await findFfmpeg(opts.ffmpegPath);
    if (!info) throw new AudioDecodeError('unsupported', input, `ffmpeg (${opts.ffmpegPath ?? defaultFfmpegPath()}) is not available`);
    return decodeFfmpegFile(input, info, timeoutMs, maxSeconds, signal);
  }

  const wav = probeWav(input, head, size);
  // A WAV whose header breaks a limit is refused before any decoder starts: ffmpeg and the
  // embedded decoder would read the same header.
  if (wav?.header) checkWavHeader(input, wav.header, size, maxSeconds);
  const ffmpeg = await findFfmpeg(opts.ffmpegPath);
  const ffmpegFirst = ffmpeg !== null && (opts.preferFfmpeg ?? true);

  type Attempt = { decoder: AudioDecoderName; run: () => Promise<DecodedAudio> };
  const viaWav: Attempt = { decoder: 'wav', run: () => decodeWavFile(input, maxSeconds, signal) };
  const viaEmbedded: Attempt = { decoder: 'embedded', run: () => decodeEmbeddedFile(input, timeoutMs, maxSeconds, signal) };
  const viaFfmpeg: Attempt | undefined = ffmpeg ? { decoder: 'ffmpeg', run: () => decodeFfmpegFile(input, ffmpeg, timeoutMs, maxSeconds, signal) } : undefined;

  const attempts: Attempt[] = [];
  // A readable WAV goes to the built-in reader first, unless it needs resampling and ffmpeg
  // (native soxr) is preferred; then the built-in reader is the last resort.
  const wavFirst = wav?.readable && (!wav.header || wav.header.sampleRate === TARGET_SAMPLE_RATE || !ffmpegFirst);
  if (wavFirst) attempts.push(viaWav);
  if (ffmpegFirst) attempts.push(viaFfmpeg!, viaEmbedded);
  else attempts.push(viaEmbedded, ...(viaFfmpeg ? [viaFfmpeg] : []));
  if (wav?.readable && !wavFirst) attempts.push(viaWav);

  const errors = new Map<AudioDecoderName, AudioDecodeError>();
  for (const attempt of attempts) {
    try {
      return await attempt.run();
    } catch (err) {
      if (!(err instanceof AudioDecodeError)) throw err; // aborts and programming errors
      // 'empty' is a definite diagnosis (no audio stream / no samples), and so is a verdict on
      // the audio itself (too long, rate below the floor); a timeout means the next decoder
      // would most likely hang on the same bytes.
      if (err.code === 'empty' || err.code === 'too_long' || err.details.conclusive || err.details.timedOut) throw err;
      errors.set(attempt.decoder, err);
    }
  }
  // Every decoder failed. The most specific diagnosis: the WAV reader's for a WAV file (it
  // knows which chunk is wrong or which encoding it met), else ffmpeg's, else the embedded
  // decoder's.
  throw errors.get('wav') ?? wav?.error ?? errors.get('ffmpeg') ?? errors.get('embedded')!;
}
