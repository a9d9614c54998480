/**
 * Decoding through a system ffmpeg (the fastest and most complete decoder: every container and
 * codec, video files' audio tracks).
 *
 * How it is called, and why:
 * - spawned without a shell, arguments as an array; the input is always a path on disk given
 *   as `file:<absolute path>`, so a name like `-x`, `pipe:0` or `http://…` can never be taken
 *   for an option or a protocol, and stdin is never used (mp4/m4a with the moov atom at the
 *   end silently decode to nothing from a pipe, ../shared/docs/onnxruntime-node.md §7);
 * - first audio stream only (`-map 0:a:0`), native channel count: ffmpeg's `-ac 1` downmix is
 *   ~√2 louder than the official channel mean, so the mean is taken here (normalize.ts);
 * - resampled by ffmpeg to 16 kHz with libsoxr at 20-bit precision when the build has it
 *   (soxr "HQ", the resampler the official librosa path uses), else with swresample's
 *   windowed-sinc at a long filter; both resample each channel, which commutes with the mean;
 * - written to stdout as a float32 WAV, whose header carries the channel count (the WAV reader
 *   takes the data to end of stream since ffmpeg cannot fill in sizes on a pipe);
 * - killed (SIGKILL) on timeout or abort; nothing is written to disk;
 * - with a length limit, killed as soon as its output passes it, and told to stop writing a
 *   second after it (`-t`) in case the kill comes late; a source rate below the floor, read
 *   from its stream listing, kills it before much is decoded.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { audioTooLongError, AudioDecodeError, checkSourceRate } from './errors.ts';
import { MonoResampler, TARGET_SAMPLE_RATE } from './normalize.ts';
import { WavStreamReader } from './wav.ts';
import { readSetting } from '../settings/settings.ts';

export interface FfmpegInfo {
  /** Command or path used to run it. */
  path: string;
  /** First line of `ffmpeg -version`. */
  version: string;
  /** Built with libsoxr (aresample=resampler=soxr). */
  soxr: boolean;
}

const probes = new Map<string, Promise<FfmpegInfo | null>>();

/** The ffmpeg to use: $QWEN3_ASR_FFMPEG when set, else `ffmpeg` from PATH. */
export function defaultFfmpegPath(): string {
  return readSetting('ffmpeg');
}

/** Runs `ffmpeg -version` once per path; null when it cannot be started. */
export function findFfmpeg(path = defaultFfmpegPath()): Promise<FfmpegInfo | null> {
  let probe = probes.get(path);
  if (!probe) {
    probe = new Promise<FfmpegInfo | null>((done) => {
      let out = '';
      let child;
      try {
        child = spawn(path, ['-hide_banner', '-version'], { stdio: ['ignore', 'pipe', 'ignore'] });
      } catch {
        done(null);
        return;
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (s: string) => {
        if (out.length < 65536) out += s;
      });
      child.on('error', () => {
        clearTimeout(timer);
        done(null);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code !== 0 || !out.startsWith('ffmpeg version')) done(null);
        else done({ path, version: out.split('\n')[0].trim(), soxr: out.includes('--enable-libsoxr') });
      });
    });
    probes.set(path, probe);
  }
  return probe;
}

export interface FfmpegDecodeResult {
  samples: Float32Array;
  sourceSampleRate: number;
  channels: number;
}

/** Keeps the start and the end of a long stderr (the input description and the final error). */
class StderrTail {
  private head = '';
  private tail = '';
  push(s: string): void {
    if (this.head.length < 32768) this.head += s;
    else this.tail = (this.tail + s).slice(-8192);
  }
  get text(): string {
    return this.head + this.tail;
  }
}

/** Sample rate of the first audio stream of input #0, from ffmpeg's stream listing. */
export function parseSourceSampleRate(stderr: string): number | undefined {
  const inputPart = stderr.split(/\nOutput #0|\nStream mapping:/)[0];
  const m = /Stream #0:\d+[^\n]*?: Audio: [^\n]*?(\d+) Hz/.exec(inputPart);
  return m ? Number(m[1]) : undefined;
}

/** Turns ffmpeg's failure output into an AudioDecodeError with a short, useful reason. */
function classifyFailure(file: string, stderr: string, exitCode: number | null): AudioDecodeError {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('Input #') && !/^(Metadata|Duration|Stream mapping|Press \[q\]|To ignore this)/.test(l));
  const target = `file:${resolve(file)}`;
  const last = (lines.at(-1) ?? `exit code ${exitCode}`).replace(`${target}: `, '').replace(target, 'input');
  // ffmpeg's "tty" demuxer opens any text file as ANSI art (a video without audio).
  if (/Input #0, tty,/.test(stderr)) return new AudioDecodeError('undecodable', file, 'a text file, not audio');
  if (/matches no streams|does not contain any stream/.test(stderr)) {
    return new AudioDecodeError('empty', file, 'contains no audio stream');
  }
  if (/Decoder \([^)]*\) not found|Unsupported codec|unsupported codec|not implemented/i.test(stderr)) {
    return new AudioDecodeError('unsupported', file, `ffmpeg has no decoder for its audio (${last})`);
  }
  if (/No such file or directory|Permission denied/.test(stderr)) {
    return new AudioDecodeError('undecodable', file, `ffmpeg cannot read the file (${last})`);
  }
  return new AudioDecodeError('undecodable', file, `not a decodable audio or video file (ffmpeg: ${last})`);
}

