import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitAtSpeech, type AudioSegment, type SampleRange } from './segment.ts';

// 1 kHz keeps the arithmetic readable: 100 ms = 100 samples, 0.5 s = 500.
const SR = 1000;

const bounds = (segs: AudioSegment[]) => segs.map(({ start, end }) => [start, end]);

/** Loud noise with quiet stretches at the given places. */
function speechLike(length: number, quiet: [start: number, end: number, level: number][] = []): Float32Array {
  const x = new Float32Array(length);
  let seed = 7;
  for (let i = 0; i < length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    x[i] = ((seed >>> 8) / (1 << 24)) * 1.2 - 0.6;
    if (Math.abs(x[i]) < 0.1) x[i] = 0.1;
  }
  for (const [a, b, level] of quiet) for (let i = a; i < b; i++) x[i] = i % 2 ? level : -level;
  return x;
}

test('neighbouring regions join one segment while it stays within maxSeconds; cuts fall between regions', () => {
  const x = speechLike(20_000);
  const regions = [
    { start: 1000, end: 3000 },
    { start: 4000, end: 6000 },
    { start: 7000, end: 9000 },
    { start: 9500, end: 12_000 }, // would make the first segment 11 s long
    { start: 13_000, end: 14_000 },
  ];
  const segs = splitAtSpeech(x, regions, { maxSeconds: 10, sampleRate: SR, minGapSeconds: 2 });
  assert.deepEqual(bounds(segs), [
    [1000, 9000],
    [9500, 14_000],
  ]);
  assert.deepEqual(
    segs.map((s) => s.offsetSeconds),
    [1, 9.5],
    'times stay absolute',
  );
  for (const s of segs) {
    assert.equal(s.samples.buffer, x.buffer, 'a view into the input');
    assert.equal(s.samples.byteOffset, s.start * 4);
    assert.equal(s.samples.length, s.end - s.start);
  }
  // A larger maxSeconds takes them all.
  assert.deepEqual(bounds(splitAtSpeech(x, regions, { maxSeconds: 13, sampleRate: SR, minGapSeconds: 2 })), [[1000, 14_000]]);
});

test('non-speech of minGapSeconds or more is never inside a segment; shorter gaps are', () => {
  const x = speechLike(10_000);
  const regions = [
    { start: 1000, end: 2000 },
    { start: 5000, end: 6000 }, // 3 s after the first
    { start: 6500, end: 7000 }, // 0.5 s after the second
  ];
  const split = (minGapSeconds: number) => bounds(splitAtSpeech(x, regions, { maxSeconds: 60, sampleRate: SR, minGapSeconds }));
  assert.deepEqual(split(3), [
    [1000, 2000],
    [5000, 7000],
  ]);
  assert.deepEqual(split(3.001), [[1000, 7000]]);
  assert.deepEqual(split(0.5), [
    [1000, 2000],
    [5000, 6000],
    [6500, 7000],
  ]);
  assert.deepEqual(split(0), split(0.5));
});

test('a region longer than maxSeconds is cut at its quietest 100 ms, and only there', () => {
  // 23 s of speech with three quiet stretches: a pause at 7.2 s, a quieter one at 9 s, the quietest at 15.5 s.
  const x = speechLike(30_000, [
    [7200, 7400, 0.05],
    [9000, 9150, 0.01],
    [15_500, 15_650, 0.001],
  ]);
  const segs = splitAtSpeech(x, [{ start: 2000, end: 25_000 }], { maxSeconds: 10, sampleRate: SR });
  assert.deepEqual(bounds(segs), [
    [2000, 9000],
    [9000, 15_500],
    [15_500, 25_000],
  ]);
  assert.deepEqual(
    segs.map((s) => s.offsetSeconds),
    [2, 9, 15.5],
  );
  // Without the pauses the cuts still keep every piece within maxSeconds and tile the region.
  const flat = splitAtSpeech(speechLike(30_000), [{ start: 2000, end: 25_000 }], { maxSeconds: 10, sampleRate: SR });
  assert.equal(flat[0].start, 2000);
  assert.equal(flat[flat.length - 1].end, 25_000);
  for (let i = 0; i < flat.length; i++) {
    assert.ok(flat[i].end - flat[i].start <= 10 * SR);
    if (i > 0) assert.equal(flat[i].start, flat[i - 1].end);
  }
});

