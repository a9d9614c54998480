import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batchSizes, tokenBudget } from './run-transcription.ts';

test('segments are grouped into as few batches as possible, of equal sizes', () => {
  assert.deepEqual(batchSizes(0, 16), []);
  assert.deepEqual(batchSizes(1, 16), [1]);
  assert.deepEqual(batchSizes(16, 16), [16]);
  assert.deepEqual(batchSizes(20, 16), [10, 10]);
  assert.deepEqual(batchSizes(33, 16), [11, 11, 11]);
  assert.deepEqual(batchSizes(35, 16), [12, 12, 11]);
  assert.deepEqual(batchSizes(5, 1), [1, 1, 1, 1, 1]);
  for (let n = 1; n <= 70; n++) {
    for (const max of [1, 3, 8, 16]) {
      const sizes = batchSizes(n, max);
      assert.equal(sizes.reduce((a, b) => a + b, 0), n, `${n} segments, max ${max}: all placed`);
      assert.equal(sizes.length, Math.ceil(n / max), `${n} segments, max ${max}: fewest batches`);
      assert.ok(Math.max(...sizes) <= max && Math.max(...sizes) - Math.min(...sizes) <= 1, `${n}/${max}: ${sizes}`);
    }
  }
});

test('the token budget grows with the duration and respects an explicit cap', () => {
  assert.equal(tokenBudget(20), 20 * 12 + 32);
  assert.ok(tokenBudget(60) > tokenBudget(20));
  assert.equal(tokenBudget(60, 100), 100);
  assert.equal(tokenBudget(1, 1000), 12 + 32);
});
