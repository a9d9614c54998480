import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clampItems,
  classesToItems,
  classesToMs,
  longestNonDecreasingChain,
  msToItems,
  offsetItems,
  pythonRound,
  repairTimestamps,
} from './timestamps.ts';
import { goldenPath, readJson } from '../../testing/shared.ts';
import type { WordTimestamp } from '../types.ts';

interface GoldenItem {
  text: string;
  start_time: number;
  end_time: number;
}
interface UnitCases {
  repair: { name: string; input_ms: number[]; kept_indices: number[]; repaired_ms: number[] }[];
  parse: { word_list: string[]; ms: number[]; items: GoldenItem[] }[];
  offset: { previous_segment_samples: number[]; offset_sec: number; items: GoldenItem[]; result: GoldenItem[] }[];
}
interface AlignerCase {
  case: string;
  word_list: string[];
  raw_classes: number[];
  raw_ms: number[];
  kept_indices: number[];
  repaired_ms: number[];
  items: GoldenItem[];
  full_attention?: { raw_classes: number[]; repaired_ms: number[]; items: GoldenItem[] };
}

const unitCases = readJson<UnitCases>(goldenPath('aligner-a', 'unit_cases.json'));
const index = readJson<{ model: { timestamp_segment_time_ms: number }; cases: AlignerCase[] }>(goldenPath('aligner-a', 'index.json'));
const SEGMENT_TIME_MS = index.model.timestamp_segment_time_ms;

const fromGolden = (items: GoldenItem[]): WordTimestamp[] => items.map((i) => ({ text: i.text, start: i.start_time, end: i.end_time }));

/** Exact comparison that also tells -0 from 0 (Python never produces -0 here). */
function assertSameItems(actual: WordTimestamp[], expected: WordTimestamp[], label: string): void {
  assert.equal(actual.length, expected.length, `${label}: item count`);
  for (let i = 0; i < expected.length; i++) {
    assert.equal(actual[i].text, expected[i].text, `${label}: text of item ${i}`);
    assert.ok(Object.is(actual[i].start, expected[i].start), `${label}: start of item ${i}: ${actual[i].start} vs ${expected[i].start}`);
    assert.ok(Object.is(actual[i].end, expected[i].end), `${label}: end of item ${i}: ${actual[i].end} vs ${expected[i].end}`);
  }
}

test('pythonRound matches Python round() on ties and binary representations', () => {
  const cases: [number, number, number][] = [
    [180.0005, 3, 180.0],
    [0.0625, 3, 0.062],
    [-0.0625, 3, -0.062],
    [2.675, 2, 2.67],
    [0.125, 2, 0.12],
    [0.375, 2, 0.38],
    [1.0005, 3, 1.0],
    [359.9995, 3, 360.0],
    [0.0005, 3, 0.001],
    [0.0015, 3, 0.002],
    [0.5, 0, 0],
    [1.5, 0, 2],
    [2.5, 0, 2],
    [-2.5, 0, -2],
    [1234.5678, -2, 1200],
    [5e-324, 3, 0],
    [1e300, 3, 1e300],
    [179.98125 + 1.234, 3, 181.215],
    [399.92, 3, 399.92],
  ];
  for (const [x, digits, expected] of cases) assert.equal(pythonRound(x, digits), expected, `round(${x}, ${digits})`);
  assert.ok(Object.is(pythonRound(-0.0001, 3), -0), 'sign of a negative value rounded to zero is kept, as in Python');
  assert.ok(Number.isNaN(pythonRound(NaN, 3)));
  assert.equal(pythonRound(Infinity, 3), Infinity);
  assert.throws(() => pythonRound(1, 1.5), /digits must be an integer/);
});

test('unit_cases.json repair: chain and repaired values for every branch', () => {
  assert.equal(unitCases.repair.length, 17);
  for (const c of unitCases.repair) {
    assert.deepEqual(longestNonDecreasingChain(c.input_ms), c.kept_indices, `${c.name}: chain`);
    assert.deepEqual(repairTimestamps(c.input_ms), c.repaired_ms, `${c.name}: repaired`);
  }
});

test('repair keeps the float64 order of operations (999, not 1000)', () => {
  const c = unitCases.repair.find((r) => r.name === 'float_order_of_ops')!;
  const repaired = repairTimestamps(c.input_ms);
  assert.equal(repaired[8], 999);
  // The algebraically equal order left + (right − left)·m/(len+1) would give 1000.
  assert.equal(Math.trunc(80 + ((1920 - 80) * 7) / 14), 1000);
});

