import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanUnit, isCjkIdeograph, isKeptChar, splitOnWhitespace, splitWordUnits } from './word-units.ts';
import { goldenPath, readJson } from '../../testing/shared.ts';

interface SplitCase {
  name: string;
  language: string;
  text: string;
  word_list: string[];
}

const unitCases = readJson<{ split: SplitCase[] }>(goldenPath('aligner-a', 'unit_cases.json'));
const index = readJson<{ cases: { case: string; text: string; language: string; word_list: string[] }[] }>(
  goldenPath('aligner-a', 'index.json'),
);

test('unit_cases.json split: every text gives the golden word list', () => {
  assert.equal(unitCases.split.length, 10);
  for (const c of unitCases.split) {
    assert.deepEqual(splitWordUnits(c.text, c.language), c.word_list, c.name);
  }
});

test('index.json: every aligner case gives the golden word list', () => {
  assert.ok(index.cases.length >= 6);
  for (const c of index.cases) {
    assert.deepEqual(splitWordUnits(c.text, c.language), c.word_list, c.case);
  }
});

test('whitespace is Python str.split(), not JavaScript \\s', () => {
  // U+001C..U+001F and U+0085 split in Python (not in \s); U+FEFF splits in \s (not in Python).
  assert.deepEqual(splitOnWhitespace('a\u001cb\u0085c\ufeffd\u200be'), ['a', 'b', 'c\ufeffd\u200be']);
  assert.deepEqual(splitOnWhitespace('  \t\n '), []);
  assert.deepEqual(splitOnWhitespace(' x\u3000\u2028y\u00a0 '), ['x', 'y']);
  assert.deepEqual(splitWordUnits('one\u001ftwo\ufeffthree', 'English'), ['one', 'twothree']);
});

test('kept characters: letters, numbers and the ASCII apostrophe only', () => {
  for (const ch of ['a', 'É', 'ß', '我', 'ㄱ', '٣', '½', "'", '\u{20000}']) assert.ok(isKeptChar(ch), ch);
  for (const ch of ['\u2019', '-', '.', '\u0301', '😀', '\ufffd', '@', ' ']) assert.ok(!isKeptChar(ch), ch);
  assert.equal(cleanUnit('state-of-the-art'), 'stateoftheart');
  assert.equal(cleanUnit('don\u2019t'), 'dont');
  assert.equal(cleanUnit('e\u0301'), 'e');
  // A lone surrogate is category Cs and is dropped, as Python drops it.
  assert.equal(cleanUnit('a\ud800b'), 'ab');
});

test('CJK ideograph ranges are exactly the official ones', () => {
  for (const cp of [0x4e00, 0x9fff, 0x3400, 0x4dbf, 0x20000, 0x2a6df, 0x2a700, 0x2b73f, 0x2b740, 0x2b81f, 0x2b820, 0x2ceaf, 0xf900, 0xfaff]) {
    assert.ok(isCjkIdeograph(cp), cp.toString(16));
  }
  for (const cp of [0x4dff, 0xa000, 0x33ff, 0x2a6e0, 0x2ceb0, 0x2f800, 0x3007, 0x30ab, 0xac00, 0xf8ff, 0xfb00]) {
    assert.ok(!isCjkIdeograph(cp), cp.toString(16));
  }
});

test('characters outside the BMP count as one code point', () => {
  assert.deepEqual(splitWordUnits('\u{20000}\u{2a700}x\u{1f0bb}y', 'Chinese'), ['\u{20000}', '\u{2a700}', 'xy']);
});

test('language dispatch is case-insensitive and untrimmed; unknown languages use the space rule', () => {
  assert.deepEqual(splitWordUnits('한국사람', 'KOREAN'), ['한국사', '람']);
  // " korean" is not "korean" for the official code: the whole word stays one unit.
  assert.deepEqual(splitWordUnits('한국사람', ' korean'), ['한국사람']);
  assert.deepEqual(splitWordUnits('Hello, 世界', 'Klingon'), ['Hello', '世', '界']);
});

test('Japanese uses ICU word segmentation; units are the cleaned text, in order', () => {
  const text = '私は東京に住んでいます。今日はいい天気ですね、Qwen3 ASRモデル！';
  const units = splitWordUnits(text, 'Japanese');
  assert.ok(units.length >= 10, JSON.stringify(units));
  for (const u of units) assert.equal(cleanUnit(u), u);
  assert.equal(units.join(''), cleanUnit(text));
  assert.ok(units.includes('東京'), JSON.stringify(units));
  assert.ok(units.includes('Qwen3'), JSON.stringify(units));
  assert.deepEqual(splitWordUnits('。、！', 'japanese'), []);
});

test('bad arguments name the problem', () => {
  assert.throws(() => splitWordUnits('text', null as unknown as string), /language must be a string/);
  assert.throws(() => splitWordUnits(undefined as unknown as string, 'English'), /text must be a string/);
});
