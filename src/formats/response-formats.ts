/**
 * Response bodies built from a TranscriptionResult: the original service's JSON, and OpenAI's
 * json / text / srt / vtt / verbose_json and streaming events (api-contract §1.6, §3.2, §3.3).
 * Pure functions; the routes decide which one applies.
 */
import { deflateSync } from 'node:zlib';
import { toOpenAiLanguageName } from '../pipeline/languages.ts';
import { joinSegmentTexts } from '../engine/text/segment-text.ts';
import { buildCues, formatSrt, formatVtt } from './subtitles.ts';
import type { TranscriptionResult, TranscriptSegment, WordTimestamp } from '../pipeline/types.ts';

export const RESPONSE_FORMATS = ['json', 'text', 'srt', 'verbose_json', 'vtt'] as const;
export type ResponseFormat = (typeof RESPONSE_FORMATS)[number];
export const TIMESTAMP_GRANULARITIES = ['word', 'segment'] as const;
export type TimestampGranularity = (typeof TIMESTAMP_GRANULARITIES)[number];

/** Seconds rounded to milliseconds, as the original (qwen_asr) and OpenAI report times. */
export function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

// ---------------------------------------------------------------------------------------
// The original service

export interface OriginalTranscription {
  text: string;
  language: string;
  timestamps: { text: string; start: number; end: number }[] | null;
  metadata: { model: string; processing_time: string; device: string; truncated: boolean; repetition_stopped: boolean };
}

export function originalTranscription(
  result: TranscriptionResult,
  info: { model: string; device: string; processingSeconds: number; timestamps: boolean },
): OriginalTranscription {
  // The original returned null both without timestamps and when the aligner produced nothing.
  const words = info.timestamps && result.words && result.words.length > 0 ? result.words : undefined;
  return {
    text: result.text,
    language: result.language,
    timestamps: words ? words.map((w) => ({ text: w.text, start: roundSeconds(w.start), end: roundSeconds(w.end) })) : null,
    metadata: {
      model: info.model,
      processing_time: `${info.processingSeconds.toFixed(2)}s`,
      device: info.device,
      truncated: result.segments.some((s) => s.truncated),
      repetition_stopped: result.segments.some((s) => s.repetitionStopped),
    },
  };
}

// ---------------------------------------------------------------------------------------
// OpenAI

/** Whisper-style billing usage: whole seconds of audio, rounded up. */
function durationUsage(result: TranscriptionResult) {
  return { type: 'duration' as const, seconds: Math.ceil(result.duration) };
}

export function openAiJson(result: TranscriptionResult) {
  return { text: result.text, usage: durationUsage(result) };
}

/**
 * Whisper's compression ratio (UTF-8 length / zlib-compressed length), the repetition signal
 * clients use to spot runaway decoding. 0 for empty text.
 */
export function compressionRatio(text: string): number {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length === 0) return 0;
  return Math.round((bytes.length / deflateSync(bytes, { level: 9 }).length) * 1e4) / 1e4;
}

export interface VerboseSegment {
  id: number;
  seek: number;
  start: number;
  end: number;
  text: string;
  tokens: number[];
  temperature: number;
  avg_logprob: number;
  compression_ratio: number;
  no_speech_prob: number;
  /** Reached its token budget before a stop token. */
  truncated: boolean;
  /** Looped, and was stopped by the repetition guard. */
  repetition_stopped: boolean;
}

/**
 * One verbose_json segment. Fields with no Qwen equivalent are filled so that clients reading
 * them as Whisper would come to the right conclusion:
 * - `seek`: the segment's start in 10 ms frames (Whisper counts its seek in mel frames);
 * - `temperature`: 0, decoding is greedy;
 * - `avg_logprob`: 0, the engine does not report log-probabilities (0 never trips a client's
 *   low-confidence filter on its own);
 * - `no_speech_prob`: 1 when the model wrote nothing for the segment, else 0.
 */
