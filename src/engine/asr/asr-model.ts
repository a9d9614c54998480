/**
 * Qwen3-ASR end to end for a batch of audio segments: log-mel -> audio encoder -> prompt
 * (context, optional forced language) -> decoder with greedy generation -> decode -> parse.
 *
 * The model knows nothing of files, HTTP or segmentation: it takes 16 kHz mono samples.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { logMelSpectrogram } from '../../audio/features.ts';
import { type MelFeatures } from '../thinker/audio-encoder.ts';
import { ASR_TEXT_TAG, parseAsrOutput } from '../text/output-parser.ts';
import { settledText } from '../text/partial-text.ts';
import { DecodeScheduler, type PreparedPrompt, type ScheduledOutput } from '../thinker/scheduler.ts';
import { buildAsrPrompt } from '../text/prompt.ts';
import { embedPrompt } from '../thinker/prompt-embedding.ts';
import { loadThinker, ThinkerModel, type ModelLoadOptions, type ThinkerParts } from '../thinker/thinker.ts';
import { QwenTokenizer } from '../text/tokenizer.ts';
import { DEFAULT_MAX_BATCH_SIZE } from '../../settings/settings.ts';

export interface AsrRequest {
  /** 16 kHz mono float32. */
  samples: Float32Array;
  /** Canonical language name to force, or undefined to detect. */
  language?: string;
  context?: string;
  maxNewTokens: number;
}

export interface AsrResult {
  /** Decoded output before parsing (special tokens skipped). */
  raw: string;
  language: string;
  text: string;
  /** Generated ids, with the stop token when one was produced. */
  tokenIds: number[];
  /** The ids of the text alone: after the generated `<asr_text>` (if any), without the stop token. */
  textTokenIds: number[];
  /** Stopped at the token budget instead of a stop token. */
  truncated: boolean;
  /**
   * Stopped by the repetition guard: the row looped, and its ids are the loop continued to
   * the budget (what greedy decoding gives while the loop holds) without decoding them.
   */
  repetitionStopped: boolean;
  /** Ids the decoder really computed (fewer than tokenIds when the guard stopped a loop). */
  decodedTokens: number;
  audioTokens: number;
  promptIds: number[];
  firstLogits?: Float32Array;
  stepLogits?: Float32Array[];
}

export interface AsrJobOptions {
  /** Whose segment it is (a request): the shared batch's rows are shared out fairly between owners. */
  owner?: unknown;
  signal?: AbortSignal;
  /** Benchmarks: decode exactly maxNewTokens (random weights emit arbitrary tokens). */
  ignoreStopTokens?: boolean;
  /** Called whenever more of the segment's text is settled (partial-text.ts): never retracted. */
  onText?: (text: string, language: string) => void;
  /** Called after every step the segment takes part in, with its ids so far. */
  onTokens?: (ids: readonly number[]) => void;
}

export interface TranscribeBatchOptions extends Omit<AsrJobOptions, 'owner' | 'onText' | 'onTokens'> {
  /** The repetition guard's threshold (default REPETITION_THRESHOLD; 0 turns it off). */
  repetitionThreshold?: number;
  keepFirstLogits?: boolean;
  keepStepLogits?: boolean;
  prefillChunk?: number;
  /** Called after every decoding step with the rows it ran. */
  onStep?: (rows: number) => void;
}

/**
 * The repetition guard's threshold: the official parser collapses a pattern repeated 20
 * times (detectAndFixRepetitions), so a row repeating one unit more often than that stops.
 */
export const REPETITION_THRESHOLD = 20;

/** A segment between submission and result: what its prompt was, once it is made. */
interface AsrJob {
  request?: AsrRequest;
  /** A prompt made by its caller (a live utterance's update, live-transcript.ts) instead of from `request`. */
  prepared?: () => Promise<PreparedPrompt>;
  promptIds?: number[];
  audioTokens?: number;
}

/** Stop ids: <|im_end|> and <|endoftext|> (the official wrapper's list), plus generation_config's eos ids. */
export function stopTokenIds(dir: string, tok: QwenTokenizer): Set<number> {
  const ids = new Set<number>();
  for (const t of ['<|im_end|>', '<|endoftext|>']) {
    const id = tok.tokenToId(t);
    if (id !== undefined) ids.add(id);
  }
  const genFile = join(dir, 'generation_config.json');
  if (existsSync(genFile)) {
    try {
      const eos = JSON.parse(readFileSync(genFile, 'utf8')).eos_token_id;
      for (const id of Array.isArray(eos) ? eos : eos !== undefined ? [eos] : []) if (Number.isInteger(id)) ids.add(id);
    } catch {
      throw new Error(`${genFile}: not valid JSON`);
    }
  }
  if (ids.size === 0) throw new Error(`${dir}: no stop token (<|im_end|>) in the tokenizer files`);
  return ids;
}

