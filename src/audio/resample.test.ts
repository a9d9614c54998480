import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsStore } from '../engine/checkpoint/safetensors.ts';
import { checkpointFeatureConfig, goldenPath } from '../testing/shared.ts';
import { logMelSpectrogram } from './features.ts';
import { mixToMono } from './normalize.ts';
import { RESAMPLER_QUALITY, Resampler, resample } from './resample.ts';

function tone(freq: number, rate: number, seconds: number, amp = 0.5): Float32Array {
  const x = new Float32Array(Math.round(rate * seconds));
  for (let i = 0; i < x.length; i++) x[i] = amp * Math.sin((2 * Math.PI * freq * i) / rate);
  return x;
}

/** RMS over the middle of the signal (away from the zero-padded edges). */
function innerRms(x: Float32Array): number {
  const a = Math.floor(x.length * 0.2);
  const b = Math.floor(x.length * 0.8);
  let s = 0;
  for (let i = a; i < b; i++) s += x[i] * x[i];
  return Math.sqrt(s / (b - a));
}

test('output length is ceil(n·to/from) for every common rate, and equal rates pass through', () => {
  for (const from of [8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000, 96000, 16001]) {
    for (const n of [0, 1, 2, 99, 4410, 44101]) {
      const y = resample(new Float32Array(n), from, 16000);
      assert.equal(y.length, Math.ceil((n * 16000) / from), `from ${from}, n ${n}`);
    }
  }
  const x = tone(440, 16000, 0.1);
  assert.equal(resample(x, 16000, 16000), x);
});

test('passband is flat: tones up to the passband edge keep their amplitude within 0.01 dB', () => {
  for (const from of [44100, 48000, 22050, 8000]) {
    const nyquist = Math.min(from, 16000) / 2;
    for (const f of [100, 1000, 0.5 * nyquist, RESAMPLER_QUALITY.passband * nyquist * 0.98]) {
      const y = resample(tone(f, from, 0.5), from, 16000);
      const gainDb = 20 * Math.log10(innerRms(y) / (0.5 / Math.SQRT2));
      assert.ok(Math.abs(gainDb) < 0.01, `${from} Hz source, ${f.toFixed(0)} Hz tone: gain ${gainDb.toFixed(4)} dB`);
    }
  }
});

test('stopband: tones above the target Nyquist are attenuated by at least 95 dB (no aliasing)', () => {
  for (const from of [44100, 48000]) {
    for (const f of [8050, 9000, 12000, 20000]) {
      const y = resample(tone(f, from, 0.5), from, 16000);
      const levelDb = 20 * Math.log10(innerRms(y) / (0.5 / Math.SQRT2) + 1e-30);
      assert.ok(levelDb < -95, `${from} Hz source, ${f} Hz tone leaks at ${levelDb.toFixed(1)} dB`);
    }
  }
});

test('upsampling reproduces a band-limited tone sample by sample', () => {
  const y = resample(tone(1000, 8000, 0.5), 8000, 16000);
  let err = 0;
  for (let k = 2000; k < y.length - 2000; k++) err = Math.max(err, Math.abs(y[k] - 0.5 * Math.sin((2 * Math.PI * 1000 * k) / 16000)));
  assert.ok(err < 1e-5, `max error ${err}`);
});

test('awkward ratios (interpolated phase table) are as accurate as exact ones', () => {
  const from = 16001; // gcd 1: 16000 phases would be needed exactly
  const y = resample(tone(1000, from, 0.5), from, 16000);
  let err = 0;
  for (let k = 2000; k < y.length - 2000; k++) err = Math.max(err, Math.abs(y[k] - 0.5 * Math.sin((2 * Math.PI * 1000 * k) / 16000)));
  assert.ok(err < 1e-5, `max error ${err}`);
});

test('streaming in arbitrary blocks gives exactly the one-shot result', () => {
  const x = tone(3000, 44100, 1.3);
  for (let i = 0; i < x.length; i += 97) x[i] += 0.1; // some broadband content
  const whole = resample(x, 44100, 16000);
  const r = new Resampler(44100, 16000);
  const parts: Float32Array[] = [];
  let pos = 0;
  for (const size of [1, 2, 3, 500, 7919, 1, 0, 20000]) {
    parts.push(r.push(x.subarray(pos, Math.min(x.length, pos + size))));
    pos = Math.min(x.length, pos + size);
  }
  parts.push(r.push(x.subarray(pos)));
  parts.push(r.end());
  const joined = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    joined.set(p, o);
    o += p.length;
  }
  assert.equal(joined.length, whole.length);
  assert.deepEqual(joined, whole);
  assert.throws(() => r.push(x), /after end/);
});

test('DC passes with unit gain; bad rates are rejected', () => {
  const y = resample(new Float32Array(44100).fill(0.25), 44100, 16000);
  for (let k = 1000; k < y.length - 1000; k++) assert.ok(Math.abs(y[k] - 0.25) < 1e-6, `sample ${k}: ${y[k]}`);
  assert.throws(() => new Resampler(0, 16000), /source rate/);
  assert.throws(() => new Resampler(44100.5, 16000), /source rate/);
  assert.throws(() => new Resampler(44100, -1), /target rate/);
});

test('close to the SoX HQ resampler of the golden MP3 case (waveform and log-mel features)', () => {
  const store = SafetensorsStore.openFile(goldenPath('tiny-a', 'cases', 'en_3s_mp3.audio.safetensors'));
  const [channels, n] = store.info('decoded_stereo_44k').shape;
  assert.equal(channels, 2);
  const stereo = store.readFloat32('decoded_stereo_44k');
  const ours = resample(mixToMono([stereo.subarray(0, n), stereo.subarray(n)]), 44100, 16000);
  const golden = store.readFloat32('waveform');
  assert.equal(ours.length, golden.length);
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < golden.length; i++) {
    signal += golden[i] ** 2;
    noise += (ours[i] - golden[i]) ** 2;
  }
  const snr = 10 * Math.log10(signal / noise);
  assert.ok(snr > 70, `SNR against SoX HQ ${snr.toFixed(1)} dB`);
  // Features agree within the golden tolerance in every mel bin below ~7 kHz; the top bins sit
  // in the two filters' different roll-off regions.
  const cfg = checkpointFeatureConfig(goldenPath('tiny-a', 'checkpoint'));
  const { data, frames } = logMelSpectrogram(ours, cfg);
  const want = store.readFloat32('input_features');
  let lowBands = 0;
  let all = 0;
  for (let i = 0; i < data.length; i++) {
    const d = Math.abs(data[i] - want[i]);
    if (Math.floor(i / frames) < 120) lowBands = Math.max(lowBands, d);
    all = Math.max(all, d);
  }
  assert.ok(lowBands <= 2e-4, `mel bins 0..119 differ by ${lowBands}`);
  assert.ok(all < 0.05, `top mel bins differ by ${all}`);
});
