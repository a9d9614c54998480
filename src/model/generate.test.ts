/**
 * Prefill grouping: which prompts share a left-padded pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prefillGroups } from './generate.ts';

test('prefill groups: prompts of different lengths are not padded to the longest', () => {
  // The three segments of the 60 s benchmark recording.
  assert.deepEqual(prefillGroups([334, 283, 205]), [[0], [1], [2]]);
  assert.deepEqual(prefillGroups([205, 334, 283]), [[1], [2], [0]]);
});

test('prefill groups: equal or nearly equal prompts share passes, longest first', () => {
  assert.deepEqual(prefillGroups([800, 800, 800, 800]), [[0, 1, 2, 3]]);
  // Within 32 positions (or 1/16 of the longest) of the group's longest prompt.
  assert.deepEqual(prefillGroups([40, 70, 60, 100, 39]), [[3, 1], [2, 0, 4]]);
  assert.deepEqual(prefillGroups([1000, 940, 930]), [[0, 1], [2]]);
  assert.deepEqual(prefillGroups([5]), [[0]]);
  assert.deepEqual(prefillGroups([]), []);
});

test('prefill groups: every prompt lands in exactly one group', () => {
  let s = 7;
  const lengths = Array.from({ length: 50 }, () => 1 + ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % 900));
  const groups = prefillGroups(lengths);
  assert.deepEqual(groups.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
  for (const g of groups) {
    const longest = lengths[g[0]];
    for (const i of g) assert.ok(lengths[i] <= longest && longest - lengths[i] <= Math.max(32, longest / 16), `${lengths[i]} in a group led by ${longest}`);
  }
});
