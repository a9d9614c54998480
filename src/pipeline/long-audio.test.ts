/**
 * Long recordings through the real pipeline: createTranscriber (engine worker thread, queue)
 * with the tiny random checkpoints, fed more than ten minutes of real speech built from the
 * shared `audio/notld` clips. What is checked is what the pipeline promises for any model:
 * how the audio is cut (tiling, lengths, cuts in quiet stretches), the streaming callbacks,
 * the merged text, subtitles, and word times with the forced aligner. The transcripts are
 * nonsense (random weights) but deterministic in fp32: without a language, tiny-a turns every
 * stretch of speech into one token repeated, as its goldens show, and that is checked exactly.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import SrtParser from 'srt-parser-2';
import webvtt from 'webvtt-parser';
import { decodeAudio } from '../audio/decode.ts';
import { subtitles } from '../formats/response-formats.ts';
import { AUDIO_DIR, goldenPath, readJson } from '../testing/shared.ts';
import { createTranscriber } from './transcriber.ts';
import type { Transcriber, TranscriptionResult, TranscriptSegment } from './types.ts';

const SR = 16000;
const MODEL = goldenPath('tiny-a', 'checkpoint');
const ALIGNER = goldenPath('aligner-a', 'checkpoint');
/** Small cap: random weights would otherwise decode up to the duration-based budget. */
const MAX_NEW_TOKENS = 24;
const SEGMENT_SECONDS = 120;
/** The official quiet-point search reaches this far past the proposed cut. */
const SEARCH_SECONDS = 5;
/** Segment limit with timestamps (the official wrapper's; the aligner's range is 400 s). */
const ALIGNER_SEGMENT_SECONDS = 180;
/** The aligner predicts classify_num (5000) classes of 80 ms: times up to 400 s into a segment. */
const ALIGNER_RANGE_SECONDS = 400;
/**
 * What tiny-a writes for speech without a language: the golden long_40s__auto (40 s of
 * speech) is 32 × 46203, `(children`, which the output parser keeps once. Every segment here
 * is the same, cut at MAX_NEW_TOKENS.
 */
const SPEECH = readJson<{ cases: { case: string; generated_ids: number[]; parsed_text: string; parsed_language: string }[] }>(
  goldenPath('tiny-a', 'index.json'),
).cases.find((c) => c.case === 'long_40s__auto')!;

/** Every segment's transcript is the golden's, from its first MAX_NEW_TOKENS tokens. */
function checkSpeechTranscripts(segments: TranscriptSegment[]): void {
  assert.equal(SPEECH.parsed_text, '(children');
  for (const s of segments) {
    assert.deepEqual(s.tokenIds, SPEECH.generated_ids.slice(0, MAX_NEW_TOKENS), `segment ${s.id}: tokens`);
    assert.equal(s.truncated, true, `segment ${s.id} stops at the cap`);
    assert.equal(s.text, SPEECH.parsed_text, `segment ${s.id}: text`);
    assert.equal(s.language, SPEECH.parsed_language, `segment ${s.id}: language`);
  }
}

const transcribers: Transcriber[] = [];
function transcriber(extra: { aligner?: string; segmentSeconds?: number }): Transcriber {
  const t = createTranscriber({
    model: MODEL,
    quant: 'none',
    device: 'cpu',
    threads: 2,
    maxBatchSize: 8,
    maxQueue: 4,
    maxNewTokens: MAX_NEW_TOKENS,
    cacheDir: false,
    ...extra,
  });
  transcribers.push(t);
  return t;
}

after(async () => {
  await Promise.all(transcribers.map((t) => t.close()));
});

/** The notld clips (5 s – 119 s, 16 kHz mono), in name order. */
async function loadClips(): Promise<Float32Array[]> {
  const dir = join(AUDIO_DIR, 'notld');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.wav'))
    .sort();
  assert.ok(files.length >= 10, `expected the notld clips in ${dir}`);
  const clips: Float32Array[] = [];
  for (const f of files) {
    const d = await decodeAudio(join(dir, f));
    assert.equal(d.sourceSampleRate, SR, `${f} is 16 kHz`);
    assert.equal(d.channels, 1, `${f} is mono`);
    clips.push(d.samples);
  }
  return clips;
}

