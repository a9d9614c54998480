/**
 * Continuous batching on tiny-a (fp32, where greedy ids are exact): segments decoded together,
 * or joining a batch that is already running, give the ids and text each gives alone; a
 * cancelled one leaves without disturbing the rest; free rows go to the owner with the fewest.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AsrModel, type AsrRequest, type AsrResult } from '../asr/asr-model.ts';
import { SafetensorsStore } from '../checkpoint/safetensors.ts';
import { goldenPath, readJson } from '../../testing/shared.ts';
import { AbortError } from './generate.ts';
import { repetitionPeriod } from './scheduler.ts';

const index = readJson(goldenPath('tiny-a', 'index.json'));
const waveform = (audioId: string) => SafetensorsStore.openFile(goldenPath('tiny-a', 'cases', `${audioId}.audio.safetensors`)).readFloat32('waveform');

/** Requests whose outputs differ from one another (different audio, languages, contexts and stops). */
const CASES = ['en_3s__lang_english', 'de_7s__context', 'silence_2s__context', 'tone_440hz_1s__lang_english', 'tone_440hz_1s__context', 'en_3s__context'];
const requests: AsrRequest[] = CASES.map((name) => {
  const c = index.cases.find((x: any) => x.case === name);
  return { samples: waveform(c.audio_id), language: c.language ?? undefined, context: c.context || undefined, maxNewTokens: 40 };
});

let model: AsrModel;
let alone: AsrResult[];
before(async () => {
  model = await AsrModel.load(goldenPath('tiny-a', 'checkpoint'), { device: 'cpu', quant: 'none', threads: 2, cacheDir: false });
  alone = [];
  for (const r of requests) alone.push((await model.transcribe([r]))[0]);
});
after(async () => model?.release());

function same(got: AsrResult, want: AsrResult, what: string): void {
  assert.deepEqual(got.tokenIds, want.tokenIds, `${what}: ids`);
  assert.equal(got.text, want.text, `${what}: text`);
  assert.equal(got.language, want.language, `${what}: language`);
}

test('segments of different callers decoded together give what each gives alone', async () => {
  assert.ok(new Set(alone.map((r) => r.tokenIds.join())).size >= 4, 'the cases differ');
  model.setMaxBatchSize(16);
  const together = await Promise.all(requests.map((r, i) => model.submit(r, { owner: `caller ${i % 3}` })));
  together.forEach((r, i) => same(r, alone[i], CASES[i]));
});

test('segments that join a running batch between its steps give what each gives alone', async () => {
  model.setMaxBatchSize(16);
  let joined = 0;
  const late: Promise<AsrResult>[] = [];
  const first = model.submit(requests[1], {
    owner: 'first',
    // Joins while the first row decodes: after its 3rd and 6th tokens.
    onTokens: (ids) => {
      if ((ids.length === 3 || ids.length === 6) && joined < 4) {
        late.push(model.submit(requests[2 + joined], { owner: 'late' }), model.submit(requests[3 + joined], { owner: 'late' }));
        joined += 2;
      }
    },
  });
  const r1 = await first;
  same(r1, alone[1], CASES[1]);
  assert.equal(late.length, 4, 'four segments joined the running batch');
  const rest = await Promise.all(late);
  rest.forEach((r, k) => same(r, alone[2 + k], CASES[2 + k]));
});

test('a cancelled segment leaves the batch at the next step; the others are undisturbed', async () => {
  model.setMaxBatchSize(16);
  const ctrl = new AbortController();
  let stepsAfterCancel = -1;
  const cancelled = model.submit(requests[1], {
    owner: 'b',
    signal: ctrl.signal,
    onTokens: (ids) => {
      if (ids.length === 4) ctrl.abort();
      if (ctrl.signal.aborted) stepsAfterCancel++;
    },
  });
  const others = [0, 2, 4].map((i) => model.submit(requests[i], { owner: 'a' }));
  await assert.rejects(cancelled, AbortError);
  assert.equal(stepsAfterCancel, 0, 'no step after the cancel');
  (await Promise.all(others)).forEach((r, k) => same(r, alone[[0, 2, 4][k]], CASES[[0, 2, 4][k]]));
  assert.deepEqual(model.load, { running: 0, waiting: 0 });
});

