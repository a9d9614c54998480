import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import webvtt from 'webvtt-parser';
import SrtParser from 'srt-parser-2';
import { buildCues, formatSrt, formatTimestamp, formatVtt, textWidth, type SubtitleCue, type SubtitleSegment } from './subtitles.ts';
import { isKeptChar, splitWordUnits } from '../engine/aligner/word-units.ts';
import { AUDIO_DIR } from '../testing/shared.ts';
import type { WordTimestamp } from '../pipeline/types.ts';

// The full entity table: the parser's built-in subset does not decode "&amp;" correctly.
const entities = createRequire(import.meta.url)('webvtt-parser/html-entities.json') as Record<`&${string}`, string>;

const LONG_TEXT = readFileSync(join(AUDIO_DIR, 'notld', '60s_i_dont_want_anyones_life_on_my_hands.txt'), 'utf8').trim();
const JFK_TEXT = readFileSync(join(AUDIO_DIR, 'jfk.txt'), 'utf8').trim();
const CHINESE =
  '我们在2026年发布了Qwen3 ASR模型，支持52种语言和方言。这是一个非常长的句子没有任何标点符号所以需要在字符之间进行切分以便于阅读和显示在屏幕上面的字幕。「你好」他说。';

const collapse = (text: string) => text.replace(/\s+/gu, ' ').trim();
const roundMs = (seconds: number) => Math.round(seconds * 1000) / 1000;

/** Every cue property the module promises, for any input. */
function assertWellFormed(cues: SubtitleCue[], segments: SubtitleSegment[], maxLineWidth = 42, maxLines = 2): void {
  let previousEnd = -Infinity;
  for (const [i, cue] of cues.entries()) {
    assert.ok(cue.start <= cue.end, `cue ${i} ends before it starts`);
    assert.ok(cue.start >= previousEnd, `cue ${i} starts (${cue.start}) before cue ${i - 1} ends (${previousEnd})`);
    previousEnd = cue.end;
    assert.ok(
      segments.some((s) => s.start <= cue.start && cue.end <= s.end),
      `cue ${i} [${cue.start}, ${cue.end}] is not inside a segment`,
    );
    assert.ok(cue.lines.length >= 1 && cue.lines.length <= maxLines, `cue ${i} has ${cue.lines.length} lines`);
    for (const line of cue.lines) {
      assert.ok(line.length > 0 && line === line.trim(), `cue ${i} has a blank or padded line ${JSON.stringify(line)}`);
      assert.ok(textWidth(line) <= maxLineWidth, `cue ${i} line too wide (${textWidth(line)}): ${line}`);
    }
  }
}

test('formatTimestamp: fields, rounding to whole ms, long durations', () => {
  assert.equal(formatTimestamp(0, ','), '00:00:00,000');
  assert.equal(formatTimestamp(3 * 3600 + 25 * 60, ','), '03:25:00,000');
  assert.equal(formatTimestamp(3 * 3600 + 25 * 60 + 7.891, '.'), '03:25:07.891');
  assert.equal(formatTimestamp(12345.678, ','), '03:25:45,678');
  assert.equal(formatTimestamp(59.9996, ','), '00:01:00,000');
  assert.equal(formatTimestamp(3599.9999, '.'), '01:00:00.000');
  assert.equal(formatTimestamp(1.2344, ','), '00:00:01,234');
  assert.equal(formatTimestamp(100 * 3600 + 0.5, '.'), '100:00:00.500');
  assert.throws(() => formatTimestamp(-0.5, ','), /non-negative/);
  assert.throws(() => formatTimestamp(NaN, '.'), /non-negative/);
});

