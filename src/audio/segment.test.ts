import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIO_DIR } from '../testing/shared.ts';
import { splitAtQuietPoints, type AudioSegment } from './segment.ts';
import { decodeWav } from './wav.ts';

const SR = 16000;

/** Every notld clip, twice over, end to end: ~18.7 minutes of real film audio (16 kHz mono). */
function longRecording(): Float32Array {
  const dir = join(AUDIO_DIR, 'notld');
  const clips = readdirSync(dir)
    .filter((f) => f.endsWith('.wav'))
    .sort()
    .map((f) => {
      const wav = decodeWav(new Uint8Array(readFileSync(join(dir, f))), f);
      assert.equal(wav.format.sampleRate, SR, f);
      return wav.channelData[0];
    });
  const total = 2 * clips.reduce((a, c) => a + c.length, 0);
  const out = new Float32Array(total);
  let o = 0;
  for (let r = 0; r < 2; r++) {
    for (const c of clips) {
      out.set(c, o);
      o += c.length;
    }
  }
  return out;
}

const recording = longRecording();

function rms(x: Float32Array, a: number, b: number): number {
  a = Math.max(0, a);
  b = Math.min(x.length, b);
  let s = 0;
  for (let i = a; i < b; i++) s += x[i] * x[i];
  return Math.sqrt(s / Math.max(1, b - a));
}

/** Median RMS of consecutive 100 ms windows: the recording's typical level. */
function medianRms(x: Float32Array): number {
  const levels: number[] = [];
  for (let i = 0; i + 1600 <= x.length; i += 1600) levels.push(rms(x, i, i + 1600));
  levels.sort((a, b) => a - b);
  return levels[Math.floor(levels.length / 2)];
}

function assertTiles(segments: AudioSegment[], n: number, sr: number): void {
  assert.ok(segments.length > 0, 'no segments');
  assert.equal(segments[0].start, 0);
  assert.equal(segments.at(-1)!.end, n);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    assert.ok(s.end > s.start, `segment ${i} is empty`);
    assert.equal(s.offsetSeconds, s.start / sr, `segment ${i} offset`);
    if (i > 0) assert.equal(s.start, segments[i - 1].end, `gap or overlap before segment ${i}`);
  }
}

/** Level of the quietest 100 ms window that contains sample `at` (the rule cuts inside one). */
function cutLevel(x: Float32Array, at: number): number {
  let best = Infinity;
  for (let k = 0; k < 1600; k += 50) best = Math.min(best, rms(x, at - k, at - k + 1600));
  return best;
}

test('official split of an 18-minute recording: ≤ max + 5 s, tiles exactly, cuts in quiet stretches', () => {
  assert.ok(recording.length / SR > 600, `recording is only ${recording.length / SR} s`);
  const median = medianRms(recording);
  for (const maxSeconds of [60, 180]) {
    const segments = splitAtQuietPoints(recording, { maxSeconds });
    assertTiles(segments, recording.length, SR);
    assert.ok(segments.length >= Math.floor(recording.length / SR / (maxSeconds + 5)), `${segments.length} segments`);
    const levels: number[] = [];
    for (const [i, s] of segments.entries()) {
      const len = (s.end - s.start) / SR;
      assert.ok(len <= maxSeconds + 5, `segment ${i}: ${len} s`);
      if (i < segments.length - 1) assert.ok(len >= maxSeconds - 5, `segment ${i}: ${len} s`);
      // Views into the input, untouched.
      assert.equal(s.samples.buffer, recording.buffer);
      assert.equal(s.samples.byteOffset, recording.byteOffset + 4 * s.start);
      assert.equal(s.samples.length, s.end - s.start);
      if (i === 0) continue;
      const level = cutLevel(recording, s.start);
      levels.push(level);
      // Even inside a 10 s stretch of dense broadcast speech the quietest 100 ms is well below
      // the recording's typical level; usually the cut lands in near-silence.
      assert.ok(level < 0.75 * median, `cut at ${s.offsetSeconds.toFixed(2)} s: level ${level.toFixed(5)} vs median ${median.toFixed(5)}`);
    }
    levels.sort((a, b) => a - b);
    const typical = levels[Math.floor(levels.length / 2)];
    assert.ok(typical < 0.25 * median, `max ${maxSeconds}: median cut level ${typical} vs recording median ${median}`);
  }
});

