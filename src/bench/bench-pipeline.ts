/**
 * Long-recording and aligner benchmarks in one process (`bench.ts` runs it):
 * - the whole pipeline (segmentation, batched encoder + decoder, merge) on a 10-minute
 *   recording built from ../shared/audio, without and with word timestamps, decoding a fixed
 *   4 tokens per audio second;
 * - the forced aligner's throughput on a real 60 s recording and its transcript.
 *
 *   node --import tsx src/bench/bench-pipeline.ts --model DIR --aligner DIR --quant Q [--minutes 10]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeAudio } from '../audio/decode.ts';
import { ForcedAligner } from '../engine/aligner/aligner-model.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_SEGMENT_SECONDS, runTranscription } from '../pipeline/run-transcription.ts';
import { AUDIO_DIR } from '../testing/shared.ts';
import type { Quantization } from '../pipeline/types.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    aligner: { type: 'string' },
    quant: { type: 'string', default: 'int8' },
    minutes: { type: 'string', default: '10' },
    threads: { type: 'string', default: '0' },
    'batch-size': { type: 'string', default: String(DEFAULT_MAX_BATCH_SIZE) },
    'segment-seconds': { type: 'string', default: String(DEFAULT_SEGMENT_SECONDS) },
    'skip-timestamps': { type: 'boolean' },
  },
});
const quant = values.quant as Quantization;
const threads = Number(values.threads);
const now = () => performance.now() / 1000;

/** A recording of `minutes` built from the notld clips, in name order, repeated as needed. */
async function longRecording(minutes: number): Promise<Float32Array> {
  const dir = join(AUDIO_DIR, 'notld');
  const clips = readdirSync(dir).filter((f) => f.endsWith('.wav')).sort();
  const parts: Float32Array[] = [];
  let total = 0;
  const want = minutes * 60 * 16000;
  for (let i = 0; total < want; i++) {
    const s = (await decodeAudio(join(dir, clips[i % clips.length]))).samples;
    parts.push(s);
    total += s.length;
  }
  const out = new Float32Array(want);
  let o = 0;
  for (const p of parts) {
    out.set(p.subarray(0, Math.min(p.length, want - o)), o);
    o += p.length;
    if (o >= want) break;
  }
  return out;
}

const result: Record<string, unknown> = { quant };
const asr = await AsrModel.load(values.model!, { device: 'cpu', quant, threads });
const aligner = values.aligner ? await ForcedAligner.load(values.aligner, { device: 'cpu', quant, threads }) : undefined;
const audio = await longRecording(Number(values.minutes));
const seconds = audio.length / 16000;
const batch = Number(values['batch-size']);
asr.setMaxBatchSize(batch);
const settings = { segmentSeconds: Number(values['segment-seconds']), forceTokensPerSecond: 4 };
let t = now();
let r = await runTranscription(asr, undefined, audio, {}, settings);
result.pipeline = {
  audioSeconds: seconds,
  segments: r.segments.length,
  // Forced decoding: every segment must come back with its 4 tokens per second of text.
  segmentsWithoutText: r.segments.filter((s) => s.tokenIds.length === 0 || s.raw.length === 0).length,
  segmentSeconds: settings.segmentSeconds,
  batch,
  seconds: now() - t,
  rtf: (now() - t) / seconds,
};
console.error(JSON.stringify(result.pipeline));

if (aligner && !values['skip-timestamps']) {
  t = now();
  r = await runTranscription(asr, aligner, audio, { timestamps: true }, settings);
  const words = r.words?.length ?? 0;
  result.pipelineWithTimestamps = { audioSeconds: seconds, segments: r.segments.length, words, seconds: now() - t, rtf: (now() - t) / seconds };
  console.error(JSON.stringify(result.pipelineWithTimestamps));
}
if (aligner) {
  const clip = join(AUDIO_DIR, 'notld', '60s_i_dont_want_anyones_life_on_my_hands');
  const samples = (await decodeAudio(`${clip}.wav`)).samples;
  const text = readFileSync(`${clip}.txt`, 'utf8').trim();
  await aligner.align([{ samples: samples.subarray(0, 32000), text: 'warm up', language: 'English' }]);
  t = now();
  const [a] = await aligner.align([{ samples, text, language: 'English' }]);
  const el = now() - t;
  result.aligner = { audioSeconds: samples.length / 16000, words: a.items.length, seconds: el, audioSecondsPerSecond: samples.length / 16000 / el };
  console.error(JSON.stringify(result.aligner));
}
result.peakRssMB = process.resourceUsage().maxRSS / 1024;
console.log(JSON.stringify(result));
