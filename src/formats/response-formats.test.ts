import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TranscriptionResult, TranscriptSegment } from '../pipeline/types.ts';
import {
  compressionRatio,
  DeltaBuilder,
  openAiJson,
  originalTranscription,
  sseEvent,
  subtitles,
  verboseJson,
} from './response-formats.ts';

function segment(id: number, start: number, end: number, text: string, language = 'English', extra: Partial<TranscriptSegment> = {}): TranscriptSegment {
  return { id, start, end, text, language, raw: `language ${language}<asr_text>${text}`, tokenIds: [11528, 6364, 151704, 100 + id, 151645], textTokenIds: [100 + id], truncated: false, repetitionStopped: false, ...extra };
}

const result: TranscriptionResult = {
  text: 'Hello there. General Kenobi.',
  language: 'English',
  duration: 9.87654,
  segments: [segment(0, 0, 4.1234, 'Hello there.'), segment(1, 4.1234, 9.87654, 'General Kenobi.')],
  words: [
    { text: 'Hello', start: 0.12, end: 0.5 },
    { text: 'there', start: 0.6, end: 1.0004 },
    { text: 'General', start: 4.2, end: 4.8 },
    { text: 'Kenobi', start: 4.9, end: 5.6 },
  ],
};

test('original response: shape, processing_time, timestamps only when asked', () => {
  const plain = originalTranscription(result, { model: 'Qwen/Qwen3-ASR-1.7B', device: 'cpu', processingSeconds: 2.449, timestamps: false });
  assert.deepEqual(plain, {
    text: 'Hello there. General Kenobi.',
    language: 'English',
    timestamps: null,
    metadata: { model: 'Qwen/Qwen3-ASR-1.7B', processing_time: '2.45s', device: 'cpu', truncated: false, repetition_stopped: false },
  });
  const timed = originalTranscription(result, { model: 'm', device: 'cuda:0', processingSeconds: 0.1, timestamps: true });
  assert.deepEqual(timed.timestamps?.[1], { text: 'there', start: 0.6, end: 1 });
  assert.equal(timed.metadata.processing_time, '0.10s');
  // The aligner gave nothing (silence): null, as the original.
  assert.equal(originalTranscription({ ...result, words: [] }, { model: 'm', device: 'cpu', processingSeconds: 0, timestamps: true }).timestamps, null);
});

test('json: text and duration usage in whole seconds', () => {
  assert.deepEqual(openAiJson(result), { text: result.text, usage: { type: 'duration', seconds: 10 } });
});

test('compression ratio: low for ordinary text, high for runaway repetition', () => {
  assert.equal(compressionRatio(''), 0);
  const normal = compressionRatio('The quick brown fox jumps over the lazy dog, and then it goes home to sleep.');
  const repeated = compressionRatio('la '.repeat(200));
  assert.ok(normal > 0.5 && normal < 1.5, String(normal));
  assert.ok(repeated > 10, String(repeated));
});

test('verbose_json: OpenAI fields, lowercase language, granularities', () => {
  const v = verboseJson(result, { granularities: [] });
  assert.equal(v.task, 'transcribe');
  assert.equal(v.language, 'english');
  assert.equal(v.duration, 9.877);
  assert.equal(v.words, undefined);
  assert.deepEqual(v.segments?.[1], {
    id: 1,
    seek: 412,
    start: 4.123,
    end: 9.877,
    text: 'General Kenobi.',
    tokens: [101],
    temperature: 0,
    avg_logprob: 0,
    compression_ratio: compressionRatio('General Kenobi.'),
    no_speech_prob: 0,
    truncated: false,
    repetition_stopped: false,
  });
  assert.deepEqual(v.usage, { type: 'duration', seconds: 10 });

  const words = verboseJson(result, { granularities: ['word'] });
  assert.equal(words.segments, undefined, 'word alone: no segments');
  assert.deepEqual(words.words?.[0], { word: 'Hello', start: 0.12, end: 0.5 });
  const both = verboseJson(result, { granularities: ['word', 'segment'] });
  assert.equal(both.segments?.length, 2);
  assert.equal(both.words?.length, 4);

  // Nothing detected: the forced language, else "".
  const silent: TranscriptionResult = { text: '', language: '', duration: 2, segments: [segment(0, 0, 2, '', '')] };
  assert.equal(verboseJson(silent, { granularities: [], requestedLanguage: 'German' }).language, 'german');
  assert.equal(verboseJson(silent, { granularities: [] }).language, '');
  assert.equal(verboseJson(silent, { granularities: [] }).segments?.[0].no_speech_prob, 1);
  assert.equal(verboseJson({ ...result, language: 'Chinese,English' }, { granularities: [] }).language, 'chinese');
});

test('srt and vtt from the segments', () => {
  const srt = subtitles(result, 'srt');
  assert.match(srt, /^1\n00:00:00,000 --> 00:00:04,123\nHello there\.\n\n2\n00:00:04,123 --> 00:00:09,877\nGeneral Kenobi\.\n\n$/);
  const vtt = subtitles(result, 'vtt');
  assert.ok(vtt.startsWith('WEBVTT\n\n00:00:00.000 --> '), vtt);
  assert.equal(subtitles({ text: '', language: '', duration: 1, segments: [] }, 'srt'), '');
});

test('server-sent events: event and data lines, one blank line', () => {
  assert.equal(sseEvent('transcript.text.delta', { type: 'transcript.text.delta', delta: 'a\nb' }), 'event: transcript.text.delta\ndata: {"type":"transcript.text.delta","delta":"a\\nb"}\n\n');
});

test('deltas add up to the joined transcript', () => {
  const spaced = new DeltaBuilder();
  assert.equal(spaced.push({ text: ' Hello there.', language: 'English' }), 'Hello there.');
  assert.equal(spaced.push({ text: '', language: '' }), '', 'an empty segment sends nothing');
  assert.equal(spaced.push({ text: 'General Kenobi.', language: 'English' }), ' General Kenobi.');

  const cjk = new DeltaBuilder();
  assert.equal(cjk.push({ text: '你好。', language: 'Chinese' }), '你好。');
  assert.equal(cjk.push({ text: '再见。', language: 'Chinese' }), '再见。', 'no space between unspaced scripts');
});

test('partial texts of the next segment stream ahead of it and never disagree with the final', () => {
  const d = new DeltaBuilder();
  assert.equal(d.partial(0, 'Hello', 'English'), 'Hello');
  assert.equal(d.partial(1, 'Later', 'English'), '', 'not the next segment in order');
  assert.equal(d.partial(0, 'Hello the', ''), '', 'language not known yet');
  assert.equal(d.partial(0, 'Hello the', 'English'), ' the');
  assert.equal(d.push({ text: 'Hello there.', language: 'English' }), 're.');
  assert.equal(d.partial(1, 'General', 'English'), ' General');
  assert.equal(d.push({ text: ' General Kenobi.', language: 'English' }), ' Kenobi.');
  // Deltas add up to the transcript.
  const all = new DeltaBuilder();
  const sent = [all.partial(0, 'A b', 'English'), all.push({ text: 'A b c.', language: 'English' }), all.partial(1, '你', 'Chinese'), all.push({ text: '你好。', language: 'Chinese' })].join('');
  assert.equal(sent, 'A b c. 你好。');
});