/**
 * Decodes `file` with ffmpeg to 16 kHz mono float32 (peak handling applied). Rejects with
 * AudioDecodeError on decoder failure, timeout, or when nothing could be decoded.
 */
export interface FfmpegDecodeOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Stop with AudioDecodeError('too_long') once the output passes this many seconds. */
  maxSeconds?: number;
  /** Sources below this rate are refused (AudioDecodeError 'unsupported', conclusive). */
  minSampleRate?: number;
}

export function decodeWithFfmpeg(file: string, info: FfmpegInfo, opts: FfmpegDecodeOptions): Promise<FfmpegDecodeResult> {
  const resampler = info.soxr
    ? `aresample=${TARGET_SAMPLE_RATE}:resampler=soxr:precision=20`
    : `aresample=${TARGET_SAMPLE_RATE}:filter_size=64:phase_shift=10:cutoff=0.91`;
  const args = [
    '-nostdin', '-hide_banner', '-nostats', '-loglevel', 'info',
    '-i', `file:${resolve(file)}`,
    '-map', '0:a:0', '-vn', '-sn', '-dn',
    '-af', resampler,
    '-c:a', 'pcm_f32le', '-f', 'wav', '-fflags', '+bitexact', '-map_metadata', '-1',
    ...(opts.maxSeconds !== undefined ? ['-t', String(opts.maxSeconds + 1)] : []),
    'pipe:1',
  ];
  const maxFrames = opts.maxSeconds !== undefined ? opts.maxSeconds * TARGET_SAMPLE_RATE : Infinity;
  return new Promise<FfmpegDecodeResult>((done, fail) => {
    opts.signal?.throwIfAborted();
    const child = spawn(info.path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr = new StderrTail();
    const reader = new WavStreamReader(`${file} (ffmpeg output)`);
    let sink: MonoResampler | undefined;
    let failure: Error | undefined;
    let settled = false;

    const stop = (err: Error): void => {
      if (!failure) failure = err;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(
      () => stop(new AudioDecodeError('undecodable', file, `ffmpeg did not finish within ${opts.timeoutMs / 1000} s; decoding aborted`, { timedOut: true })),
      opts.timeoutMs,
    );
    const onAbort = (): void => stop(opts.signal!.reason instanceof Error ? opts.signal!.reason : new Error('aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    let rateChecked = opts.minSampleRate === undefined;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      stderr.push(s);
      if (rateChecked || failure) return;
      const rate = parseSourceSampleRate(stderr.text);
      if (rate === undefined) return;
      rateChecked = true;
      try {
        checkSourceRate(file, rate, opts.minSampleRate!);
      } catch (err) {
        stop(err as Error);
      }
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (failure) return;
      try {
        const samples = reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if (!sink && reader.header) {
          if (reader.header.sampleRate !== TARGET_SAMPLE_RATE) throw new Error(`ffmpeg produced ${reader.header.sampleRate} Hz instead of ${TARGET_SAMPLE_RATE} Hz`);
          sink = new MonoResampler(reader.header.sampleRate, reader.header.channels);
        }
        if (samples.length) sink!.pushInterleaved(samples);
        if (sink && sink.sourceFrames > maxFrames) throw audioTooLongError(file, opts.maxSeconds!);
      } catch (err) {
        stop(err instanceof AudioDecodeError ? err : new AudioDecodeError('undecodable', file, `unexpected ffmpeg output: ${(err as Error).message}`));
      }
    });
    const finish = (err: Error | undefined, result?: FfmpegDecodeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) fail(err);
      else done(result!);
    };
    child.on('error', (err) => finish(new AudioDecodeError('undecodable', file, `cannot run ffmpeg (${(err as NodeJS.ErrnoException).code ?? err.message})`)));
    child.on('close', (code) => {
      if (failure) return finish(failure);
      if (code !== 0) return finish(classifyFailure(file, stderr.text, code));
      if (!sink || sink.sourceFrames === 0) {
        return finish(new AudioDecodeError('empty', file, 'contains no audio samples (ffmpeg decoded nothing)'));
      }
      const samples = sink.finish();
      finish(undefined, {
        samples,
        sourceSampleRate: parseSourceSampleRate(stderr.text) ?? reader.header!.sampleRate,
        channels: sink.channels,
      });
    });
  });
}
