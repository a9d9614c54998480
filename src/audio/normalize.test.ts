import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MonoResampler, mixInterleavedToMono, mixToMono, normalizePeak } from './normalize.ts';
import { resample } from './resample.ts';

test('peak handling: divide by the peak only above 1, then clip; quiet audio untouched', () => {
  const quiet = Float32Array.from([0.1, -0.5, 1, -1, 0]);
  assert.deepEqual(normalizePeak(quiet.slice()), quiet);
  const loud = normalizePeak(Float32Array.from([2, -4, 1]));
  assert.deepEqual(Array.from(loud), [0.5, -1, 0.25]);
  const withNaN = normalizePeak(Float32Array.from([0.5, NaN, -0.25]));
  assert.deepEqual(Array.from(withNaN), [0.5, 0, -0.25]);
  const withInf = normalizePeak(Float32Array.from([0.5, Infinity, -Infinity]));
  assert.deepEqual(Array.from(withInf), [0.5, 1, -1]);
});

test('mono is the channel mean (planar and interleaved)', () => {
  const l = Float32Array.from([1, 0.5, -1]);
  const r = Float32Array.from([0, 0.5, 0]);
  assert.deepEqual(Array.from(mixToMono([l, r])), [0.5, 0.5, -0.5]);
  assert.equal(mixToMono([l]), l);
  assert.deepEqual(Array.from(mixInterleavedToMono(Float32Array.from([1, 0, 0.5, 0.5, -1, 0]), 2)), [0.5, 0.5, -0.5]);
  assert.deepEqual(Array.from(mixInterleavedToMono(Float32Array.from([3, 0, 0, 0, 3, 0]), 3)), [1, 1]);
  assert.throws(() => mixToMono([l, Float32Array.from([1])]), /differ in length/);
  assert.throws(() => mixToMono([]), /no channels/);
});

test('MonoResampler fed in blocks equals mono mix + one-shot resample + peak handling', () => {
  const frames = 44100;
  const interleaved = new Float32Array(frames * 2);
  for (let i = 0; i < frames; i++) {
    interleaved[2 * i] = 1.5 * Math.sin(i * 0.031);
    interleaved[2 * i + 1] = 0.9 * Math.sin(i * 0.017);
  }
  const sink = new MonoResampler(44100, 2);
  for (let f = 0; f < frames; f += 1000) sink.pushInterleaved(interleaved.subarray(2 * f, 2 * Math.min(frames, f + 1000)));
  assert.equal(sink.sourceFrames, frames);
  const got = sink.finish();
  const want = normalizePeak(resample(mixInterleavedToMono(interleaved, 2), 44100, 16000).slice());
  assert.equal(got.length, Math.ceil((frames * 16000) / 44100));
  assert.deepEqual(got, want);
  const peak = got.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.ok(peak <= 1, `peak ${peak}`);
  assert.throws(() => sink.finish(), /called twice/);
  assert.throws(() => new MonoResampler(44100, 0), /channel count/);
});
