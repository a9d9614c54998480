/**
 * From the aligner's per-slot classes to word timestamps in seconds: the official
 * `Qwen3ForceAlignProcessor.fix_timestamp` / `parse_timestamp` and the offsetting done by
 * `Qwen3ASRModel.transcribe(return_time_stamps=True)` (spec §9.3–9.4, golden/README.md "The math"
 * steps 4–7). The goldens are exact, so every operation follows the official float64 order.
 */
import type { WordTimestamp } from '../types.ts';

/**
 * Python's `round(x, digits)` for a float: the exact binary value of `x` is rounded to `digits`
 * decimals (ties to even, which only happens when the binary value is exactly halfway), and the
 * decimal result is converted back to the nearest double. `Math.round(x * 1000) / 1000` is wrong
 * (the product is rounded before the tie test: 180.0005 → 180.001, Python gives 180.0), and
 * `Number(x.toFixed(3))` sends exact ties up (0.0625 → 0.063, Python gives 0.062).
 */
export function pythonRound(x: number, digits: number): number {
  if (!Number.isInteger(digits)) throw new RangeError(`pythonRound: digits must be an integer, got ${digits}`);
  if (!Number.isFinite(x) || x === 0) return x;
  const negative = x < 0;
  // |x| = mantissa · 2^exponent exactly.
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biasedExponent = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & 0xfffffffffffffn;
  const mantissa = biasedExponent === 0 ? fraction : fraction | (1n << 52n);
  const exponent = (biasedExponent === 0 ? 1 : biasedExponent) - 1075;
  // |x| · 10^digits = numerator / denominator, both integers.
  let numerator = mantissa;
  let denominator = 1n;
  if (exponent >= 0) numerator <<= BigInt(exponent);
  else denominator <<= BigInt(-exponent);
  if (digits >= 0) numerator *= 10n ** BigInt(digits);
  else denominator *= 10n ** BigInt(-digits);
  let quotient = numerator / denominator;
  const twiceRemainder = 2n * (numerator % denominator);
  if (twiceRemainder > denominator || (twiceRemainder === denominator && quotient % 2n === 1n)) quotient += 1n;
  // The string → number conversion is correctly rounded, as Python's strtod is.
  const magnitude = Number(`${quotient}e${-digits}`);
  return negative ? -magnitude : magnitude;
}

/**
 * Milliseconds of each slot: class × segment time, computed as the official code does (an integer
 * tensor times a Python float gives a float32 tensor), so the product is rounded to float32.
 */
export function classesToMs(classes: ArrayLike<number>, segmentTimeMs: number): number[] {
  if (!(Number.isFinite(segmentTimeMs) && segmentTimeMs > 0)) {
    throw new RangeError(`timestamp segment time must be a positive number of ms, got ${segmentTimeMs}`);
  }
  const step = Math.fround(segmentTimeMs);
  const ms: number[] = new Array(classes.length);
  for (let i = 0; i < classes.length; i++) {
    const c = classes[i];
    if (!(Number.isInteger(c) && c >= 0)) throw new RangeError(`timestamp class ${i} must be a non-negative integer, got ${c}`);
    ms[i] = Math.fround(Math.fround(c) * step);
  }
  return ms;
}

/**
 * Indices of a longest non-decreasing subsequence, chosen exactly as the official O(n²) DP does:
 * for each i, j is scanned upwards and the first j that strictly lengthens the chain becomes the
 * predecessor; the chain ends at the first index of maximal length.
 */
export function longestNonDecreasingChain(values: readonly number[]): number[] {
  const n = values.length;
  if (n === 0) return [];
  const length = new Array<number>(n).fill(1);
  const parent = new Array<number>(n).fill(-1);
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (values[j] <= values[i] && length[j] + 1 > length[i]) {
        length[i] = length[j] + 1;
        parent[i] = j;
      }
    }
  }
  let end = 0;
  for (let i = 1; i < n; i++) if (length[i] > length[end]) end = i;
  const chain: number[] = [];
  for (let idx = end; idx !== -1; idx = parent[idx]) chain.push(idx);
  return chain.reverse();
}

