/**
 * Joining per-segment results into one transcript.
 *
 * The official wrapper glues segment texts with no separator, which runs English words
 * together at every cut (spec §13.15). We insert a space between segments unless both sides
 * are written without spaces (Chinese, Japanese, Cantonese).
 */

const NO_SPACE_LANGUAGES = new Set(['Chinese', 'Japanese', 'Cantonese']);

/** True when the text is mostly CJK/kana (used when a segment's language is unknown). */
function looksUnspaced(text: string): boolean {
  let cjk = 0;
  let letters = 0;
  for (const ch of text) {
    if (/\p{L}/u.test(ch)) {
      letters++;
      if (/[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u.test(ch)) cjk++;
    }
  }
  return letters > 0 && cjk / letters > 0.5;
}

export function joinSegmentTexts(parts: { text: string; language: string }[]): string {
  let out = '';
  let prev: { text: string; language: string } | undefined;
  for (const part of parts) {
    const text = part.text.trim();
    if (!text) continue;
    if (prev) {
      const unspaced = (p: { text: string; language: string }) =>
        p.language ? p.language.split(',').every((l) => NO_SPACE_LANGUAGES.has(l)) : looksUnspaced(p.text);
      if (!(unspaced(prev) && unspaced(part))) out += ' ';
    }
    out += text;
    prev = { text, language: part.language };
  }
  return out;
}

/** The original's language merge: drop empties and consecutive duplicates, join with ",". */
export function mergeLanguages(languages: string[]): string {
  const out: string[] = [];
  for (const l of languages) {
    if (!l) continue;
    if (out[out.length - 1] !== l) out.push(l);
  }
  return out.join(',');
}