test('a long English segment without words: readable cues covering the segment, text kept', () => {
  const segments = [{ start: 0, end: 60, text: LONG_TEXT }];
  const cues = buildCues(segments);
  assert.ok(cues.length >= 8, `${cues.length} cues`);
  assertWellFormed(cues, segments);
  assert.equal(cues[0].start, 0);
  assert.equal(cues.at(-1)!.end, 60);
  for (const cue of cues) assert.ok(cue.end - cue.start <= 7 + 1e-9, `cue of ${cue.end - cue.start} s`);
  // Contiguous estimated times, and nothing lost or reordered.
  for (let i = 1; i < cues.length; i++) assert.equal(cues[i].start, cues[i - 1].end);
  assert.equal(cues.map((c) => c.lines.join(' ')).join(' '), collapse(LONG_TEXT));
  // Cues prefer to end at sentence ends: most of them do.
  const atSentenceEnd = cues.filter((c) => /[.!?]$/.test(c.lines.at(-1)!)).length;
  assert.ok(atSentenceEnd >= cues.length / 2, `${atSentenceEnd} of ${cues.length} cues end a sentence`);
});

test('a line break goes after punctuation when the lines stay reasonably balanced', () => {
  const [cue] = buildCues([{ start: 0, end: 4, text: "I don't want anyone's life on my hands. Is there anything I can do?" }]);
  assert.deepEqual(cue.lines, ["I don't want anyone's life on my hands.", 'Is there anything I can do?']);
  const [other] = buildCues([{ start: 0, end: 3, text: "I don't want to hear any more from you, Mister." }]);
  assert.deepEqual(other.lines, ["I don't want to hear any", 'more from you, Mister.']);
});

test('CJK text without spaces is cut between words, two columns per character', () => {
  const segments = [{ start: 10, end: 30, text: CHINESE }];
  const cues = buildCues(segments);
  assertWellFormed(cues, segments);
  assert.ok(cues.length >= 3);
  for (const cue of cues) for (const line of cue.lines) assert.ok(Array.from(line).length <= 24, line);
  // All characters survive, in order (spaces only where the text had them).
  assert.equal(cues.map((c) => c.lines.join('')).join('').replace(/\s/g, ''), CHINESE.replace(/\s/g, ''));
  // No line starts with closing punctuation; ICU keeps 字符 together.
  for (const cue of cues) for (const line of cue.lines) assert.doesNotMatch(line, /^[，。」！？、]/u);
  assert.ok(!cues.some((c) => c.lines.some((l) => l.endsWith('字'))), 'a word was split');
  assert.equal(cues[0].lines.join(''), '我们在2026年发布了Qwen3 ASR模型，支持52种语言和方言。');
});

test('with word timestamps, cue times are the words\' times and the text keeps its punctuation', () => {
  const units = splitWordUnits(JFK_TEXT, 'English');
  const words: WordTimestamp[] = units.map((text, i) => ({ text, start: 0.3 + i * 0.45, end: 0.3 + i * 0.45 + 0.3 }));
  const segments = [{ start: 0, end: 11, text: JFK_TEXT, words }];
  const cues = buildCues(segments, { minCueSeconds: 0 });
  assertWellFormed(cues, segments);
  assert.ok(cues.length >= 2);
  assert.equal(cues.map((c) => c.lines.join(' ')).join(' '), collapse(JFK_TEXT));
  assert.ok(cues.some((c) => c.lines.join(' ').includes(',')), 'punctuation kept');
  // Walk the words through the cues: each cue spans exactly its own words.
  let w = 0;
  for (const cue of cues) {
    const kept = Array.from(cue.lines.join('')).filter(isKeptChar).length;
    const first = w;
    for (let consumed = 0; consumed < kept; w++) consumed += Array.from(words[w].text).length;
    assert.equal(cue.start, words[first].start);
    assert.equal(cue.end, words[w - 1].end);
    assert.ok(cue.end - cue.start <= 7);
  }
  assert.equal(w, words.length);
});