/** Clips end to end (cycling through them again) until at least `seconds` of audio. */
function concatenate(clips: Float32Array[], seconds: number): Float32Array {
  const parts: Float32Array[] = [];
  let n = 0;
  for (let i = 0; n < seconds * SR; i++) {
    const c = clips[i % clips.length];
    parts.push(c);
    n += c.length;
  }
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function rms(x: Float32Array, from: number, to: number): number {
  const a = Math.max(0, from);
  const b = Math.min(x.length, to);
  let s = 0;
  for (let i = a; i < b; i++) s += x[i] * x[i];
  return Math.sqrt(s / Math.max(1, b - a));
}

/** Median RMS over consecutive 100 ms windows. */
function medianRms100ms(x: Float32Array): number {
  const win = SR / 10;
  const values: number[] = [];
  for (let i = 0; i + win <= x.length; i += win) values.push(rms(x, i, i + win));
  values.sort((p, q) => p - q);
  return values[Math.floor(values.length / 2)];
}

/** Segments tile [0, duration] in order, each at most `maxSeconds` long. */
function checkTiling(segments: TranscriptSegment[], duration: number, maxSeconds: number): void {
  assert.ok(segments.length >= 2, `${segments.length} segments`);
  assert.equal(segments[0].start, 0, 'the first segment starts at 0');
  assert.equal(segments.at(-1)!.end, duration, 'the last segment ends at the duration');
  segments.forEach((s, i) => {
    assert.equal(s.id, i, 'ids count from 0 in order');
    if (i > 0) assert.equal(s.start, segments[i - 1].end, `segment ${i} starts where segment ${i - 1} ends`);
    assert.ok(s.start >= 0 && s.end <= duration && s.end > s.start, `segment ${i} [${s.start}, ${s.end}] inside the audio`);
    assert.ok(s.end - s.start <= maxSeconds + 1e-9, `segment ${i} lasts ${s.end - s.start} s > ${maxSeconds} s`);
    // Cuts are whole samples: start * 16000 is an integer.
    assert.ok(Math.abs(s.start * SR - Math.round(s.start * SR)) < 1e-6, `segment ${i} starts between samples (${s.start})`);
  });
}

/** The merged text is the segment texts in order, one space apart (none of them is CJK). */
function checkJoinedText(result: TranscriptionResult): void {
  assert.equal(result.text, result.segments.map((s) => s.text.trim()).filter(Boolean).join(' '));
}

const entities = createRequire(import.meta.url)('webvtt-parser/html-entities.json') as Record<`&${string}`, string>;

/** SRT and WebVTT from the result parse with the maintained parsers; cue times monotonic and inside the audio. */
function checkSubtitles(result: TranscriptionResult): void {
  const end = Math.round(result.duration * 1000) / 1000;
  const checkTimes = (cues: { start: number; end: number }[], what: string) => {
    assert.ok(cues.length >= 1, `${what}: no cues`);
    let prev = 0;
    cues.forEach((c, i) => {
      assert.ok(c.start >= prev - 1e-6, `${what} cue ${i + 1} starts at ${c.start}, before ${prev}`);
      assert.ok(c.end >= c.start, `${what} cue ${i + 1} ends before it starts`);
      assert.ok(c.end <= end + 1e-6, `${what} cue ${i + 1} ends at ${c.end}, after the audio (${end})`);
      prev = c.end;
    });
  };
  const srt = subtitles(result, 'srt');
  const blocks = srt.split('\n\n').filter((b) => b !== '');
  blocks.forEach((b, i) =>
    assert.match(b, new RegExp(`^${i + 1}\\n\\d{2}:\\d{2}:\\d{2},\\d{3} --> \\d{2}:\\d{2}:\\d{2},\\d{3}\\n.+(\\n.+)?$`, 'u'), `SRT block ${i + 1}`),
  );
  const srtCues = new SrtParser().fromSrt(srt);
  assert.equal(srtCues.length, blocks.length);
  checkTimes(srtCues.map((c) => ({ start: c.startSeconds, end: c.endSeconds })), 'SRT');

  const vtt = subtitles(result, 'vtt');
  const parsed = new webvtt.WebVTTParser(entities).parse(vtt, 'subtitles');
  assert.deepEqual(parsed.errors, []);
  assert.equal(parsed.cues.length, srtCues.length);
  checkTimes(parsed.cues.map((c) => ({ start: c.startTime, end: c.endTime })), 'VTT');
}

let clips: Float32Array[];
before(async () => {
  clips = await loadClips();
});

test('more than ten minutes: quiet-point segments, callbacks, merged text, subtitles', async () => {
  const samples = concatenate(clips, 630);
  const duration = samples.length / SR;
  assert.ok(duration > 600, `${duration} s`);

  const t = transcriber({ segmentSeconds: SEGMENT_SECONDS });
  await t.whenReady();
  const seen: TranscriptSegment[] = [];
  const progress: [number, number][] = [];
  const result = await t.transcribeSamples(samples, {
    onSegment: (s) => seen.push(s),
    onProgress: (done, total) => progress.push([done, total]),
  });

  assert.equal(result.duration, duration);
  checkTiling(result.segments, duration, SEGMENT_SECONDS + SEARCH_SECONDS);
  // The official split: one cut within ±5 s of every 120 s.
  assert.deepEqual(result.segments.map((s) => Math.round(s.start * SR)), [0, 1863913, 3817563, 5774679, 7625276, 9467003]);
  checkSpeechTranscripts(result.segments);

  // Each cut sits in a quiet stretch: the ±50 ms around it is quieter than the recording's
  // typical 100 ms (the cut is the quietest 100 ms window within ±5 s of the proposed point).
  const median = medianRms100ms(samples);
  for (const s of result.segments.slice(1)) {
    const at = Math.round(s.start * SR);
    const local = rms(samples, at - SR / 20, at + SR / 20);
    assert.ok(local < median, `cut at ${s.start.toFixed(3)} s: RMS ${local.toFixed(5)} is not below the median 100 ms RMS ${median.toFixed(5)}`);
  }

  // onSegment: once per segment, in order, the same segments as the result.
  assert.deepEqual(seen, result.segments);
  // onProgress: starts at 0, never goes back, always of the same total, ends at the total.
  assert.deepEqual(progress[0], [0, duration]);
  for (let i = 1; i < progress.length; i++) {
    assert.equal(progress[i][1], duration);
    assert.ok(progress[i][0] >= progress[i - 1][0], `progress went back: ${progress[i - 1][0]} -> ${progress[i][0]}`);
  }
  assert.ok(Math.abs(progress.at(-1)![0] - duration) < 1e-6, `progress ended at ${progress.at(-1)![0]} of ${duration}`);

  checkJoinedText(result);
  assert.equal(result.text, Array(6).fill(SPEECH.parsed_text).join(' '));
  assert.equal(result.language, '', 'no segment has a language');
  assert.equal(result.words, undefined, 'no words without timestamps');
  checkSubtitles(result);
});

/** About four minutes with word timestamps, transcribed once and shared by the tests below. */
let timestamped: Promise<{ samples: Float32Array; duration: number; result: TranscriptionResult; seen: TranscriptSegment[] }> | undefined;
function transcribeWithTimestamps() {
  timestamped ??= (async () => {
    const samples = concatenate(clips, 235);
    const duration = samples.length / SR;
    assert.ok(duration > ALIGNER_SEGMENT_SECONDS + SEARCH_SECONDS && duration < 300, `${duration} s`);
    // segmentSeconds above the aligner limit: the 180 s timestamp limit is what applies.
    const t = transcriber({ aligner: ALIGNER, segmentSeconds: 1200 });
    await t.whenReady();
    assert.ok(t.alignerLanguages?.includes('English'));
    const seen: TranscriptSegment[] = [];
    const result = await t.transcribeSamples(samples, { timestamps: true, onSegment: (seg) => seen.push(seg) });
    return { samples, duration, result, seen };
  })();
  return timestamped;
}

test('about four minutes with timestamps: segments of at most 180 s (+5 s search) tile the audio', async () => {
  const { duration, result, seen } = await transcribeWithTimestamps();
  checkTiling(result.segments, duration, ALIGNER_SEGMENT_SECONDS + SEARCH_SECONDS);
  assert.deepEqual(result.segments.map((s) => Math.round(s.start * SR)), [0, 2895551]);
  checkSpeechTranscripts(result.segments);
  assert.deepEqual(seen, result.segments);
  checkJoinedText(result);
  assert.equal(result.text, `${SPEECH.parsed_text} ${SPEECH.parsed_text}`);
});

test('about four minutes with timestamps: word times offset by their segment and ordered within it', async () => {
  const { result } = await transcribeWithTimestamps();
  assert.ok(Array.isArray(result.words));
  assert.deepEqual(result.words, result.segments.flatMap((seg) => seg.words ?? []), "result.words = the segments' words in order");
  let aligned = 0;
  for (const s of result.segments) {
    assert.ok(Array.isArray(s.words), `segment ${s.id} has a words array`);
    if (!s.text.trim()) {
      assert.deepEqual(s.words, [], 'empty segments are not aligned');
      continue;
    }
    aligned++;
    assert.ok(s.words!.length >= 1, `segment ${s.id} with text has words`);
    // The words are the segment text's units (punctuation removed), in order.
    let from = 0;
    const flat = s.text.replace(/\s+/gu, '');
    for (const w of s.words!) {
      const unit = w.text.replace(/\s+/gu, '');
      const at = flat.indexOf(unit, from);
      assert.ok(at >= 0, `segment ${s.id}: word ${JSON.stringify(w.text)} is not in the text after position ${from}`);
      from = at + unit.length;
    }
    // What the pipeline guarantees for any model: word times are the aligner's per-segment times
    // (monotonically repaired) plus the segment's offset, so within a segment they never go
    // back, and they lie in [segment start, segment end]: the aligner classifies each timestamp
    // slot into one of 5000 80 ms bins whatever the audio's length (these random weights put
    // them anywhere in 0–400 s, the goldens ~400 s for a 7 s clip), and times past the audio
    // the aligner saw are clamped to its end.
    let prev = -Infinity;
    for (const [i, w] of s.words!.entries()) {
      assert.ok(Number.isFinite(w.start) && Number.isFinite(w.end), `segment ${s.id} word ${i} has finite times`);
      assert.ok(w.start <= w.end, `segment ${s.id} word ${i} ${JSON.stringify(w)} ends before it starts`);
      assert.ok(w.start >= s.start - 1e-9, `segment ${s.id} word ${i} starts at ${w.start}, before the segment (${s.start})`);
      assert.ok(w.end <= s.start + ALIGNER_RANGE_SECONDS + 1e-6, `segment ${s.id} word ${i} ends at ${w.end}, beyond the aligner range`);
      assert.ok(w.end <= s.end, `segment ${s.id} word ${i} ends at ${w.end}, after the segment (${s.end})`);
      assert.ok(w.start >= prev - 1e-9, `segment ${s.id} word ${i} starts at ${w.start}, before the previous word (${prev})`);
      prev = w.start;
    }
  }
  assert.equal(aligned, 2, 'both segments had text to align');
  // The one unit of `(children`: the random aligner puts it at 354.8 s into the first segment
  // and 224.72 s into the second (offset 180.9719375 s), both past their segment's end (the
  // second's offset, the end of the recording), so each stops there, to the ms.
  assert.deepEqual(
    result.segments.map((s) => s.words),
    [[{ text: 'children', start: 180.971, end: 180.971 }], [{ text: 'children', start: 251.786, end: 251.786 }]],
  );
});

test('about four minutes with timestamps: SRT/VTT stay valid when word times fall outside their segment', async () => {
  // Cue times are clamped into their segment, so the subtitles must stay well-formed (cues in
  // order, inside the audio, end after start) even with these random word times.
  const { result } = await transcribeWithTimestamps();
  checkSubtitles(result);
});