test('free rows go to the owner with the fewest running: a later short request does not wait for a long one', async () => {
  model.setMaxBatchSize(2);
  const finished: string[] = [];
  // One long request of eight segments, then a short one of one segment.
  const long = Array.from({ length: 8 }, (_, i) => model.submit({ ...requests[1], maxNewTokens: 40 }, { owner: 'long' }).then(() => finished.push(`long ${i}`)));
  await new Promise((resolve) => setTimeout(resolve, 0));
  const short = model.submit(requests[0], { owner: 'short' }).then(() => finished.push('short'));
  await Promise.all([...long, short]);
  // The short request takes the first free row: it finishes among the first three segments,
  // where arrival order alone would have made it the ninth.
  assert.ok(finished.indexOf('short') <= 2, finished.join(', '));
  model.setMaxBatchSize(16);
});

test('repetition period: a unit of 1..20 ids repeated more than the threshold at the end', () => {
  assert.equal(repetitionPeriod([1, 2, ...Array(21).fill(7)], 20), 1);
  assert.equal(repetitionPeriod([1, 2, ...Array(20).fill(7)], 20), 0, '20 repeats are not more than 20');
  assert.equal(repetitionPeriod([9, ...Array(21).fill([3, 4, 5]).flat()], 20), 3);
  assert.equal(repetitionPeriod([...Array(21).fill([3, 4, 5]).flat(), 6], 20), 0, 'the loop must reach the end');
  assert.equal(repetitionPeriod(Array(30).fill(1), 0), 0, 'threshold 0: off');
  assert.equal(repetitionPeriod(Array(30).fill(1), 20, 20, 10), 0, 'counted from index 10: 20 repeats');
  assert.equal(repetitionPeriod(Array(30).fill(1), 20, 20, 9), 1);
  assert.equal(repetitionPeriod(Array(30).fill(1), 20, 20, -1), 0, 'not yet');
  const unit = Array.from({ length: 21 }, (_, i) => i);
  assert.equal(repetitionPeriod(Array(21).fill(unit).flat(), 20), 0, 'units longer than 20 ids are not looked for');
});

test('a looping row stops soon after the loop starts, with the text decoding to its budget gives', async () => {
  // tiny-a writes one token over and over for long_40s (179 times before it breaks out): with
  // a budget of 150 tokens the official decoding runs all 150 steps of the loop. (The language
  // is forced: the guard judges text, and without a header everything is text.)
  const c = index.cases.find((x: any) => x.case === 'long_40s__lang_english');
  const request = { samples: waveform(c.audio_id), language: 'English', maxNewTokens: 150 };
  const [unguarded] = await model.transcribe([request], { repetitionThreshold: 0 });
  const [guarded] = await model.transcribe([request]);
  assert.equal(unguarded.decodedTokens, 150);
  assert.equal(unguarded.repetitionStopped, false);
  assert.equal(unguarded.truncated, true);
  const loopStart = unguarded.tokenIds.findIndex((_, i) => unguarded.tokenIds.slice(i).every((id) => id === unguarded.tokenIds[i]));
  assert.ok(guarded.repetitionStopped);
  assert.ok(guarded.decodedTokens <= loopStart + 21, `${guarded.decodedTokens} tokens decoded, the loop starts at ${loopStart}`);
  assert.deepEqual(guarded.tokenIds, unguarded.tokenIds, 'the loop continued to the budget');
  assert.equal(guarded.text, unguarded.text);
  assert.equal(guarded.raw, unguarded.raw);
});
