/**
 * The transcription pipeline after decoding: segmentation -> batched ASR -> optional word
 * alignment -> merged result. Runs inside the engine worker; knows nothing of HTTP.
 */
import { splitAtQuietPoints, splitAtSpeech, type AudioSegment } from '../audio/segment.ts';
import { speechRegions } from '../audio/speech-regions.ts';
import type { SileroVad } from '../engine/vad/silero-vad.ts';
import { type ForcedAligner } from '../engine/aligner/aligner-model.ts';
import { offsetItems } from '../engine/aligner/timestamps.ts';
import { type AsrModel, type AsrResult } from '../engine/asr/asr-model.ts';
import { joinSegmentTexts, mergeLanguages } from '../engine/text/segment-text.ts';
import { PipelineError, type VadSettings, type TranscribeOptions, type TranscriptionResult, type TranscriptSegment, type WordTimestamp } from './types.ts';

export const SAMPLE_RATE = 16000;
/** Shortest audio accepted (OpenAI's limit; below one 25 ms analysis window nothing can be said). */
export const MIN_AUDIO_SECONDS = 0.1;
export { DEFAULT_MAX_BATCH_SIZE, DEFAULT_SEGMENT_SECONDS } from '../settings/settings.ts';

/** The official wrapper's segment limit when timestamps are requested (the aligner's range is 400 s). */
export const ALIGNER_SEGMENT_SECONDS = 180;

export interface PipelineSettings {
  /** Longest segment without timestamps (README "Long recordings" explains the choice). */
  segmentSeconds: number;
  /** Explicit cap per segment; the budget otherwise grows with duration. */
  maxNewTokens?: number;
  /** Voice activity detection with its model; undefined: the official quiet-point cuts. */
  vad?: VadSettings & { model: SileroVad };
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
  const pieces = await cut(samples, maxSeconds, settings.vad);
  const budgets = pieces.map((p) =>
    settings.forceTokensPerSecond
      ? Math.max(1, Math.round(((p.end - p.start) / SAMPLE_RATE) * settings.forceTokensPerSecond))
      : tokenBudget(p.samples.length / SAMPLE_RATE, opts.maxNewTokens ?? settings.maxNewTokens),
  );
  const progress = decodeProgress(pieces, budgets, duration, opts.timestamps ? ALIGNING_SHARE : DECODED_SHARE, opts.onProgress);

