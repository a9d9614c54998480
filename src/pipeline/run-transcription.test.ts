import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tokenBudget } from './run-transcription.ts';

test('the token budget grows with the duration and respects an explicit cap', () => {
  assert.equal(tokenBudget(20), 20 * 12 + 32);
  assert.ok(tokenBudget(60) > tokenBudget(20));
  assert.equal(tokenBudget(60, 100), 100);
  assert.equal(tokenBudget(1, 1000), 12 + 32);
});