export function verboseSegment(segment: TranscriptSegment): VerboseSegment {
  const text = segment.text.trim();
  return {
    id: segment.id,
    seek: Math.round(segment.start * 100),
    start: roundSeconds(segment.start),
    end: roundSeconds(segment.end),
    text,
    tokens: segment.textTokenIds,
    temperature: 0,
    avg_logprob: 0,
    compression_ratio: compressionRatio(text),
    no_speech_prob: text === '' ? 1 : 0,
    truncated: segment.truncated,
    repetition_stopped: segment.repetitionStopped,
  };
}

export interface VerboseJson {
  task: 'transcribe';
  language: string;
  duration: number;
  text: string;
  segments?: VerboseSegment[];
  words?: { word: string; start: number; end: number }[];
  usage: { type: 'duration'; seconds: number };
}

/**
 * verbose_json. Segments are included unless only word granularity was asked for (OpenAI's
 * default granularity is segment); words when asked for.
 * `language`: OpenAI's lowercase name of the (first) detected language, else of the language
 * the client forced, else "".
 */
export function verboseJson(result: TranscriptionResult, opts: { granularities: readonly TimestampGranularity[]; requestedLanguage?: string }): VerboseJson {
  const wantSegments = opts.granularities.length === 0 || opts.granularities.includes('segment');
  const wantWords = opts.granularities.includes('word');
  const out: VerboseJson = {
    task: 'transcribe',
    language: toOpenAiLanguageName(result.language || opts.requestedLanguage || ''),
    duration: roundSeconds(result.duration),
    text: result.text,
    usage: durationUsage(result),
  };
  if (wantSegments) out.segments = result.segments.map(verboseSegment);
  if (wantWords) out.words = (result.words ?? []).map((w: WordTimestamp) => ({ word: w.text, start: roundSeconds(w.start), end: roundSeconds(w.end) }));
  return out;
}

/** SRT or WebVTT: readable cues cut from the segments (word times used when present). */
export function subtitles(result: TranscriptionResult, format: 'srt' | 'vtt'): string {
  const cues = buildCues(result.segments);
  return format === 'srt' ? formatSrt(cues) : formatVtt(cues);
}

// ---------------------------------------------------------------------------------------
// Streaming (stream=true)

/** One server-sent event: `event:` + `data:` lines and a blank line (no `[DONE]` sentinel in this protocol). */
export function sseEvent(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Turns finished segments, and the settled text of the segment being decoded after them, into
 * `transcript.text.delta` texts whose concatenation is exactly the final transcript (the
 * pipeline's own join: a space between segments except between unspaced scripts). A partial
 * text only ever grows into its segment's final text (engine/text/partial-text.ts), so what is
 * sent is never taken back. Empty segments produce no delta.
 */
export class DeltaBuilder {
  private readonly parts: { text: string; language: string }[] = [];
  private emitted = '';

  /** The text to send for this finished segment, the next in order ('' when there is nothing new). */
  push(segment: Pick<TranscriptSegment, 'text' | 'language'>): string {
    this.parts.push({ text: segment.text, language: segment.language });
    return this.advance(joinSegmentTexts(this.parts));
  }

  /**
   * The text to send for the settled part of segment `index` while it is decoded: only for the
   * next segment in order, and only once its language is known (the join's spacing depends on
   * it).
   */
  partial(index: number, text: string, language: string): string {
    if (index !== this.parts.length || !language || !text) return '';
    return this.advance(joinSegmentTexts([...this.parts, { text, language }]));
  }

  private advance(joined: string): string {
    // Every joined text extends the last; if one did not, nothing is sent rather than a delta
    // that would corrupt the client's running text: the done event has the truth.
    if (!joined.startsWith(this.emitted)) return '';
    const delta = joined.slice(this.emitted.length);
    this.emitted = joined;
    return delta;
  }
}
