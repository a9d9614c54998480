/**
 * Prefill grouping: which prompts share a left-padded pass; the room prefill leaves for steps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prefillGroups, prefillPrompts } from './generate.ts';
import { AsrModel } from '../asr/asr-model.ts';
import { goldenPath } from '../../testing/shared.ts';

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

test('prefill reserves cache room for the tokens to be generated (tiny-a)', async () => {
  const model = await AsrModel.load(goldenPath('tiny-a', 'checkpoint'), { device: 'cpu', quant: 'none', threads: 1, cacheDir: false });
  try {
    const { hiddenSize: H, kvHeads, headDim, layers } = model.config.text;
    const prompts = [0, 1].map(() => ({ embeds: new Float32Array(20 * H).fill(0.01), length: 20 }));
    const opts = { wanted: () => [19], onLogits: () => {} };
    const [plain] = await prefillPrompts(model.decoder, prompts, opts);
    const [reserved] = await prefillPrompts(model.decoder, prompts, { ...opts, extraPositions: 300 });
    // Values of all layers share one buffer: room for 20 + 300 positions, rounded to the step.
    const bytes = (c: typeof plain.cache) => c.values[0].buffer.byteLength / (layers * 2 * kvHeads * headDim * c.values[0].BYTES_PER_ELEMENT);
    assert.ok(bytes(reserved.cache) >= 320, `room for ${bytes(reserved.cache)} positions`);
    assert.ok(bytes(plain.cache) < 320, `room for ${bytes(plain.cache)} positions without a reservation`);
    assert.deepEqual(reserved.cache.read(1, 1, 0, 19), plain.cache.read(1, 1, 0, 19));
  } finally {
    await model.release();
  }
});
