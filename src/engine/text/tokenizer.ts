/**
 * Qwen2 byte-level BPE tokenizer, built from a checkpoint folder's own files (spec §8):
 * `vocab.json` (regular tokens), `merges.txt` (merge ranks) and `tokenizer_config.json`
 * (`added_tokens_decoder`: special and non-special added tokens with their ids).
 *
 * It reproduces what the official processor (Hugging Face `tokenizers`, Qwen2TokenizerFast) does:
 *   encode: added tokens are matched atomically on the raw text (leftmost, longest first); the text
 *           between them is NFC-normalised, pre-split with the Qwen2 regex, each piece's UTF-8 bytes
 *           are mapped to GPT-2's printable byte alphabet and merged by BPE rank.
 *   decode: every id becomes its token string, the byte map is undone, the bytes of the *whole*
 *           sequence are UTF-8-decoded once with U+FFFD replacement (never token by token: a
 *           character split over two tokens must survive, and an incomplete tail must become
 *           U+FFFD, which the streaming code relies on).
 * No BOS/EOS is ever added (Qwen2 tokenizers have none).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

/**
 * Whitespace as the official tokenizer's regex engine (Oniguruma, inside Hugging Face
 * `tokenizers`) defines `\s` for Unicode text: U+0009–000D, U+0085 and the Zs/Zl/Zp categories.
 * JavaScript's `\s` differs (it adds U+FEFF and lacks U+0085), so the set is written out and the
 * pattern never uses `\s` / `\S`. (Python's `re` would add U+001C–001F; the goldens contain none.)
 */
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/**
 * The Qwen2 pre-tokenizer pattern (spec §8), verbatim except for two JavaScript necessities:
 *   - `(?i:'s|'t|'re|'ve|'m|'ll|'d)`: Node 20 has no inline flag groups, so the case-insensitive
 *     contractions are spelled out. Unicode case folding also maps U+017F (long s) to `s`, which
 *     the original engine honours, hence `[sSſ]`.
 *   - `\s` / `\S` are replaced by the explicit whitespace class above.
 * Digits are matched one at a time (`\p{N}`), so "2026" becomes four tokens.
 */
const PRETOKENIZE_SOURCE =
  `'(?:[sS\\u017f]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])` +
  `|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+` +
  `|\\p{N}` +
  `| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*` +
  `|[${WS}]*[\\r\\n]+` +
  `|[${WS}]+(?![^${WS}])` +
  `|[${WS}]+`;

/**
 * GPT-2's byte → printable character table: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100 upwards in byte order. Returned as code points indexed by byte.
 */
function bytesToUnicode(): number[] {
  const table = new Array<number>(256).fill(-1);
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = keep(b) ? b : 256 + extra++;
  return table;
}

/** Pre-token → ids cache bounds: pieces are words, so a small cache catches most repeats. */
const CACHE_MAX_ENTRIES = 50_000;
const CACHE_MAX_PIECE_LENGTH = 128;

/** Largest token id accepted from the files (Qwen's are below 2^18; this only rejects nonsense). */
const MAX_TOKEN_ID = 2 ** 24 - 1;

/** Multiplier separating the two halves of a (rank, position) heap key; positions stay below it. */
const HEAP_POSITION_RANGE = 2 ** 32;

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

function readTextFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new TokenizerError(`${file}: file not found (a Qwen2 tokenizer folder needs vocab.json, merges.txt and tokenizer_config.json)`);
    }
    throw new TokenizerError(`${file}: cannot read file: ${e.message}`);
  }
}