test('repair output is non-decreasing and keeps chain values', () => {
  // A deterministic pseudo-random sweep (LCG), no timing or randomness between runs.
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(next() * 30);
    const values = Array.from({ length: n }, () => Math.floor(next() * 60) * 80);
    const repaired = repairTimestamps(values);
    for (let i = 1; i < n; i++) assert.ok(repaired[i - 1] <= repaired[i], `trial ${trial}: not monotonic`);
    for (const k of longestNonDecreasingChain(values)) assert.equal(repaired[k], values[k]);
  }
  assert.deepEqual(repairTimestamps([]), []);
  assert.throws(() => repairTimestamps([0, NaN]), /timestamp 1 is not a finite number/);
});

test('unit_cases.json parse: items from slot times, including the empty unit list', () => {
  for (const c of unitCases.parse) {
    assertSameItems(msToItems(c.word_list, c.ms), fromGolden(c.items), c.word_list.join(' ') || '(no units)');
    // The same ms as classes of the 80 ms head.
    const classes = c.ms.map((ms) => ms / SEGMENT_TIME_MS);
    assertSameItems(classesToItems(c.word_list, classes, SEGMENT_TIME_MS), fromGolden(c.items), 'via classes');
  }
});

test('unit_cases.json offset: round(t + offset, 3)', () => {
  assert.equal(unitCases.offset.length, 5);
  for (const c of unitCases.offset) {
    assertSameItems(offsetItems(fromGolden(c.items), c.offset_sec), fromGolden(c.result), `offset ${c.offset_sec}`);
  }
});

test('index.json: classes → repaired ms → items for every case (and the full-attention variants)', () => {
  let variants = 0;
  for (const c of index.cases) {
    assert.deepEqual(classesToMs(c.raw_classes, SEGMENT_TIME_MS), c.raw_ms, `${c.case}: raw ms`);
    assert.deepEqual(longestNonDecreasingChain(c.raw_ms), c.kept_indices, `${c.case}: chain`);
    assert.deepEqual(repairTimestamps(c.raw_ms), c.repaired_ms, `${c.case}: repaired ms`);
    assertSameItems(classesToItems(c.word_list, c.raw_classes, SEGMENT_TIME_MS), fromGolden(c.items), c.case);
    if (c.full_attention) {
      variants++;
      const fa = c.full_attention;
      assert.deepEqual(repairTimestamps(classesToMs(fa.raw_classes, SEGMENT_TIME_MS)), fa.repaired_ms, `${c.case} full attention: repaired ms`);
      assertSameItems(classesToItems(c.word_list, fa.raw_classes, SEGMENT_TIME_MS), fromGolden(fa.items), `${c.case} full attention`);
    }
  }
  assert.equal(variants, 3);
});

test('the transcribe path case: items offset by its (zero) segment offset equal the transcription time stamps', () => {
  const c = index.cases.find((x) => x.case === 'de_7s__asr_tiny-a_context') as AlignerCase & {
    transcription: { time_stamps: GoldenItem[] };
  };
  const items = offsetItems(classesToItems(c.word_list, c.raw_classes, SEGMENT_TIME_MS), 0);
  assertSameItems(items, fromGolden(c.transcription.time_stamps), c.case);
});

test('clampItems: no time past the audio, floored to whole ms; offsetItems clamps to the segment end', () => {
  const items = [
    { text: 'a', start: 0.5, end: 1.2 },
    { text: 'b', start: 2.96, end: 341.84 },
    { text: 'c', start: 355.2, end: 396.08 },
  ];
  assert.deepEqual(clampItems(items, 3.0004375), [
    { text: 'a', start: 0.5, end: 1.2 },
    { text: 'b', start: 2.96, end: 3 },
    { text: 'c', start: 3, end: 3 },
  ]);
  assert.deepEqual(clampItems(items, 2.999), [
    { text: 'a', start: 0.5, end: 1.2 },
    { text: 'b', start: 2.96, end: 2.999 },
    { text: 'c', start: 2.999, end: 2.999 },
  ]);
  // Offset by a segment starting at 10.0000625 s that ends at 12.5 s in the recording.
  assert.deepEqual(offsetItems(items, 10.0000625, 12.5), [
    { text: 'a', start: 10.5, end: 11.2 },
    { text: 'b', start: 12.5, end: 12.5 },
    { text: 'c', start: 12.5, end: 12.5 },
  ]);
  assert.deepEqual(offsetItems(items, 1), offsetItems(items, 1, 1e9), 'a far end changes nothing');
  assert.throws(() => clampItems(items, NaN), /audio duration must be a non-negative number/);
});

test('bad inputs name the problem', () => {
  assert.throws(() => classesToItems(['a', 'b'], [1, 2, 3], 80), /3 timestamp slots for 2 word units/);
  assert.throws(() => classesToItems(['a'], [1, -2], 80), /class 1 must be a non-negative integer/);
  assert.throws(() => classesToItems(['a'], [1, 2], 0), /segment time/);
  assert.throws(() => offsetItems([], NaN), /segment offset/);
});
