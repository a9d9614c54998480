import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lastWordEnd, stableDelta } from './live-stream.ts';

test('stableDelta: what two updates agree on, to a word boundary, never retracted', () => {
  assert.deepEqual(stableDelta('', '', 'And so my'), { delta: '', sent: '' }, 'nothing agreed yet');
  assert.deepEqual(stableDelta('', 'And so my fel', 'And so my fellow'), { delta: 'And so my', sent: 'And so my' }, 'a word still growing is held back');
  assert.deepEqual(stableDelta('And so my', 'And so my fellow', 'And so my fellow Americans, ask'), { delta: '', sent: 'And so my' }, '"fellow" may still grow in the earlier update');
  assert.deepEqual(stableDelta('And so my', 'And so my fellow Americans, as', 'And so my fellow Americans, ask not'), { delta: ' fellow Americans,', sent: 'And so my fellow Americans,' });
  assert.deepEqual(stableDelta('And so my', 'And so my fellow Americans', 'And so, my fellow Americans'), { delta: '', sent: 'And so my' }, 'a rewrite of sent text is held back');
  // Without white space (Chinese, Japanese): each character is a word of its own.
  assert.deepEqual(stableDelta('', '我们今', '我们今天去'), { delta: '我们今', sent: '我们今' });
  assert.deepEqual(stableDelta('我们今', '我们今天去', '我们今天去公园。'), { delta: '天去', sent: '我们今天去' });
  assert.deepEqual(stableDelta('', '今日は', '今日は、'), { delta: '今日は', sent: '今日は' });
  assert.deepEqual(stableDelta('', '我用iPho', '我用iPhone'), { delta: '我用', sent: '我用' }, 'a Latin word after them may still grow');
  assert.deepEqual(stableDelta('我用', '我用iPhone拍', '我用iPhone拍照'), { delta: 'iPhone拍', sent: '我用iPhone拍' });
});

test('lastWordEnd: before the last word, or after the last character written without spaces', () => {
  assert.equal(lastWordEnd(''), 0);
  assert.equal(lastWordEnd('And so'), 3);
  assert.equal(lastWordEnd('And so '), 6);
  assert.equal(lastWordEnd('word'), 0);
  assert.equal(lastWordEnd('你好'), 2);
  assert.equal(lastWordEnd('𠀀x'), 2, 'a character outside the BMP counts as its two UTF-16 units');
  assert.equal(lastWordEnd('你好 wor'), 2);
  assert.equal(lastWordEnd('hello 你好'), 8);
});
