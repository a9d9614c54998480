/**
 * Speech regions from per-window speech probabilities (Silero VAD's, one per 512 samples at
 * 16 kHz), by the rule of upstream silero-vad's `get_speech_timestamps` without its maximum
 * speech length:
 * - speech starts at the first window whose probability is ≥ threshold;
 * - it ends where the probability first falls below threshold − 0.15 (at least 0.01) and stays
 *   under threshold for minSilenceMs; a window ≥ threshold in that time cancels the end, a
 *   window between the two thresholds neither cancels nor restarts it (hysteresis);
 * - a region not longer than minSpeechMs is dropped;
 * - each region is padded by padMs on both sides, within [0, totalSamples); where two regions
 *   are closer than two pads, each takes half of the gap between them, so they never overlap.
 * Speech still open at the end of the audio ends at totalSamples.
 */

export interface SpeechRegion {
  /** First sample (inclusive). */
  start: number;
  /** End sample (exclusive). */
  end: number;
}

export interface SpeechRegionOptions {
  /** Probability at or above which a window is speech (0 < threshold < 1). */
  threshold: number;
  /** Non-speech that ends a region (ms). */
  minSilenceMs: number;
  /** Regions not longer than this are dropped (ms); default 250 (upstream). */
  minSpeechMs?: number;
  /** Padding added to each side of a region (ms); default 30 (upstream). */
  padMs?: number;
  /** Samples per probability; default 512 (Silero at 16 kHz). */
  windowSamples?: number;
  /** Default 16000. */
  sampleRate?: number;
}

/** The hysteresis margin: speech ends below threshold − 0.15 (upstream's default). */
const NEG_MARGIN = 0.15;
const MIN_NEG_THRESHOLD = 0.01;

function checkMs(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative finite number of milliseconds, got ${v}`);
}

/** Speech regions in samples, in order, disjoint, inside [0, totalSamples). */
export function speechRegions(probs: Float32Array, totalSamples: number, opts: SpeechRegionOptions): SpeechRegion[] {
  const win = opts.windowSamples ?? 512;
  const sr = opts.sampleRate ?? 16000;
  const { threshold } = opts;
  if (!Number.isInteger(win) || win < 1) throw new Error(`windowSamples must be a positive integer, got ${win}`);
  if (!Number.isInteger(sr) || sr < 1) throw new Error(`sampleRate must be a positive integer, got ${sr}`);
  if (!Number.isInteger(totalSamples) || totalSamples < 0) throw new Error(`totalSamples must be a non-negative integer, got ${totalSamples}`);
  if (!(threshold > 0 && threshold < 1)) throw new Error(`threshold must lie between 0 and 1 (exclusive), got ${threshold}`);
  const minSpeechMs = opts.minSpeechMs ?? 250;
  const padMs = opts.padMs ?? 30;
  checkMs('minSilenceMs', opts.minSilenceMs);
  checkMs('minSpeechMs', minSpeechMs);
  checkMs('padMs', padMs);
  const windows = Math.ceil(totalSamples / win);
  if (probs.length !== windows) throw new Error(`${probs.length} probabilities for ${totalSamples} samples: expected ${windows} (one per ${win} samples)`);

  const negThreshold = Math.max(threshold - NEG_MARGIN, MIN_NEG_THRESHOLD);
  const minSilence = (sr * opts.minSilenceMs) / 1000;
  const minSpeech = (sr * minSpeechMs) / 1000;
  const pad = Math.floor((sr * padMs) / 1000);

  const regions: SpeechRegion[] = [];
  let inSpeech = false;
  let start = 0;
  /** Where the current stretch under negThreshold began; -1: none. */
  let silenceFrom = -1;
  const close = (end: number) => {
    if (end - start > minSpeech) regions.push({ start, end });
    inSpeech = false;
    silenceFrom = -1;
  };
  for (let i = 0; i < windows; i++) {
    const p = probs[i];
    const pos = i * win;
    if (p >= threshold) {
      silenceFrom = -1;
      if (!inSpeech) {
        inSpeech = true;
        start = pos;
      }
      continue;
    }
    if (!inSpeech || p >= negThreshold) continue;
    if (silenceFrom < 0) silenceFrom = pos;
    if (pos - silenceFrom >= minSilence) close(silenceFrom);
  }
  if (inSpeech) close(totalSamples);

  for (let i = 0; i < regions.length; i++) {
    const r = regions[i];
    const next = regions[i + 1];
    if (i === 0) r.start = Math.max(0, r.start - pad);
    if (!next) {
      r.end = Math.min(totalSamples, r.end + pad);
      break;
    }
    const gap = next.start - r.end;
    const grow = gap < 2 * pad ? Math.floor(gap / 2) : pad;
    r.end += grow;
    next.start = Math.max(0, next.start - grow);
  }
  return regions;
}