export class AsrModel extends ThinkerModel {
  private constructor(
    dir: string,
    parts: ThinkerParts,
    readonly stopIds: Set<number>,
  ) {
    super(dir, parts);
    this.asrTextId = parts.tokenizer.tokenToId(ASR_TEXT_TAG);
    this.shared = this.newScheduler(DEFAULT_MAX_BATCH_SIZE, { onStep: (rows) => this.onSharedStep?.(rows) });
  }

  /** The batch every caller's segments join (continuous batching; scheduler.ts). */
  private shared: DecodeScheduler<AsrJob>;

  /** Called after each step of the shared batch with the rows it ran (the server's metrics). */
  onSharedStep?: (rows: number) => void;

  private newScheduler(maxRows: number, opts: Pick<TranscribeBatchOptions, 'prefillChunk' | 'onStep' | 'repetitionThreshold'> = {}): DecodeScheduler<AsrJob> {
    return new DecodeScheduler<AsrJob>(this.decoder, {
      prepare: (jobs) => this.prepare(jobs),
      stopIds: this.stopIds,
      maxRows,
      prefillChunk: opts.prefillChunk,
      repetitionThreshold: opts.repetitionThreshold ?? REPETITION_THRESHOLD,
      onStep: opts.onStep,
    });
  }

  /** The most segments the shared batch decodes together (MAX_INFERENCE_BATCH_SIZE); applies to rows admitted from now on. */
  setMaxBatchSize(rows: number): void {
    this.shared.maxRows = rows;
  }

  /** The shared batch's load: rows decoding and segments waiting. */
  get load(): { running: number; waiting: number } {
    return { running: this.shared.runningRows, waiting: this.shared.waitingJobs };
  }

  /** Resolves once the shared batch runs no pass (its callers cancelled or done): releasing the sessions mid-pass would crash ONNX Runtime. */
  whenIdle(): Promise<void> {
    return this.shared.whenIdle();
  }

  /** `<asr_text>`'s id in this checkpoint's vocabulary (undefined if it has none). */
  private readonly asrTextId: number | undefined;

  /** The ids of a generated sequence's text: after the model's `language X<asr_text>` prefix, without the stop token. */
  textTokenIds(ids: readonly number[]): number[] {
    const text = ids.slice(this.asrTextId === undefined ? 0 : ids.lastIndexOf(this.asrTextId) + 1);
    while (text.length > 0 && this.stopIds.has(text[text.length - 1])) text.pop();
    return text;
  }

  static async load(dir: string, opts: ModelLoadOptions): Promise<AsrModel> {
    const parts = await loadThinker(dir, 'asr', opts, (config, p) => ({
      linear: { precision: p.decoder },
      head: { precision: p.head },
      batchLinear: { precision: p.batch },
      batchHead: { precision: p.batchHead },
      kvCache: p.kvCache,
      headRows: config.text.vocabSize,
      // Tied checkpoints use the embedding as the output matrix even when they also store a head (spec §3.2).
      headWeight: config.text.tieWordEmbeddings ? 'thinker.model.embed_tokens.weight' : 'thinker.lm_head.weight',
    }));
    return new AsrModel(dir, parts, stopTokenIds(dir, parts.tokenizer));
  }

  /** Log-mel features of 16 kHz samples. */
  melFeatures(samples: Float32Array): MelFeatures {
    return logMelSpectrogram(samples, this.features);
  }

  /**
   * The repetition guard judges the text, as the parser's collapse would: everything the model
   * writes when the language is forced (the prompt holds the header), else what follows its
   * `language X<asr_text>` header. A header that loops never reaches text; the budget ends it.
   */
  private guardFrom(request: AsrRequest): ((ids: readonly number[]) => number) | undefined {
    if (request.language) return undefined;
    const tag = this.asrTextId;
    if (tag === undefined) return () => -1;
    return (ids) => {
      const at = ids.lastIndexOf(tag);
      return at < 0 ? -1 : at + 1;
    };
  }