test('with word timestamps no cue lasts longer than 7 s, not even a word stretched over a pause', () => {
  // A 60 s segment whose words come at a steady pace, except one that the aligner stretched
  // over a 15 s pause, and a last one that runs to the segment's end.
  const units = splitWordUnits(LONG_TEXT, 'English');
  let t = 0;
  const words: WordTimestamp[] = units.map((text, i) => {
    const length = i === 20 ? 15 : i === units.length - 1 ? 9 : 0.2;
    const word = { text, start: t, end: t + length };
    t += length + 0.05;
    return word;
  });
  const segments = [{ start: 0, end: Math.ceil(t), text: LONG_TEXT, words }];
  const cues = buildCues(segments);
  assertWellFormed(cues, segments);
  for (const cue of cues) assert.ok(cue.end - cue.start <= 7 + 1e-9, `cue of ${(cue.end - cue.start).toFixed(2)} s: ${cue.lines.join(' ')}`);
  assert.equal(cues.map((c) => c.lines.join(' ')).join(' '), collapse(LONG_TEXT), 'nothing lost');
  // The stretched word's cue starts with it and shows for 7 s.
  const stretched = cues.find((c) => c.start === words[20].start || (c.start < words[20].start && c.end > words[20].start))!;
  assert.ok(stretched.end - words[20].start <= 7 + 1e-9);

  const [single] = buildCues([{ start: 0, end: 20, text: 'Well.', words: [{ text: 'Well', start: 1, end: 19.5 }] }]);
  assert.deepEqual([single.start, single.end, single.lines], [1, 8, ['Well.']]);
});

test('without word timestamps a cue stays within 7 s unless it holds a single word of a long, sparse segment', () => {
  const segments: SubtitleSegment[] = [
    { start: 0, end: 31.4, text: 'Hello there.' },
    { start: 31.4, end: 40, text: 'Yes.' },
    { start: 40, end: 100, text: LONG_TEXT },
  ];
  const cues = buildCues(segments);
  assertWellFormed(cues, segments);
  // Nothing says where in its 31.4 s "Hello there." was said: each word keeps its estimated share.
  assert.deepEqual(
    cues.slice(0, 3).map((c) => [c.start, c.end, c.lines.join(' ')]),
    [
      [0, 15.7, 'Hello'],
      [15.7, 31.4, 'there.'],
      [31.4, 40, 'Yes.'],
    ],
  );
  for (const cue of cues) {
    const words = cue.lines.join(' ').split(' ').length;
    assert.ok(cue.end - cue.start <= 7 + 1e-9 || words === 1, `a ${(cue.end - cue.start).toFixed(2)} s cue of ${words} words`);
  }
});

test('words that do not match the text: the cue text is rebuilt from the words', () => {
  const words: WordTimestamp[] = [
    { text: 'hello', start: 1, end: 1.4 },
    { text: '世', start: 1.5, end: 1.7 },
    { text: '界', start: 1.7, end: 1.9 },
    { text: 'again', start: 2, end: 2.5 },
  ];
  const cues = buildCues([{ start: 0, end: 3, text: 'something else entirely', words }]);
  assert.equal(cues.length, 1);
  assert.deepEqual(cues[0].lines, ['hello 世界 again']);
  assert.equal(cues[0].start, 1);
  assert.equal(cues[0].end, 2.5);
});

test('word times outside the segment are clamped into it', () => {
  const words: WordTimestamp[] = [
    { text: 'early', start: 0.5, end: 1 },
    { text: 'late', start: 250, end: 291 },
  ];
  const segments = [{ start: 2, end: 7, text: 'Early, late.', words }];
  const cues = buildCues(segments);
  assertWellFormed(cues, segments);
  assert.equal(cues[0].start, 2);
  assert.equal(cues.at(-1)!.end, 7);
});

