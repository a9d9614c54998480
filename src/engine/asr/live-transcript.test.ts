/**
 * The live transcript's claims, checked on tiny-a in fp32:
 *  - finished 8 s windows encode alone to exactly the audio tokens they have inside the whole
 *    input (the windows the goldens' encoder_cu_seqlens describe);
 *  - an update without fixed text, built from the cached head and windows plus the open
 *    window, decodes the ids a from-scratch decode of the same samples gives;
 *  - later updates prefill only the open window, the tail and the fixed text, whatever the
 *    utterance's length.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeAudio } from '../../audio/decode.ts';
import { planEncoder } from '../thinker/audio-encoder.ts';
import { AUDIO_DIR, goldenSets, maxAbsDiff, readJson } from '../../testing/shared.ts';
import { AsrModel } from './asr-model.ts';
import { LiveTranscript, UNFIXED_UPDATES } from './live-transcript.ts';

const [tinyA] = goldenSets('asr', ['tiny-a']);
const SR = 16000;

describe('live transcript (tiny-a, fp32)', () => {
  let model: AsrModel;
  let speech: Float32Array;

  before(async () => {
    model = await AsrModel.load(tinyA.path('checkpoint'), { device: 'cpu', quant: 'none', threads: 2, cacheDir: false });
    speech = (await decodeAudio(join(AUDIO_DIR, 'notld', '119s_theres_supposed_to_be_another_broadcast.wav'))).samples;
  });
  after(() => model?.release());

  test("the goldens' attention windows are 8 s of audio: 104 tokens of 8 full conv chunks", () => {
    const index = readJson(tinyA.path('index.json'));
    const withWindows = (index.cases as any[]).filter((c) => Array.isArray(c.encoder_cu_seqlens) && c.encoder_cu_seqlens.length > 2);
    assert.ok(withWindows.length > 0, 'a golden case spans several windows');
    for (const c of withWindows) {
      const plan = planEncoder(c.feature_length, model.config.audio);
      assert.deepEqual(plan.windowBounds, c.encoder_cu_seqlens, c.case);
      const step = c.encoder_cu_seqlens[1] - c.encoder_cu_seqlens[0];
      assert.equal(step, 104, c.case);
    }
  });

  test('a finished window encodes alone to the audio tokens it has inside the whole input', async () => {
    const samples = speech.subarray(0, 20 * SR);
    const mel = model.melFeatures(samples);
    const [whole] = await model.encoder.encode([mel]);
    const O = model.config.audio.outputDim;
    const frames = 800;
    const mels = model.config.audio.numMelBins;
    const cut = (from: number, to: number, partOfLonger: boolean) => {
      const data = new Float32Array(mels * (to - from));
      for (let m = 0; m < mels; m++) data.set(mel.data.subarray(m * mel.frames + from, m * mel.frames + to), m * (to - from));
      return { data, frames: to - from, partOfLonger };
    };
    const parts = await model.encoder.encode([cut(0, frames, true), cut(frames, 2 * frames, true), cut(2 * frames, mel.frames, true)]);
    let at = 0;
    for (const part of parts) {
      assert.ok(maxAbsDiff(part, whole.subarray(at, at + part.length)) < 1e-5, `window at token ${at / O}`);
      at += part.length;
    }
    assert.equal(at, whole.length);
  });

  test('updates without fixed text decode what a decode of the same samples from scratch gives', async () => {
    const live = new LiveTranscript(model, { language: 'English' });
    for (const seconds of [3, 11].slice(0, UNFIXED_UPDATES)) {
      const samples = speech.subarray(0, seconds * SR);
      const got = await live.update(samples, { maxNewTokens: 40 });
      const [want] = await model.transcribe([{ samples, language: 'English', maxNewTokens: 40 }], { repetitionThreshold: 20 });
      assert.deepEqual(got.ids, want.tokenIds.filter((id) => !model.stopIds.has(id)), `${seconds} s`);
      assert.equal(got.text, want.text, `${seconds} s`);
    }
  });

  test('drafted rolled-back ids give the ids step-by-step decoding gives, in fewer steps', async () => {
    const drafted = new LiveTranscript(model, { language: 'English' });
    const stepwise = new LiveTranscript(model, { language: 'English', draft: false });
    let confirmed = 0;
    for (let seconds = 1; seconds <= 24; seconds += 1) {
      const samples = speech.subarray(0, seconds * SR);
      const a = await drafted.update(samples, { maxNewTokens: 12 });
      const b = await stepwise.update(samples, { maxNewTokens: 12 });
      assert.deepEqual(a.ids, b.ids, `${seconds} s`);
      assert.equal(b.drafted, 0);
      confirmed += a.drafted;
    }
    assert.ok(confirmed > 0, 'some drafted ids were confirmed');
  });

  test('completeFrom: a whole utterance decoded forced to begin with the text already sent', async () => {
    for (const language of ['English', undefined]) {
      const live = new LiveTranscript(model, { language });
      const u = await live.completeFrom(speech.subarray(0, 6 * SR), 'And so my', 'English', { maxNewTokens: 20 });
      assert.ok(u.text.startsWith('And so my'), `${language ?? 'detected'}: ${JSON.stringify(u.text)}`);
      assert.ok(u.decoded > 0);
    }
  });

  test('later updates prefill the open window, the tail and the fixed text only', async () => {
    const live = new LiveTranscript(model, { language: 'English' });
    const prefilled: number[] = [];
    for (let seconds = 2; seconds <= 60; seconds += 2) {
      const u = await live.update(speech.subarray(0, seconds * SR), { maxNewTokens: 12 });
      prefilled.push(u.prefilled - u.ids.length + u.decoded);
      assert.equal(u.cachedAudioTokens, Math.floor((seconds * 100 - 1) / 800) * 104, `${seconds} s`);
    }
    // Open window (at most 104 tokens) plus the prompt's tail, whatever the length so far.
    const tail = Math.max(...prefilled.map((p) => p));
    assert.ok(tail <= 104 + 16, `prefilled beyond the fixed text: ${prefilled.join(', ')}`);
  });
});
