/**
 * Turns the decoded model output into (language, transcript), as the official wrapper's
 * `parse_asr_output` and `detect_and_fix_repetitions` do (spec §7.4, §7.7).
 *
 * The model answers `language English<asr_text>Today we …` (or `language None<asr_text>` for no
 * speech); `<asr_text>` is a non-special token, so it survives skip-special-token decoding and the
 * split happens on the string. Everything here counts Unicode code points, like Python's `str`,
 * never JavaScript UTF-16 units: transcripts contain characters outside the BMP.
 */

/** The tag between the language header and the transcript. */
export const ASR_TEXT_TAG = '<asr_text>';

/** Python's `str.isspace()` set (what `strip()` removes): JavaScript's `trim()` differs (U+FEFF, U+001C–001F, U+0085). */
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'g');
/** Python's `str.splitlines()` boundaries. */
const PY_LINE_BREAK = /\r\n|[\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029]/;

function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/** "eNGLish" → "English": first code point upper-cased, the rest lower-cased, after stripping. */
export function normalizeLanguageName(s: string): string {
  const trimmed = pyStrip(String(s));
  if (trimmed === '') throw new Error('language name is empty');
  const first = String.fromCodePoint(trimmed.codePointAt(0)!);
  return first.toUpperCase() + trimmed.slice(first.length).toLowerCase();
}

/**
 * Collapses the greedy decoder's runaway loops (official `detect_and_fix_repetitions`):
 *  1. a run of the same character longer than `threshold` becomes one character;
 *  2. scanning positions 0 … n − 2·threshold, the first pattern of 1..20 characters repeated at
 *     least `threshold` times in a row becomes one copy, and the rest of the string is processed
 *     the same way (the official code recurses; this loops). The last 2·threshold − 1 characters
 *     before such a hit (or of the string) are never a starting position, as in the original.
 */
export function detectAndFixRepetitions(text: string, threshold = 20): string {
  if (!Number.isInteger(threshold) || threshold < 1) throw new RangeError(`threshold must be a positive integer, got ${threshold}`);
  return fixPatternRepeats(fixCharRepeats(Array.from(text), threshold), threshold);
}

function fixCharRepeats(chars: string[], threshold: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < chars.length; ) {
    let count = 1;
    while (i + count < chars.length && chars[i + count] === chars[i]) count++;
    if (count > threshold) out.push(chars[i]);
    else for (let j = 0; j < count; j++) out.push(chars[i + j]);
    i += count;
  }
  return out;
}

const MAX_PATTERN_LENGTH = 20;

function blocksEqual(chars: string[], a: number, b: number, k: number): boolean {
  for (let j = 0; j < k; j++) if (chars[a + j] !== chars[b + j]) return false;
  return true;
}

function fixPatternRepeats(chars: string[], threshold: number): string {
  const minRepeatChars = threshold * 2;
  let out = '';
  let start = 0; // the official code's recursion on the remainder, unrolled
  for (;;) {
    const n = chars.length - start;
    if (n < minRepeatChars) return out + chars.slice(start).join('');
    let i = 0;
    let resumeAt = -1;
    scan: for (; i <= n - minRepeatChars; i++) {
      const at = start + i;
      for (let k = 1; k <= MAX_PATTERN_LENGTH && i + k * threshold <= n; k++) {
        let repeated = true;
        for (let rep = 1; rep < threshold; rep++) {
          if (!blocksEqual(chars, at, at + rep * k, k)) {
            repeated = false;
            break;
          }
        }
        if (!repeated) continue;
        let end = at + threshold * k;
        while (end + k <= chars.length && blocksEqual(chars, at, end, k)) end += k;
        out += chars.slice(at, at + k).join('');
        resumeAt = end;
        break scan;
      }
      out += chars[at];
    }
    if (resumeAt < 0) return out + chars.slice(start + i).join('');
    start = resumeAt;
  }
}

export interface ParsedAsrOutput {
  /** Canonical language name ("English"), or "" when none was given or detected. */
  language: string;
  text: string;
}

/**
 * Official `parse_asr_output`: strip, fix repetitions, then
 *  - a forced language: (forced, whole string) — the model was prefilled past the header;
 *  - no `<asr_text>`: ("", string);
 *  - `language none` before the tag: ("", text after the tag) — no speech;
 *  - else the first non-empty header line starting with "language " names the language.
 */
export function parseAsrOutput(raw: string, forcedLanguage?: string): ParsedAsrOutput {
  if (raw === undefined || raw === null) return { language: '', text: '' };
  let s = pyStrip(String(raw));
  if (s === '') return { language: '', text: '' };
  s = detectAndFixRepetitions(s);
  if (forcedLanguage) return { language: forcedLanguage, text: s };

  const tagAt = s.indexOf(ASR_TEXT_TAG);
  if (tagAt < 0) return { language: '', text: pyStrip(s) };
  const meta = s.slice(0, tagAt);
  const text = pyStrip(s.slice(tagAt + ASR_TEXT_TAG.length));
  if (meta.toLowerCase().includes('language none')) return { language: '', text };

  let language = '';
  for (const rawLine of meta.split(PY_LINE_BREAK)) {
    const line = pyStrip(rawLine);
    if (line === '') continue;
    if (line.toLowerCase().startsWith('language ')) {
      // The prefix is ASCII, so dropping its 9 UTF-16 units drops 9 code points.
      const value = pyStrip(line.slice('language '.length));
      if (value !== '') language = normalizeLanguageName(value);
      break;
    }
  }
  return { language, text };
}
