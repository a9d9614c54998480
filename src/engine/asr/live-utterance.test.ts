/**
 * A long utterance's partials, checked on tiny-a in fp32 over a minute of real speech: it is
 * cut into pieces after two finished windows, at pauses in audio no update decoded yet; the
 * transcript keeps the closed pieces' texts; what an update prefills and keeps cached stays
 * bounded.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeAudio } from '../../audio/decode.ts';
import { AUDIO_DIR, goldenSets } from '../../testing/shared.ts';
import { AsrModel } from './asr-model.ts';
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

  test('a long utterance is cut into pieces at pauses after two windows; the text keeps the closed pieces', async () => {
    const live = new LiveUtterance(model, { language: 'English' });
    const updates: LiveUtteranceUpdate[] = [];
    let pieceStart = 0;
    let covered = 0;
    let pieces = 0;
    let closed = '';
    const level = (from: number, to: number) => speech.subarray(from, to).reduce((a, v) => a + Math.abs(v), 0) / (to - from);
    for (let seconds = 2; seconds <= 62; seconds += 2) {
      const samples = speech.subarray(0, seconds * SR);
      const u = await live.update(samples, { maxNewTokens: 12 });
      updates.push(u);
      assert.ok(u.text.startsWith(closed) && u.settled.startsWith(closed), `${seconds} s: the closed pieces begin the text`);
      if (u.cutAt === undefined) {
        assert.equal(u.covered, samples.length);
        assert.ok(samples.length - pieceStart < PIECE_WINDOWS * WINDOW + CUT_SEARCH_SECONDS * SR + 2 * SR, `${seconds} s: the open piece is cut in time`);
        covered = u.covered;
        continue;
      }
      // After the piece's cached windows and the audio the last update decoded, within what was passed.
      const cut = u.cutAt;
      assert.ok(cut >= Math.max(pieceStart + PIECE_WINDOWS * WINDOW, covered) && cut <= samples.length, `${seconds} s: cut at ${cut / SR} s`);
      // At a pause (a fifth of the piece's level), unless the piece ran CUT_SEARCH_SECONDS past its windows without one.
      const forced = samples.length - pieceStart >= PIECE_WINDOWS * WINDOW + CUT_SEARCH_SECONDS * SR;
      const around = Math.min(cut - SR / 20, samples.length - SR / 10);
      assert.ok(forced || level(around, around + SR / 10) <= 0.2 * level(pieceStart, samples.length), `${seconds} s: the cut at ${cut / SR} s is a pause`);
      // The piece's last update is its text in full.
      assert.equal(u.settled, u.text);
      closed = u.text;
      pieces++;
      pieceStart = covered = cut;
    }
    // Completing it from text sent up to the open piece decodes only that piece again.
    const sent = `${closed} ${updates[updates.length - 1].settled.slice(closed.length).trim().split(/\s+/)[0] ?? ''}`.trim();
    const done = await live.completeFrom(speech.subarray(0, 62 * SR), sent, 'English', { maxNewTokens: 200 });
    assert.ok(done.text.startsWith(sent), `completed ${JSON.stringify(done.text.slice(0, 80))} begins with what was sent`);
    assert.ok(done.prefilled < ((62 * SR - pieceStart) / SR) * 13 + 300, `prefilled ${done.prefilled}: the open piece's audio and text, not the minute's`);
    assert.ok(pieces >= 2, `a minute is cut at least twice (cuts: ${live.cuts.map((c) => (c / SR).toFixed(1)).join(', ')})`);
    // Bounded work: at most the piece's windows cached, and no more prefilled late than early.
    for (const u of updates) assert.ok(u.cachedAudioTokens <= PIECE_WINDOWS * 104, `${u.covered / SR} s: ${u.cachedAudioTokens} cached audio tokens`);
    const first = Math.max(...updates.filter((u) => u.covered <= 22 * SR).map((u) => u.prefilled));
    const later = Math.max(...updates.filter((u) => u.covered > 22 * SR).map((u) => u.prefilled));
    assert.ok(later <= first + 12, `prefilled: ${updates.map((u) => u.prefilled).join(', ')}`);
  });
});
