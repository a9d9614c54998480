import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { SafetensorsStore } from '../engine/checkpoint/safetensors.ts';
import { checkpointFeatureConfig, goldenPath, maxAbsDiff, readJson } from '../testing/shared.ts';
import { featureFrameCount, loadFeatureConfig, logMelSpectrogram, melFilterBank, parseFeatureConfig, type FeatureConfig } from './features.ts';

const CHECKPOINT = goldenPath('tiny-a', 'checkpoint');
/** golden/README.md: input_features max abs diff ≤ 2e-4. */
const TOLERANCE = 2e-4;

test('loadFeatureConfig reads the tiny-a checkpoint (preprocessor_config.json + num_mel_bins)', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  const pre = readJson<Record<string, number>>(goldenPath('tiny-a', 'checkpoint', 'preprocessor_config.json'));
  const model = readJson<any>(goldenPath('tiny-a', 'checkpoint', 'config.json'));
  assert.equal(cfg.nFft, pre.n_fft);
  assert.equal(cfg.hopLength, pre.hop_length);
  assert.equal(cfg.nMels, model.thinker_config.audio_config.num_mel_bins);
  assert.equal(cfg.nMels, pre.feature_size);
  // sampling_rate is absent from the published file: WhisperFeatureExtractor's default.
  assert.equal(cfg.sampleRate, pre.sampling_rate ?? 16000);
  assert.equal(cfg.fMin, 0);
  assert.equal(cfg.fMax, 8000);
});

test('log-mel features match every tiny-a audio golden (≤ 2e-4, frames = T // 160)', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  const files = readdirSync(goldenPath('tiny-a', 'cases')).filter((f) => f.endsWith('.audio.safetensors'));
  assert.ok(files.length >= 6, `expected the tiny-a audio goldens, found ${files.length}`);
  for (const file of files) {
    const store = SafetensorsStore.openFile(goldenPath('tiny-a', 'cases', file));
    const waveform = store.readFloat32('waveform');
    const golden = store.info('input_features');
    const { data, frames } = logMelSpectrogram(waveform, cfg);
    assert.equal(frames, Math.floor(waveform.length / 160), file);
    assert.deepEqual([cfg.nMels, frames], golden.shape, file);
    const diff = maxAbsDiff(data, store.readFloat32('input_features'));
    assert.ok(diff <= TOLERANCE, `${file}: max abs diff ${diff}`);
  }
});

/** Straight transcription of spec §4.3 with an O(n²) DFT, for inputs the goldens do not cover. */
function referenceLogMel(x: Float32Array, cfg: FeatureConfig): Float64Array {
  const { nFft, hopLength: hop, nMels } = cfg;
  const pad = nFft / 2;
  const n = x.length;
  const padded = new Float64Array(n + 2 * pad);
  for (let i = 0; i < padded.length; i++) {
    let j = i - pad;
    if (j < 0) j = -j;
    if (j >= n) j = 2 * (n - 1) - j;
    padded[i] = x[j];
  }
  const frames = Math.floor(n / hop);
  const filters = melFilterBank(cfg);
  const out = new Float64Array(nMels * frames);
  for (let t = 0; t < frames; t++) {
    const power = new Float64Array(nFft / 2 + 1);
    for (let k = 0; k <= nFft / 2; k++) {
      let re = 0;
      let im = 0;
      for (let j = 0; j < nFft; j++) {
        const v = padded[t * hop + j] * (0.5 - 0.5 * Math.cos((2 * Math.PI * j) / nFft));
        re += v * Math.cos((2 * Math.PI * k * j) / nFft);
        im -= v * Math.sin((2 * Math.PI * k * j) / nFft);
      }
      power[k] = re * re + im * im;
    }
    for (let m = 0; m < nMels; m++) {
      let acc = 0;
      filters[m].weights.forEach((w, i) => (acc += w * power[filters[m].first + i]));
      out[m * frames + t] = Math.log10(Math.max(acc, 1e-10));
    }
  }
  const max = out.reduce((a, b) => Math.max(a, b), -Infinity);
  return out.map((v) => (Math.max(v, max - 8) + 4) / 4);
}

test('fast path equals a direct DFT transcription of the spec (odd lengths, odd frame counts, edges)', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  let seed = 12345;
  const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) - 0.5;
  for (const n of [201, 359, 1601, 2083]) {
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = 0.3 * Math.sin(i * 0.07) + 0.2 * rand();
    const { data, frames } = logMelSpectrogram(x, cfg);
    assert.equal(frames, featureFrameCount(n, cfg));
    const want = referenceLogMel(x, cfg);
    assert.ok(maxAbsDiff(data, want) < 1e-5, `n=${n}: ${maxAbsDiff(data, want)}`);
  }
});

