/**
 * The transcription pipeline after decoding: segmentation -> batched ASR -> optional word
 * alignment -> merged result. Runs inside the engine worker; knows nothing of HTTP.
 */
import { splitAtQuietPoints, type AudioSegment } from '../audio/segment.ts';
import { type ForcedAligner } from '../engine/aligner/aligner-model.ts';
import { offsetItems } from '../engine/aligner/timestamps.ts';
import { type AsrModel } from '../engine/asr/asr-model.ts';
import { joinSegmentTexts, mergeLanguages } from './merge.ts';
import { PipelineError, type TranscribeOptions, type TranscriptionResult, type TranscriptSegment, type WordTimestamp } from './types.ts';

export const SAMPLE_RATE = 16000;
/** Shortest audio accepted (OpenAI's limit; below one 25 ms analysis window nothing can be said). */
export const MIN_AUDIO_SECONDS = 0.1;
/**
 * Default longest segment without timestamps (README "Long recordings" explains the choice):
 * short segments decode as one batch (a 60 s recording as three rows), keep each row's
 * attention context short, and end in a quiet point within ±5 s of every 20 s.
 */
export const DEFAULT_SEGMENT_SECONDS = 20;
/**
 * Default number of segments decoded together. The batch graph's int8 products cost nearly
 * the same for 1 and 16 rows (engine/thinker/precision.ts), so wide batches are almost free until the
 * KV cache traffic catches up (per token and row, 0.06 MB in int8 and 0.23 MB in fp32 for
 * both the 1.7B and the 0.6B model: 28 layers × keys and values × 8 heads × 128).
 */
export const DEFAULT_MAX_BATCH_SIZE = 16;
/** The official wrapper's segment limit when timestamps are requested (the aligner's range is 400 s). */
export const ALIGNER_SEGMENT_SECONDS = 180;

export interface PipelineSettings {
  /** Longest segment without timestamps (README "Long recordings" explains the choice). */
  segmentSeconds: number;
  maxBatchSize: number;
  /** Explicit cap per segment; the budget otherwise grows with duration. */
  maxNewTokens?: number;
  /**
   * Benchmarks only: decode exactly this many tokens per audio second, ignoring stop tokens
   * (random-weight checkpoints emit arbitrary tokens, so their natural length means nothing).
   */
  forceTokensPerSecond?: number;
}

/**
 * Token budget for a segment: generous enough for the fastest speech (≈ 8 CJK characters or
 * 6–7 English tokens per second) plus the `language X<asr_text>` prefix, so nothing is cut off
 * silently; a configured MAX_NEW_TOKENS caps it.
 */
export function tokenBudget(seconds: number, cap?: number): number {
  const budget = Math.ceil(seconds * 12) + 32;
  return cap !== undefined ? Math.max(1, Math.min(budget, cap)) : budget;
}

/**
 * How `count` segments are grouped into batches of at most `max`: as few batches as possible,
 * of equal sizes (20 segments with a limit of 16 run as 10 + 10, not 16 + 4). A batch costs
 * about its number of decoding steps whatever its width, so an uneven split only adds steps.
 */
export function batchSizes(count: number, max: number): number[] {
  if (count <= 0) return [];
  const batches = Math.ceil(count / Math.max(1, max));
  const small = Math.floor(count / batches);
  const larger = count % batches; // the first `larger` batches take one more
  return Array.from({ length: batches }, (_, i) => small + (i < larger ? 1 : 0));
}

export function checkAudio(samples: Float32Array): void {
  if (samples.length === 0) throw new PipelineError('audio_empty', 'The audio contains no samples.');
  const seconds = samples.length / SAMPLE_RATE;
  if (seconds < MIN_AUDIO_SECONDS) {
    throw new PipelineError('audio_too_short', `Audio is too short (${seconds.toFixed(3)} s); the minimum is ${MIN_AUDIO_SECONDS} s.`);
  }
}