test('several segments: empty ones give no cues, times stay monotonic and inside their segments', () => {
  const segments: SubtitleSegment[] = [
    { start: 0, end: 5, text: 'First segment. It is short.' },
    { start: 5, end: 9, text: '' },
    { start: 9, end: 9.5, text: '  \n ' },
    { start: 9.5, end: 40, text: LONG_TEXT.slice(0, 400) },
    { start: 40, end: 41, text: 'Yes.', words: [{ text: 'Yes', start: 40.1, end: 40.3 }] },
  ];
  const cues = buildCues(segments);
  assertWellFormed(cues, segments);
  assert.deepEqual(cues[0].lines, ['First segment. It is short.']);
  assert.ok(!cues.some((c) => c.start >= 5 && c.end <= 9.5));
  // The short last cue is stretched to the minimum duration, within its segment.
  const last = cues.at(-1)!;
  assert.deepEqual(last.lines, ['Yes.']);
  assert.equal(last.start, 40.1);
  assert.equal(last.end, 41);
  assert.deepEqual(buildCues([]), []);
  assert.deepEqual(buildCues([{ start: 0, end: 1, text: '' }]), []);
});

test('options bound lines and durations', () => {
  const segments = [{ start: 0, end: 60, text: LONG_TEXT }];
  const cues = buildCues(segments, { maxLineWidth: 30, maxLines: 1, maxCueSeconds: 3 });
  assertWellFormed(cues, segments, 30, 1);
  for (const cue of cues) assert.ok(cue.end - cue.start <= 3 + 1e-9);
  // A word longer than a line is cut by characters rather than overflowing.
  const long = buildCues([{ start: 0, end: 2, text: 'Pneumonoultramicroscopicsilicovolcanoconiosis' }], { maxLineWidth: 20 });
  assertWellFormed(long, [{ start: 0, end: 2, text: '' }], 20);
  assert.equal(long.flatMap((c) => c.lines).join(''), 'Pneumonoultramicroscopicsilicovolcanoconiosis');
});

test('bad input names the problem', () => {
  assert.throws(() => buildCues([{ start: 5, end: 2, text: 'x' }]), /segment 0 has invalid times/);
  assert.throws(() => buildCues([{ start: NaN, end: 2, text: 'x' }]), /segment 0 has invalid times/);
  assert.throws(() => buildCues([{ start: 0, end: 2, text: 'x' }], { maxLines: 0 }), /maxLines/);
  assert.throws(() => buildCues([{ start: 0, end: 2, text: 'x' }], { maxLineWidth: 2.5 }), /maxLineWidth/);
  assert.throws(() => buildCues([{ start: 0, end: 2, text: 'x' }], { maxCueSeconds: 0 }), /maxCueSeconds/);
  assert.throws(
    () => buildCues([{ start: 0, end: 2, text: 'x', words: [{ text: 'x', start: NaN, end: 1 }] }]),
    /segment 0, word 0 is invalid/,
  );
  assert.throws(() => formatSrt([{ start: 2, end: 1, lines: ['x'] }]), /cue 1 ends/);
});

test('WebVTT round trip through webvtt-parser', () => {
  const segments: SubtitleSegment[] = [
    { start: 0.0004, end: 60, text: LONG_TEXT + ' Tom & Jerry <3 -->' },
    { start: 60, end: 80, text: CHINESE },
    { start: 3 * 3600 + 25 * 60, end: 3 * 3600 + 25 * 60 + 4.5678, text: 'Three hours and twenty-five minutes in.' },
  ];
  const cues = buildCues(segments);
  const vtt = formatVtt(cues);
  assert.ok(vtt.startsWith('WEBVTT\n\n'));
  const parsed = new webvtt.WebVTTParser(entities).parse(vtt, 'subtitles');
  assert.deepEqual(parsed.errors, []);
  assert.equal(parsed.cues.length, cues.length);
  for (const [i, cue] of cues.entries()) {
    const p = parsed.cues[i];
    assert.equal(p.startTime, roundMs(cue.start));
    assert.equal(p.endTime, roundMs(cue.end));
    const text = p.tree.children.map((n) => (n.type === 'text' ? n.value : '')).join('');
    assert.equal(text, cue.lines.join('\n'));
  }
  assert.match(vtt, /\n03:25:00\.000 --> 03:25:04\.568\nThree hours and twenty-five minutes in\.\n\n$/);
  assert.match(vtt, /Tom &amp; Jerry &lt;3 --&gt;/);
  assert.equal(formatVtt([]), 'WEBVTT\n\n');
});

