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
import { generateGreedy, type GenerationOutput } from '../thinker/generate.ts';
import { ASR_TEXT_TAG, parseAsrOutput } from '../text/output-parser.ts';
import { buildAsrPrompt } from '../text/prompt.ts';
import { embedPrompt } from '../thinker/prompt-embedding.ts';
import { loadThinker, ThinkerModel, type ModelLoadOptions, type ThinkerParts } from '../thinker/thinker.ts';
import { QwenTokenizer } from '../text/tokenizer.ts';

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
  truncated: boolean;
  audioTokens: number;
  promptIds: number[];
  firstLogits?: Float32Array;
  stepLogits?: Float32Array[];
}

export interface TranscribeBatchOptions {
  signal?: AbortSignal;
  keepFirstLogits?: boolean;
  keepStepLogits?: boolean;
  prefillChunk?: number;
  /** Benchmarks: decode exactly maxNewTokens (random weights emit arbitrary tokens). */
  ignoreStopTokens?: boolean;
  onStep?: (generated: number[][]) => void;
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

  /** Transcribes a batch of segments together (one encoder batch, one decoder batch). */
  async transcribe(requests: AsrRequest[], opts: TranscribeBatchOptions = {}): Promise<AsrResult[]> {
    if (requests.length === 0) return [];
    const feats = requests.map((r) => this.melFeatures(r.samples));
    const audio = await this.encoder.encode(feats);
    const H = this.config.text.hiddenSize;
    const prompts = requests.map((r, i) =>
      buildAsrPrompt(this.tokenizer, { context: r.context, language: r.language, audioTokens: audio[i].length / H }),
    );
    const inputs = prompts.map((p, i) => ({
      embeds: embedPrompt(this.decoder, p.ids, this.config.audioTokenId, audio[i]),
      length: p.ids.length,
      maxNewTokens: Math.max(1, Math.min(requests[i].maxNewTokens, this.config.text.maxPositionEmbeddings - p.ids.length)),
    }));
    const outs: GenerationOutput[] = await generateGreedy(this.decoder, inputs, {
      stopIds: opts.ignoreStopTokens ? new Set<number>() : this.stopIds,
      signal: opts.signal,
      onStep: opts.onStep,
      keepFirstLogits: opts.keepFirstLogits,
      keepStepLogits: opts.keepStepLogits,
      prefillChunk: opts.prefillChunk,
    });
    return outs.map((o, i) => {
      const raw = this.tokenizer.decode(o.ids, { skipSpecialTokens: true });
      const parsed = parseAsrOutput(raw, requests[i].language);
      return {
        raw,
        language: parsed.language,
        text: parsed.text,
        tokenIds: o.ids,
        textTokenIds: this.textTokenIds(o.ids),
        truncated: o.stopReason === 'max_new_tokens',
        audioTokens: audio[i].length / H,
        promptIds: prompts[i].ids,
        firstLogits: o.firstLogits,
        stepLogits: o.stepLogits,
      };
    });
  }
}
