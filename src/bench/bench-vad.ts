/**
 * Voice activity detection: what Silero VAD costs, and what it saves on a recording with long
 * non-speech.
 *
 * - cost: probabilities for a real speech recording (default the 119 s notld clip), median of
 *   `--runs`: as upstream's single pass (one stream, no state reset), as one stream with the
 *   reset, as the default streams, and as those streams with a 1 s warm-up; for each, the
 *   seconds of speech regions that differ from the one stream's;
 * - a recording built by vad-recording.ts (`--clips` notld clips, gaps of 20–60 s): the VAD's
 *   time on it, its speech regions, how much of the speech the model finds in each clip run on
 *   its own they hold (and upstream's single pass holds), the segments splitAtSpeech makes
 *   against splitAtQuietPoints' (`--max-seconds`, default 20) and the seconds each decodes.
 *
 * - with `--asr DIR`: the built recording through the pipeline (int8, decoding forced to 4 tokens
 *   per audio second, as `npm run bench`) with VAD on and off: seconds each, and the speed-up.
 *
 *   node --import tsx src/bench/bench-vad.ts [--runs 5] [--threads 1] [--clips 8] [--seed 1] [--model FILE] [--asr DIR]
 *
 * Prints a table, then one JSON line.
 */
import { cpus } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeAudio } from '../audio/decode.ts';
import { splitAtQuietPoints, splitAtSpeech, type AudioSegment } from '../audio/segment.ts';
import { speechRegions, type SpeechRegion } from '../audio/speech-regions.ts';
import { defaultStreams, SileroVad, VAD_WINDOW_SAMPLES, type ProbabilityOptions } from '../engine/vad/silero-vad.ts';
import { DEFAULT_VAD_MIN_SILENCE_MS, DEFAULT_VAD_THRESHOLD } from '../settings/settings.ts';
import { AUDIO_DIR } from '../testing/shared.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { runTranscription } from '../pipeline/run-transcription.ts';
import { buildVadRecording, notldClips, seededRandom } from './vad-recording.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: '1' },
    clips: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    'max-seconds': { type: 'string', default: '20' },
    speech: { type: 'string', default: join(AUDIO_DIR, 'notld', '119s_theres_supposed_to_be_another_broadcast.wav') },
    model: { type: 'string' },
    /** An ASR checkpoint: the built recording is also transcribed with VAD on and off (int8, 4 tokens per audio second). */
    asr: { type: 'string' },
  },
});
const runs = Number(values.runs);
const threads = Number(values.threads);
const maxSeconds = Number(values['max-seconds']);
const SR = 16000;
const threshold = DEFAULT_VAD_THRESHOLD;
const minSilenceMs = DEFAULT_VAD_MIN_SILENCE_MS;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
type Range = { start: number; end: number };

async function timed(vad: SileroVad, samples: Float32Array, opts: ProbabilityOptions): Promise<{ ms: number; probs: Float32Array }> {
  await vad.probabilities(samples.subarray(0, SR * 5), opts); // warm-up
  const times: number[] = [];
  let probs: Float32Array = new Float32Array(0);
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    probs = await vad.probabilities(samples, opts);
    times.push(performance.now() - t);
  }
  return { ms: median(times), probs };
}

const seconds = (ranges: Range[]) => ranges.reduce((s, r) => s + r.end - r.start, 0) / SR;
function overlap(a: Range[], b: Range[]): number {
  let s = 0;
  for (const x of a) for (const y of b) s += Math.max(0, Math.min(x.end, y.end) - Math.max(x.start, y.start));
  return s / SR;
}
/** Seconds covered by exactly one of the two region lists. */
const differing = (a: Range[], b: Range[]) => seconds(a) + seconds(b) - 2 * overlap(a, b);

const loadStart = performance.now();
const vad = await SileroVad.load({ threads, modelPath: values.model });
const loadMs = performance.now() - loadStart;

// Cost on real speech.
const speech = (await decodeAudio(values.speech!)).samples;
const speechSeconds = speech.length / SR;
const regionsOf = (p: Float32Array, n = speech.length) => speechRegions(p, n, { threshold, minSilenceMs });
const streams = defaultStreams(Math.ceil(speech.length / VAD_WINDOW_SAMPLES));
const variants: [name: string, opts: ProbabilityOptions][] = [
  ['one stream, no reset (upstream)', { streams: 1, resetAfterQuietWindows: 0 }],
  ['one stream', { streams: 1 }],
  [`${streams} streams (default)`, {}],
  [`${streams} streams, 1 s warm-up`, { warmupWindows: 32 }],
];
const costs = [];
let reference: SpeechRegion[] = [];
for (const [name, opts] of variants) {
  const { ms, probs } = await timed(vad, speech, opts);
  const regions = regionsOf(probs);
  if (name === 'one stream') reference = regions;
  costs.push({ name, msPerMinute: round(ms / (speechSeconds / 60), 1), rtf: round(ms / 1000 / speechSeconds, 5), regions: regions.length, regionSeconds: round(seconds(regions), 1), regionsRef: regions });
}
const cost = {
  file: basename(values.speech!),
  audioSeconds: round(speechSeconds, 1),
  loadMs: round(loadMs, 0),
  threads,
  variants: costs.map(({ regionsRef, ...c }) => ({ ...c, secondsDifferingFromOneStream: round(differing(regionsRef, reference), 2) })),
};

