/**
 * Whisper-style log-mel features (spec §4.3; transformers' WhisperFeatureExtractor, torch path):
 *
 *   periodic Hann(n_fft) · reflect-padded frames (n_fft/2 each side), hop `hop`, one-sided
 *   power spectrum, LAST FRAME DROPPED (T = ⌊N/hop⌋), Slaney-scale / Slaney-normalised mel
 *   filter bank, log10(max(mel, 1e-10)), floor at (global max − 8), then (x + 4)/4.
 *
 * Output layout is [nMels, T] row-major, float32, which is what the encoder consumes.
 *
 * Everything is computed in float64 (the goldens are float64-evaluated) and rounded to float32
 * once at the end. Two frames share one complex FFT (the real frame a goes in the real part, b
 * in the imaginary part; A[k] = (Z[k] + conj Z[n−k])/2, B[k] = (Z[k] − conj Z[n−k])/2i), and
 * the mel projection walks only each filter's non-zero bins: 60 s of audio takes ~0.1 s on one
 * core, a 20-minute segment ~1.5 s (on an Intel Xeon VM with AMX, 2 vCPUs).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ComplexFft } from './fft.ts';

export interface FeatureConfig {
  sampleRate: number;
  nFft: number;
  hopLength: number;
  nMels: number;
  /** Lower edge of the mel filter bank in Hz (WhisperFeatureExtractor: 0). */
  fMin: number;
  /** Upper edge in Hz (WhisperFeatureExtractor hard-codes 8000, it is not in the JSON). */
  fMax: number;
}

export class FeatureConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FeatureConfigError';
  }
}

/** WhisperFeatureExtractor builds its filter bank with max_frequency=8000.0 whatever the rate. */
const WHISPER_MEL_FMAX = 8000;
const WHISPER_DEFAULT_SAMPLE_RATE = 16000;
const LOG_FLOOR = 1e-10;
/** Dynamic range kept below the utterance's maximum, in log10 units (80 dB of power). */
const DYNAMIC_RANGE = 8;

