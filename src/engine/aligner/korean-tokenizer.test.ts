import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BUNDLED_KOREAN_DICTIONARY, KoreanLTokenizer, bundledKoreanTokenizer, parseKoreanDictionary } from './korean-tokenizer.ts';
import { goldenPath } from '../../testing/shared.ts';

test('the bundled dictionary is the official file, byte for byte', () => {
  const bundled = readFileSync(BUNDLED_KOREAN_DICTIONARY);
  const official = readFileSync(goldenPath('aligner-a', 'assets', 'korean_dict_jieba.dict'));
  assert.ok(bundled.equals(official));
  assert.equal(createHash('sha256').update(bundled).digest('hex'), 'cc157a9ab78f92bf11ed98a69b285768d6627cf5cd57a581e6c06693effce37d');
});

test('the bundled dictionary yields the words the official loader sees', () => {
  // 21,009 lines; Python's {line.split()[0]} over them has 17,968 distinct words.
  const tokenizer = bundledKoreanTokenizer();
  assert.equal(tokenizer.size, 17968);
  assert.equal(bundledKoreanTokenizer(), tokenizer, 'loaded once');
});

test('dictionary parsing takes the first field of each non-empty line', () => {
  const words = parseKoreanDictionary('한국 10 n\r\n\n  사람\t3 n  \r공부 1\n');
  assert.deepEqual([...words].sort(), ['공부', '사람', '한국'].sort());
});

test('LTokenizer rule: longest dictionary prefix of at least 2 code points, else the whole word', () => {
  const t = new KoreanLTokenizer(['한국', '한국사', '공부', '가', '아름다운']);
  assert.deepEqual(t.splitWord('한국사람'), ['한국사', '람']);
  assert.deepEqual(t.splitWord('한국어를'), ['한국', '어를']);
  assert.deepEqual(t.splitWord('공부하고'), ['공부', '하고']);
  // Words of one or two code points are never split, even when a prefix is a dictionary word.
  assert.deepEqual(t.splitWord('가나'), ['가나']);
  assert.deepEqual(t.splitWord('한'), ['한']);
  // A one-code-point prefix never counts; no scoring prefix keeps the word whole.
  assert.deepEqual(t.splitWord('가나다라'), ['가나다라']);
  // The whole word in the dictionary: no empty right part.
  assert.deepEqual(t.splitWord('아름다운'), ['아름다운']);
  // Punctuation is part of the raw word the rule sees.
  assert.deepEqual(t.splitWord('한국사,'), ['한국사', ',']);
  assert.deepEqual(t.splitWord(''), []);
});

test('missing dictionary file gives a clear error', () => {
  assert.throws(() => KoreanLTokenizer.fromDictionaryFile('/nonexistent/korean.dict'), /cannot read the Korean aligner dictionary/);
});