// A recording with long non-speech: its speech regions as the default computes them and as
// upstream's single pass does, against what the model finds in each clip on its own.
const clipFiles = notldClips(AUDIO_DIR);
const random = seededRandom(Number(values.seed));
for (let i = clipFiles.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [clipFiles[i], clipFiles[j]] = [clipFiles[j], clipFiles[i]];
}
const rec = await buildVadRecording({ clips: clipFiles.slice(0, Number(values.clips)), gapSeconds: [20, 60], seed: Number(values.seed) });
const alone: Range[] = [];
for (const c of rec.clips) {
  const clip = rec.samples.subarray(c.start, c.end);
  for (const r of regionsOf(await vad.probabilities(clip, { streams: 1, resetAfterQuietWindows: 0 }), clip.length)) alone.push({ start: c.start + r.start, end: c.start + r.end });
}
let t = performance.now();
const recProbs = await vad.probabilities(rec.samples);
const recVadMs = performance.now() - t;
t = performance.now();
const regions = regionsOf(recProbs, rec.samples.length);
const vadSegs: AudioSegment[] = splitAtSpeech(rec.samples, regions, { maxSeconds, sampleRate: SR });
const splitMs = performance.now() - t;
const upstreamRegions = regionsOf(await vad.probabilities(rec.samples, { streams: 1, resetAfterQuietWindows: 0 }), rec.samples.length);
const officialSegs = splitAtQuietPoints(rec.samples, { maxSeconds, sampleRate: SR });
const recording = {
  clips: rec.clips.length,
  totalSeconds: round(rec.samples.length / SR, 1),
  clipSeconds: round(seconds(rec.clips), 1),
  vadMs: round(recVadMs, 0),
  regionsAndSplitMs: round(splitMs, 1),
  regions: regions.length,
  regionSeconds: round(seconds(regions), 1),
  clipSpeechSeconds: round(seconds(alone), 1),
  clipSpeechFound: round(overlap(alone, regions) / seconds(alone), 4),
  clipSpeechFoundByUpstream: round(overlap(alone, upstreamRegions) / seconds(alone), 4),
  gapSecondsInRegions: round(overlap(rec.gaps, regions), 2),
  maxSeconds,
  vadSegments: vadSegs.length,
  vadDecodedSeconds: round(seconds(vadSegs), 1),
  officialSegments: officialSegs.length,
  officialDecodedSeconds: round(seconds(officialSegs), 1),
};
let transcription: Record<string, number> | undefined;
if (values.asr) {
  const asr = await AsrModel.load(values.asr, { device: 'cpu', quant: 'int8', threads: 0 });
  const settings = { segmentSeconds: maxSeconds, forceTokensPerSecond: 4 };
  await runTranscription(asr, undefined, rec.samples.subarray(0, 3 * SR), {}, settings); // warm-up
  let t0 = performance.now();
  const on = await runTranscription(asr, undefined, rec.samples, {}, { ...settings, vad: { threshold, minSilenceMs, model: vad } });
  const onSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const off = await runTranscription(asr, undefined, rec.samples, {}, settings);
  const offSeconds = (performance.now() - t0) / 1000;
  await asr.release();
  transcription = {
    vadOnSeconds: round(onSeconds, 2),
    vadOnSegments: on.segments.length,
    vadOffSeconds: round(offSeconds, 2),
    vadOffSegments: off.segments.length,
    speedUp: round(offSeconds / onSeconds, 2),
  };
}
await vad.release();

const rows: [string, string][] = [
  ['speech file', `${cost.file} (${cost.audioSeconds} s)`],
  ['load', `${cost.loadMs} ms`],
  ...cost.variants.map((v): [string, string] => [
    v.name,
    `${v.msPerMinute} ms per audio minute (RTF ${v.rtf}); ${v.regions} regions, ${v.regionSeconds} s, ${v.secondsDifferingFromOneStream} s differing from one stream`,
  ]),
  ['recording', `${recording.totalSeconds} s, ${recording.clips} clips (${recording.clipSeconds} s), gaps 20–60 s`],
  ['VAD on it', `${recording.vadMs} ms; regions + split ${recording.regionsAndSplitMs} ms`],
  ['speech regions', `${recording.regions}, ${recording.regionSeconds} s; ${recording.gapSecondsInRegions} s of them in the gaps`],
  ['clip speech found', `${recording.clipSpeechFound} of ${recording.clipSpeechSeconds} s (upstream's single pass: ${recording.clipSpeechFoundByUpstream})`],
  [`segments (≤ ${maxSeconds} s)`, `VAD ${recording.vadSegments} (${recording.vadDecodedSeconds} s decoded), quiet points ${recording.officialSegments} (${recording.officialDecodedSeconds} s)`],
  ...(transcription
    ? [['transcribed (int8, 4 tok/s)', `VAD on ${transcription.vadOnSeconds} s (${transcription.vadOnSegments} segments), off ${transcription.vadOffSeconds} s (${transcription.vadOffSegments}): ${transcription.speedUp}x`] as [string, string]]
    : []),
];
const width = Math.max(...rows.map(([k]) => k.length));
console.log(`Silero VAD, ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} thread(s), ${new Date().toISOString()}`);
for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
console.log(JSON.stringify({ cpu: cpus()[0]?.model, date: new Date().toISOString(), threshold, minSilenceMs, cost, recording, transcription }));
