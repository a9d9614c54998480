/**
 * The audio encoder's conv stem in its two forms: the fp32 Conv graph (what the golden
 * conformance tests check) and the W8A8 form used with quantised weights (three channels-last
 * convolutions, the second and third as one integer product over 3×3 patches).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { logMelSpectrogram } from '../../audio/index.ts';
import { convOutLength, loadModelConfig } from '../checkpoint/config.ts';
import { packWindows } from '../thinker/audio-encoder.ts';
import { buildConvStemGraph, conv3x3Stride2W8A8, sinusoidPositions } from './encoder-graph.ts';
import { defaultInt8Kernel } from '../thinker/precision.ts';
import { DataType, GraphBuilder } from '../runtime/onnx-graph.ts';
import { quantizePerChannelInt8 } from '../runtime/quantize.ts';
import { SafetensorsStore } from '../checkpoint/safetensors.ts';
import { checkpointFeatureConfig, exactInt8Kernels, goldenPath, readJson, relError, roundHalfEven, seededGaussian } from '../../testing/shared.ts';

for (const int8Kernel of exactInt8Kernels()) {
  test(`w8a8 3×3 stride-2 convolution (${int8Kernel}): per-patch int8 inputs (padding included as zeros) times the int8 kernel, as defined`, async () => {
    const cin = 8;
    const cout = 6;
    const H = 7; // odd height: the last output row reads the bottom padding
    const randn = seededGaussian(11);
    const w = Float32Array.from({ length: cout * cin * 9 }, randn);
    const bias = Float32Array.from({ length: cout }, (_, o) => o / cout - 0.5);
    const g = new GraphBuilder('conv');
    const x = g.input('x', DataType.FLOAT, ['n', H, 'w', cin]);
    g.node('Identity', [conv3x3Stride2W8A8(g, x, 'c', w, bias, cin, cout, H, int8Kernel)], {}, { outputs: ['y'] });
    g.output('y', DataType.FLOAT, ['n', 'h', 'w2', cout]);
    const session = await ort.InferenceSession.create(g.toBytes());
    // The kernel as rows of 9·cin, tap-major: one per-output-channel scale over all nine taps.
    const kernelRows = new Float32Array(cout * 9 * cin);
    for (let o = 0; o < cout; o++) for (let t = 0; t < 9; t++) for (let i = 0; i < cin; i++) kernelRows[(o * 9 + t) * cin + i] = w[(o * cin + i) * 9 + t];
    const kernel = quantizePerChannelInt8(kernelRows, cout, 9 * cin);
    try {
      for (const W of [6, 5, 1]) {
        const n = 2;
        const input = Float32Array.from({ length: n * H * W * cin }, randn);
        input.fill(0, 0, cin); // one all-zero pixel: scale floor, no NaN
        const out = await session.run({ x: new ort.Tensor('float32', input, [n, H, W, cin]) });
        const outH = Math.floor((H - 1) / 2) + 1;
        const outW = Math.floor((W - 1) / 2) + 1;
        assert.deepEqual(out.y.dims, [n, outH, outW, cout], `width ${W}`);
        // Host reference: the same integer arithmetic. A patch holds the nine input pixels of
        // an output pixel (zeros where they fall in the padding), quantised with one scale.
        const patch = (b: number, oy: number, ox: number) => {
          const v = new Float32Array(9 * cin);
          for (let t = 0; t < 9; t++) {
            const iy = 2 * oy + Math.floor(t / 3) - 1;
            const ix = 2 * ox + (t % 3) - 1;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            v.set(input.subarray(((b * H + iy) * W + ix) * cin, ((b * H + iy) * W + ix + 1) * cin), t * cin);
          }
          let max = 0;
          for (const a of v) max = Math.max(max, Math.abs(a));
          const s = Math.max(Math.fround(max / 127), Math.fround(1e-30));
          return { s, q: Array.from(v, (a) => Math.min(127, Math.max(-128, roundHalfEven(Math.fround(a / s))))) };
        };
        const y = out.y.data as Float32Array;
        let worst = 0;
        let scale = 0;
        for (let b = 0; b < n; b++) {
          for (let oy = 0; oy < outH; oy++) {
            for (let ox = 0; ox < outW; ox++) {
              const { s, q } = patch(b, oy, ox);
              for (let o = 0; o < cout; o++) {
                let dot = 0;
                for (let k = 0; k < 9 * cin; k++) dot += q[k] * kernel.weights[k * cout + o];
                const acc = bias[o] + dot * s * kernel.scales[o];
                const got = y[((b * outH + oy) * outW + ox) * cout + o];
                worst = Math.max(worst, Math.abs(got - acc));
                scale = Math.max(scale, Math.abs(acc));
              }
            }
          }
        }
        assert.ok(worst <= 1e-5 * scale, `width ${W}: largest difference from the integer reference ${worst} (outputs up to ${scale})`);
      }
    } finally {
      await session.release();
    }
  });
}

test('tiny-a conv stem: the w8a8 form stays within 0.5% of the fp32 convolutions on real features (measured 0.20% with the conv_out projection in W8A8 too)', async () => {
  const dir = goldenPath('tiny-a', 'checkpoint');
  const cfg = loadModelConfig(dir).audio;
  const store = SafetensorsStore.openDir(dir);
  const sessions = await Promise.all(
    (['fp32', 'w8a8'] as const).map((precision) => {
      const g = new GraphBuilder(`conv-${precision}`);
      buildConvStemGraph(g, store, cfg, { precision, int8Kernel: defaultInt8Kernel() }); // this machine's integer kernel
      return ort.InferenceSession.create(g.toBytes());
    }),
  );
  const index = readJson(goldenPath('tiny-a', 'index.json'));
  const samples = SafetensorsStore.openFile(goldenPath('tiny-a', index.cases[0].audio_file_golden)).readFloat32('waveform');
  const mel = logMelSpectrogram(samples, checkpointFeatureConfig(dir));
  const mels = cfg.numMelBins;
  try {
    // Full chunks as one batch, an odd-width tail, and a single frame.
    for (const [n, width] of [[3, 100], [1, 37], [1, 1]]) {
      assert.ok(mel.frames >= n * width, 'the golden case is long enough');
      const chunks = new Float32Array(n * mels * width);
      for (let b = 0; b < n; b++) for (let m = 0; m < mels; m++) chunks.set(mel.data.subarray(m * mel.frames + b * width, m * mel.frames + (b + 1) * width), (b * mels + m) * width);
      const t = convOutLength(width);
      const feeds = {
        chunks: new ort.Tensor('float32', chunks, [n, 1, mels, width]),
        positions: new ort.Tensor('float32', sinusoidPositions(t, cfg.dModel), [t, cfg.dModel]),
      };
      const [exact, w8a8] = await Promise.all(sessions.map((s) => s.run(feeds)));
      assert.deepEqual(w8a8.embeds.dims, exact.embeds.dims, `${n}×${width}`);
      const err = relError(w8a8.embeds.data as Float32Array, exact.embeds.data as Float32Array);
      assert.ok(err < 0.005, `${n}×${width} frames: relative error ${err}`);
      process.stdout.write(`# conv stem ${n}×${width} frames: w8a8 relative error ${err.toFixed(4)}\n`);
    }
  } finally {
    await Promise.all(sessions.map((s) => s.release()));
  }
});

test('encoder windows: short windows share rows, longest first, none split or lost', () => {
  // Three segments of the 60 s benchmark recording: 319, 268 and 190 tokens in windows of 104.
  const lengths = [104, 104, 104, 7, 104, 104, 60, 104, 86];
  const rows = packWindows(lengths);
  assert.equal(rows.length, 8);
  assert.deepEqual(rows.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
  for (const row of rows) assert.ok(row.reduce((n, w) => n + lengths[w], 0) <= 104);
  assert.deepEqual(rows[6], [8, 3]); // 86 + 7
  assert.deepEqual(rows[7], [6]);
  assert.deepEqual(packWindows([65]), [[0]]);
  assert.deepEqual(packWindows([]), []);
});
