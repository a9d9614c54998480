/** Settled partial text: always a prefix of the final parse, and all of ordinary text. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAsrOutput } from './output-parser.ts';
import { settledText } from './partial-text.ts';

test('ordinary text settles as it comes; the header, a trailing space and a cut character wait', () => {
  assert.equal(settledText('language Eng'), '');
  assert.equal(settledText('language English<asr_text>'), '');
  assert.equal(settledText('language English<asr_text> Hello world'), 'Hello world');
  // "r_text> Hello wo" + "r" could be the start of that pattern's second copy: one character waits.
  assert.equal(settledText('language English<asr_text> Hello wor'), 'Hello wo');
  assert.equal(settledText('language English<asr_text> Hello world. '), 'Hello world.');
  assert.equal(settledText('language English<asr_text>Grüß\uFFFD'), 'Grüß');
  assert.equal(settledText('language None<asr_text>'), '');
  assert.equal(settledText(' Hello world', 'English'), 'Hello world');
  assert.equal(settledText(' Hello there', 'English'), 'Hello ther'); // "er" + "e" may repeat on
});

test('a repetition settles up to its first copy until it ends', () => {
  const loop = 'I think '.repeat(8);
  assert.equal(settledText(`language English<asr_text>So ${loop}`), 'So I think');
  const ended = `language English<asr_text>So ${'I think '.repeat(30)}and then`;
  assert.equal(parseAsrOutput(ended).text, 'So I think and then');
  // What follows a collapsed repetition waits for the segment's end (the final parse gives it).
  assert.equal(settledText(ended), 'So I think');
  assert.equal(settledText('language English<asr_text>Noooooo'), 'No');
});

test('a settled text is a prefix of the final parse, for every prefix of repetitive outputs', () => {
  let seed = 7;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  let checked = 0;
  for (let t = 0; t < 1500; t++) {
    const alphabet = ['a', 'b', ' ', 'c', 'é'].slice(0, 2 + Math.floor(rnd() * 4));
    const pick = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join('');
    let text = '';
    for (let p = 1 + Math.floor(rnd() * 6); p > 0; p--) text += rnd() < 0.5 ? pick(1 + Math.floor(rnd() * 4)).repeat(1 + Math.floor(rnd() * 30)) : pick(Math.floor(rnd() * 15));
    const forced = rnd() < 0.3 ? 'English' : undefined;
    const raw = forced ? text : `language English<asr_text>${text}`;
    const final = parseAsrOutput(raw, forced).text;
    for (let c = 0; c <= raw.length; c++) {
      const settled = settledText(raw.slice(0, c), forced);
      assert.ok(final.startsWith(settled), JSON.stringify({ raw, c, settled, final }));
      checked++;
    }
    assert.equal(settledText(raw + '\n\n.', forced).length >= 0, true);
  }
  assert.ok(checked > 100_000);
});
