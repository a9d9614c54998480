/**
 * Voice activity detection through the pipeline (tiny-a, fp32): on a recording of speech clips
 * between 20–25 s of silence and low noise, segments cover the speech, none lies in a gap,
 * the gaps are not decoded, and times are those of the whole recording; with VAD off the cuts
 * are the official ones.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { splitAtQuietPoints } from '../audio/segment.ts';
import { speechRegions } from '../audio/speech-regions.ts';
import { buildVadRecording, type VadRecording } from '../bench/vad-recording.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { SileroVad } from '../engine/vad/silero-vad.ts';
import { DEFAULT_VAD_MIN_SILENCE_MS, DEFAULT_VAD_THRESHOLD } from '../settings/settings.ts';
import { AUDIO_DIR, goldenPath } from '../testing/shared.ts';
import { runTranscription, SAMPLE_RATE } from './run-transcription.ts';

let asr: AsrModel;
let vad: SileroVad;
let recording: VadRecording;
before(async () => {
  asr = await AsrModel.load(goldenPath('tiny-a', 'checkpoint'), { device: 'cpu', quant: 'none', threads: 2, cacheDir: false });
  vad = await SileroVad.load();
  recording = await buildVadRecording({
    clips: [join(AUDIO_DIR, 'jfk.wav'), join(AUDIO_DIR, 'notld', '10s_im_taking_the_girl_with_me.wav'), join(AUDIO_DIR, 'notld', '12s_if_anything_should_try_to_break_in.wav')],
    gapSeconds: [20, 25],
  });
});
after(async () => {
  await asr?.release();
  await vad?.release();
});

const settings = () => ({ segmentSeconds: 20, maxNewTokens: 24, vad: { threshold: DEFAULT_VAD_THRESHOLD, minSilenceMs: DEFAULT_VAD_MIN_SILENCE_MS, model: vad } });

test('with VAD, segments cover the speech, none lies in a gap, and the gaps are not decoded', async () => {
  const { samples, clips, gaps } = recording;
  const total = samples.length / SAMPLE_RATE;
  const result = await runTranscription(asr, undefined, samples, { language: 'English' }, settings());
  const secs = (x: { start: number; end: number }) => ({ start: x.start / SAMPLE_RATE, end: x.end / SAMPLE_RATE });
  const overlap = (a: { start: number; end: number }, b: { start: number; end: number }) => Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start));
  assert.equal(result.duration, total);
  assert.ok(result.segments.length > 0);
  // No segment lies inside a gap: each overlaps a clip, and nearly all of it is speech.
  for (const s of result.segments) {
    const speech = clips.reduce((n, c) => n + overlap(s, secs(c)), 0);
    assert.ok(speech > 0, `segment ${s.start}–${s.end} s is all non-speech`);
    assert.ok(speech >= 0.5 * (s.end - s.start), `segment ${s.start}–${s.end} s is mostly non-speech`);
    assert.ok(s.text.length > 0, 'a decoded segment has text (tiny-a always writes)');
  }
  // No cut inside speech: where a clip is split (a pause in it), the audio between its
  // segments is quiet; and most of every clip is decoded.
  const rmsDb = (from: number, to: number) => {
    let sum = 0;
    for (let i = Math.round(from * SAMPLE_RATE); i < Math.round(to * SAMPLE_RATE); i++) sum += samples[i] * samples[i];
    return 10 * Math.log10(sum / Math.max(1, Math.round((to - from) * SAMPLE_RATE)) + 1e-12);
  };
  const loudest = rmsDb(0, total);
  for (const c of clips.map(secs)) {
    const covering = result.segments.filter((s) => overlap(s, c) > 0);
    // What the VAD finds as speech in the clip on its own is decoded, nearly all of it: the
    // model's state carries context, so the recording's silences and noise around a clip move
    // its region edges a little (on this recording the third clip's 9.65 s are 89% decoded).
    const alone = speechRegions(await vad.probabilities(samples.slice(Math.round(c.start * SAMPLE_RATE), Math.round(c.end * SAMPLE_RATE))), Math.round((c.end - c.start) * SAMPLE_RATE), {
      threshold: DEFAULT_VAD_THRESHOLD,
      minSilenceMs: DEFAULT_VAD_MIN_SILENCE_MS,
    }).map((r) => ({ start: c.start + r.start / SAMPLE_RATE, end: c.start + r.end / SAMPLE_RATE }));
    const speech = alone.reduce((n, r) => n + (r.end - r.start), 0);
    const found = alone.reduce((n, r) => n + covering.reduce((m, s) => m + overlap(s, r), 0), 0);
    assert.ok(speech > 1 && found >= 0.85 * speech, `clip ${c.start.toFixed(2)} s: ${found.toFixed(2)} of its ${speech.toFixed(2)} s of speech decoded`);
    for (let k = 1; k < covering.length; k++) {
      const [a, b] = [covering[k - 1].end, covering[k].start];
      assert.ok(b > a, `clip ${c.start.toFixed(2)} s is cut without a pause at ${a.toFixed(2)} s`);
      assert.ok(rmsDb(a, b) < loudest - 15, `the pause ${a.toFixed(2)}–${b.toFixed(2)} s in clip ${c.start.toFixed(2)} s is not quiet: ${rmsDb(a, b).toFixed(1)} dB against ${loudest.toFixed(1)}`);
    }
  }
  // The gaps are skipped: decoded seconds are about the speech's.
  const decoded = result.segments.reduce((n, s) => n + s.end - s.start, 0);
  const gapSeconds = gaps.reduce((n, g) => n + (g.end - g.start), 0) / SAMPLE_RATE;
  assert.ok(decoded < total - 0.9 * gapSeconds, `${decoded.toFixed(1)} of ${total.toFixed(1)} s decoded; ${gapSeconds.toFixed(1)} s of gaps`);
});

test('without VAD the cuts are the official ones and tile the whole recording', async () => {
  const { samples } = recording;
  const result = await runTranscription(asr, undefined, samples, { language: 'English' }, { segmentSeconds: 20, maxNewTokens: 24 });
  const official = splitAtQuietPoints(samples, { maxSeconds: 20, sampleRate: SAMPLE_RATE });
  assert.deepEqual(
    result.segments.map((s) => s.start),
    official.map((p) => p.offsetSeconds),
  );
  assert.equal(result.segments[result.segments.length - 1].end, samples.length / SAMPLE_RATE);
});
