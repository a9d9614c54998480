/**
 * Prompt token ids for the ASR model (spec §7.1–7.3) and the forced aligner (spec §9.2).
 *
 * ASR: the official wrapper renders the checkpoint's chat template for [system: context,
 * user: one audio] with a generation prompt; the system turn is present even when the context
 * is empty:
 *
 *   <|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|>×N
 *   <|audio_end|><|im_end|>\n<|im_start|>assistant\n[language {Name}<asr_text>]
 *
 * A forced language is an assistant-turn prefill, not an instruction. Special-token ids are
 * looked up in the tokenizer by their strings, never hard-coded.
 *
 * The context and language are user input: they are tokenised as plain text, so a typed
 * `<|im_end|>` stays literal text and cannot close the system turn. `system\n{context}` is
 * tokenised as one piece, exactly as the official tokenizer sees the text between
 * `<|im_start|>` and `<|im_end|>` (tokenised separately, a context that starts with a newline
 * would get other ids: "\n\n" is one token).
 */
import type { QwenTokenizer } from './tokenizer.ts';
import { normalizeLanguageName } from './output-parser.ts';

export interface AsrPromptOptions {
  /** Background text for the system turn (names, terms); "" or undefined for none. */
  context?: string;
  /** Canonical Qwen language name (e.g. "English") to force; undefined lets the model detect it. */
  language?: string;
  /** Number of `<|audio_pad|>` positions (audio tokens the encoder produces for this clip). */
  audioTokens: number;
}

export interface AsrPrompt {
  ids: number[];
  /** Index of the first `<|audio_pad|>`; the audio embeddings replace ids[audioStart … audioStart+N-1]. */
  audioStart: number;
}

export interface AlignerPrompt {
  ids: number[];
  /** Indices of the `<timestamp>` ids, in order: 2 per unit (start, end); 2 for an empty unit list. */
  timestampPositions: number[];
}

function tokenId(tok: QwenTokenizer, token: string): number {
  const id = tok.tokenToId(token);
  if (id === undefined) throw new Error(`the tokenizer has no ${token} token; is this a Qwen3-ASR checkpoint?`);
  return id;
}

function checkAudioTokens(audioTokens: number): void {
  if (!Number.isSafeInteger(audioTokens) || audioTokens < 1) {
    throw new RangeError(`audioTokens must be a positive integer, got ${audioTokens}`);
  }
}

function pushRepeated(ids: number[], id: number, count: number): void {
  for (let i = 0; i < count; i++) ids.push(id);
}

/** The official ASR prompt (chat template + audio-pad expansion + optional language prefill). */
export function buildAsrPrompt(tok: QwenTokenizer, opts: AsrPromptOptions): AsrPrompt {
  checkAudioTokens(opts.audioTokens);
  const context = opts.context ?? '';
  if (typeof context !== 'string') throw new TypeError(`context must be a string, got ${typeof context}`);
  const language = opts.language;
  if (language !== undefined) {
    if (typeof language !== 'string') throw new TypeError(`language must be a string, got ${typeof language}`);
    // The caller normalises and validates against the checkpoint's support_languages; a
    // non-canonical name here is a bug upstream (normalizeLanguageName throws on an empty one).
    if (normalizeLanguageName(language) !== language) {
      throw new Error(`language must be a canonical Qwen language name such as "English", got ${JSON.stringify(language)}`);
    }
  }

  const imStart = tokenId(tok, '<|im_start|>');
  const imEnd = tokenId(tok, '<|im_end|>');
  const audioStartId = tokenId(tok, '<|audio_start|>');
  const audioPad = tokenId(tok, '<|audio_pad|>');
  const audioEnd = tokenId(tok, '<|audio_end|>');
  const plain = (text: string) => tok.encode(text, { allowAddedTokens: false });

  const ids: number[] = [imStart, ...plain(`system\n${context}`), imEnd, ...plain('\n'), imStart, ...plain('user\n'), audioStartId];
  const audioStart = ids.length;
  pushRepeated(ids, audioPad, opts.audioTokens);
  ids.push(audioEnd, imEnd, ...plain('\n'), imStart, ...plain('assistant\n'));
  if (language !== undefined) ids.push(...plain(`language ${language}`), tokenId(tok, '<asr_text>'));
  return { ids, audioStart };
}

/**
 * The forced aligner's input (no chat template):
 * `<|audio_start|>` + N×`<|audio_pad|>` + `<|audio_end|>`, then every unit followed by
 * `<timestamp><timestamp>`. Units are glued to the timestamp tokens, so each is tokenised on its
 * own without a leading space ("The" → 785, not " The"). As in the official
 * `"<timestamp><timestamp>".join(units) + "<timestamp><timestamp>"`, an empty unit list still
 * yields one pair.
 */
export function buildAlignerPrompt(tok: QwenTokenizer, units: string[], audioTokens: number): AlignerPrompt {
  checkAudioTokens(audioTokens);
  if (!Array.isArray(units)) throw new TypeError('units must be an array of strings');
  const timestamp = tokenId(tok, '<timestamp>');
  const ids: number[] = [tokenId(tok, '<|audio_start|>')];
  pushRepeated(ids, tokenId(tok, '<|audio_pad|>'), audioTokens);
  ids.push(tokenId(tok, '<|audio_end|>'));

  const timestampPositions: number[] = [];
  const pushPair = () => {
    timestampPositions.push(ids.length, ids.length + 1);
    ids.push(timestamp, timestamp);
  };
  units.forEach((unit, i) => {
    if (typeof unit !== 'string') throw new TypeError(`units[${i}] must be a string, got ${typeof unit}`);
    // Units are user text (cleaned words); never let one turn into an added token.
    for (const id of tok.encode(unit, { allowAddedTokens: false })) ids.push(id);
    pushPair();
  });
  if (units.length === 0) pushPair();
  return { ids, timestampPositions };
}
