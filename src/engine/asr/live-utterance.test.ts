/**
 * A long utterance's partials, checked on tiny-a in fp32:
 *  - an exact update (fewer samples than the update before, the previous output as a draft)
 *    decodes what a decode of those samples from scratch gives;
 *  - a long utterance is cut into pieces after two finished windows, at a quiet point, and
 *    each piece's last update is the from-scratch decode of the piece;
 *  - what an update prefills and keeps cached stays bounded along a minute of speech.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeAudio } from '../../audio/decode.ts';
import { AUDIO_DIR, goldenSets } from '../../testing/shared.ts';
import { AsrModel } from './asr-model.ts';
import { LiveTranscript } from './live-transcript.ts';
import { CUT_SEARCH_SECONDS, LiveUtterance, PIECE_WINDOWS, type LiveUtteranceUpdate } from './live-utterance.ts';

const [tinyA] = goldenSets('asr', ['tiny-a']);
const SR = 16000;
/** tiny-a's attention window: 800 feature frames of 160 samples (the goldens' encoder_cu_seqlens). */
const WINDOW = 8 * SR;

describe('live utterance (tiny-a, fp32)', () => {
  let model: AsrModel;
  let speech: Float32Array;

  before(async () => {
    model = await AsrModel.load(tinyA.path('checkpoint'), { device: 'cpu', quant: 'none', threads: 2, cacheDir: false });
    speech = (await decodeAudio(join(AUDIO_DIR, 'notld', '119s_theres_supposed_to_be_another_broadcast.wav'))).samples;
  });
  after(() => model?.release());

  const fromScratch = async (samples: Float32Array, maxNewTokens: number) => {
    const [r] = await model.transcribe([{ samples, language: 'English', maxNewTokens }], { repetitionThreshold: 20 });
    return r.tokenIds.filter((id) => !model.stopIds.has(id));
  };

  test('an exact update over fewer samples decodes what a decode of them from scratch gives', async () => {
    const live = new LiveTranscript(model, { language: 'English' });
    assert.equal(live.windowSamples, WINDOW);
    let last;
    for (let seconds = 2; seconds <= 14; seconds += 2) last = await live.update(speech.subarray(0, seconds * SR), { maxNewTokens: 10 });
    assert.equal(live.finishedSamples, WINDOW);
    // Back to 11.5 s: the fixed text of the 14 s update may hold words of the audio after it.
    const samples = speech.subarray(0, Math.round(11.5 * SR));
    const exact = await live.update(samples, { maxNewTokens: 10, exact: true });
    assert.deepEqual(exact.ids, await fromScratch(samples, last!.ids.length + 10));
  });

  test('a long utterance is cut into pieces at quiet points; each piece ends in its from-scratch decode', async () => {
    const live = new LiveUtterance(model, { language: 'English' });
    const updates: LiveUtteranceUpdate[] = [];
    let pieceStart = 0;
    let lastPieceIds = 0;
    let pieces = 0;
    let closed = '';
    for (let seconds = 2; seconds <= 62; seconds += 2) {
      const samples = speech.subarray(0, seconds * SR);
      const u = await live.update(samples, { maxNewTokens: 12 });
      updates.push(u);
      if (u.cutAt === undefined) {
        assert.equal(u.covered, samples.length);
        assert.ok(u.text.startsWith(closed), `${seconds} s: the closed pieces begin the text`);
        assert.ok(u.settled.startsWith(closed), `${seconds} s: and the settled text`);
        assert.ok(samples.length - pieceStart < PIECE_WINDOWS * WINDOW + CUT_SEARCH_SECONDS * SR + 2 * SR, `${seconds} s: the open piece is cut in time`);
        lastPieceIds = u.ids.length;
        continue;
      }
      // The cut falls after the piece's cached windows, within the audio heard, at the quietest 100 ms there.
      const cut = u.cutAt;
      assert.ok(cut >= pieceStart + PIECE_WINDOWS * WINDOW && cut <= samples.length, `${seconds} s: cut at ${cut / SR} s`);
      const energy = (at: number) => speech.subarray(at, at + SR / 10).reduce((a, v) => a + Math.abs(v), 0);
      const loudest = Math.max(...Array.from({ length: 20 }, (_, k) => energy(pieceStart + PIECE_WINDOWS * WINDOW + k * (SR / 10))));
      assert.ok(energy(Math.max(pieceStart, cut - SR / 20)) < loudest, 'the cut is not at the loudest stretch');
      assert.deepEqual(u.ids, await fromScratch(speech.subarray(pieceStart, cut), lastPieceIds + 12), `${seconds} s: the piece's last update is its exact decode`);
      assert.ok(u.text.startsWith(closed), `${seconds} s: the closed pieces begin the text`);
      assert.equal(u.settled, u.text);
      closed = u.text;
      pieces++;
      pieceStart = cut;
      lastPieceIds = 0;
    }
    assert.ok(pieces >= 2, `a minute is cut at least twice (cuts: ${live.cuts.map((c) => (c / SR).toFixed(1)).join(', ')})`);
    // Bounded work: at most the piece's windows cached, and no more prefilled late than early.
    for (const u of updates) assert.ok(u.cachedAudioTokens <= PIECE_WINDOWS * 104, `${u.covered / SR} s: ${u.cachedAudioTokens} cached audio tokens`);
    const first = Math.max(...updates.filter((u) => u.covered <= 22 * SR).map((u) => u.prefilled));
    const later = Math.max(...updates.filter((u) => u.covered > 22 * SR).map((u) => u.prefilled));
    assert.ok(later <= first + 12, `prefilled: ${updates.map((u) => u.prefilled).join(', ')}`);
  });
});
