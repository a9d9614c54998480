/**
 * Long-audio segmentation.
 *
 * `splitAtQuietPoints` is the official rule (spec §4.2, `split_audio_into_chunks` in the
 * official wrapper): segments of at most `maxSeconds` (1200 s for plain ASR, 180 s with
 * timestamps), each cut moved to the quietest 100 ms in ±5 s around the proposed cut. It is
 * what the model's results are defined against, so it is reproduced sample for sample.
 *
 * `splitIntoUtterances` is ours: shorter, readable segments that end where the speaker pauses
 * (subtitles, progress, smaller batches), cutting inside pauses at their quietest point and
 * only falling back to a quiet-point cut when a stretch without pauses exceeds `maxSeconds`.
 *
 * Both return segments that tile the input exactly (no gap, no overlap, in order) with
 * `offsetSeconds = start / sampleRate` in float64 (no accumulated rounding). Segment samples
 * are views into the input, except where the official rule pads a short segment with zeros.
 */

export interface AudioSegment {
  /** First sample (inclusive) in the input. */
  start: number;
  /** End sample (exclusive) in the input. */
  end: number;
  /** start / sampleRate. */
  offsetSeconds: number;
  /** The segment's samples: input[start..end), zero-padded at the end only where stated. */
  samples: Float32Array;
}

export interface QuietSplitOptions {
  /** Longest segment before a cut is searched for (seconds). */
  maxSeconds: number;
  /** Half-width of the region searched around each proposed cut; default 5 s (official). */
  searchSeconds?: number;
  /** Default 16000. */
  sampleRate?: number;
}

/** Official constants (spec §4.2). */
const OFFICIAL_SEARCH_SECONDS = 5;
const ENERGY_WINDOW_SECONDS = 0.1;
const MIN_SEGMENT_SECONDS = 0.5;

function checkRate(sampleRate: number): void {
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) throw new Error(`sampleRate must be a positive integer, got ${sampleRate}`);
}