function positiveInt(json: Record<string, unknown>, key: string, file: string): number {
  const v = json[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new FeatureConfigError(`${file}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Builds the feature configuration from a parsed preprocessor_config.json and the encoder's num_mel_bins. */
export function parseFeatureConfig(json: unknown, numMelBins: number, file = 'preprocessor_config.json'): FeatureConfig {
  if (!json || typeof json !== 'object') throw new FeatureConfigError(`${file}: not a JSON object`);
  const pre = json as Record<string, unknown>;
  const type = pre.feature_extractor_type;
  if (type !== undefined && type !== 'WhisperFeatureExtractor') {
    throw new FeatureConfigError(`${file}: feature_extractor_type ${JSON.stringify(type)} is not supported (WhisperFeatureExtractor only)`);
  }
  // Dither adds random noise before the STFT; the checkpoints ship 0.0 and a deterministic
  // service must not silently ignore a different setting.
  if (pre.dither !== undefined && pre.dither !== 0) {
    throw new FeatureConfigError(`${file}: dither ${JSON.stringify(pre.dither)} is not supported (only 0.0)`);
  }
  const cfg: FeatureConfig = {
    // The published preprocessor_config.json has no sampling_rate (tiny-a copies it): the
    // WhisperFeatureExtractor constructor default, 16000, applies then.
    sampleRate: pre.sampling_rate === undefined ? WHISPER_DEFAULT_SAMPLE_RATE : positiveInt(pre, 'sampling_rate', file),
    nFft: positiveInt(pre, 'n_fft', file),
    hopLength: positiveInt(pre, 'hop_length', file),
    nMels: positiveInt(pre, 'feature_size', file),
    fMin: 0,
    fMax: WHISPER_MEL_FMAX,
  };
  if (cfg.nMels !== numMelBins) {
    throw new FeatureConfigError(`${file}: feature_size ${cfg.nMels} differs from the audio encoder's num_mel_bins ${numMelBins} in config.json`);
  }
  if (cfg.nFft % 2 !== 0) throw new FeatureConfigError(`${file}: n_fft ${cfg.nFft} must be even`);
  if (cfg.fMax > cfg.sampleRate / 2) {
    throw new FeatureConfigError(`${file}: sampling_rate ${cfg.sampleRate} is too low for the 0–${cfg.fMax} Hz mel filter bank`);
  }
  return cfg;
}

/**
 * Reads a checkpoint folder's `preprocessor_config.json`; `numMelBins` is the audio encoder's
 * (config.json, parsed by the caller), which the feature size must equal.
 */
export function loadFeatureConfig(dir: string, numMelBins: number): FeatureConfig {
  const file = join(dir, 'preprocessor_config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FeatureConfigError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FeatureConfigError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseFeatureConfig(json, numMelBins, file);
}

// ---------------------------------------------------------------------------------------------
// Mel filter bank (transformers audio_utils.mel_filter_bank, norm="slaney", mel_scale="slaney")
// ---------------------------------------------------------------------------------------------

const LOG_STEP = Math.log(6.4) / 27;

function hzToMelSlaney(f: number): number {
  return f < 1000 ? (3 * f) / 200 : 15 + Math.log(f / 1000) / LOG_STEP;
}

function melToHzSlaney(m: number): number {
  return m < 15 ? (200 * m) / 3 : 1000 * Math.exp(LOG_STEP * (m - 15));
}

/** numpy.linspace(start, stop, num) with endpoint: start + i·step, the last value exactly `stop`. */
function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

/** One triangular filter: weights for bins first .. first+weights.length−1 (all others are zero). */
export interface MelFilter {
  first: number;
  weights: Float64Array;
}

/**
 * The Slaney mel filter bank as sparse rows, built in float64 exactly as transformers does:
 * nMels+2 points equally spaced in mel between mel(fMin) and mel(fMax), FFT bin centres
 * linspace(0, sr//2, nFft/2+1), triangle max(0, min(up, down)), scaled by 2/(F[m+2] − F[m]).
 */
export function melFilterBank(cfg: FeatureConfig): MelFilter[] {
  const nBins = cfg.nFft / 2 + 1;
  const melPoints = linspace(hzToMelSlaney(cfg.fMin), hzToMelSlaney(cfg.fMax), cfg.nMels + 2);
  const hz = melPoints.map(melToHzSlaney);
  const binHz = linspace(0, Math.floor(cfg.sampleRate / 2), nBins);
  const filters: MelFilter[] = [];
  for (let m = 0; m < cfg.nMels; m++) {
    const lower = hz[m];
    const centre = hz[m + 1];
    const upper = hz[m + 2];
    const enorm = 2 / (upper - lower);
    const dense = new Float64Array(nBins);
    let first = -1;
    let last = -1;
    for (let k = 0; k < nBins; k++) {
      const down = (binHz[k] - lower) / (centre - lower);
      const up = (upper - binHz[k]) / (upper - centre);
      const w = Math.max(0, Math.min(down, up));
      if (w > 0) {
        dense[k] = w * enorm;
        if (first < 0) first = k;
        last = k;
      }
    }
    // A filter narrower than one bin spacing can be all zeros (many mels, small n_fft); it then
    // contributes log10(1e-10) like transformers' (which only warns about it).
    filters.push(first < 0 ? { first: 0, weights: new Float64Array(0) } : { first, weights: dense.slice(first, last + 1) });
  }
  return filters;
}

// ---------------------------------------------------------------------------------------------
// Log-mel spectrogram
// ---------------------------------------------------------------------------------------------

interface Frontend {
  window: Float64Array;
  fft: ComplexFft;
  filters: MelFilter[];
}

const frontendCache = new Map<string, Frontend>();

function frontendFor(cfg: FeatureConfig): Frontend {
  const key = `${cfg.sampleRate}/${cfg.nFft}/${cfg.nMels}/${cfg.fMin}/${cfg.fMax}`;
  let fe = frontendCache.get(key);
  if (!fe) {
    const window = new Float64Array(cfg.nFft);
    // Periodic Hann (torch.hann_window default): denominator n, not n − 1.
    for (let i = 0; i < cfg.nFft; i++) window[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / cfg.nFft);
    fe = { window, fft: new ComplexFft(cfg.nFft), filters: melFilterBank(cfg) };
    frontendCache.set(key, fe);
  }
  return fe;
}

function checkConfig(cfg: FeatureConfig): void {
  for (const key of ['sampleRate', 'nFft', 'hopLength', 'nMels'] as const) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v <= 0) throw new FeatureConfigError(`feature config: ${key} must be a positive integer, got ${v}`);
  }
  if (cfg.nFft % 2 !== 0) throw new FeatureConfigError(`feature config: nFft ${cfg.nFft} must be even`);
}

