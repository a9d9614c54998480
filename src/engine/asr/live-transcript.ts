/**
 * Partial transcripts of an utterance that is still being spoken, at a cost per update that
 * does not grow with the utterance.
 *
 * The official streaming re-feeds all audio heard so far at every update, so each costs more
 * than the last. Two facts let an update redo only what changed:
 *  - the audio encoder sees the input as 1 s conv chunks inside 8 s attention windows that
 *    never attend to each other (spec §5), so once a window's audio is complete its audio
 *    tokens are final — but for the log-mel floor, which follows the loudest frame of the
 *    whole input and may rise a little as louder audio arrives (a deviation partials accept;
 *    the utterance's final transcript is an exact decode of all of it, made elsewhere);
 *  - the decoder is causal, so the keys and values of the prompt's head and of the finished
 *    windows' audio tokens stay valid as audio is added after them.
 * This keeps the finished windows in a cache row of its own. An update encodes only the open
 * window, prefills its audio tokens, the prompt's tail and the text fixed so far (the previous
 * update's output less its last ROLLBACK_TOKENS ids, as the official streaming does), and
 * decodes the new tokens in the batch every caller shares. The rolled-back ids go along as a
 * draft that the prefill pass checks (PreparedPrompt.draft), so those greedy decoding writes
 * again need no decoding step.
 */
import { ASR_TEXT_TAG, parseAsrOutput } from '../text/output-parser.ts';
import { buildAsrPrompt } from '../text/prompt.ts';
import type { KvCache } from '../runtime/kv-cache.ts';
import { convOutLength } from '../checkpoint/config.ts';
import type { PreparedPrompt } from '../thinker/scheduler.ts';
import type { AsrModel } from './asr-model.ts';

/** Ids of the previous output left out of the fixed text (the official `unfixed_token_num`). */
export const ROLLBACK_TOKENS = 5;
/** Updates decoded without fixed text first (the official `unfixed_chunk_num`), while the first words are least certain. */
export const UNFIXED_UPDATES = 2;

export interface LiveTranscriptOptions {
  /** Canonical language name to force, or undefined to detect. */
  language?: string;
  context?: string;
  /** Whose rows these are in the shared batch (fairness between callers). */
  owner?: unknown;
  /** Send the rolled-back ids as a draft (default true; false decodes them step by step, for tests). */
  draft?: boolean;
}

export interface LiveUpdateOptions {
  /** Most new tokens this update may decode (beyond the fixed text). */
  maxNewTokens: number;
  signal?: AbortSignal;
  /** Benchmarks on random weights: decode exactly maxNewTokens. */
  ignoreStopTokens?: boolean;
}

export interface LiveUpdate {
  /** The model's whole output for the audio so far: fixed ids, then the new ones (without a stop id). */
  ids: number[];
  /** The parsed text of those ids. */
  text: string;
  language: string;
  /** Positions prefilled and tokens decoded by this update: its work. */
  prefilled: number;
  decoded: number;
  /** Of the decoded tokens, drafted ones the prefill pass confirmed (no step of their own). */
  drafted: number;
  /** Audio tokens held in the cache (finished windows). */
  cachedAudioTokens: number;
}

export class LiveTranscript {
  /** The prompt's head and every finished window's audio tokens, as one cache row. */
  private prefix: KvCache | undefined;
  private finishedWindows = 0;
  private headIds: number[] = [];
  private tailIds: number[] = [];
  private lastIds: number[] = [];
  private updates = 0;
  /** Ids every update begins with, whatever came before (completeFrom). */
  private forced: number[] | undefined;
  private readonly asrTextId: number | undefined;
  private readonly windowFrames: number;

  constructor(
    private readonly model: AsrModel,
    private readonly opts: LiveTranscriptOptions = {},
  ) {
    this.asrTextId = model.tokenizer.tokenToId(ASR_TEXT_TAG);
    const { nWindow, nWindowInfer } = model.config.audio;
    const chunk = 2 * nWindow;
    this.windowFrames = chunk * Math.max(1, Math.floor(nWindowInfer / chunk));
    // The prompt around the audio: everything before the first audio position and after the last.
    const probe = buildAsrPrompt(model.tokenizer, { context: opts.context, language: opts.language, audioTokens: 1 });
    this.headIds = probe.ids.slice(0, probe.audioStart);
    this.tailIds = probe.ids.slice(probe.audioStart + 1);
  }

