/**
 * Subtitle cues from transcript segments, rendered as SRT or WebVTT (api-contract §3.2).
 *
 * A segment can be minutes long, so it is cut into readable cues: at most `maxLines` lines of at
 * most `maxLineWidth` columns and at most `maxCueSeconds` seconds each (defaults 2 × 42 columns,
 * 7 s, the usual broadcast limits). Widths are display columns: East Asian wide characters
 * (Han, kana, hangul, full-width forms) count two, so a CJK line holds 21 characters.
 *
 * Where the text is cut, in order of preference: after a sentence end (. ! ? … 。！？), after a
 * clause mark (, ; : — ，；：、), then between words so that the pieces come out about equally
 * long; short sentences share a cue when they fit. Chinese and Japanese have no spaces: there
 * the word boundaries come from ICU's dictionary segmentation (`Intl.Segmenter`), and a line
 * never starts with closing punctuation or small kana nor ends with an opening bracket. A single
 * word wider than a line is cut by characters. Inside a cue, line breaks also prefer punctuation
 * unless that leaves the lines much less balanced.
 *
 * Cue times:
 * - With word timestamps (the forced aligner's units): each cue runs from the start of its first
 *   word to the end of its last, and never longer than `maxCueSeconds`: a single word that lasts
 *   longer (the aligner can stretch a word over a pause) shows for that long from its start. Aligner units have punctuation removed, so the units are mapped
 *   back onto the segment text character by character (the units are exactly the text's letters,
 *   digits and apostrophes, in order); the cue text keeps the segment's punctuation and spacing.
 *   If the units do not match the text (they came from another text), the cue text is rebuilt
 *   from the units themselves, without punctuation.
 * - Without word timestamps: each piece gets a share of the segment's real [start, end]
 *   proportional to its length (letters and digits, in columns). This is an estimate inside the
 *   segment: the segment boundaries are real, the cut points in between are not. A cue of
 *   several words stays within `maxCueSeconds`, but a cue of a single word keeps its whole share:
 *   a long segment with little text (silence around a short reply) gives long cues, since there
 *   is nothing to tell where in the segment the words were spoken.
 * Cue times always stay inside their segment, never go backwards, and a very short cue is
 * stretched to `minCueSeconds` when the gap before the next cue allows it.
 */
import { isKeptChar } from '../engine/aligner/word-units.ts';
import type { TranscriptSegment, WordTimestamp } from '../pipeline/types.ts';

export interface SubtitleCue {
  /** Seconds from the start of the audio. */
  start: number;
  end: number;
  /** Text lines, each non-empty. */
  lines: string[];
}

export interface CueOptions {
  /** Maximum line width in display columns (wide CJK characters count two). Default 42. */
  maxLineWidth?: number;
  /** Maximum lines per cue. Default 2. */
  maxLines?: number;
  /**
   * Maximum cue duration in seconds. Default 7. With word times no cue exceeds it; without, a
   * single word's estimated share of its segment may (see the file comment).
   */
  maxCueSeconds?: number;
  /** Cues shorter than this are extended into the following silence, if there is any. Default 1. */
  minCueSeconds?: number;
}

/** What a cue is built from: the fields of a transcript segment that matter here. */
export type SubtitleSegment = Pick<TranscriptSegment, 'start' | 'end' | 'text' | 'words'>;

export const DEFAULT_CUE_OPTIONS: Readonly<Required<CueOptions>> = Object.freeze({
  maxLineWidth: 42,
  maxLines: 2,
  maxCueSeconds: 7,
  minCueSeconds: 1,
});

// ---------------------------------------------------------------------------------------------
// Characters