function checkSeconds(name: string, v: number, allowZero = false): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} finite number of seconds, got ${v}`);
  }
}

/**
 * The first position of the minimum moving sum of |x| over `win`-sample windows ("valid"
 * positions only) in samples[left..right), then the first sample of minimum |x| inside that
 * window. Returns an absolute sample index. Sums come from a float64 prefix sum, so windows
 * of digital silence tie exactly at 0 and the first one wins, as with numpy's argmin.
 */
export function quietestPoint(samples: Float32Array, left: number, right: number, win: number): number {
  const len = right - left;
  if (win < 1 || len < win) throw new Error(`quietestPoint: region of ${len} samples is shorter than the ${win}-sample window`);
  const prefix = new Float64Array(len + 1);
  for (let i = 0; i < len; i++) prefix[i + 1] = prefix[i] + Math.abs(samples[left + i]);
  let bestPos = 0;
  let bestSum = prefix[win];
  for (let p = 1; p + win <= len; p++) {
    const s = prefix[p + win] - prefix[p];
    if (s < bestSum) {
      bestSum = s;
      bestPos = p;
    }
  }
  let inner = left + bestPos;
  let innerMin = Math.abs(samples[inner]);
  for (let i = left + bestPos + 1; i < left + bestPos + win; i++) {
    const a = Math.abs(samples[i]);
    if (a < innerMin) {
      innerMin = a;
      inner = i;
    }
  }
  return inner;
}

/**
 * The official long-audio split (spec §4.2):
 * - total ≤ maxSeconds: one segment, the input as is (no minimum-length padding);
 * - otherwise, while more than max samples remain: proposed cut = start + max; search
 *   [cut − search, cut + search] ∩ [start, end] for the first 100 ms window with the least
 *   Σ|x| and cut at its first minimum-|x| sample (at the proposed cut when the region is not
 *   longer than one window), forced into [start + 1, end]; segment = [start, boundary);
 * - segments shorter than 0.5 s are zero-padded at their end to 0.5 s.
 * Segments can therefore be up to max + search seconds long.
 *
 * One deliberate guard: the search half-width is capped at max/2. The official code has no
 * cap, and with max < 2·search (never the case for its 1200 s / 180 s limits) the search
 * reaches back to the segment start and can cut after a single sample, over and over.
 */
export function splitAtQuietPoints(samples: Float32Array, opts: QuietSplitOptions): AudioSegment[] {
  const sr = opts.sampleRate ?? 16000;
  checkRate(sr);
  checkSeconds('maxSeconds', opts.maxSeconds);
  const searchSeconds = opts.searchSeconds ?? OFFICIAL_SEARCH_SECONDS;
  checkSeconds('searchSeconds', searchSeconds, true);
  const n = samples.length;
  if (n / sr <= opts.maxSeconds) return [{ start: 0, end: n, offsetSeconds: 0, samples }];

  // Python's int() truncation, as the official code converts seconds to samples.
  const maxLen = Math.max(1, Math.floor(opts.maxSeconds * sr));
  const expand = Math.min(Math.floor(searchSeconds * sr), Math.floor(maxLen / 2));
  const win = Math.max(1, Math.floor(ENERGY_WINDOW_SECONDS * sr));
  const bounds: number[] = [0];
  let start = 0;
  while (n - start > maxLen) {
    const cut = start + maxLen;
    const left = Math.max(start, cut - expand);
    const right = Math.min(n, cut + expand);
    let boundary = right - left <= win ? cut : quietestPoint(samples, left, right, win);
    boundary = Math.min(n, Math.max(start + 1, boundary));
    bounds.push(boundary);
    start = boundary;
  }
  bounds.push(n);

  const minLen = Math.floor(MIN_SEGMENT_SECONDS * sr);
  const segments: AudioSegment[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const s = bounds[i];
    const e = bounds[i + 1];
    let seg = samples.subarray(s, e);
    if (seg.length < minLen) {
      const padded = new Float32Array(minLen);
      padded.set(seg);
      seg = padded;
    }
    segments.push({ start: s, end: e, offsetSeconds: s / sr, samples: seg });
  }
  return segments;
}

// ---------------------------------------------------------------------------------------------
// Utterance-level segmentation
// ---------------------------------------------------------------------------------------------

export interface UtteranceOptions {
  /** Hard upper bound on a segment's length in seconds. */
  maxSeconds: number;
  /** A pause must last at least this long to end an utterance; default 0.3 s. */
  minSilenceSeconds?: number;
  /** Utterances shorter than this are merged with the next one; default 1 s. */
  minSeconds?: number;
  /** Default 16000. */
  sampleRate?: number;
}

/** Analysis frame for pause detection: 10 ms (the log-mel hop). */
const FRAME_SECONDS = 0.01;
/** Distance kept between a pause's cut and its edges. */
const PAUSE_MARGIN_SECONDS = 0.05;
/** Level floor for silent frames, in dB (keeps log10 finite on digital silence). */
const SILENT_DB = -120;

/** Frame energies in dB (10·log10 of the mean square) over consecutive `hop`-sample frames. */
export function frameEnergyDb(samples: Float32Array, hop: number): Float64Array {
  const frames = Math.ceil(samples.length / hop);
  const db = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    const a = f * hop;
    const b = Math.min(samples.length, a + hop);
    let s = 0;
    for (let i = a; i < b; i++) s += samples[i] * samples[i];
    const ms = s / (b - a);
    db[f] = ms > 0 ? Math.max(SILENT_DB, 10 * Math.log10(ms)) : SILENT_DB;
  }
  return db;
}

function percentile(values: Float64Array, q: number): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return SILENT_DB;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * The silence threshold of a recording, in dB: a quarter of the way from its noise floor
 * (10th percentile of frame levels) to its speech level (90th percentile). Adapting to the
 * recording matters: a phone call's pauses sit at −50 dB, a studio's at −90 dB. When the two
 * levels are within 6 dB (continuous sound or continuous silence) there are no pauses.
 */
export function silenceThresholdDb(frameDb: Float64Array): number {
  const floor = percentile(frameDb, 0.1);
  const speech = percentile(frameDb, 0.9);
  if (speech - floor < 6) return -Infinity;
  return floor + 0.25 * (speech - floor);
}

/** A pause: a run of frames below the silence threshold, and the sample to cut at inside it. */
export interface Pause {
  /** First sample of the pause. */
  start: number;
  /** End sample (exclusive). */
  end: number;
  /** Where to cut: the quietest point well inside the pause (see findPauses). */
  cut: number;
}

/**
 * Pauses of at least `minSilenceSeconds`, in order. Each pause's cut is the official
 * quiet-point rule (quietest 100 ms window, then its quietest sample) applied to the pause
 * minus 50 ms at either end, so the cut never sits at the edge of the next word.
 */
export function findPauses(samples: Float32Array, opts: { minSilenceSeconds: number; sampleRate: number }): Pause[] {
  const hop = Math.max(1, Math.round(FRAME_SECONDS * opts.sampleRate));
  const db = frameEnergyDb(samples, hop);
  const threshold = silenceThresholdDb(db);
  const minFrames = Math.max(1, Math.ceil((opts.minSilenceSeconds * opts.sampleRate) / hop));
  const pauses: Pause[] = [];
  const win = Math.max(1, Math.floor(ENERGY_WINDOW_SECONDS * opts.sampleRate));
  const margin = Math.floor(PAUSE_MARGIN_SECONDS * opts.sampleRate);
  for (let f = 0; f < db.length; ) {
    if (!(db[f] < threshold)) {
      f++;
      continue;
    }
    let g = f;
    while (g < db.length && db[g] < threshold) g++;
    if (g - f >= minFrames) {
      const start = f * hop;
      const end = Math.min(samples.length, g * hop);
      // Shrink by the margin when the pause is long enough to keep a full window inside.
      const m = Math.max(0, Math.min(margin, Math.floor((end - start - win) / 2)));
      const w = Math.min(win, end - start);
      pauses.push({ start, end, cut: quietestPoint(samples, start + m, end - m, w) });
    }
    f = g;
  }
  return pauses;
}

/**
 * Splits speech into utterance-sized segments for readable output:
 * 1. pauses (runs of 10 ms frames below an adaptive silence threshold, see
 *    silenceThresholdDb) of at least `minSilenceSeconds` are cut candidates, each cut at its
 *    quietest point away from the edges (findPauses);
 * 2. walking forward, a candidate becomes a boundary when the segment it closes is at least
 *    `minSeconds` long (shorter utterances merge into the next one); a tail shorter than
 *    `minSeconds` merges into the previous segment when that stays within `maxSeconds`;
 * 3. any segment still longer than `maxSeconds` (speech or music without pauses) is cut at
 *    the quietest 100 ms window (official rule) within its second half-window
 *    [start + max/2, start + max], repeatedly, so forced segments stay between max/2 and max.
 * Segments tile the input; no padding is added.
 */
export function splitIntoUtterances(samples: Float32Array, opts: UtteranceOptions): AudioSegment[] {
  const sr = opts.sampleRate ?? 16000;
  checkRate(sr);
  checkSeconds('maxSeconds', opts.maxSeconds);
  const minSilence = opts.minSilenceSeconds ?? 0.3;
  const minSeconds = opts.minSeconds ?? 1;
  checkSeconds('minSilenceSeconds', minSilence);
  checkSeconds('minSeconds', minSeconds, true);
  const n = samples.length;
  const maxLen = Math.max(1, Math.floor(opts.maxSeconds * sr));
  const minLen = Math.min(Math.floor(minSeconds * sr), maxLen);
  const win = Math.max(1, Math.floor(ENERGY_WINDOW_SECONDS * sr));

  const bounds: number[] = [0];
  for (const pause of findPauses(samples, { minSilenceSeconds: minSilence, sampleRate: sr })) {
    const last = bounds[bounds.length - 1];
    if (pause.cut - last >= minLen && n - pause.cut > 0) bounds.push(pause.cut);
  }
  if (bounds.length > 1 && n - bounds[bounds.length - 1] < minLen && n - bounds[bounds.length - 2] <= maxLen) bounds.pop();
  bounds.push(n);

  // Enforce the maximum length inside any over-long segment.
  const final: number[] = [0];
  for (let i = 0; i + 1 < bounds.length; i++) {
    let s = bounds[i];
    const e = bounds[i + 1];
    while (e - s > maxLen) {
      const left = s + Math.floor(maxLen / 2);
      const right = s + maxLen;
      const cut = right - left <= win ? right : quietestPoint(samples, left, right, win);
      const boundary = Math.min(e - 1, Math.max(s + 1, cut));
      final.push(boundary);
      s = boundary;
    }
    final.push(e);
  }
  const segments: AudioSegment[] = [];
  for (let i = 0; i + 1 < final.length; i++) {
    const s = final[i];
    const e = final[i + 1];
    if (e > s) segments.push({ start: s, end: e, offsetSeconds: s / sr, samples: samples.subarray(s, e) });
  }
  return segments;
}