  /**
   * The transcript of `samples` (the utterance so far, 16 kHz mono; each call passes the
   * previous samples and more), decoded in the shared batch.
   */
  async update(samples: Float32Array, opts: LiveUpdateOptions): Promise<LiveUpdate> {
    const fixed = this.fixedIds();
    // The rolled-back ids go in as a draft: checked in the prefill pass, so the ones greedy
    // decoding picks again cost no step of their own.
    const draft = this.opts.draft !== false && this.updates >= UNFIXED_UPDATES ? this.lastIds.slice(fixed.length) : [];
    let work = { prefilled: 0, cachedAudioTokens: 0 };
    const out = await this.model.submitPrepared(
      async () => {
        const prompt = await this.prepare(samples, fixed, draft, opts.maxNewTokens);
        work = { prefilled: prompt.length, cachedAudioTokens: this.finishedWindows * this.windowTokens() };
        return prompt;
      },
      {
        owner: this.opts.owner ?? this,
        signal: opts.signal,
        ignoreStopTokens: opts.ignoreStopTokens,
        guardFrom: this.guardFrom(fixed),
      },
    );
    const ids = [...fixed, ...out.ids];
    while (ids.length > 0 && this.model.stopIds.has(ids[ids.length - 1])) ids.pop();
    this.lastIds = ids;
    this.updates++;
    const raw = this.model.tokenizer.decode(ids, { skipSpecialTokens: true });
    const parsed = parseAsrOutput(raw, this.opts.language);
    return { ids, text: parsed.text, language: parsed.language, prefilled: work.prefilled, decoded: out.decoded, drafted: out.drafted ?? 0, cachedAudioTokens: work.cachedAudioTokens };
  }

  /**
   * The transcript of a whole utterance that must begin with `text` (what was already sent of
   * it): a decode from scratch whose output is forced to start with that text, as the
   * official streaming's last step is; `language` is the one detected. Used only when the
   * exact decode of the utterance does not extend what was sent.
   */
  async completeFrom(samples: Float32Array, text: string, language: string, opts: LiveUpdateOptions): Promise<LiveUpdate> {
    const tok = this.model.tokenizer;
    // A detected language goes in the header the model writes before its text (`language None` when it found none).
    const header = this.opts.language || this.asrTextId === undefined ? [] : [...tok.encode(`language ${language || 'None'}`, { allowAddedTokens: false }), this.asrTextId];
    const forced = [...header, ...tok.encode(text, { allowAddedTokens: false })];
    const fresh = new LiveTranscript(this.model, this.opts);
    fresh.updates = UNFIXED_UPDATES;
    fresh.lastIds = forced;
    fresh.forced = forced;
    const out = await fresh.update(samples, opts);
    fresh.release();
    return out;
  }

  /** Samples of one attention window (the encoder's nWindowInfer frames). */
  get windowSamples(): number {
    return this.windowFrames * this.model.features.hopLength;
  }

  /** Samples of the finished windows held in the cache. */
  get finishedSamples(): number {
    return this.finishedWindows * this.windowSamples;
  }

  /** Frees the cached row (the object may be dropped instead; this only lets memory go sooner). */
  release(): void {
    this.prefix = undefined;
  }

  /**
   * The previous output less its last ROLLBACK_TOKENS ids, and less more while it would end
   * inside a character (the decoder shows U+FFFD): none for the first UNFIXED_UPDATES.
   */
  private fixedIds(): number[] {
    if (this.forced) return this.forced;
    if (this.updates < UNFIXED_UPDATES) return [];
    let n = Math.max(0, this.lastIds.length - ROLLBACK_TOKENS);
    while (n > 0 && this.model.tokenizer.decode(this.lastIds.slice(0, n), { skipSpecialTokens: true }).endsWith('\uFFFD')) n--;
    return this.lastIds.slice(0, n);
  }