test('audio no longer than max is one segment, returned as is (no padding)', () => {
  const one = splitAtQuietPoints(recording, { maxSeconds: 1200 });
  assert.equal(one.length, 1);
  assert.equal(one[0].samples, recording);
  const tiny = Float32Array.from([0.1, 0.2, 0.3]);
  const t = splitAtQuietPoints(tiny, { maxSeconds: 1200 });
  assert.deepEqual([t.length, t[0].samples, t[0].start, t[0].end, t[0].offsetSeconds], [1, tiny, 0, 3, 0]);
});

/** The official rule, written as plainly as possible (direct window sums), for small rates. */
function referenceSplit(x: Float32Array, sr: number, maxSeconds: number): number[] {
  const maxLen = Math.floor(maxSeconds * sr);
  const expand = Math.floor(5 * sr);
  const win = Math.floor(0.1 * sr);
  const cuts: number[] = [];
  let start = 0;
  while (x.length - start > maxLen) {
    const cut = start + maxLen;
    const left = Math.max(start, cut - expand);
    const right = Math.min(x.length, cut + expand);
    let boundary = cut;
    if (right - left > win) {
      let best = Infinity;
      let bestPos = -1;
      for (let p = left; p + win <= right; p++) {
        let s = 0;
        for (let i = p; i < p + win; i++) s += Math.abs(x[i]);
        if (s < best - 1e-9) {
          best = s;
          bestPos = p;
        }
      }
      boundary = bestPos;
      for (let i = bestPos; i < bestPos + win; i++) if (Math.abs(x[i]) < Math.abs(x[boundary])) boundary = i;
    }
    boundary = Math.min(x.length, Math.max(start + 1, boundary));
    cuts.push(boundary);
    start = boundary;
  }
  return cuts;
}

test('boundaries equal a direct transcription of the official rule (noise with quiet dips, exact ties)', () => {
  const sr = 1000; // small rate keeps the direct O(region·window) reference fast
  let seed = 99;
  const rand = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  const x = new Float32Array(200 * sr);
  for (let i = 0; i < x.length; i++) x[i] = 0.5 * rand();
  for (const [at, len, level] of [[27_300, 400, 0.05], [31_100, 300, 0.01], [58_000, 2000, 0], [61_500, 500, 0], [118_000, 150, 0.02], [176_000, 1000, 0.001]]) {
    for (let i = at; i < at + len; i++) x[i] *= level;
  }
  for (const maxSeconds of [30, 60, 45.5]) {
    const segments = splitAtQuietPoints(x, { maxSeconds, sampleRate: sr });
    assertTiles(segments, x.length, sr);
    assert.deepEqual(segments.slice(1).map((s) => s.start), referenceSplit(x, sr, maxSeconds), `max ${maxSeconds}`);
  }
  // Digital silence 58..60 s and 61.5..62 s: the first all-zero window wins, at 58 s exactly.
  const s60 = splitAtQuietPoints(x, { maxSeconds: 60, sampleRate: sr });
  assert.equal(s60[1].start, 58_000);
});

test('segments shorter than 0.5 s are zero-padded to 0.5 s in the split path only', () => {
  const x = new Float32Array(10 * SR + 3000).fill(0.5);
  x.fill(0, 10 * SR - 100, 10 * SR + 3000); // quiet from 9.99 s to the end
  const segments = splitAtQuietPoints(x, { maxSeconds: 10, searchSeconds: 1 });
  assert.equal(segments.length, 2);
  const tail = segments[1];
  assert.equal(tail.start, 10 * SR - 100);
  assert.equal(tail.end, x.length);
  assert.equal(tail.samples.length, SR / 2, 'tail padded to 0.5 s');
  assert.ok(tail.samples.every((v) => v === 0), 'padding and tail are zeros');
  assert.equal(segments[0].samples.length, segments[0].end - segments[0].start);
});

test('bad options are rejected with a clear error', () => {
  const x = new Float32Array(100);
  assert.throws(() => splitAtQuietPoints(x, { maxSeconds: 0 }), /maxSeconds must be a positive finite number/);
  assert.throws(() => splitAtQuietPoints(x, { maxSeconds: NaN }), /maxSeconds/);
  assert.throws(() => splitAtQuietPoints(x, { maxSeconds: 10, searchSeconds: -1 }), /searchSeconds/);
  assert.throws(() => splitAtQuietPoints(x, { maxSeconds: 10, sampleRate: 0 }), /sampleRate/);
});

test('a small max does not degenerate into one-sample segments (search capped at max/2)', () => {
  const x = new Float32Array(30 * SR); // all silence: every window ties
  const segments = splitAtQuietPoints(x, { maxSeconds: 2 });
  assertTiles(segments, x.length, SR);
  for (const s of segments.slice(0, -1)) assert.ok(s.end - s.start >= SR, `segment of ${s.end - s.start} samples`);
});
