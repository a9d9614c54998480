/**
 * The text of a segment still being decoded that no later token can change: what a stream
 * may send as a delta, never to be retracted.
 *
 * The final text is the official parse of the whole output (output-parser.ts): stripped, its
 * repetitions collapsed (detectAndFixRepetitions), then the part after `<asr_text>`. While
 * tokens keep coming, three things can still change what is already decoded:
 *  - the last token may end inside a UTF-8 sequence (the decoder then shows U+FFFD);
 *  - trailing white space is stripped unless more text follows;
 *  - a run of one character, or a pattern of up to 20 characters repeated, collapses once it
 *    is long enough, so what follows the first copy of any repetition that could still reach
 *    the threshold is held back.
 * Everything before those is final: the official collapse emits the characters before its
 * first hit as they are, then one copy of the pattern.
 */
import { ASR_TEXT_TAG } from './output-parser.ts';

/** detectAndFixRepetitions' defaults: its threshold and longest pattern. */
const THRESHOLD = 20;
const MAX_PATTERN = 20;

/** Python's str.strip() white space (the parser's pyStrip), as a character class. */
const PY_SPACE = /[\s\u001c-\u001f\u0085]/u;

/**
 * How much of `chars` is settled: everything before the first character a longer text could
 * still collapse. The collapse keeps the first copy of a repeated pattern (or one character of
 * a run), so a pattern of k characters starting at `at` that repeats to the end (it may go on)
 * or repeats the threshold's number of times settles the text up to at + k, no further.
 */
function settledLength(chars: string[]): number {
  const n = chars.length;
  let settled = n;
  for (let at = 0; at < settled; at++) {
    for (let k = 1; k <= MAX_PATTERN && at + k < settled; k++) {
      // How far chars[at..] repeats its first k characters (at most the threshold's copies).
      let same = k;
      while (at + same < n && same < THRESHOLD * k && chars[at + same] === chars[at + same - k]) same++;
      if (same >= THRESHOLD * k || at + same === n) settled = at + k;
    }
  }
  return settled;
}

/**
 * The collapse's first pass over a partial text: a run of one character longer than the
 * threshold becomes that character. The last run may still grow, and once collapsed the text
 * that follows it comes right after its first character, so the partial text ends there.
 */
function collapseRuns(chars: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < chars.length; ) {
    let run = 1;
    while (i + run < chars.length && chars[i + run] === chars[i]) run++;
    if (i + run === chars.length) {
      out.push(chars[i]);
      break;
    }
    if (run > THRESHOLD) out.push(chars[i]);
    else for (let j = 0; j < run; j++) out.push(chars[i + j]);
    i += run;
  }
  return out;
}

/**
 * The settled part of a partial decode's text. `raw` is the decoded output so far (special
 * tokens skipped); `forcedLanguage` as for parseAsrOutput. Returns "" while the model is still
 * writing its `language X` header.
 */
export function settledText(raw: string, forcedLanguage?: string): string {
  // The collapse runs over the whole stripped output, header included, so patterns are
  // found in its coordinates (a leading space after the tag can be part of one).
  const chars = Array.from(raw.replace(/\uFFFD+$/u, ''));
  let start = 0;
  while (start < chars.length && PY_SPACE.test(chars[start])) start++;
  const whole = collapseRuns(chars.slice(start));
  let s = whole.slice(0, settledLength(whole)).join('');
  if (!forcedLanguage) {
    const tag = s.indexOf(ASR_TEXT_TAG);
    if (tag < 0) return '';
    if (s.slice(0, tag).toLowerCase().includes('language none')) return '';
    s = s.slice(tag + ASR_TEXT_TAG.length);
  }
  const text = Array.from(s);
  let from = 0;
  while (from < text.length && PY_SPACE.test(text[from])) from++;
  let end = text.length;
  while (end > from && PY_SPACE.test(text[end - 1])) end--;
  return text.slice(from, end).join('');
}