  /** Log-mel features, audio encoding and prompt embeddings of the segments being admitted, in one encoder batch. */
  private async prepare(jobs: AsrJob[]): Promise<PreparedPrompt[]> {
    const own = jobs.filter((j) => !j.prepared);
    const audio = own.length > 0 ? await this.encoder.encode(own.map((j) => this.melFeatures(j.request!.samples))) : [];
    const H = this.config.text.hiddenSize;
    const prompts: PreparedPrompt[] = [];
    for (const job of jobs) prompts.push(job.prepared ? await job.prepared() : this.promptOf(job, audio[own.indexOf(job)]));
    return prompts;
  }

  private promptOf(job: AsrJob, audio: Float32Array): PreparedPrompt {
    const H = this.config.text.hiddenSize;
    {
      const r = job.request!;
      const prompt = buildAsrPrompt(this.tokenizer, { context: r.context, language: r.language, audioTokens: audio.length / H });
      job.promptIds = prompt.ids;
      job.audioTokens = audio.length / H;
      return {
        embeds: embedPrompt(this.decoder, prompt.ids, this.config.audioTokenId, audio),
        length: prompt.ids.length,
        maxNewTokens: Math.max(1, Math.min(r.maxNewTokens, this.config.text.maxPositionEmbeddings - prompt.ids.length)),
      };
    }
  }

  /**
   * Queues a prompt its caller makes when the shared batch admits it (between decoding steps,
   * so it may run the encoder and the decoder on caches of its own): a live utterance's update.
   */
  submitPrepared(prepare: () => Promise<PreparedPrompt>, opts: Omit<AsrJobOptions, 'onText'> & { guardFrom?: (ids: readonly number[]) => number } = {}): Promise<ScheduledOutput> {
    const job: AsrJob = { prepared: prepare };
    return this.shared.submit(job, { owner: opts.owner ?? job, signal: opts.signal, ignoreStopTokens: opts.ignoreStopTokens, onTokens: opts.onTokens, guardFrom: opts.guardFrom });
  }

  private result(job: AsrJob, o: ScheduledOutput): AsrResult {
    const raw = this.tokenizer.decode(o.ids, { skipSpecialTokens: true });
    const parsed = parseAsrOutput(raw, job.request!.language);
    return {
      raw,
      language: parsed.language,
      text: parsed.text,
      tokenIds: o.ids,
      textTokenIds: this.textTokenIds(o.ids),
      truncated: o.stopReason === 'max_new_tokens',
      repetitionStopped: o.stopReason === 'repetition',
      decodedTokens: o.decoded,
      audioTokens: job.audioTokens!,
      promptIds: job.promptIds!,
      firstLogits: o.firstLogits,
      stepLogits: o.stepLogits,
    };
  }

  /**
   * Queues one segment in the batch all callers share: it is encoded and prefilled between
   * decoding steps and joins the running rows (scheduler.ts). Resolves when its row stops.
   */
  async submit(request: AsrRequest, opts: AsrJobOptions = {}): Promise<AsrResult> {
    const job: AsrJob = { request };
    let settled = '';
    const onText = opts.onText;
    const onTokens =
      onText || opts.onTokens
        ? (ids: readonly number[]) => {
            opts.onTokens?.(ids);
            if (!onText) return;
            const raw = this.tokenizer.decode(ids as number[], { skipSpecialTokens: true });
            const text = settledText(raw, request.language);
            if (text.length > settled.length) {
              settled = text;
              onText(text, request.language ?? parseAsrOutput(raw).language);
            }
          }
        : undefined;
    const out = await this.shared.submit(job, { owner: opts.owner ?? job, signal: opts.signal, ignoreStopTokens: opts.ignoreStopTokens, onTokens, guardFrom: this.guardFrom(request) });
    return this.result(job, out);
  }

  /**
   * Transcribes segments together as one batch of their own (one encoder batch, one decoder
   * batch, every row admitted at once): conformance tests and benchmarks.
   */
  async transcribe(requests: AsrRequest[], opts: TranscribeBatchOptions = {}): Promise<AsrResult[]> {
    if (requests.length === 0) return [];
    const scheduler = this.newScheduler(requests.length, opts);
    const jobs = requests.map((request) => ({ request }));
    const outs = await Promise.all(
      jobs.map((job) =>
        scheduler.submit(job, {
          owner: scheduler,
          signal: opts.signal,
          ignoreStopTokens: opts.ignoreStopTokens,
          keepFirstLogits: opts.keepFirstLogits,
          keepStepLogits: opts.keepStepLogits,
          guardFrom: this.guardFrom(job.request),
        }),
      ),
    );
    return outs.map((o, i) => this.result(jobs[i], o));
  }
}
