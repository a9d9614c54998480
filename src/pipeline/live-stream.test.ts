import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stableDelta } from './live-stream.ts';

test('stableDelta: what two updates agree on, to a word boundary, never retracted', () => {
  assert.deepEqual(stableDelta('', '', 'And so my'), { delta: '', sent: '' }, 'nothing agreed yet');
  assert.deepEqual(stableDelta('', 'And so my fel', 'And so my fellow'), { delta: 'And so my', sent: 'And so my' }, 'a word still growing is held back');
  assert.deepEqual(stableDelta('And so my', 'And so my fellow', 'And so my fellow Americans, ask'), { delta: '', sent: 'And so my' }, '"fellow" may still grow in the earlier update');
  assert.deepEqual(stableDelta('And so my', 'And so my fellow Americans, as', 'And so my fellow Americans, ask not'), { delta: ' fellow Americans,', sent: 'And so my fellow Americans,' });
  assert.deepEqual(stableDelta('And so my', 'And so my fellow Americans', 'And so, my fellow Americans'), { delta: '', sent: 'And so my' }, 'a rewrite of sent text is held back');
  // Without white space (Chinese, Japanese): no word boundary, nothing until the final transcript.
  assert.deepEqual(stableDelta('', '我们今天', '我们今天去'), { delta: '', sent: '' });
});
