import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectAndFixRepetitions, normalizeLanguageName, parseAsrOutput } from './output-parser.ts';
import { goldenPath, readJson } from '../../testing/shared.ts';

interface ParserCase {
  raw: string;
  user_language: string | null;
  expected: [string, string];
  fixed_repetitions: string;
}

interface AsrCase {
  case: string;
  language: string | null;
  decoded_text: string;
  parsed_language: string;
  parsed_text: string;
}

test('every parser_cases.json case: parse result and repetition fix', () => {
  const cases = readJson(goldenPath('tiny-a', 'parser_cases.json')) as ParserCase[];
  assert.equal(cases.length, 14);
  for (const c of cases) {
    const parsed = parseAsrOutput(c.raw, c.user_language ?? undefined);
    assert.deepEqual([parsed.language, parsed.text], c.expected, JSON.stringify(c.raw));
    // The golden is the fix applied to the stripped string, as parse_asr_output does.
    assert.equal(detectAndFixRepetitions(c.raw.trim()), c.fixed_repetitions, JSON.stringify(c.raw));
  }
});

test('parseAsrOutput gives parsed_language / parsed_text of every tiny-a case', () => {
  const cases = readJson(goldenPath('tiny-a', 'index.json')).cases as AsrCase[];
  assert.equal(cases.length, 18);
  for (const c of cases) {
    const parsed = parseAsrOutput(c.decoded_text, c.language ?? undefined);
    assert.deepEqual(parsed, { language: c.parsed_language, text: c.parsed_text }, c.case);
  }
});

// Expected values below were produced with the official functions (golden/qwen3_asr_reference.py).
test('repetition fix counts code points, not UTF-16 units', () => {
  assert.equal(detectAndFixRepetitions('😀'.repeat(25)), '😀');
  assert.equal(detectAndFixRepetitions('Q' + '\u{20000}ab'.repeat(20) + 'xyz'), 'Q\u{20000}abxyz');
  // 40 code points (60 UTF-16 units): only position 0 is scanned, so the run at 1 stays.
  const astral = 'Q' + '😀'.repeat(20) + 'ABCDEFGHIJKLMNOPQRS';
  assert.equal(detectAndFixRepetitions(astral), astral);
});

test('repetition fix: the scan stops 2·threshold characters before the end; later patterns are fixed too', () => {
  assert.equal(detectAndFixRepetitions('x'.repeat(20) + 'ABCDEFGHIJKLMNOPQRST'), 'xABCDEFGHIJKLMNOPQRST');
  const late = 'Q' + 'x'.repeat(20) + 'ABCDEFGHIJKLMNOPQRS';
  assert.equal(detectAndFixRepetitions(late), late);
  assert.equal(detectAndFixRepetitions('ab'.repeat(25) + 'cd'.repeat(25) + 'e'), 'abcde');
  assert.equal(detectAndFixRepetitions('x'.repeat(21) + 'y'.repeat(20)), 'x' + 'y'.repeat(20)); // run of exactly 20 is kept
  assert.equal(detectAndFixRepetitions('a'.repeat(30), 5), 'a');
  assert.throws(() => detectAndFixRepetitions('abc', 0), /threshold must be a positive integer/);
});

test('parseAsrOutput strips Python whitespace, splits Python lines', () => {
  assert.deepEqual(parseAsrOutput('\uFEFFx'), { language: '', text: '\uFEFFx' }); // U+FEFF is not whitespace to Python
  assert.deepEqual(parseAsrOutput('\x1cx\x1f'), { language: '', text: 'x' });
  assert.deepEqual(parseAsrOutput('meta\x1clanguage gERMAN\x1d<asr_text> hi '), { language: 'German', text: 'hi' });
  assert.deepEqual(parseAsrOutput('language \u{10428}\u{10400}X<asr_text>ok'), { language: '\u{10400}\u{10428}x', text: 'ok' });
  assert.deepEqual(parseAsrOutput('language <asr_text>text'), { language: '', text: 'text' });
  assert.deepEqual(parseAsrOutput('   '), { language: '', text: '' });
  assert.deepEqual(parseAsrOutput('  language English<asr_text> hi  ', 'German'), { language: 'German', text: 'language English<asr_text> hi' });
});

test('normalizeLanguageName: first code point upper, rest lower', () => {
  assert.equal(normalizeLanguageName('cHINese'), 'Chinese');
  assert.equal(normalizeLanguageName('  english '), 'English');
  assert.equal(normalizeLanguageName('\u{10428}\u{10400}x'), '\u{10400}\u{10428}x');
  assert.throws(() => normalizeLanguageName(' \t'), /language name is empty/);
});