/** Display columns of one code point: an approximation of UAX #11 (wide = 2, marks = 0). */
export function charWidth(ch: string): number {
  const cp = ch.codePointAt(0)!;
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp === 0x200b || cp === 0x200c || cp === 0x200d || cp === 0xfeff) return 0;
  if (cp < 0x300) return 1; // Latin-1 and Latin Extended: no marks, nothing wide
  if (/\p{M}/u.test(ch)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0x303e) ||
    (cp >= 0x3041 && cp <= 0x33ff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0xa000 && cp <= 0xa4cf) ||
    (cp >= 0xa960 && cp <= 0xa97f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe10 && cp <= 0xfe19) ||
    (cp >= 0xfe30 && cp <= 0xfe6f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
    (cp >= 0x20000 && cp <= 0x2fffd) ||
    (cp >= 0x30000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Display columns of a string. */
export function textWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += charWidth(ch);
  return width;
}

const isHangul = (cp: number): boolean => (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0x1100 && cp <= 0x11ff) || (cp >= 0x3130 && cp <= 0x318f);

/** Wide characters of scripts written without spaces: a line may break next to them. Korean uses spaces. */
function breaksAround(ch: string): boolean {
  return charWidth(ch) === 2 && !isHangul(ch.codePointAt(0)!);
}

/** Closing punctuation, prolonged-sound mark and small kana must not start a line (kinsoku). */
const NO_BREAK_BEFORE = /^(?![¡¿])[\p{Pe}\p{Pf}\p{Po}ー々〻ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶㇰ-ㇿ]$/u;
/** Opening brackets and quotes must not end a line. */
const NO_BREAK_AFTER = /^[\p{Ps}\p{Pi}¡¿]$/u;

function breakAllowedBetween(before: string, after: string): boolean {
  return (breaksAround(before) || breaksAround(after)) && !NO_BREAK_BEFORE.test(after) && !NO_BREAK_AFTER.test(before);
}

const WHITESPACE = /^\s$/u;
const CLOSERS = `"'”’»」』）)\\]`;
const SENTENCE_END = new RegExp(`[.!?。！？…‼⁇⁈⁉][${CLOSERS}]*$`, 'u');
const CLAUSE_END = new RegExp(`[,;:，；：、—–][${CLOSERS}]*$`, 'u');
/** Tokens whose final period is not a sentence end: initials and common titles. */
const ABBREVIATION = /^(?:\p{Lu}|mr|mrs|ms|dr|prof|st|jr|sr|vs|e\.g|i\.e)\.$/iu;

// ---------------------------------------------------------------------------------------------
// Atoms: the smallest pieces a line may be broken between

interface Atom {
  text: string;
  /** A space separates it from the previous atom (dropped at the start of a line). */
  spaceBefore: boolean;
  width: number;
  /** Code point range [from, to) in the segment text. */
  from: number;
  to: number;
  start: number;
  end: number;
  /** Ends with a sentence end mark (not an abbreviation's period). */
  endsSentence: boolean;
  /** Ends a sentence or with a clause mark. */
  endsClause: boolean;
}

function makeAtom(chars: readonly string[], from: number, to: number, spaceBefore: boolean): Atom {
  const text = chars.slice(from, to).join('');
  const endsSentence = SENTENCE_END.test(text) && !ABBREVIATION.test(text);
  const endsClause = endsSentence || CLAUSE_END.test(text);
  return { text, spaceBefore, width: textWidth(text), from, to, start: 0, end: 0, endsSentence, endsClause };
}

let wordSegmenter: Intl.Segmenter | undefined;

/**
 * Code point indices where a word starts, by ICU word segmentation (its dictionary splits Chinese
 * and Japanese into words: 字符 stays together). Only consulted next to CJK characters.
 */
function wordStarts(chars: readonly string[]): Set<number> {
  wordSegmenter ??= new Intl.Segmenter(undefined, { granularity: 'word' });
  const starts = new Set<number>();
  let index = 0;
  for (const { segment } of wordSegmenter.segment(chars.join(''))) {
    starts.add(index);
    index += Array.from(segment).length;
  }
  return starts;
}

/**
 * Splits text (as code points) into atoms: runs between spaces, further split at word boundaries
 * next to CJK characters. An atom wider than a line is cut by characters.
 */
function atomize(chars: readonly string[], maxLineWidth: number): Atom[] {
  const starts = chars.some(breaksAround) ? wordStarts(chars) : new Set<number>();
  const atoms: Atom[] = [];
  let from = -1;
  let spaceBefore = false;
  const close = (to: number) => {
    if (from < 0) return;
    let pieceFrom = from;
    let width = 0;
    for (let k = from; k < to; k++) {
      const w = charWidth(chars[k]);
      if (width > 0 && width + w > maxLineWidth) {
        atoms.push(makeAtom(chars, pieceFrom, k, pieceFrom === from ? spaceBefore : false));
        pieceFrom = k;
        width = 0;
      }
      width += w;
    }
    atoms.push(makeAtom(chars, pieceFrom, to, pieceFrom === from ? spaceBefore : false));
    from = -1;
    spaceBefore = false;
  };
  for (let k = 0; k < chars.length; k++) {
    if (WHITESPACE.test(chars[k])) {
      close(k);
      spaceBefore = atoms.length > 0;
      continue;
    }
    if (from >= 0 && starts.has(k) && breakAllowedBetween(chars[k - 1], chars[k])) close(k);
    if (from < 0) from = k;
  }
  close(chars.length);
  return atoms;
}

// ---------------------------------------------------------------------------------------------
// Atom times

/** Speaking-time weight of an atom: columns of its letters and digits. */
function atomWeight(atom: Atom): number {
  let weight = 0;
  for (const ch of atom.text) if (isKeptChar(ch)) weight += charWidth(ch);
  return weight;
}

/** Without words: spread the segment's duration over the atoms in proportion to their weight. */
function estimateAtomTimes(atoms: Atom[], start: number, end: number): void {
  let weights = atoms.map(atomWeight);
  let total = weights.reduce((a, b) => a + b, 0);
  if (total === 0) {
    weights = atoms.map((a) => Math.max(1, a.width));
    total = weights.reduce((a, b) => a + b, 0);
  }
  let before = 0;
  for (let i = 0; i < atoms.length; i++) {
    atoms[i].start = start + ((end - start) * before) / total;
    before += weights[i];
    atoms[i].end = i === atoms.length - 1 ? end : start + ((end - start) * before) / total;
  }
}

/**
 * For every code point of the text, the index of the word unit it belongs to (-1 for characters
 * the aligner dropped), or undefined when the units are not the text's kept characters in order.
 */
function mapWordsOntoText(chars: readonly string[], words: readonly WordTimestamp[]): Int32Array | undefined {
  const owner = new Int32Array(chars.length).fill(-1);
  let w = 0;
  let wordChars = words.length > 0 ? Array.from(words[0].text) : [];
  let p = 0;
  const advance = () => {
    while (w < words.length && p >= wordChars.length) {
      w++;
      p = 0;
      wordChars = w < words.length ? Array.from(words[w].text) : [];
    }
  };
  for (let k = 0; k < chars.length; k++) {
    if (!isKeptChar(chars[k])) continue;
    advance();
    if (w >= words.length || wordChars[p] !== chars[k]) return undefined;
    owner[k] = w;
    p++;
  }
  advance();
  return w >= words.length ? owner : undefined;
}

/** The units joined back into text: spaces between words, none between CJK characters. */
function textFromWords(words: readonly WordTimestamp[]): string {
  let text = '';
  let last: string | undefined;
  for (const word of words) {
    const chars = Array.from(word.text);
    if (chars.length === 0) continue;
    if (last !== undefined && !(breaksAround(last) && breaksAround(chars[0]))) text += ' ';
    text += word.text;
    last = chars[chars.length - 1];
  }
  return text;
}

/** With words: each atom spans its words; atoms of punctuation only sit at the previous atom's end. */
function wordAtomTimes(atoms: Atom[], owner: Int32Array, words: readonly WordTimestamp[], segStart: number): void {
  let previousEnd: number | undefined;
  const untimed: Atom[] = [];
  for (const atom of atoms) {
    let start = Infinity;
    let end = -Infinity;
    for (let k = atom.from; k < atom.to; k++) {
      const w = owner[k];
      if (w < 0) continue;
      start = Math.min(start, words[w].start);
      end = Math.max(end, words[w].end);
    }
    if (start === Infinity) {
      if (previousEnd === undefined) untimed.push(atom);
      else atom.start = atom.end = previousEnd;
      continue;
    }
    atom.start = start;
    atom.end = Math.max(start, end);
    // Leading punctuation-only atoms take the first timed atom's start.
    for (const u of untimed.splice(0)) u.start = u.end = start;
    previousEnd = atom.end;
  }
  for (const u of untimed) u.start = u.end = segStart;
}

// ---------------------------------------------------------------------------------------------
// Cutting a segment into cues

interface Range {
  from: number;
  to: number;
}

class CueCutter {
  constructor(
    private readonly atoms: readonly Atom[],
    private readonly opts: Readonly<Required<CueOptions>>,
  ) {}

  /** Lines atoms [from, to) need: filling each line as far as it goes needs the fewest lines. */
  lineCount(from: number, to: number): number {
    return this.greedyBounds(from, to).length - 1;
  }

  /** Line starts (relative to from) of the greedy fill, plus the end. */
  private greedyBounds(from: number, to: number): number[] {
    const bounds = [0];
    let width = 0;
    for (let k = from; k < to; k++) {
      const atom = this.atoms[k];
      const add = width === 0 ? atom.width : atom.width + (atom.spaceBefore ? 1 : 0);
      if (width > 0 && width + add > this.opts.maxLineWidth) {
        bounds.push(k - from);
        width = atom.width;
      } else {
        width += add;
      }
    }
    bounds.push(to - from);
    return bounds;
  }

  duration(from: number, to: number): number {
    let end = -Infinity;
    for (let k = from; k < to; k++) end = Math.max(end, this.atoms[k].end);
    return end - this.atoms[from].start;
  }

  fits(from: number, to: number): boolean {
    if (to - from <= 1) return true;
    return this.lineCount(from, to) <= this.opts.maxLines && this.duration(from, to) <= this.opts.maxCueSeconds;
  }

  /** Cuts [from, to) into cue ranges, preferring sentence ends (level 0), then clause marks (level 1). */
  cut(from: number, to: number, level = 0): Range[] {
    if (this.fits(from, to)) return [{ from, to }];
    for (let lv = level; lv < 2; lv++) {
      const isBoundary = lv === 0 ? (a: Atom) => a.endsSentence : (a: Atom) => a.endsClause;
      const parts: Range[] = [];
      let partFrom = from;
      for (let k = from; k < to - 1; k++) {
        if (isBoundary(this.atoms[k])) {
          parts.push({ from: partFrom, to: k + 1 });
          partFrom = k + 1;
        }
      }
      if (parts.length === 0) continue;
      parts.push({ from: partFrom, to });
      const out: Range[] = [];
      let previousWhole = false;
      for (const part of parts) {
        const pieces = this.cut(part.from, part.to, lv + 1);
        const whole = pieces.length === 1;
        // Short sentences (or clauses) share a cue when they fit; a part that had to be cut
        // keeps its own cues, so a cue never ends in the middle of someone else's sentence.
        const last = out.at(-1);
        if (whole && previousWhole && last && this.fits(last.from, part.to)) last.to = part.to;
        else out.push(...pieces);
        previousWhole = whole;
      }
      return out;
    }
    return this.cutBetweenWords(from, to);
  }

  /** The fewest cues that fit, with cut points placed so that the cues have about equal width. */
  private cutBetweenWords(from: number, to: number): Range[] {
    const greedy: Range[] = [];
    for (let start = from; start < to; ) {
      let end = start + 1;
      while (end < to && this.fits(start, end + 1)) end++;
      greedy.push({ from: start, to: end });
      start = end;
    }
    const count = greedy.length;
    if (count <= 1) return greedy;
    const cumulative = [0];
    for (let k = from; k < to; k++) cumulative.push(cumulative.at(-1)! + this.atoms[k].width + (k > from && this.atoms[k].spaceBefore ? 1 : 0));
    const total = cumulative.at(-1)!;
    const balanced: Range[] = [];
    let start = from;
    for (let piece = 1; piece < count; piece++) {
      const ideal = (total * piece) / count;
      let end = start + 1;
      // Take the next atom while it fits and brings the cut closer to the ideal position.
      while (end < to - (count - piece) && this.fits(start, end + 1)) {
        const here = cumulative[end - from];
        const next = cumulative[end + 1 - from];
        if (Math.abs(next - ideal) >= Math.abs(here - ideal)) break;
        end++;
      }
      balanced.push({ from: start, to: end });
      start = end;
    }
    balanced.push({ from: start, to });
    return this.fits(start, to) ? balanced : greedy;
  }

  /**
   * Lays atoms [from, to) out on the fewest lines. The layout minimises
   *   (widest line) + (break penalties),
   * where a break after a sentence end costs nothing, after a clause mark 15 % of the line width
   * and between words 30 %: a break at punctuation wins unless it leaves the lines much less
   * balanced ("…hands. / Is there anything I can do?" but not "…from you, / Mister.").
   */
  layout(from: number, to: number): string[] {
    const lineCount = this.lineCount(from, to);
    const n = to - from;
    const maxWidth = this.opts.maxLineWidth;
    // prefix[j]: width of atoms 0..j-1 on one line; a line starting at atom i drops i's space.
    const prefix = [0];
    for (let k = 0; k < n; k++) {
      const atom = this.atoms[from + k];
      prefix.push(prefix[k] + atom.width + (k > 0 && atom.spaceBefore ? 1 : 0));
    }
    const lineWidth = (i: number, j: number): number => prefix[j] - prefix[i] - (i > 0 && this.atoms[from + i].spaceBefore ? 1 : 0);
    if (lineCount === 1) return [this.lineText(from, to)];
    // penalty[k]: cost of a line break after atom k.
    const penalty = Array.from({ length: n }, (_, k) =>
      this.atoms[from + k].endsSentence ? 0 : this.atoms[from + k].endsClause ? 0.15 * maxWidth : 0.3 * maxWidth,
    );

    // The objective mixes a sum and a maximum, so fix the widest line first: for every cap W, the
    // cheapest breaks that keep all lines within W (a plain DP), then the best W overall.
    let bestScore = Infinity;
    let bestBounds: number[] = [];
    const caps = new Set<number>();
    for (let i = 0; i < n; i++) for (let j = i + 1; j <= n; j++) caps.add(lineWidth(i, j));
    // No line can be narrower than an even share of the text.
    const narrowest = Math.ceil((prefix[n] - (lineCount - 1)) / lineCount);
    for (const cap of caps) {
      if (cap > maxWidth || cap < narrowest) continue;
      const cost: number[][] = Array.from({ length: lineCount + 1 }, () => new Array<number>(n + 1).fill(Infinity));
      const cut: number[][] = Array.from({ length: lineCount + 1 }, () => new Array<number>(n + 1).fill(0));
      cost[0][0] = 0;
      for (let l = 1; l <= lineCount; l++) {
        for (let j = l; j <= n; j++) {
          for (let i = l - 1; i < j; i++) {
            if (cost[l - 1][i] === Infinity || lineWidth(i, j) > cap) continue;
            const c = cost[l - 1][i] + (i > 0 ? penalty[i - 1] : 0);
            if (c < cost[l][j]) {
              cost[l][j] = c;
              cut[l][j] = i;
            }
          }
        }
      }
      if (cost[lineCount][n] + cap < bestScore) {
        bestScore = cost[lineCount][n] + cap;
        bestBounds = [n];
        for (let l = lineCount, j = n; l > 0; l--) {
          j = cut[l][j];
          bestBounds.unshift(j);
        }
      }
    }
    // No cap works only when a single atom is wider than a line (a wide character on a line
    // narrower than two columns): lay the atoms out greedily then.
    const bounds = bestScore < Infinity ? bestBounds : this.greedyBounds(from, to);
    const lines: string[] = [];
    for (let l = 0; l + 1 < bounds.length; l++) {
      if (bounds[l + 1] > bounds[l]) lines.push(this.lineText(from + bounds[l], from + bounds[l + 1]));
    }
    return lines;
  }

  /** Atoms [from, to) as one line of text. */
  private lineText(from: number, to: number): string {
    let line = '';
    for (let k = from; k < to; k++) line += (k > from && this.atoms[k].spaceBefore ? ' ' : '') + this.atoms[k].text;
    return line;
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

interface PendingCue extends SubtitleCue {
  segmentEnd: number;
}

function checkOptions(opts: CueOptions): Required<CueOptions> {
  const o = { ...DEFAULT_CUE_OPTIONS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  if (!(Number.isInteger(o.maxLineWidth) && o.maxLineWidth >= 1)) throw new RangeError(`maxLineWidth must be a positive integer, got ${o.maxLineWidth}`);
  if (!(Number.isInteger(o.maxLines) && o.maxLines >= 1)) throw new RangeError(`maxLines must be a positive integer, got ${o.maxLines}`);
  if (!(Number.isFinite(o.maxCueSeconds) && o.maxCueSeconds > 0)) throw new RangeError(`maxCueSeconds must be a positive number, got ${o.maxCueSeconds}`);
  if (!(Number.isFinite(o.minCueSeconds) && o.minCueSeconds >= 0)) throw new RangeError(`minCueSeconds must be a non-negative number, got ${o.minCueSeconds}`);
  return o;
}

function checkSegment(segment: SubtitleSegment, index: number): void {
  const { start, end } = segment;
  if (!(Number.isFinite(start) && Number.isFinite(end) && start >= 0 && end >= start)) {
    throw new RangeError(`segment ${index} has invalid times: start ${start}, end ${end} (need 0 <= start <= end)`);
  }
  if (typeof segment.text !== 'string') throw new TypeError(`segment ${index} has no text string`);
  for (const [i, word] of (segment.words ?? []).entries()) {
    if (!(Number.isFinite(word.start) && Number.isFinite(word.end)) || typeof word.text !== 'string') {
      throw new RangeError(`segment ${index}, word ${i} is invalid: ${JSON.stringify(word)}`);
    }
  }
}

/** Cues for one segment, times clamped into the segment. */
function segmentCues(segment: SubtitleSegment, opts: Readonly<Required<CueOptions>>): PendingCue[] {
  const words = segment.words && segment.words.length > 0 ? segment.words : undefined;
  let chars = Array.from(segment.text);
  let owner = words ? mapWordsOntoText(chars, words) : undefined;
  if (words && !owner) {
    chars = Array.from(textFromWords(words));
    owner = mapWordsOntoText(chars, words);
  }
  const atoms = atomize(chars, opts.maxLineWidth);
  if (atoms.length === 0) return [];
  if (words && owner) wordAtomTimes(atoms, owner, words, segment.start);
  else estimateAtomTimes(atoms, segment.start, segment.end);
  for (const atom of atoms) {
    atom.start = Math.min(Math.max(atom.start, segment.start), segment.end);
    atom.end = Math.min(Math.max(atom.end, atom.start), segment.end);
  }
  const cutter = new CueCutter(atoms, opts);
  const timed = owner !== undefined;
  return cutter.cut(0, atoms.length).map(({ from, to }) => {
    let end = atoms[from].start;
    for (let k = from; k < to; k++) end = Math.max(end, atoms[k].end);
    // Only a single atom can outlast the limit (the cutter splits anything longer); with real
    // word times it shows for the limit from its start.
    if (timed) end = Math.min(end, atoms[from].start + opts.maxCueSeconds);
    return { start: atoms[from].start, end, lines: cutter.layout(from, to), segmentEnd: segment.end };
  });
}

/**
 * Readable cues for transcript segments (in time order). Segments with empty text give no cues.
 * See the file comment for how text is cut and timed.
 */
export function buildCues(segments: readonly SubtitleSegment[], opts: CueOptions = {}): SubtitleCue[] {
  const o = checkOptions(opts);
  const pending: PendingCue[] = [];
  segments.forEach((segment, i) => {
    checkSegment(segment, i);
    pending.push(...segmentCues(segment, o));
  });
  // Never backwards: a cue starts no earlier than the previous one ends.
  for (let i = 1; i < pending.length; i++) {
    pending[i].start = Math.max(pending[i].start, pending[i - 1].end);
    pending[i].end = Math.max(pending[i].end, pending[i].start);
  }
  // Stretch very short cues into the silence after them, up to the next cue and their segment's end.
  for (let i = 0; i < pending.length; i++) {
    const cue = pending[i];
    if (cue.end - cue.start >= o.minCueSeconds) continue;
    const limit = Math.min(cue.segmentEnd, i + 1 < pending.length ? pending[i + 1].start : Infinity);
    cue.end = Math.max(cue.end, Math.min(cue.start + o.minCueSeconds, limit));
  }
  // A cue must last at least a millisecond once times are rounded (players and WebVTT
  // validators reject end <= start). A cue squeezed to nothing — word times clamped to the
  // segment end, or a final word whose start equals its end — takes a millisecond from the
  // gap after it, else before it, else joins the previous cue.
  const MS = 0.001;
  const out: PendingCue[] = [];
  for (let i = 0; i < pending.length; i++) {
    const cue = pending[i];
    if (Math.round(cue.end * 1000) > Math.round(cue.start * 1000)) {
      out.push(cue);
      continue;
    }
    const next = Math.min(cue.segmentEnd, i + 1 < pending.length ? pending[i + 1].start : Infinity);
    const prev = out.length ? out[out.length - 1] : undefined;
    if (cue.start + MS <= next) {
      cue.end = cue.start + MS;
      out.push(cue);
    } else if (cue.end - MS >= (prev?.end ?? 0)) {
      cue.start = cue.end - MS;
      out.push(cue);
    } else if (prev) {
      prev.lines = [...prev.lines, ...cue.lines];
      prev.end = Math.max(prev.end, cue.end);
    } else {
      cue.end = cue.start + MS;
      out.push(cue);
    }
  }
  return out.map(({ start, end, lines }) => ({ start, end, lines }));
}

/**
 * `HH:MM:SS,mmm` (SRT, sep ',') or `HH:MM:SS.mmm` (WebVTT, sep '.'). The time is rounded to whole
 * milliseconds first, so 59.9996 s is 00:01:00,000, never 00:00:59,1000. Hours keep growing past
 * 99 (100:00:00,000): WebVTT allows more than two hour digits and SRT readers generally accept them.
 */
export function formatTimestamp(seconds: number, sep: ',' | '.'): string {
  if (!(Number.isFinite(seconds) && seconds >= 0)) throw new RangeError(`subtitle time must be a non-negative number of seconds, got ${seconds}`);
  const totalMs = Math.round(seconds * 1000);
  const ms = totalMs % 1000;
  const totalSeconds = (totalMs - ms) / 1000;
  const s = totalSeconds % 60;
  const m = Math.floor(totalSeconds / 60) % 60;
  const h = Math.floor(totalSeconds / 3600);
  const two = (v: number) => String(v).padStart(2, '0');
  return `${two(h)}:${two(m)}:${two(s)}${sep}${String(ms).padStart(3, '0')}`;
}

/** Cue lines as they may appear in a file: no line breaks inside a line, no empty lines. */
function cueLines(cue: SubtitleCue): string[] {
  return cue.lines.flatMap((line) => line.split(/\r\n|\r|\n/)).map((line) => line.trim()).filter((line) => line !== '');
}

function checkCueTimes(cue: SubtitleCue, index: number): void {
  if (!(cue.end >= cue.start)) throw new RangeError(`cue ${index + 1} ends (${cue.end}) before it starts (${cue.start})`);
}

/** SubRip: cues numbered from 1, `start --> end`, the text lines, a blank line. Cues without text are skipped. */
export function formatSrt(cues: readonly SubtitleCue[]): string {
  let out = '';
  let number = 0;
  cues.forEach((cue, i) => {
    checkCueTimes(cue, i);
    const lines = cueLines(cue);
    if (lines.length === 0) return;
    number++;
    out += `${number}\n${formatTimestamp(cue.start, ',')} --> ${formatTimestamp(cue.end, ',')}\n${lines.join('\n')}\n\n`;
  });
  return out;
}

/** WebVTT cue text is markup: &, < and > must be escaped (this also defuses a literal "-->"). */
function escapeVtt(line: string): string {
  return line.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** WebVTT: the `WEBVTT` header, a blank line, then `start --> end`, the text lines, a blank line per cue. */
export function formatVtt(cues: readonly SubtitleCue[]): string {
  let out = 'WEBVTT\n\n';
  cues.forEach((cue, i) => {
    checkCueTimes(cue, i);
    const lines = cueLines(cue);
    if (lines.length === 0) return;
    out += `${formatTimestamp(cue.start, '.')} --> ${formatTimestamp(cue.end, '.')}\n${lines.map(escapeVtt).join('\n')}\n\n`;
  });
  return out;
}
