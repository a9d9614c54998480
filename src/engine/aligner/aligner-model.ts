/**
 * Qwen3-ForcedAligner (spec §9): the ASR encoder and decoder with a timestamp-class head.
 * One forward pass, no generation: the prompt is the audio followed by every word unit and
 * two `<timestamp>` tokens; the argmax class at each `<timestamp>` position itself (no shift)
 * times 80 ms is the unit's start or end, then the monotonic repair.
 */
import { logMelSpectrogram } from '../../audio/features.ts';
import { loadThinker, ThinkerModel, type ModelLoadOptions } from '../thinker/thinker.ts';
import { audioTokenCount } from '../checkpoint/config.ts';
import { argmax, prefillPrompts } from '../thinker/generate.ts';
import { buildAlignerPrompt } from '../text/prompt.ts';
import { embedPrompt } from '../thinker/prompt-embedding.ts';
import { clampItems, classesToItems } from './timestamps.ts';
import { splitWordUnits } from './word-units.ts';
import type { WordTimestamp } from '../types.ts';

export interface AlignRequest {
  /** 16 kHz mono float32. */
  samples: Float32Array;
  text: string;
  /** Language name (case-insensitive; "" for unknown). */
  language: string;
}

export interface AlignResult {
  /** Word times in seconds from the start of the request's audio, none past its end (timestamps.ts clampItems). */
  items: WordTimestamp[];
  units: string[];
  rawClasses: number[];
}

export class AlignerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AlignerError';
  }
}

export class ForcedAligner extends ThinkerModel {
  static async load(dir: string, opts: ModelLoadOptions): Promise<ForcedAligner> {
    const parts = await loadThinker(dir, 'aligner', opts, (config, p) => ({
      // One forward pass over the whole prompt: only the many-row precisions are used.
      linear: { precision: p.batch },
      head: { precision: p.batchHead },
      kvCache: p.kvCache,
      headRows: config.classifyNum!,
      headWeight: 'thinker.lm_head.weight',
    }));
    const aligner = new ForcedAligner(dir, parts);
    const id = parts.tokenizer.tokenToId('<timestamp>');
    if (id !== parts.config.timestampTokenId) {
      await aligner.release();
      throw new Error(`${dir}: tokenizer's <timestamp> id ${id} differs from config.json timestamp_token_id ${parts.config.timestampTokenId}`);
    }
    return aligner;
  }

  get languages(): readonly string[] {
    return this.config.supportLanguages;
  }

  /** Longest audio the timestamp classes can express (5000 classes × 80 ms = 400 s). */
  get maxSeconds(): number {
    return (this.config.classifyNum! * this.config.timestampSegmentTime!) / 1000;
  }

  /** Aligns several (audio, text) pairs in one batch. */
  async align(requests: AlignRequest[], opts: { signal?: AbortSignal } = {}): Promise<AlignResult[]> {
    if (requests.length === 0) return [];
    const H = this.config.text.hiddenSize;
    const units = requests.map((r) => splitWordUnits(r.text, r.language));
    const feats = requests.map((r, i) => {
      const seconds = r.samples.length / this.features.sampleRate;
      if (seconds > this.maxSeconds) {
        throw new AlignerError(`aligner input ${i}: ${seconds.toFixed(1)} s of audio is longer than the aligner's ${this.maxSeconds} s (timestamp classes × ${this.config.timestampSegmentTime} ms)`);
      }
      return logMelSpectrogram(r.samples, this.features);
    });
    for (let i = 0; i < feats.length; i++) {
      const n = audioTokenCount(feats[i].frames, 2 * this.config.audio.nWindow);
      const length = n + 2 + 3 * units[i].length + 2;
      if (length > this.config.text.maxPositionEmbeddings) {
        throw new AlignerError(`aligner input ${i}: about ${length} positions exceed the model's ${this.config.text.maxPositionEmbeddings} (audio too long or text too long)`);
      }
    }
    const audio = await this.encoder.encode(feats);
    const prompts = units.map((u, i) => buildAlignerPrompt(this.tokenizer, u, audio[i].length / H));
    for (const p of prompts) {
      if (p.ids.length > this.config.text.maxPositionEmbeddings) {
        throw new AlignerError(`aligner prompt of ${p.ids.length} positions exceeds the model's ${this.config.text.maxPositionEmbeddings}`);
      }
    }

    const C = this.config.classifyNum!;
    const classes: number[][] = prompts.map(() => []);
    await prefillPrompts(
      this.decoder,
      prompts.map((p, i) => ({ embeds: embedPrompt(this.decoder, p.ids, this.config.audioTokenId, audio[i]), length: p.ids.length })),
      {
        wanted: (i) => prompts[i].timestampPositions,
        onLogits: (i, _, logits, offset) => classes[i].push(argmax(logits, offset, C)),
        check: () => {
          if (opts.signal?.aborted) throw new AlignerError('aborted');
        },
      },
    );
    return requests.map((r, i) => ({
      units: units[i],
      rawClasses: classes[i],
      items: clampItems(classesToItems(units[i], classes[i], this.config.timestampSegmentTime!), r.samples.length / this.features.sampleRate),
    }));
  }
}
