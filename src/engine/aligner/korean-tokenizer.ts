/**
 * Korean word splitting for the forced aligner: a port of soynlp 0.0.493 `LTokenizer` as the
 * official `Qwen3ForceAlignProcessor` configures it (spec §9.2, golden/README.md "The math" step 1).
 *
 * soynlp splits each whitespace-delimited word (eojeol) into a left part L (the stem, a word from
 * the dictionary) and a right part R (the particle/ending): for a word of n code points, every
 * cut e in 2..n is scored by score(word[:e]) and the cut with the largest (score, e) wins. The
 * official processor scores each dictionary word 1.0 and everything else 0.0, so:
 *   - a word of at most 2 code points stays whole;
 *   - otherwise the longest dictionary prefix of at least 2 code points is L and the rest is R;
 *   - a word with no dictionary prefix stays whole (e = n wins the tie among zeros).
 * The dictionary lookup sees the raw word, punctuation included ("한국어를," is split as
 * "한국어" + "를,"); cleaning to kept characters happens afterwards in word-units.ts.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The official word list, bundled beside this file (see assets/README.md). */
export const BUNDLED_KOREAN_DICTIONARY = fileURLToPath(new URL('./assets/korean_dict_jieba.dict', import.meta.url));

/**
 * Words of a jieba-format dictionary: one entry per line, `word [frequency] [tag]` separated by
 * spaces or tabs; only the first field is used (as the official processor does). Blank lines are
 * skipped. The bundled file uses only ' ' and '\n' as separators.
 */
export function parseKoreanDictionary(text: string): Set<string> {
  const words = new Set<string>();
  for (const line of text.split(/\r\n|\r|\n/)) {
    const first = line.trim().split(/[ \t]+/)[0];
    if (first) words.add(first);
  }
  return words;
}

export class KoreanLTokenizer {
  private readonly words: ReadonlySet<string>;
  /** Longest dictionary word in code points: no prefix longer than this can score. */
  private readonly longestWord: number;

  constructor(words: Iterable<string>) {
    this.words = new Set(words);
    let longest = 0;
    for (const w of this.words) longest = Math.max(longest, Array.from(w).length);
    this.longestWord = longest;
  }

  static fromDictionaryFile(path: string = BUNDLED_KOREAN_DICTIONARY): KoreanLTokenizer {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the Korean aligner dictionary ${path}: ${(err as Error).message}`);
    }
    const words = parseKoreanDictionary(text);
    if (words.size === 0) throw new Error(`the Korean aligner dictionary ${path} has no words`);
    return new KoreanLTokenizer(words);
  }

  /** Number of distinct dictionary words. */
  get size(): number {
    return this.words.size;
  }

  /**
   * Splits one whitespace-free word into [L] or [L, R] (empty parts are dropped, as soynlp's
   * flattened output drops them). Lengths count Unicode code points, as Python's do.
   */
  splitWord(word: string): string[] {
    const chars = Array.from(word);
    const n = chars.length;
    if (n <= 2) return n === 0 ? [] : [word];
    // Largest (score, e): the longest scoring prefix, else e = n (the whole word).
    for (let e = Math.min(n, this.longestWord); e >= 2; e--) {
      const left = chars.slice(0, e).join('');
      if (this.words.has(left)) return e === n ? [word] : [left, chars.slice(e).join('')];
    }
    return [word];
  }
}

let bundled: KoreanLTokenizer | undefined;

/** The tokenizer with the bundled dictionary, read on first use and kept for the process. */
export function bundledKoreanTokenizer(): KoreanLTokenizer {
  bundled ??= KoreanLTokenizer.fromDictionaryFile(BUNDLED_KOREAN_DICTIONARY);
  return bundled;
}
