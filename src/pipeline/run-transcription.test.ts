import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AUDIO_DIR, goldenPath } from '../testing/shared.ts';
import { decodeProgress, SAMPLE_RATE, tokenBudget } from './run-transcription.ts';
import { createTranscriber } from './transcriber.ts';

test('the token budget grows with the duration and respects an explicit cap', () => {
  assert.equal(tokenBudget(20), 20 * 12 + 32);
  assert.ok(tokenBudget(60) > tokenBudget(20));
  assert.equal(tokenBudget(60, 100), 100);
  assert.equal(tokenBudget(1, 1000), 12 + 32);
});

/** Reports of a progress run as [done, total] pairs. */
function recorder() {
  const seen: [number, number][] = [];
  return { seen, report: (done: number, total: number) => void seen.push([done, total]) };
}

test('decode progress advances with the tokens of segments decoding together, never goes back, and ends at the duration', () => {
  // Two 10 s segments of a 20 s recording, decoding side by side (expected: 45 tokens each).
  const pieces = [
    { start: 0, end: 10 * SAMPLE_RATE },
    { start: 10 * SAMPLE_RATE, end: 20 * SAMPLE_RATE },
  ];
  const { seen, report } = recorder();
  const p = decodeProgress(pieces, [152, 152], 20, 0.95, report);
  assert.deepEqual(seen, [[0, 20]], 'starts at 0');
  for (let n = 1; n <= 30; n++) {
    p.tokens(0, n);
    p.tokens(1, n);
  }
  const mid = seen.at(-1)![0];
  assert.ok(mid > 5 && mid < 15, `30 of 45 expected tokens each: ${mid} s of 20`);
  assert.ok(seen.length > 20, `${seen.length} reports while decoding`);
  // Longer than expected: held at the decoded share until the row stops.
  for (let n = 31; n <= 100; n++) p.tokens(0, n);
  p.segment(1, 0.95);
  assert.ok(Math.abs(seen.at(-1)![0] - 19) < 0.02, `both rows stopped: ${seen.at(-1)![0]}`);
  p.tokens(1, 3); // late and smaller: ignored
  p.segment(0, 1);
  p.segment(1, 1);
  p.end();
  assert.deepEqual(seen.at(-1), [20, 20], 'ends exactly at the duration');
  for (let i = 1; i < seen.length; i++) {
    assert.equal(seen[i][1], 20);
    assert.ok(seen[i][0] > seen[i - 1][0], `report ${i} does not advance: ${seen[i - 1][0]} -> ${seen[i][0]}`);
  }
  assert.ok(seen.length <= 1001, 'at most one report per 0.1 %');
});

test('decode progress without segments (VAD found no speech) still ends at the duration', () => {
  const { seen, report } = recorder();
  decodeProgress([], [], 7, 0.95, report).end();
  assert.deepEqual(seen, [
    [0, 7],
    [7, 7],
  ]);
});

test('a minute cut into 10 s segments reports progress many times while it decodes, in order', async () => {
  const t = createTranscriber({
    model: goldenPath('tiny-a', 'checkpoint'),
    quant: 'none',
    device: 'cpu',
    threads: 2,
    maxBatchSize: 8,
    maxQueue: 4,
    cacheDir: false,
    segmentSeconds: 10,
  });
  try {
    await t.whenReady();
    const seen: [number, number][] = [];
    const segmentsAt: number[] = [];
    const result = await t.transcribeFile(join(AUDIO_DIR, 'notld', '60s_i_dont_want_anyones_life_on_my_hands.wav'), {
      onProgress: (done, total) => seen.push([done, total]),
      onSegment: () => segmentsAt.push(seen.length),
    });
    const duration = result.duration;
    assert.ok(result.segments.length >= 6, `${result.segments.length} segments`);
    assert.deepEqual(seen[0], [0, duration], 'starts at 0');
    assert.deepEqual(seen.at(-1), [duration, duration], 'ends at the duration');
    for (let i = 1; i < seen.length; i++) {
      assert.equal(seen[i][1], duration);
      assert.ok(seen[i][0] >= seen[i - 1][0], `progress went back: ${seen[i - 1][0]} -> ${seen[i][0]}`);
    }
    const between = new Set(seen.map(([done]) => done).filter((done) => done > 0 && done < duration));
    assert.ok(between.size > 20, `${between.size} distinct values between 0 and the end`);
    // Progress moves before the first segment is out, not only as segments finish.
    const beforeFirst = seen.slice(0, segmentsAt[0]).filter(([done]) => done > 0);
    assert.ok(beforeFirst.length > 2, `${beforeFirst.length} reports before the first segment`);
  } finally {
    await t.close();
  }
});
