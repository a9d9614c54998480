import { test } from 'node:test';
import assert from 'node:assert/strict';
import { speechRegions } from './speech-regions.ts';

const W = 512;
const P = (...values: number[]) => Float32Array.from(values);
const repeat = (value: number, count: number) => new Array<number>(count).fill(value);

test('hysteresis: speech starts at ≥ threshold, ends where the probability falls below threshold − 0.15 for minSilenceMs', () => {
  const probs = P(
    0.1, 0.1, // 0-1: before speech
    0.5, 0.9, // 2: starts at exactly the threshold
    ...repeat(0.4, 6), // 4-9: between the two thresholds for 192 ms: still speech
    0.2, 0.45, 0.2, 0.2, 0.2, // 10-14: a 0.45 (between the thresholds) does not restart the silence: ends at 10
    0.1, // 15
    0.7, 0.7, // 16: speech again
    0.3, 0.3, 0.3, // 18-20: 96 ms under 0.35, less than minSilenceMs
    0.5, 0.9, 0.9, // 21: back above the threshold, cancelling that end; open to the end of the audio
  );
  const total = 24 * W - 100;
  assert.equal(probs.length, 24);
  assert.deepEqual(speechRegions(probs, total, { threshold: 0.5, minSilenceMs: 100, minSpeechMs: 0, padMs: 0 }), [
    { start: 2 * W, end: 10 * W },
    { start: 16 * W, end: total },
  ]);
  // Threshold 0.6: speech starts at window 3, and 0.4 is under 0.6 − 0.15, so it ends at window 4;
  // the 0.5 at window 21 lies between the thresholds and does not cancel the end, the 0.9 at 22 does.
  assert.deepEqual(speechRegions(probs, total, { threshold: 0.6, minSilenceMs: 100, minSpeechMs: 0, padMs: 0 }), [
    { start: 3 * W, end: 4 * W },
    { start: 16 * W, end: total },
  ]);
  // With 64 ms enough to end speech, the dip at 18-20 ends the second region.
  assert.deepEqual(speechRegions(probs, total, { threshold: 0.6, minSilenceMs: 64, minSpeechMs: 0, padMs: 0 }), [
    { start: 3 * W, end: 4 * W },
    { start: 16 * W, end: 18 * W },
    { start: 22 * W, end: total },
  ]);
});

test('the exit threshold never drops under 0.01', () => {
  // threshold 0.1: speech ends under 0.01, not under -0.05 (which nothing is).
  const probs = P(0.2, 0.2, 0.005, 0.005, 0.005, 0.005, 0.005, 0.005);
  assert.deepEqual(speechRegions(probs, 8 * W, { threshold: 0.1, minSilenceMs: 64, minSpeechMs: 0, padMs: 0 }), [{ start: 0, end: 2 * W }]);
});

test('regions not longer than minSpeechMs are dropped (default 250 ms)', () => {
  // 8 windows = 4096 samples = 256 ms, 9 windows = 288 ms.
  const probs = P(...repeat(0.9, 8), 0.1, ...repeat(0.9, 9), 0.1);
  const total = probs.length * W;
  const opts = { threshold: 0.5, minSilenceMs: 0, padMs: 0 };
  assert.deepEqual(speechRegions(probs, total, { ...opts, minSpeechMs: 256 }), [{ start: 9 * W, end: 18 * W }], '256 ms is not longer than 256 ms');
  assert.deepEqual(speechRegions(probs, total, opts), [
    { start: 0, end: 8 * W },
    { start: 9 * W, end: 18 * W },
  ]);
  // Speech still open at the end counts to the end of the audio, and is dropped when short.
  const tail = P(0.1, 0.1, 0.1, 0.9);
  assert.deepEqual(speechRegions(tail, 3 * W + 10, { threshold: 0.5, minSilenceMs: 0 }), []);
  assert.deepEqual(speechRegions(tail, 3 * W + 10, { threshold: 0.5, minSilenceMs: 0, minSpeechMs: 0, padMs: 0 }), [{ start: 3 * W, end: 3 * W + 10 }]);
});

test('padding: padMs on each side, never outside the audio, halves of a gap shorter than two pads', () => {
  const probs = P(0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9);
  const total = 10 * W - 7;
  const opts = { threshold: 0.5, minSilenceMs: 0, minSpeechMs: 0 };
  assert.deepEqual(speechRegions(probs, total, { ...opts, padMs: 0 }), [
    { start: 0, end: W },
    { start: 2 * W, end: 3 * W },
    { start: 7 * W, end: total },
  ]);
  // 30 ms = 480 samples; the first gap (512) is shorter than 960: each side takes 256.
  assert.deepEqual(speechRegions(probs, total, opts), [
    { start: 0, end: W + 256 },
    { start: W + 256, end: 3 * W + 480 },
    { start: 7 * W - 480, end: total },
  ]);
  // 100 ms = 1600 samples: the second gap (2048) is now shorter than two pads too.
  assert.deepEqual(speechRegions(probs, total, { ...opts, padMs: 100 }), [
    { start: 0, end: W + 256 },
    { start: W + 256, end: 3 * W + 1024 },
    { start: 3 * W + 1024, end: total },
  ]);
});

test('no speech, all speech, no audio', () => {
  const opts = { threshold: 0.5, minSilenceMs: 100 };
  assert.deepEqual(speechRegions(new Float32Array(100), 100 * W, opts), []);
  assert.deepEqual(speechRegions(new Float32Array(100).fill(0.99), 100 * W - 1, opts), [{ start: 0, end: 100 * W - 1 }]);
  assert.deepEqual(speechRegions(new Float32Array(0), 0, opts), []);
});

test('other window sizes and rates', () => {
  // 8 kHz Silero windows: 256 samples; 100 ms of silence = 800 samples = 4 windows (3.125).
  const probs = P(0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1);
  assert.deepEqual(speechRegions(probs, 13 * 256, { threshold: 0.5, minSilenceMs: 100, windowSamples: 256, sampleRate: 8000, padMs: 10 }), [{ start: 0, end: 8 * 256 + 80 }]);
});

test('refuses probabilities that do not match the audio, and bad options', () => {
  assert.throws(() => speechRegions(new Float32Array(3), 3 * W + 1, { threshold: 0.5, minSilenceMs: 100 }), /3 probabilities for 1537 samples: expected 4/);
  assert.throws(() => speechRegions(new Float32Array(4), 3 * W, { threshold: 0.5, minSilenceMs: 100 }), /expected 3/);
  for (const threshold of [0, 1, -0.1, Number.NaN]) {
    assert.throws(() => speechRegions(new Float32Array(1), W, { threshold, minSilenceMs: 100 }), /threshold must lie between 0 and 1/);
  }
  assert.throws(() => speechRegions(new Float32Array(1), W, { threshold: 0.5, minSilenceMs: -1 }), /minSilenceMs/);
  assert.throws(() => speechRegions(new Float32Array(1), W, { threshold: 0.5, minSilenceMs: 100, padMs: Number.POSITIVE_INFINITY }), /padMs/);
});
