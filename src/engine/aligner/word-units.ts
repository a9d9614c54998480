/**
 * Word units for the forced aligner: the official `Qwen3ForceAlignProcessor.encode_timestamp`
 * (spec §9.2, golden/README.md "The math" step 1). Every unit gets one `<timestamp>` pair in the
 * aligner prompt and one item in the output, so the split decides what the timestamps describe.
 *
 * - A "kept" character is the ASCII apostrophe or any code point of Unicode general category L*
 *   or N*; everything else (punctuation, symbols, combining marks, emoji, U+2019) is deleted.
 *   Nothing is normalised first: a decomposed "e" + U+0301 becomes "e".
 * - Japanese: the official code uses nagisa (a BiLSTM tagger with its own model), which cannot be
 *   ported. We use ICU's dictionary-based word segmentation (`Intl.Segmenter('ja')`) instead and
 *   clean each segment the same way. **Deviation:** unit boundaries differ from nagisa's (there
 *   is no Japanese golden); the timestamp math downstream is unaffected.
 * - Korean: soynlp LTokenizer with the official dictionary (korean-tokenizer.ts), exact.
 * - Every other language, including "" (no language detected) and unknown names: Python
 *   `str.split()`, clean each piece, then cut out every CJK ideograph as a unit of its own.
 *
 * All of it works on Unicode code points (the goldens contain characters outside the BMP).
 * Character categories come from the JavaScript engine's Unicode tables (Node 20: Unicode 15+);
 * the official goldens were made with Python 3.11 (Unicode 14), so only code points assigned
 * since then can be classified differently.
 */
import { bundledKoreanTokenizer } from './korean-tokenizer.ts';

/**
 * Python's `str.isspace()` set, which `str.split()` splits on. It is not JavaScript's `\s`:
 * Python includes U+001C–U+001F and U+0085 and excludes U+FEFF (which `\s` includes).
 */
const PYTHON_WHITESPACE = new Set<number>([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

export function isPythonWhitespace(codePoint: number): boolean {
  return PYTHON_WHITESPACE.has(codePoint);
}

/** Python `text.split()` (no separator argument): runs of whitespace separate, empties dropped. */
export function splitOnWhitespace(text: string): string[] {
  const pieces: string[] = [];
  let current = '';
  for (const ch of text) {
    if (PYTHON_WHITESPACE.has(ch.codePointAt(0)!)) {
      if (current) pieces.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current) pieces.push(current);
  return pieces;
}

const KEPT_CHAR = /^[\p{L}\p{N}']$/u;
const NOT_KEPT = /[^\p{L}\p{N}']/gu;

/** True for the ASCII apostrophe and for code points of category L* or N* (one code point). */
export function isKeptChar(ch: string): boolean {
  return KEPT_CHAR.test(ch);
}

/** Deletes every character that is not kept (official `clean_token`). */
export function cleanUnit(token: string): string {
  // With the u flag the class works per code point; a lone surrogate (category Cs) is dropped too.
  return token.replace(NOT_KEPT, '');
}

/**
 * The CJK ideograph ranges of the official `is_cjk_char`, exactly: not U+2F800–2FA1F (which
 * upstream transformers adds), not kana, hangul or U+3007.
 */
export function isCjkIdeograph(codePoint: number): boolean {
  return (
    (codePoint >= 0x4e00 && codePoint <= 0x9fff) ||
    (codePoint >= 0x3400 && codePoint <= 0x4dbf) ||
    (codePoint >= 0x20000 && codePoint <= 0x2a6df) ||
    (codePoint >= 0x2a700 && codePoint <= 0x2b73f) ||
    (codePoint >= 0x2b740 && codePoint <= 0x2b81f) ||
    (codePoint >= 0x2b820 && codePoint <= 0x2ceaf) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff)
  );
}

/** Every CJK ideograph on its own; runs of other characters stay together (`split_segment_with_chinese`). */
function splitCjk(piece: string, out: string[]): void {
  let run = '';
  for (const ch of piece) {
    if (isCjkIdeograph(ch.codePointAt(0)!)) {
      if (run) out.push(run);
      run = '';
      out.push(ch);
    } else {
      run += ch;
    }
  }
  if (run) out.push(run);
}

function splitSpaceDelimited(text: string): string[] {
  const units: string[] = [];
  for (const piece of splitOnWhitespace(text)) {
    const cleaned = cleanUnit(piece);
    if (cleaned) splitCjk(cleaned, units);
  }
  return units;
}

function splitKorean(text: string): string[] {
  const tokenizer = bundledKoreanTokenizer();
  const units: string[] = [];
  for (const piece of splitOnWhitespace(text)) {
    for (const part of tokenizer.splitWord(piece)) {
      const cleaned = cleanUnit(part);
      if (cleaned) units.push(cleaned);
    }
  }
  return units;
}

let japaneseSegmenter: Intl.Segmenter | undefined;

function splitJapanese(text: string): string[] {
  japaneseSegmenter ??= new Intl.Segmenter('ja', { granularity: 'word' });
  const units: string[] = [];
  // Segments cover the whole text (words, spaces, punctuation); cleaning leaves the words.
  for (const { segment } of japaneseSegmenter.segment(text)) {
    const cleaned = cleanUnit(segment);
    if (cleaned) units.push(cleaned);
  }
  return units;
}

/**
 * The aligner's word units for `text` in `language` (a Qwen language name in any case, or "").
 * The dispatch is on `language.toLowerCase()` with no trimming, as in the official code.
 */
export function splitWordUnits(text: string, language: string): string[] {
  if (typeof text !== 'string') throw new TypeError(`splitWordUnits: text must be a string, got ${typeof text}`);
  if (typeof language !== 'string') {
    throw new TypeError(`splitWordUnits: language must be a string ("" when unknown), got ${language === null ? 'null' : typeof language}`);
  }
  switch (language.toLowerCase()) {
    case 'japanese':
      return splitJapanese(text);
    case 'korean':
      return splitKorean(text);
    default:
      return splitSpaceDelimited(text);
  }
}