function readJsonFile(file: string): unknown {
  const text = readTextFile(file);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new TokenizerError(`${file}: invalid JSON: ${(err as Error).message}`);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export class QwenTokenizer {
  /** highest id + 1 known to the tokenizer (regular and added tokens). */
  readonly vocabSize: number;

  /** Regular tokens: byte-level string → id, and the reverse (sparse where ids are missing). */
  private readonly vocab: Readonly<Record<string, number>>;
  private readonly idToString: (string | undefined)[];
  /** Added tokens by content; ids of those flagged special. */
  private readonly added: Map<string, AddedToken>;
  private readonly specialIds: Set<number>;
  /** Matches any added token, longest alternative first; null when there are none. */
  private readonly addedPattern: RegExp | null;
  private readonly pretokenizePattern = new RegExp(PRETOKENIZE_SOURCE, 'gu');

  /** The byte-alphabet character (a one-byte token) for each byte value. */
  private readonly byteSymbols: string[];
  /** Byte-alphabet code point → byte value, for decoding. */
  private readonly byteDecoder: Map<number, number>;

  /**
   * Merge rank keyed by the pair string "left right" (the merges.txt line itself, so loading
   * needs no splitting or lookups; byte-level symbols never contain a plain space).
   */
  private readonly mergeRanks: Map<string, number>;
  private readonly mergesFile: string;

  private readonly pieceCache = new Map<string, readonly number[]>();
  private readonly bytesCache: (Uint8Array | null | undefined)[];
  private readonly utf8Encoder = new TextEncoder();
  /** ignoreBOM keeps a leading U+FEFF in the output, as Python's utf-8 codec does. */
  private readonly utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  private constructor(
    vocab: Record<string, number>,
    idToString: (string | undefined)[],
    mergeRanks: Map<string, number>,
    mergesFile: string,
    addedTokens: AddedToken[],
    vocabFile: string,
  ) {
    this.vocab = vocab;
    this.mergeRanks = mergeRanks;
    this.mergesFile = mergesFile;
    this.idToString = idToString;
    for (const t of addedTokens) if (t.id >= idToString.length) idToString.length = t.id + 1;
    this.vocabSize = idToString.length;
    this.added = new Map();
    this.specialIds = new Set();
    for (const t of addedTokens) {
      this.added.set(t.content, t);
      this.idToString[t.id] = t.content;
      if (t.special) this.specialIds.add(t.id);
    }
    this.bytesCache = new Array(this.vocabSize);

    // Longest first so that at any position the longest added token wins (a regex alternation
    // takes the first alternative that matches); ties sorted for determinism.
    const contents = [...this.added.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0));
    this.addedPattern = contents.length > 0 ? new RegExp(contents.map(escapeRegExp).join('|'), 'gu') : null;

    const byteChars = bytesToUnicode();
    this.byteSymbols = [];
    this.byteDecoder = new Map();
    for (let b = 0; b < 256; b++) {
      const ch = String.fromCodePoint(byteChars[b]);
      if (vocab[ch] === undefined) {
        throw new TokenizerError(`${vocabFile}: no token for byte 0x${b.toString(16).padStart(2, '0')} (byte-level alphabet character ${JSON.stringify(ch)}); not a byte-level BPE vocabulary`);
      }
      this.byteSymbols.push(ch);
      this.byteDecoder.set(byteChars[b], b);
    }
  }

  /** Loads vocab.json, merges.txt and tokenizer_config.json from a checkpoint folder. */
  static load(dir: string): QwenTokenizer {
    const vocabFile = join(dir, 'vocab.json');
    const mergesFile = join(dir, 'merges.txt');
    const configFile = join(dir, 'tokenizer_config.json');

    // Loading speed matters (151k tokens, 151k merges). The parsed vocab.json object itself,
    // detached from Object.prototype, serves as the token → id table: JSON.parse has already
    // hashed every key, and copying them into a Map would cost as much again. Merges are stored
    // by their line text without being split.
    const rawVocab = readJsonFile(vocabFile);
    if (!isPlainObject(rawVocab)) throw new TokenizerError(`${vocabFile}: expected a JSON object mapping token strings to ids`);
    const vocab = Object.setPrototypeOf(rawVocab, null) as Record<string, number>;
    const idToString: (string | undefined)[] = [];
    for (const token in vocab) {
      const id = vocab[token];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_TOKEN_ID) {
        throw new TokenizerError(`${vocabFile}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; ids must be integers in 0..${MAX_TOKEN_ID}`);
      }
      const other = idToString[id];
      if (other !== undefined) throw new TokenizerError(`${vocabFile}: id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
      idToString[id] = token;
    }
    if (idToString.length === 0) throw new TokenizerError(`${vocabFile}: the vocabulary is empty`);

    // Whether every merge's parts and result are in the vocabulary is checked when a merge is
    // used (see bpe), not here: checking 151k merges up front would double the load time.
    const mergeRanks = new Map<string, number>();
    const lines = readTextFile(mergesFile).split('\n');
    let rank = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
      if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
      const space = line.indexOf(' ');
      if (space <= 0 || space === line.length - 1 || line.indexOf(' ', space + 1) !== -1) {
        throw new TokenizerError(`${mergesFile}: line ${i + 1} is not a merge "left right": ${JSON.stringify(line)}`);
      }
      // A repeated pair takes its later rank, as the official loader's map does.
      mergeRanks.set(line, rank++);
    }

    const config = readJsonFile(configFile);
    if (!isPlainObject(config)) throw new TokenizerError(`${configFile}: expected a JSON object`);
    const decoder = config.added_tokens_decoder;
    if (!isPlainObject(decoder)) throw new TokenizerError(`${configFile}: added_tokens_decoder is missing or not an object`);
    const addedTokens: AddedToken[] = [];
    const addedIds = new Set<number>();
    const addedContents = new Set<string>();
    for (const [key, entry] of Object.entries(decoder)) {
      const where = `${configFile}: added_tokens_decoder["${key}"]`;
      if (!/^\d+$/.test(key) || Number(key) > MAX_TOKEN_ID) throw new TokenizerError(`${where}: the key must be an integer id in 0..${MAX_TOKEN_ID}`);
      const id = Number(key);
      if (!isPlainObject(entry) || typeof entry.content !== 'string' || entry.content === '') {
        throw new TokenizerError(`${where}: expected an object with a non-empty string "content"`);
      }
      const content = entry.content;
      if (entry.special !== undefined && typeof entry.special !== 'boolean') throw new TokenizerError(`${where}: "special" must be a boolean`);
      // These options change how the token is matched in text; no Qwen checkpoint sets them, and
      // honouring them only partially would silently produce other ids than the official code.
      for (const flag of ['lstrip', 'rstrip', 'single_word'] as const) {
        if (entry[flag] === true) throw new TokenizerError(`${where} (${JSON.stringify(content)}): "${flag}": true is not supported`);
      }
      if (addedIds.has(id)) throw new TokenizerError(`${where}: duplicate id ${id}`);
      if (addedContents.has(content)) throw new TokenizerError(`${where}: ${JSON.stringify(content)} is listed twice`);
      const regular = vocab[content];
      if (regular !== undefined && regular !== id) {
        throw new TokenizerError(`${where}: ${JSON.stringify(content)} has id ${regular} in vocab.json but ${id} here`);
      }
      const clash = idToString[id];
      if (clash !== undefined && clash !== content) {
        throw new TokenizerError(`${where}: id ${id} is ${JSON.stringify(content)} here but ${JSON.stringify(clash)} in vocab.json`);
      }
      addedIds.add(id);
      addedContents.add(content);
      addedTokens.push({ id, content, special: entry.special === true });
    }

    return new QwenTokenizer(vocab, idToString, mergeRanks, mergesFile, addedTokens, vocabFile);
  }

  /** Encodes text; added tokens are matched atomically only when allowAddedTokens (default true). */
  encode(text: string, opts: { allowAddedTokens?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    const ids: number[] = [];
    if (opts.allowAddedTokens === false || this.addedPattern === null) {
      this.encodeOrdinary(text, ids);
      return ids;
    }
    let pos = 0;
    for (const m of text.matchAll(this.addedPattern)) {
      if (m.index! > pos) this.encodeOrdinary(text.slice(pos, m.index), ids);
      ids.push(this.added.get(m[0])!.id);
      pos = m.index! + m[0].length;
    }
    if (pos < text.length) this.encodeOrdinary(text.slice(pos), ids);
    return ids;
  }

  /**
   * Decodes ids: bytes of the whole sequence UTF-8-decoded once with U+FFFD replacement;
   * skipSpecialTokens drops ids whose added token is special:true; ids with no string (e.g.
   * 151705..151935 in the ASR vocab, which the embedding has but the tokenizer does not) are
   * dropped silently.
   */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const skipSpecial = opts.skipSpecialTokens === true;
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isSafeInteger(id)) throw new TypeError(`decode: ids[${i}] is ${id}, not an integer token id`);
      if (skipSpecial && this.specialIds.has(id)) continue;
      const bytes = this.tokenBytes(id);
      if (bytes === null) continue;
      pieces.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let offset = 0;
    for (const p of pieces) {
      all.set(p, offset);
      offset += p.length;
    }
    return this.utf8Decoder.decode(all);
  }

  tokenToId(token: string): number | undefined {
    return this.added.get(token)?.id ?? this.vocab[token];
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.idToString[id] : undefined;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** NFC, Qwen2 pre-split, byte map and BPE for text that holds no added tokens. */
  private encodeOrdinary(text: string, out: number[]): void {
    if (text === '') return;
    const normalized = text.normalize('NFC');
    // Split(behavior="Isolated"): matches and any unmatched gaps between them are both pieces.
    let pos = 0;
    for (const m of normalized.matchAll(this.pretokenizePattern)) {
      if (m.index! > pos) this.encodePiece(normalized.slice(pos, m.index), out);
      this.encodePiece(m[0], out);
      pos = m.index! + m[0].length;
    }
    if (pos < normalized.length) this.encodePiece(normalized.slice(pos), out);
  }

  private encodePiece(piece: string, out: number[]): void {
    const cached = this.pieceCache.get(piece);
    if (cached !== undefined) {
      for (const id of cached) out.push(id);
      return;
    }
    // Lone surrogates (possible in JS strings, impossible in the official Rust/Python strings)
    // are encoded as U+FFFD by TextEncoder.
    const bytes = this.utf8Encoder.encode(piece);
    const symbols = new Array<string>(bytes.length);
    for (let i = 0; i < bytes.length; i++) symbols[i] = this.byteSymbols[bytes[i]];
    const merged = bytes.length > 1 ? this.bpe(symbols) : symbols;
    const ids = new Array<number>(merged.length);
    for (let i = 0; i < merged.length; i++) {
      const id = this.vocab[merged[i]];
      if (id === undefined) {
        throw new TokenizerError(`${this.mergesFile}: a merge produces ${JSON.stringify(merged[i])}, which is not in vocab.json`);
      }
      ids[i] = id;
    }
    if (piece.length <= CACHE_MAX_PIECE_LENGTH) {
      if (this.pieceCache.size >= CACHE_MAX_ENTRIES) this.pieceCache.clear();
      this.pieceCache.set(piece, ids);
    }
    for (const id of ids) out.push(id);
  }

  private pairRank(left: string, right: string): number {
    return this.mergeRanks.get(left + ' ' + right) ?? -1;
  }

  /**
   * Applies merges to a piece's byte symbols, always the lowest-ranked pair first and, among
   * equal ranks, the leftmost (what the official implementation does). A linked list plus a
   * min-heap of (rank, position) keeps this O(n log n): a long run of CJK characters is one
   * pre-token of thousands of bytes, where the textbook rescan-everything loop is quadratic.
   */
  private bpe(symbols: string[]): string[] {
    const n = symbols.length;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MinHeap();
    for (let i = 0; i + 1 < n; i++) {
      const r = this.pairRank(symbols[i], symbols[i + 1]);
      if (r >= 0) heap.push(r * HEAP_POSITION_RANGE + i);
    }
    while (heap.size > 0) {
      const key = heap.pop();
      const rank = Math.floor(key / HEAP_POSITION_RANGE);
      const left = key - rank * HEAP_POSITION_RANGE;
      if (alive[left] === 0) continue; // merged away into its left neighbour
      const right = next[left];
      // Stale entry: the pair at `left` changed since it was queued (a rank names one pair).
      if (right < 0 || this.pairRank(symbols[left], symbols[right]) !== rank) continue;
      symbols[left] += symbols[right];
      alive[right] = 0;
      const after = next[right];
      next[left] = after;
      if (after >= 0) prev[after] = left;
      const before = prev[left];
      if (before >= 0) {
        const r = this.pairRank(symbols[before], symbols[left]);
        if (r >= 0) heap.push(r * HEAP_POSITION_RANGE + before);
      }
      if (after >= 0) {
        const r = this.pairRank(symbols[left], symbols[after]);
        if (r >= 0) heap.push(r * HEAP_POSITION_RANGE + left);
      }
    }
    const result: string[] = [];
    for (let i = 0; i >= 0; i = next[i]) result.push(symbols[i]);
    return result;
  }

  /** The bytes a token stands for; null for ids with no token string. */
  private tokenBytes(id: number): Uint8Array | null {
    if (id < 0 || id >= this.vocabSize) return null;
    const cached = this.bytesCache[id];
    if (cached !== undefined) return cached;
    const token = this.idToString[id];
    let bytes: Uint8Array | null = null;
    if (token !== undefined) {
      // Byte-level tokens map back char by char; a token with a character outside the byte
      // alphabet (possible for added tokens) stands for its own UTF-8, as in the official decoder.
      const out: number[] = [];
      let byteLevel = true;
      for (const ch of token) {
        const b = this.byteDecoder.get(ch.codePointAt(0)!);
        if (b === undefined) {
          byteLevel = false;
          break;
        }
        out.push(b);
      }
      bytes = byteLevel ? Uint8Array.from(out) : this.utf8Encoder.encode(token);
    }
    this.bytesCache[id] = bytes;
    return bytes;
  }
}

/** Binary min-heap of non-negative numbers (the BPE merge queue). */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(value: number): void {
    const a = this.items;
    let i = a.length;
    a.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= value) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = value;
  }

  pop(): number {
    const a = this.items;
    const top = a[0];
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && a[r] < a[l] ? r : l;
        if (a[c] >= last) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}