/**
 * Official `fix_timestamp`: makes the slot times non-decreasing. Values on the longest
 * non-decreasing chain are kept; every maximal run of other values is filled from its nearest
 * kept neighbours (left = before the run, right = after it; a missing side is replaced by the
 * other):
 * - a run of 1 or 2 takes the nearer neighbour, ties to the left;
 * - a longer run is interpolated as left + ((right − left) / (len + 1)) · (k − i + 1) in float64,
 *   in exactly that order (another order truncates 999.9999999999999 to 1000 instead of 999);
 * and every value is truncated toward zero to an integer (Python `int()`).
 */
export function repairTimestamps(ms: readonly number[]): number[] {
  const n = ms.length;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(ms[i])) throw new RangeError(`timestamp ${i} is not a finite number: ${ms[i]}`);
  }
  const kept = new Array<boolean>(n).fill(false);
  for (const idx of longestNonDecreasingChain(ms)) kept[idx] = true;

  const result = ms.slice();
  let i = 0;
  while (i < n) {
    if (kept[i]) {
      i++;
      continue;
    }
    let j = i;
    while (j < n && !kept[j]) j++;
    // Kept values are never modified, so the neighbours can be read from the input.
    const left = i > 0 ? ms[i - 1] : undefined;
    const right = j < n ? ms[j] : undefined;
    const runLength = j - i;
    for (let k = i; k < j; k++) {
      if (left === undefined) result[k] = right!;
      else if (right === undefined) result[k] = left;
      else if (runLength <= 2) result[k] = k - (i - 1) <= j - k ? left : right;
      else result[k] = left + ((right - left) / (runLength + 1)) * (k - i + 1);
    }
    i = j;
  }
  return result.map((v) => Math.trunc(v) + 0); // + 0 turns -0 into 0, as Python's int() has no -0
}

/**
 * Items for `units` from the repaired slot times: unit i spans slots 2i (start) and 2i + 1 (end),
 * seconds = round(ms / 1000, 3). The repair runs over all slots given (an empty unit list still has
 * its one pair); slots beyond 2n are otherwise ignored.
 */
export function msToItems(units: readonly string[], ms: readonly number[]): WordTimestamp[] {
  if (ms.length < 2 * units.length) {
    throw new RangeError(`aligner output has ${ms.length} timestamp slots for ${units.length} word units (needs ${2 * units.length})`);
  }
  const repaired = repairTimestamps(ms);
  return units.map((text, i) => ({
    text,
    start: pythonRound(repaired[2 * i] / 1000, 3),
    end: pythonRound(repaired[2 * i + 1] / 1000, 3),
  }));
}

/** Items from the argmax classes read at the `<timestamp>` slots (`timestamp_segment_time` ms per class). */
export function classesToItems(units: readonly string[], classes: ArrayLike<number>, segmentTimeMs: number): WordTimestamp[] {
  return msToItems(units, classesToMs(classes, segmentTimeMs));
}

/** Seconds floored to whole milliseconds: the latest item time that does not pass them. */
function floorMs(seconds: number): number {
  return Math.floor(seconds * 1000 + 1e-9) / 1000;
}

/**
 * Items clamped to the audio they were aligned on: no time past `seconds` (floored to whole
 * ms, the times' own grid). The timestamp classes reach 400 s whatever the audio's length, so
 * the aligner can place a word after the end of the file (the random-weight goldens put every
 * word there); the official code reports such times as they are, here they stop at the end.
 */
export function clampItems(items: readonly WordTimestamp[], seconds: number): WordTimestamp[] {
  if (!(Number.isFinite(seconds) && seconds >= 0)) throw new RangeError(`audio duration must be a non-negative number of seconds, got ${seconds}`);
  const last = floorMs(seconds);
  return items.map((item) => ({ ...item, start: Math.min(item.start, last), end: Math.min(item.end, last) }));
}

/**
 * Shifts items by a segment's offset in seconds: round(t + offset, 3), as the official transcribe
 * does; with `endSeconds` (where the segment ends in the recording), no time passes it.
 */
export function offsetItems(items: readonly WordTimestamp[], offsetSeconds: number, endSeconds?: number): WordTimestamp[] {
  if (!Number.isFinite(offsetSeconds)) throw new RangeError(`segment offset must be a finite number of seconds, got ${offsetSeconds}`);
  const shifted = items.map((item) => ({
    ...item,
    start: pythonRound(item.start + offsetSeconds, 3),
    end: pythonRound(item.end + offsetSeconds, 3),
  }));
  return endSeconds === undefined ? shifted : clampItems(shifted, endSeconds);
}
