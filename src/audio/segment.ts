/**
 * Long-audio segmentation.
 *
 * `splitAtQuietPoints` is the official rule (spec §4.2, `split_audio_into_chunks` in the
 * official wrapper): segments of at most `maxSeconds` (1200 s for plain ASR, 180 s with
 * timestamps), each cut moved to the quietest 100 ms in ±5 s around the proposed cut. It is
 * what the model's results are defined against, so it is reproduced sample for sample.
 *
 * The segments tile the input exactly (no gap, no overlap, in order) with
 * `offsetSeconds = start / sampleRate` in float64 (no accumulated rounding). The official
 * wrapper instead adds up each segment's length / sampleRate; from the third segment on the two
 * can differ in the last bit, which moves a word time (round(t + offset, 3)) by 1 ms, and only
 * where t + offset is a tie at the third decimal. Segment samples are views into the input,
 * except where the official rule pads a short segment with zeros.
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

/** A stretch of speech in samples, [start, end): what speechRegions (speech-regions.ts) returns. */
export interface SampleRange {
  start: number;
  end: number;
}

export interface SpeechSplitOptions {
  /** Longest segment (seconds). */
  maxSeconds: number;
  sampleRate: number;
  /**
   * Non-speech between two regions shorter than this stays inside a segment (the regions are
   * decoded together while the segment stays within maxSeconds); longer non-speech is never
   * decoded. Default DEFAULT_MIN_GAP_SECONDS.
   */
  minGapSeconds?: number;
}

/**
 * Default for SpeechSplitOptions.minGapSeconds: the default VAD_MIN_SILENCE_MS (settings.ts),
 * so the non-speech that ends a speech region is the non-speech left out. Regions are padded, so
 * a gap between them is up to two pads shorter than the silence that ended the first.
 */
export const DEFAULT_MIN_GAP_SECONDS = 1;

/** Width of the region searched for the quietest 100 ms when a speech region is longer than a segment. */
const SPEECH_CUT_SEARCH_SECONDS = 10;

/**
 * Segments for the speech regions only (voice activity detection): every region lies inside a
 * segment, and no non-speech of minGapSeconds or more does.
 *
 * Regions separated by less than minGapSeconds join one segment while it stays within
 * maxSeconds; otherwise a segment ends where its last region ends and the next begins where its
 * first region begins, so every cut between regions falls in non-speech. A region longer than
 * maxSeconds is cut, as often as needed, at the quietest 100 ms (quietestPoint) in the last
 * SPEECH_CUT_SEARCH_SECONDS (at most half a segment) before a segment would exceed maxSeconds:
 * these are the only cuts inside speech, and no segment exceeds maxSeconds.
 *
 * Segments do not tile the input: they keep absolute positions (`offsetSeconds = start /
 * sampleRate`), and their samples are views into the input, except that a segment shorter than
 * 0.5 s is zero-padded to 0.5 s at its end, as in splitAtQuietPoints. No regions: no segments.
 */
export function splitAtSpeech(samples: Float32Array, regions: readonly SampleRange[], opts: SpeechSplitOptions): AudioSegment[] {
  const sr = opts.sampleRate;
  checkRate(sr);
  checkSeconds('maxSeconds', opts.maxSeconds);
  const minGapSeconds = opts.minGapSeconds ?? DEFAULT_MIN_GAP_SECONDS;
  checkSeconds('minGapSeconds', minGapSeconds, true);
  const n = samples.length;
  let prevEnd = 0;
  for (const r of regions) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < prevEnd || r.end <= r.start || r.end > n) {
      throw new Error(`speech regions must be ordered, disjoint, non-empty sample ranges inside [0, ${n}); got [${r.start}, ${r.end}) after ${prevEnd}`);
    }
    prevEnd = r.end;
  }
  const maxLen = Math.max(1, Math.floor(opts.maxSeconds * sr));
  const minGap = minGapSeconds * sr;
  const win = Math.max(1, Math.floor(ENERGY_WINDOW_SECONDS * sr));
  const search = Math.min(Math.floor(SPEECH_CUT_SEARCH_SECONDS * sr), Math.floor(maxLen / 2));

  // Groups of regions decoded together, as [start, end) ranges.
  const groups: SampleRange[] = [];
  for (const r of regions) {
    const last = groups[groups.length - 1];
    if (last && r.start - last.end < minGap && r.end - last.start <= maxLen) last.end = r.end;
    else groups.push({ start: r.start, end: r.end });
  }

  const bounds: SampleRange[] = [];
  for (const g of groups) {
    let start = g.start;
    while (g.end - start > maxLen) {
      const right = start + maxLen;
      const left = Math.max(start + 1, right - search);
      const cut = right - left <= win ? right : quietestPoint(samples, left, right, win);
      bounds.push({ start, end: cut });
      start = cut;
    }
    bounds.push({ start, end: g.end });
  }

  const minLen = Math.floor(MIN_SEGMENT_SECONDS * sr);
  return bounds.map(({ start, end }) => {
    let seg = samples.subarray(start, end);
    if (seg.length < minLen) {
      const padded = new Float32Array(minLen);
      padded.set(seg);
      seg = padded;
    }
    return { start, end, offsetSeconds: start / sr, samples: seg };
  });
}