export async function runTranscription(
  asr: AsrModel,
  aligner: ForcedAligner | undefined,
  samples: Float32Array,
  opts: TranscribeOptions,
  settings: PipelineSettings,
): Promise<TranscriptionResult> {
  checkAudio(samples);
  const duration = samples.length / SAMPLE_RATE;
  if (opts.timestamps) {
    if (!aligner) throw new PipelineError('aligner_unavailable', 'Word timestamps need a forced aligner; none is configured (set FORCED_ALIGNER).');
    if (opts.language && !supports(aligner.languages, opts.language)) {
      throw new PipelineError('aligner_language_unsupported', `The forced aligner does not support ${opts.language}; it supports ${aligner.languages.join(', ')}.`);
    }
  }
  const maxSeconds = opts.timestamps ? Math.min(ALIGNER_SEGMENT_SECONDS, settings.segmentSeconds) : settings.segmentSeconds;
  const pieces: AudioSegment[] = splitAtQuietPoints(samples, { maxSeconds, sampleRate: SAMPLE_RATE });
  const segments: TranscriptSegment[] = [];
  let doneSeconds = 0;
  opts.onProgress?.(0, duration);

  let b = 0;
  for (const size of batchSizes(pieces.length, settings.maxBatchSize)) {
    const batch = pieces.slice(b, b + size);
    const results = await asr.transcribe(
      batch.map((p) => ({
        samples: p.samples,
        language: opts.language || undefined,
        context: opts.context,
        maxNewTokens: settings.forceTokensPerSecond
          ? Math.max(1, Math.round(((p.end - p.start) / SAMPLE_RATE) * settings.forceTokensPerSecond))
          : tokenBudget(p.samples.length / SAMPLE_RATE, opts.maxNewTokens ?? settings.maxNewTokens),
      })),
      { signal: opts.signal, ignoreStopTokens: settings.forceTokensPerSecond !== undefined },
    );
    let words: (WordTimestamp[] | undefined)[] = batch.map(() => undefined);
    if (opts.timestamps && aligner) words = await alignBatch(aligner, batch, results, opts);
    batch.forEach((piece, i) => {
      const r = results[i];
      const seg: TranscriptSegment = {
        id: segments.length,
        start: piece.offsetSeconds,
        // The next piece's offset, so segments tile the audio exactly (no float drift).
        end: b + i + 1 < pieces.length ? pieces[b + i + 1].offsetSeconds : duration,
        text: r.text,
        language: r.language,
        raw: r.raw,
        tokenIds: r.tokenIds,
        textTokenIds: r.textTokenIds,
        truncated: r.truncated,
      };
      if (words[i]) seg.words = words[i];
      segments.push(seg);
      opts.onSegment?.(seg);
      doneSeconds += (piece.end - piece.start) / SAMPLE_RATE;
    });
    opts.onProgress?.(Math.min(doneSeconds, duration), duration);
    b += size;
  }

  const result: TranscriptionResult = {
    text: joinSegmentTexts(segments),
    language: mergeLanguages(segments.map((s) => s.language)),
    duration,
    segments,
  };
  if (opts.timestamps) result.words = segments.flatMap((s) => s.words ?? []);
  return result;
}

function supports(languages: readonly string[], language: string): boolean {
  return languages.some((l) => l.toLowerCase() === language.toLowerCase());
}

/** Aligns the non-empty segments of a batch (official rule: empty texts are not aligned). */
async function alignBatch(
  aligner: ForcedAligner,
  pieces: AudioSegment[],
  results: { text: string; language: string }[],
  opts: TranscribeOptions,
): Promise<(WordTimestamp[] | undefined)[]> {
  const todo: number[] = [];
  results.forEach((r, i) => {
    if (r.text.trim()) todo.push(i);
  });
  for (const i of todo) {
    const lang = opts.language || results[i].language;
    if (lang && !supports(aligner.languages, lang)) {
      throw new PipelineError('aligner_language_unsupported', `The audio was detected as ${lang}, which the forced aligner does not support (it supports ${aligner.languages.join(', ')}).`);
    }
  }
  const aligned = await aligner.align(
    todo.map((i) => ({ samples: pieces[i].samples, text: results[i].text, language: opts.language || results[i].language })),
    { signal: opts.signal },
  );
  const out: (WordTimestamp[] | undefined)[] = pieces.map(() => []);
  todo.forEach((i, k) => {
    out[i] = offsetItems(aligned[k].items, pieces[i].offsetSeconds);
  });
  return out;
}
