/**
 * Spec §4.1 steps 2–4 (official `normalize_audio_input`): mono by channel mean, resample to
 * 16 kHz, then peak handling (divide by the peak only when it exceeds 1, clip to [−1, 1]).
 *
 * `MonoResampler` applies the first two steps incrementally, so decoders can feed it block by
 * block and a long file never exists in memory at its native rate and channel count; `finish()`
 * applies the peak step to the assembled 16 kHz signal.
 */
import { Resampler } from './resample.ts';

/** The rate every model input runs at (spec §4.1). */
export const TARGET_SAMPLE_RATE = 16000;

/**
 * The lowest source rate any decoder accepts. Real recordings are sampled at 8 kHz (telephony)
 * or more, and a few old formats go down to 5.5 kHz; below 4 kHz the band that carries speech
 * (up to ~3.4 kHz) is gone. The floor also bounds how much a file can grow: at 4 kHz each
 * source frame becomes at most 4 output samples, whereas a WAV header claiming 7 Hz turns
 * every frame into 2286 samples (32 kB into 38 minutes of audio) and the resampler's work with it.
 */
export const MIN_SOURCE_SAMPLE_RATE = 4000;

/**
 * Divides by the peak when it exceeds 1, then clips to [−1, 1] (in place; returns the input).
 * Quieter audio is left untouched: the official code does no loudness normalisation.
 * NaN samples (a corrupt float WAV) become 0 so they cannot poison the features.
 */
export function normalizePeak(samples: Float32Array): Float32Array {
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    const a = Math.abs(samples[i]);
    if (a > peak) peak = a;
    else if (a !== a) samples[i] = 0;
  }
  if (peak > 1 && Number.isFinite(peak)) {
    const scale = 1 / peak;
    for (let i = 0; i < samples.length; i++) samples[i] *= scale;
  }
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    if (v > 1) samples[i] = 1;
    else if (v < -1) samples[i] = -1;
  }
  return samples;
}

/** Channel mean of planar channels (all of the same length). */
export function mixToMono(channels: readonly Float32Array[]): Float32Array {
  if (channels.length === 0) throw new Error('mixToMono: no channels');
  if (channels.length === 1) return channels[0];
  const n = channels[0].length;
  for (const c of channels) if (c.length !== n) throw new Error(`mixToMono: channels differ in length (${n} vs ${c.length})`);
  const out = new Float32Array(n);
  const k = channels.length;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < k; c++) s += channels[c][i];
    out[i] = s / k;
  }
  return out;
}

/** Channel mean of interleaved frames. */
export function mixInterleavedToMono(data: Float32Array, channels: number): Float32Array {
  if (channels === 1) return data;
  const frames = Math.floor(data.length / channels);
  const out = new Float32Array(frames);
  for (let f = 0, i = 0; f < frames; f++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += data[i++];
    out[f] = s / channels;
  }
  return out;
}

/** Incremental mono mix + resample to 16 kHz; `finish()` adds the peak handling. */
export class MonoResampler {
  readonly sourceRate: number;
  readonly channels: number;
  private readonly resampler: Resampler;
  private readonly parts: Float32Array[] = [];
  private outLength = 0;
  private frames = 0;
  private done = false;

  constructor(sourceRate: number, channels: number, targetRate = TARGET_SAMPLE_RATE) {
    if (!Number.isInteger(channels) || channels < 1) throw new Error(`MonoResampler: channel count must be a positive integer, got ${channels}`);
    this.sourceRate = sourceRate;
    this.channels = channels;
    this.resampler = new Resampler(sourceRate, targetRate);
  }

  /** Source frames received so far. */
  get sourceFrames(): number {
    return this.frames;
  }

  /** Feeds mono samples at the source rate. */
  pushMono(samples: Float32Array): void {
    if (this.done) throw new Error('MonoResampler: push after finish()');
    if (samples.length === 0) return;
    this.frames += samples.length;
    this.keep(this.resampler.push(samples));
  }

  /** Feeds interleaved frames (length a multiple of the channel count). */
  pushInterleaved(data: Float32Array): void {
    this.pushMono(mixInterleavedToMono(data, this.channels));
  }

  /** Feeds planar channels (one array per channel, equal lengths). */
  pushPlanar(channels: readonly Float32Array[]): void {
    if (channels.length !== this.channels) throw new Error(`MonoResampler: expected ${this.channels} channels, got ${channels.length}`);
    this.pushMono(mixToMono(channels));
  }

  /** Ends the stream: 16 kHz mono samples, ⌈frames·16000/rate⌉ long, peak-normalised. */
  finish(): Float32Array {
    if (this.done) throw new Error('MonoResampler: finish() called twice');
    this.done = true;
    this.keep(this.resampler.end());
    let out: Float32Array;
    if (this.parts.length === 1 && this.parts[0].buffer.byteLength === this.parts[0].byteLength) out = this.parts[0];
    else {
      out = new Float32Array(this.outLength);
      let o = 0;
      for (const p of this.parts) {
        out.set(p, o);
        o += p.length;
      }
    }
    this.parts.length = 0;
    return normalizePeak(out);
  }

  private keep(part: Float32Array): void {
    if (part.length === 0) return;
    this.parts.push(part);
    this.outLength += part.length;
  }
}
