/**
 * A test recording for voice activity detection: real speech clips from ../shared/audio
 * separated by long non-speech, with each clip's place known.
 *
 * Gaps alternate between digital silence and low noise (white, then pink, at a level drawn
 * between noiseDbfs[0] and noiseDbfs[1] dBFS RMS), starting and ending with a gap. Everything
 * drawn (clip order where asked, gap lengths, noise) comes from one seeded generator, so a seed
 * gives the same recording sample for sample.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeAudio } from '../audio/decode.ts';

export const VAD_RECORDING_RATE = 16000;

export interface VadRecordingOptions {
  /** Audio files (any format decodeAudio reads), in order. */
  clips: string[];
  /** Gap lengths are drawn uniformly from [min, max] seconds. */
  gapSeconds: [min: number, max: number];
  /** Noise level of the noise gaps (dBFS RMS), drawn uniformly; default [-50, -40]. */
  noiseDbfs?: [min: number, max: number];
  /** Default 1. */
  seed?: number;
}

export type GapKind = 'silence' | 'white noise' | 'pink noise';

export interface VadRecording {
  /** 16 kHz mono. */
  samples: Float32Array;
  sampleRate: typeof VAD_RECORDING_RATE;
  /** Each clip's samples are samples[start, end). */
  clips: { file: string; start: number; end: number }[];
  /** The non-speech between (and around) the clips. */
  gaps: { kind: GapKind; dbfs?: number; start: number; end: number }[];
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform white noise or pink noise (Paul Kellet's filter on white noise), scaled to `dbfs` RMS. */
export function noise(kind: 'white' | 'pink', length: number, dbfs: number, random: () => number): Float32Array {
  const out = new Float32Array(length);
  let b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0;
  for (let i = 0; i < length; i++) {
    const w = random() * 2 - 1;
    if (kind === 'white') {
      out[i] = w;
      continue;
    }
    b0 = 0.99886 * b0 + w * 0.0555179;
    b1 = 0.99332 * b1 + w * 0.0750759;
    b2 = 0.969 * b2 + w * 0.153852;
    b3 = 0.8665 * b3 + w * 0.3104856;
    b4 = 0.55 * b4 + w * 0.5329522;
    b5 = -0.7616 * b5 - w * 0.016898;
    out[i] = b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362;
    b6 = w * 0.115926;
  }
  let sum = 0;
  for (let i = 0; i < length; i++) sum += out[i] * out[i];
  const rms = Math.sqrt(sum / Math.max(1, length));
  const scale = rms > 0 ? 10 ** (dbfs / 20) / rms : 0;
  for (let i = 0; i < length; i++) out[i] *= scale;
  return out;
}

/** The notld clips of ../shared/audio (or `dir`), sorted by name. */
export function notldClips(audioDir: string): string[] {
  const dir = join(audioDir, 'notld');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.wav'))
    .sort()
    .map((f) => join(dir, f));
}

/** gap, clip, gap, clip, …, clip, gap. */
export async function buildVadRecording(opts: VadRecordingOptions): Promise<VadRecording> {
  const random = seededRandom(opts.seed ?? 1);
  const [gapMin, gapMax] = opts.gapSeconds;
  const [dbMin, dbMax] = opts.noiseDbfs ?? [-50, -40];
  if (!(gapMin >= 0 && gapMax >= gapMin)) throw new Error(`gapSeconds must be [min, max] with 0 ≤ min ≤ max, got [${gapMin}, ${gapMax}]`);
  const decoded = await Promise.all(opts.clips.map(async (file) => ({ file, samples: (await decodeAudio(file)).samples })));

  const parts: Float32Array[] = [];
  const clips: VadRecording['clips'] = [];
  const gaps: VadRecording['gaps'] = [];
  let at = 0;
  let noiseGaps = 0;
  const addGap = (index: number) => {
    const length = Math.round((gapMin + random() * (gapMax - gapMin)) * VAD_RECORDING_RATE);
    if (index % 2 === 0) {
      parts.push(new Float32Array(length));
      gaps.push({ kind: 'silence', start: at, end: at + length });
    } else {
      const kind = noiseGaps++ % 2 === 0 ? 'white' : 'pink';
      const dbfs = dbMin + random() * (dbMax - dbMin);
      parts.push(noise(kind, length, dbfs, random));
      gaps.push({ kind: `${kind} noise`, dbfs, start: at, end: at + length });
    }
    at += length;
  };
  decoded.forEach(({ file, samples }, i) => {
    addGap(i);
    parts.push(samples);
    clips.push({ file, start: at, end: at + samples.length });
    at += samples.length;
  });
  addGap(decoded.length);

  const samples = new Float32Array(at);
  let o = 0;
  for (const p of parts) {
    samples.set(p, o);
    o += p.length;
  }
  return { samples, sampleRate: VAD_RECORDING_RATE, clips, gaps };
}