/** Frames the features of `n` samples will have: ⌊n/hop⌋ (the STFT's last frame is dropped). */
export function featureFrameCount(n: number, cfg: Pick<FeatureConfig, 'hopLength'>): number {
  return Math.floor(n / cfg.hopLength);
}

/**
 * Log-mel features of one mono waveform at cfg.sampleRate.
 *
 * Throws when the input cannot produce a frame: reflect padding needs more than n_fft/2
 * samples (torch refuses otherwise), and T = ⌊N/hop⌋ must be at least 1. Non-finite samples
 * are rejected too (they would turn the whole spectrogram into NaN through the global max).
 */
export function logMelSpectrogram(samples: Float32Array, cfg: FeatureConfig): { data: Float32Array; frames: number } {
  checkConfig(cfg);
  const n = samples.length;
  const pad = cfg.nFft / 2;
  const hop = cfg.hopLength;
  const nFft = cfg.nFft;
  if (n <= pad) {
    throw new Error(
      `audio too short for log-mel features: ${n} samples (${(n / cfg.sampleRate).toFixed(4)} s); ` +
        `reflect padding by n_fft/2 = ${pad} needs more than ${pad} samples`,
    );
  }
  const frames = featureFrameCount(n, cfg);
  if (frames < 1) {
    throw new Error(`audio too short for log-mel features: ${n} samples give 0 frames (hop ${hop})`);
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(samples[i])) throw new Error(`audio sample ${i} is not a finite number (${samples[i]})`);
  }

  const { window, fft, filters } = frontendFor(cfg);
  const nMels = cfg.nMels;
  const nBins = nFft / 2 + 1;
  const out = new Float64Array(nMels * frames);
  const packed = new Float64Array(2 * nFft);
  const powerA = new Float64Array(nBins);
  const powerB = new Float64Array(nBins);

  // Sample j of frame t sits at padded index hop·t + j, i.e. signal index hop·t + j − pad;
  // outside [0, n) the reflect padding mirrors without repeating the edge sample.
  const loadFrame = (t: number, part: 0 | 1): void => {
    const start = hop * t - pad;
    if (start >= 0 && start + nFft <= n) {
      for (let j = 0; j < nFft; j++) packed[2 * j + part] = samples[start + j] * window[j];
    } else {
      for (let j = 0; j < nFft; j++) {
        let idx = start + j;
        if (idx < 0) idx = -idx;
        else if (idx >= n) idx = 2 * (n - 1) - idx;
        packed[2 * j + part] = samples[idx] * window[j];
      }
    }
  };

  const project = (power: Float64Array, t: number): void => {
    for (let m = 0; m < nMels; m++) {
      const { first, weights } = filters[m];
      let acc = 0;
      for (let k = 0; k < weights.length; k++) acc += weights[k] * power[first + k];
      out[m * frames + t] = Math.log10(acc > LOG_FLOOR ? acc : LOG_FLOOR);
    }
  };

  for (let t = 0; t < frames; t += 2) {
    const pair = t + 1 < frames;
    loadFrame(t, 0);
    if (pair) loadFrame(t + 1, 1);
    else for (let j = 0; j < nFft; j++) packed[2 * j + 1] = 0;
    const z = fft.forward(packed);
    for (let k = 0; k < nBins; k++) {
      const kk = k === 0 ? 0 : nFft - k;
      const zr = z[2 * k], zi = z[2 * k + 1];
      const cr = z[2 * kk], ci = -z[2 * kk + 1]; // conj Z[n−k]
      const ar = 0.5 * (zr + cr), ai = 0.5 * (zi + ci);
      // (Z − conj Z[n−k]) / 2i: dividing by i maps (re, im) to (im, −re)
      const br = 0.5 * (zi - ci), bi = -0.5 * (zr - cr);
      powerA[k] = ar * ar + ai * ai;
      powerB[k] = br * br + bi * bi;
    }
    project(powerA, t);
    if (pair) project(powerB, t + 1);
  }

  let max = -Infinity;
  for (let i = 0; i < out.length; i++) if (out[i] > max) max = out[i];
  const floor = max - DYNAMIC_RANGE;
  const data = new Float32Array(out.length);
  for (let i = 0; i < out.length; i++) {
    const v = out[i] > floor ? out[i] : floor;
    data[i] = (v + 4) / 4;
  }
  return { data, frames };
}