  // Every segment joins the batch all requests share (the scheduler gives this request its
  // fair share of rows); results come back in any order and leave here in order, aligned in
  // runs of the segments that are ready.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stop.abort();
  const owner = {};
  const results: (AsrResult | undefined)[] = pieces.map(() => undefined);
  const segments: TranscriptSegment[] = [];
  let failure: unknown;
  const fail = (err: unknown) => {
    failure ??= err;
    stop.abort();
  };
  let emitted = Promise.resolve();
  const emitReady = async () => {
    const from = segments.length;
    let to = from;
    while (to < pieces.length && results[to]) to++;
    if (to === from || failure) return;
    const ready = pieces.slice(from, to);
    const readyResults = results.slice(from, to) as AsrResult[];
    const words = opts.timestamps && aligner ? await alignBatch(aligner, ready, readyResults, { ...opts, signal: stop.signal }) : undefined;
    ready.forEach((piece, k) => {
      const i = from + k;
      const r = readyResults[k];
      const seg: TranscriptSegment = {
        id: i,
        start: piece.offsetSeconds,
        // Quiet-point cuts tile the audio: the next piece's offset, so no float drift opens
        // gaps. Speech segments end where their speech (and its padding) does.
        end: settings.vad ? piece.end / SAMPLE_RATE : i + 1 < pieces.length ? pieces[i + 1].offsetSeconds : duration,
        text: r.text,
        language: r.language,
        raw: r.raw,
        tokenIds: r.tokenIds,
        textTokenIds: r.textTokenIds,
        truncated: r.truncated,
        repetitionStopped: r.repetitionStopped,
      };
      if (words?.[k]) seg.words = words[k];
      segments.push(seg);
      opts.onSegment?.(seg);
      progress.segment(i, 1);
    });
  };
  try {
    await Promise.all(
      pieces.map((p, i) =>
        asr
          .submit(
            {
              samples: p.samples,
              language: opts.language || undefined,
              context: opts.context,
              maxNewTokens: budgets[i],
            },
            {
              owner,
              signal: stop.signal,
              ignoreStopTokens: settings.forceTokensPerSecond !== undefined,
              onText: opts.onPartial ? (text, language) => opts.onPartial!(i, text, language) : undefined,
              onTokens: opts.onProgress ? (ids) => progress.tokens(i, ids.length) : undefined,
            },
          )
          .then((r) => {
            results[i] = r;
            progress.segment(i, progress.decodedShare);
            emitted = emitted.then(emitReady).catch(fail);
          }, fail),
      ),
    );
    await emitted;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  if (failure) throw failure;
  progress.end();

  const result: TranscriptionResult = {
    text: joinSegmentTexts(segments),
    language: mergeLanguages(segments.map((s) => s.language)),
    duration,
    segments,
  };
  if (opts.timestamps) result.words = segments.flatMap((s) => s.words ?? []);
  return result;
}

/**
 * Speech tokens a second of audio is expected to take, for progress only: about 3 for English,
 * 4–5 CJK characters, plus the `language X<asr_text>` header's few.
 */
const EXPECTED_TOKENS_PER_SECOND = 4;
const HEADER_TOKENS = 5;
/** How much of a segment counts as done when its row stops, before it leaves in order (and is aligned). */
const DECODED_SHARE = 0.95;
const ALIGNING_SHARE = 0.8;

/**
 * Progress in audio seconds that advances while segments decode, not only as they leave in
 * order: every segment of a request decodes at once in the shared batch, so segment completion
 * alone would jump from 0 to 100 % at the end. A segment counts by its duration times how far it
 * is: in proportion to its tokens against the tokens expected of its duration while it decodes,
 * up to its decoded share (the text may run longer than expected), that share once its row
 * stops, and whole once it is out. Reports start at 0, never go back, come at most once per
 * 0.1 % of the audio, and end at the duration.
 */
export function decodeProgress(
  pieces: readonly Pick<AudioSegment, 'start' | 'end'>[],
  budgets: readonly number[],
  duration: number,
  decodedShare: number,
  report: ((doneSeconds: number, totalSeconds: number) => void) | undefined,
) {
  const seconds = pieces.map((p) => (p.end - p.start) / SAMPLE_RATE);
  const expected = seconds.map((s, i) => Math.max(1, Math.min(budgets[i], Math.ceil(s * EXPECTED_TOKENS_PER_SECOND) + HEADER_TOKENS)));
  const totalSeconds = seconds.reduce((a, b) => a + b, 0);
  const share = pieces.map(() => 0);
  let doneSeconds = 0;
  let reported = 0;
  let permille = 0;
  report?.(0, duration);
  const emit = (done: number) => {
    if (done <= reported) return;
    reported = done;
    report?.(done, duration);
  };
  /** Segment `i` is this far (0–1); a smaller share than before is ignored. */
  const segment = (i: number, to: number) => {
    if (!report || to <= share[i] || totalSeconds <= 0) return;
    doneSeconds += (to - share[i]) * seconds[i];
    share[i] = to;
    const p = Math.floor((1000 * doneSeconds) / totalSeconds);
    if (p <= permille) return;
    permille = p;
    // Non-speech that VAD leaves out counts in proportion; the end is reported exactly.
    emit(p >= 1000 ? duration : Math.min(duration, (duration * doneSeconds) / totalSeconds));
  };
  return {
    decodedShare,
    segment,
    /** Segment `i` has decoded `n` tokens: its decoded share at the expected count, never more. */
    tokens: (i: number, n: number) => segment(i, Math.min(decodedShare, (decodedShare * n) / expected[i])),
    /** Every segment is out (also when VAD found none). */
    end: () => emit(duration),
  };
}

/**
 * Where the audio is cut. Without VAD, the official rule: every `maxSeconds` at the quietest
 * point. With it, around the speech the model finds: cuts fall in non-speech, non-speech of
 * VAD_MIN_SILENCE_MS or more is not decoded at all, and speech longer than `maxSeconds` is cut
 * at its quietest point (times stay those of the whole recording).
 */
async function cut(samples: Float32Array, maxSeconds: number, vad: PipelineSettings['vad']): Promise<AudioSegment[]> {
  if (!vad) return splitAtQuietPoints(samples, { maxSeconds, sampleRate: SAMPLE_RATE });
  const regions = speechRegions(await vad.model.probabilities(samples), samples.length, { threshold: vad.threshold, minSilenceMs: vad.minSilenceMs });
  return splitAtSpeech(samples, regions, { maxSeconds, sampleRate: SAMPLE_RATE, minGapSeconds: vad.minSilenceMs / 1000 });
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
    // No word past the segment's own audio (a short last segment is padded for the aligner).
    out[i] = offsetItems(aligned[k].items, pieces[i].offsetSeconds, pieces[i].end / SAMPLE_RATE);
  });
  return out;
}