test('WebVTT accepts hours past 99', () => {
  const vtt = formatVtt([{ start: 360000, end: 360001.25, lines: ['a hundred hours'] }]);
  assert.equal(vtt, 'WEBVTT\n\n100:00:00.000 --> 100:00:01.250\na hundred hours\n\n');
  const parsed = new webvtt.WebVTTParser(entities).parse(vtt, 'subtitles');
  assert.deepEqual(parsed.errors, []);
  assert.equal(parsed.cues[0].startTime, 360000);
});

test('SRT round trip through srt-parser-2', () => {
  const segments: SubtitleSegment[] = [
    { start: 0, end: 60, text: LONG_TEXT },
    { start: 60, end: 80, text: CHINESE },
    { start: 3 * 3600 + 25 * 60, end: 3 * 3600 + 25 * 60 + 4.5678, text: 'Three hours and twenty-five minutes in.' },
  ];
  const cues = buildCues(segments);
  const srt = formatSrt(cues);
  const parsed = new SrtParser().fromSrt(srt);
  assert.equal(parsed.length, cues.length);
  for (const [i, cue] of cues.entries()) {
    assert.equal(parsed[i].id, String(i + 1));
    assert.equal(parsed[i].startSeconds, roundMs(cue.start));
    assert.equal(parsed[i].endSeconds, roundMs(cue.end));
    assert.equal(parsed[i].text, cue.lines.join('\n'));
  }
  assert.match(srt, /^1\n00:00:00,000 --> /);
  assert.ok(srt.endsWith('\n03:25:00,000 --> 03:25:04,568\nThree hours and twenty-five minutes in.\n\n'));
  assert.equal(formatSrt([]), '');
});

test('cues without text lines are skipped and numbering stays consecutive', () => {
  const srt = formatSrt([
    { start: 0, end: 1, lines: ['one'] },
    { start: 1, end: 2, lines: ['', '  '] },
    { start: 2, end: 3, lines: ['two\nlines'] },
  ]);
  assert.equal(srt, '1\n00:00:00,000 --> 00:00:01,000\none\n\n2\n00:00:02,000 --> 00:00:03,000\ntwo\nlines\n\n');
});

test('no cue ends where it starts, even when word times are clamped to the segment end', () => {
  const segments = [
    { start: 0, end: 10, text: 'First sentence here. Last.', words: [
      { text: 'First', start: 0.5, end: 1 }, { text: 'sentence', start: 1, end: 1.5 }, { text: 'here', start: 1.5, end: 2 },
      { text: 'Last', start: 12, end: 12 }, // outside the segment: clamped to 10
    ] },
    { start: 10, end: 20, text: 'Next.', words: [{ text: 'Next', start: 10, end: 10 }] },
    { start: 20, end: 20, text: 'Zero.' }, // a zero-length segment with text
  ];
  const cues = buildCues(segments);
  const ms = (t: number) => Math.round(t * 1000);
  for (const c of cues) assert.ok(ms(c.end) > ms(c.start), `cue ${JSON.stringify(c)} has no duration`);
  for (let i = 1; i < cues.length; i++) assert.ok(ms(cues[i].start) >= ms(cues[i - 1].end), 'cues overlap');
  const text = cues.flatMap((c) => c.lines).join(' ');
  for (const w of ['First', 'Last', 'Next', 'Zero']) assert.ok(text.includes(w), `${w} lost`);
  const parsed = new webvtt.WebVTTParser(entities).parse(formatVtt(cues), 'subtitles');
  assert.deepEqual(parsed.errors, []);
});