test('mel filter bank: Slaney triangles, sparse, area-normalised', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  const filters = melFilterBank(cfg);
  const binHz = cfg.sampleRate / cfg.nFft;
  assert.equal(filters.length, cfg.nMels);
  for (const [m, f] of filters.entries()) {
    assert.ok(f.weights.length > 0 && f.weights.length < 20, `filter ${m} has ${f.weights.length} non-zero bins`);
    assert.ok(f.weights.every((w) => w > 0), `filter ${m} stores a zero weight`);
    assert.ok(f.first + f.weights.length - 1 <= cfg.nFft / 2, `filter ${m} runs past the last bin`);
    if (m > 0) assert.ok(f.first >= filters[m - 1].first, `filter ${m} is out of order`);
  }
  // Slaney normalisation gives every triangle unit area in Hz; the wide high filters show it
  // well when sampled at the 40 Hz bin spacing.
  for (let m = 100; m < cfg.nMels; m++) {
    const area = filters[m].weights.reduce((a, b) => a + b, 0) * binHz;
    assert.ok(Math.abs(area - 1) < 0.03, `filter ${m}: area ${area}`);
  }
});

test('too-short or invalid audio gives a clear error, never NaN', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  for (const n of [0, 1, 159, 200]) {
    assert.throws(() => logMelSpectrogram(new Float32Array(n), cfg), /audio too short for log-mel features/, `n=${n}`);
  }
  const minimal = logMelSpectrogram(new Float32Array(201).fill(0.1), cfg);
  assert.equal(minimal.frames, 1);
  assert.ok(minimal.data.every(Number.isFinite));
  const bad = new Float32Array(1000);
  bad[500] = NaN;
  assert.throws(() => logMelSpectrogram(bad, cfg), /sample 500 is not a finite number/);
  assert.throws(() => logMelSpectrogram(new Float32Array(1000), { ...cfg, hopLength: 0 }), /hopLength must be a positive integer/);
});

test('digital silence gives the floor value everywhere: (log10(1e-10) + 4) / 4 = -1.5', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  const { data } = logMelSpectrogram(new Float32Array(3200), cfg);
  assert.ok(data.every((v) => v === -1.5));
});

test('the dynamic-range floor is relative to the whole input, not per frame', () => {
  const cfg = checkpointFeatureConfig(CHECKPOINT);
  // Loud tone followed by a very quiet one: the quiet half is clamped at max - 8.
  const x = new Float32Array(32000);
  for (let i = 0; i < x.length; i++) x[i] = (i < 16000 ? 0.5 : 1e-7) * Math.sin(2 * Math.PI * 1000 * (i / 16000));
  const { data } = logMelSpectrogram(x, cfg);
  const max = data.reduce((a, b) => Math.max(a, b), -Infinity);
  const min = data.reduce((a, b) => Math.min(a, b), Infinity);
  assert.ok(Math.abs(max - min - 2) < 1e-6, `range ${max - min}, expected 8/4 = 2`);
});

test('parseFeatureConfig rejects inconsistent or unsupported settings', () => {
  const good = { feature_extractor_type: 'WhisperFeatureExtractor', feature_size: 128, n_fft: 400, hop_length: 160, dither: 0 };
  assert.equal(parseFeatureConfig(good, 128).nMels, 128);
  assert.throws(() => parseFeatureConfig(good, 80), /feature_size 128 differs from the audio encoder's num_mel_bins 80/);
  assert.throws(() => parseFeatureConfig({ ...good, dither: 1e-5 }, 128), /dither/);
  assert.throws(() => parseFeatureConfig({ ...good, n_fft: undefined }, 128), /"n_fft" must be a positive integer/);
  assert.throws(() => parseFeatureConfig({ ...good, feature_extractor_type: 'SeamlessM4TFeatureExtractor' }, 128), /not supported/);
  assert.throws(() => parseFeatureConfig({ ...good, sampling_rate: 8000 }, 128), /too low/);
  assert.throws(() => parseFeatureConfig(null, 128), /not a JSON object/);
  assert.throws(() => loadFeatureConfig('/nonexistent-checkpoint-dir', 128), /cannot read/);
});