test('a segment shorter than 0.5 s is zero-padded at its end; no regions, no segments', () => {
  const x = speechLike(2000);
  const [seg] = splitAtSpeech(x, [{ start: 100, end: 300 }], { maxSeconds: 20, sampleRate: SR });
  assert.equal(seg.start, 100);
  assert.equal(seg.end, 300);
  assert.equal(seg.samples.length, 500);
  assert.deepEqual(Array.from(seg.samples.subarray(0, 200)), Array.from(x.subarray(100, 300)));
  assert.ok(seg.samples.subarray(200).every((v) => v === 0));
  assert.deepEqual(splitAtSpeech(x, [], { maxSeconds: 20, sampleRate: SR }), []);
});

test('refuses regions out of order, overlapping, empty or outside the audio', () => {
  const x = new Float32Array(1000);
  const opts = { maxSeconds: 20, sampleRate: SR };
  for (const regions of [
    [{ start: 500, end: 600 }, { start: 100, end: 200 }],
    [{ start: 100, end: 300 }, { start: 200, end: 400 }],
    [{ start: 100, end: 100 }],
    [{ start: 900, end: 1001 }],
    [{ start: -1, end: 10 }],
    [{ start: 0.5, end: 10 }],
  ]) {
    assert.throws(() => splitAtSpeech(x, regions, opts), /ordered, disjoint, non-empty/, JSON.stringify(regions));
  }
  assert.throws(() => splitAtSpeech(x, [], { maxSeconds: 0, sampleRate: SR }), /maxSeconds/);
  assert.throws(() => splitAtSpeech(x, [], { maxSeconds: 20, sampleRate: SR, minGapSeconds: -1 }), /minGapSeconds/);
});

test('random regions: every region is inside a segment, no segment exceeds maxSeconds or holds a long gap', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
  for (let trial = 0; trial < 200; trial++) {
    const n = 60_000;
    const x = speechLike(n);
    const regions: SampleRange[] = [];
    for (let at = Math.floor(rand() * 3000); ; ) {
      const len = 100 + Math.floor(rand() * (rand() < 0.2 ? 30_000 : 4000));
      if (at + len > n) break;
      regions.push({ start: at, end: at + len });
      at += len + 1 + Math.floor(rand() * 6000);
    }
    const maxSeconds = 5 + Math.floor(rand() * 20);
    const minGapSeconds = rand() * 4;
    const segs = splitAtSpeech(x, regions, { maxSeconds, sampleRate: SR, minGapSeconds });
    const what = `trial ${trial}, max ${maxSeconds} s, min gap ${minGapSeconds.toFixed(2)} s`;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      assert.ok(s.end - s.start <= maxSeconds * SR, `${what}: segment ${s.start}-${s.end} is too long`);
      assert.ok(i === 0 || segs[i - 1].end <= s.start, `${what}: segments overlap`);
    }
    const inSegment = (p: number) => segs.some((s) => s.start <= p && p < s.end);
    for (const r of regions) {
      assert.ok(inSegment(r.start) && inSegment(r.end - 1), `${what}: region ${r.start}-${r.end} is not covered`);
      // Covered throughout: its samples are in segments that follow each other without a hole.
      const covering = segs.filter((s) => s.end > r.start && s.start < r.end);
      for (let k = 1; k < covering.length; k++) assert.equal(covering[k].start, covering[k - 1].end, `${what}: hole in region ${r.start}-${r.end}`);
    }
    // Each gap between regions: inside a segment entirely only when shorter than minGapSeconds,
    // otherwise no sample of it is.
    for (let k = 1; k < regions.length; k++) {
      const gap = { start: regions[k - 1].end, end: regions[k].start };
      const touched = segs.some((s) => s.start < gap.end && s.end > gap.start);
      if (gap.end - gap.start >= minGapSeconds * SR) assert.ok(!touched, `${what}: long gap ${gap.start}-${gap.end} is decoded`);
    }
    // Nothing before the first region or after the last.
    if (regions.length > 0) {
      assert.equal(segs[0].start, regions[0].start, what);
      assert.equal(segs[segs.length - 1].end, regions[regions.length - 1].end, what);
    } else assert.deepEqual(segs, []);
  }
});