  /** The repetition guard looks at text only: after the `<asr_text>` header, wherever it is. */
  private guardFrom(fixed: number[]): (ids: readonly number[]) => number {
    const tag = this.asrTextId;
    if (this.opts.language || tag === undefined || fixed.includes(tag)) return () => 0;
    return (ids) => {
      const at = ids.lastIndexOf(tag);
      return at < 0 ? -1 : at + 1;
    };
  }

  private windowTokens(): number {
    // A full window of full chunks: the tokens of one chunk times the chunks in a window.
    const chunk = 2 * this.model.config.audio.nWindow;
    return convOutLength(chunk) * (this.windowFrames / chunk);
  }

  /**
   * Runs between decoding steps (the scheduler's admission): features of the audio so far,
   * the newly finished windows encoded and appended to the cached row, the open window
   * encoded, and the positions after the cached row embedded.
   */
  private async prepare(samples: Float32Array, fixed: number[], draft: number[], maxNewTokens: number): Promise<PreparedPrompt> {
    const { model } = this;
    const decoder = model.decoder;
    const H = model.config.text.hiddenSize;
    const mel = model.melFeatures(samples);
    // A window is finished once the frame after it exists: its last frame's STFT then sees
    // real samples on both sides, as it will when more audio comes.
    const finished = Math.floor((mel.frames - 1) / this.windowFrames);
    const slice = (from: number, to: number, partOfLonger: boolean) => {
      const frames = to - from;
      const mels = model.config.audio.numMelBins;
      const data = new Float32Array(mels * frames);
      for (let m = 0; m < mels; m++) data.set(mel.data.subarray(m * mel.frames + from, m * mel.frames + to), m * frames);
      return { data, frames, partOfLonger };
    };
    const newWindows = [];
    for (let w = this.finishedWindows; w < finished; w++) newWindows.push(slice(w * this.windowFrames, (w + 1) * this.windowFrames, true));
    const openFrom = finished * this.windowFrames;
    const hasOpen = mel.frames > openFrom;
    // The open window is part of a longer input once a window before it exists: its lone
    // short chunk then runs at full width, as in the whole input.
    const items = hasOpen ? [...newWindows, slice(openFrom, mel.frames, finished > 0)] : newWindows;
    const audio = items.length > 0 ? await model.encoder.encode(items) : [];

    if (!this.prefix) {
      this.prefix = decoder.newCache(1, [0]);
      await this.extend(this.embedIds(this.headIds));
    }
    for (let i = 0; i < newWindows.length; i++) await this.extend(audio[i]);
    this.finishedWindows = finished;

    const open = hasOpen ? audio[audio.length - 1] : new Float32Array(0);
    const openTokens = open.length / H;
    const after = [...this.tailIds, ...fixed, ...draft];
    const embeds = new Float32Array((openTokens + after.length) * H);
    embeds.set(open, 0);
    embeds.set(this.embedIds(after), open.length);
    const length = openTokens + after.length;
    const room = model.config.text.maxPositionEmbeddings - this.prefix.len - length;
    return { embeds, length, maxNewTokens: Math.max(1, Math.min(maxNewTokens, room)), prefix: { cache: this.prefix, row: 0 }, draft };
  }

  private embedIds(ids: number[]): Float32Array {
    const H = this.model.config.text.hiddenSize;
    const out = new Float32Array(ids.length * H);
    ids.forEach((id, i) => this.model.decoder.embed(id, out, i * H));
    return out;
  }

  /** Appends positions to the cached row (in passes of bounded length). */
  private async extend(embeds: Float32Array): Promise<void> {
    const H = this.model.config.text.hiddenSize;
    const n = embeds.length / H;
    const chunk = 256;
    for (let c0 = 0; c0 < n; c0 += chunk) {
      const S = Math.min(chunk, n - c0);
      await this.model.decoder.forward(this.prefix!, embeds.subarray(c0 * H, (c0 + S) * H), S, [S - 1]);
    }
  }
}
