import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ComplexFft } from './fft.ts';

/** O(n²) reference DFT. */
function naiveDft(x: Float64Array): Float64Array {
  const n = x.length / 2;
  const out = new Float64Array(2 * n);
  for (let k = 0; k < n; k++) {
    let re = 0;
    let im = 0;
    for (let t = 0; t < n; t++) {
      const a = (-2 * Math.PI * ((k * t) % n)) / n;
      re += x[2 * t] * Math.cos(a) - x[2 * t + 1] * Math.sin(a);
      im += x[2 * t] * Math.sin(a) + x[2 * t + 1] * Math.cos(a);
    }
    out[2 * k] = re;
    out[2 * k + 1] = im;
  }
  return out;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

test('mixed-radix FFT equals the naive DFT for radix-2/3/4/5 and generic prime sizes', () => {
  const rand = seeded(7);
  for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 12, 15, 16, 49, 97, 100, 128, 360, 400, 512]) {
    const x = new Float64Array(2 * n).map(() => rand());
    const got = new ComplexFft(n).forward(x);
    const want = naiveDft(x);
    let err = 0;
    for (let i = 0; i < 2 * n; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
    assert.ok(err < 1e-10 * Math.max(1, n), `n=${n}: max error ${err}`);
  }
});

test('FFT of a unit impulse is flat and of a pure tone is a single bin (n = 400)', () => {
  const fft = new ComplexFft(400);
  const impulse = new Float64Array(800);
  impulse[0] = 1;
  const flat = fft.forward(impulse);
  for (let k = 0; k < 400; k++) {
    assert.ok(Math.abs(flat[2 * k] - 1) < 1e-12 && Math.abs(flat[2 * k + 1]) < 1e-12);
  }
  const tone = new Float64Array(800);
  for (let t = 0; t < 400; t++) tone[2 * t] = Math.cos((2 * Math.PI * 37 * t) / 400);
  const spec = fft.forward(tone);
  for (let k = 0; k < 400; k++) {
    const mag = Math.hypot(spec[2 * k], spec[2 * k + 1]);
    const expected = k === 37 || k === 363 ? 200 : 0;
    assert.ok(Math.abs(mag - expected) < 1e-9, `bin ${k}: ${mag}`);
  }
});

test('FFT rejects bad sizes and inputs', () => {
  assert.throws(() => new ComplexFft(0), /positive integer/);
  assert.throws(() => new ComplexFft(2.5), /positive integer/);
  assert.throws(() => new ComplexFft(8).forward(new Float64Array(8)), /16 values/);
});
