/**
 * Live transcription's costs: `node --import tsx src/bench/bench-realtime.ts --model DIR
 * [--quant int8] [--streams 1,2,4] [--intervals 1,2] [--seconds 30]`. Prints one JSON line.
 *
 * 1. Cost per update along one utterance: updates every second over the first 62 s of a real
 *    recording (the maximum utterance length raised for this), each timed alone; reported at
 *    5, 15, 30 and 60 s (the update there, and the median of the five around it), with the
 *    dearest update and where the utterance was cut into pieces (live-utterance.ts).
 * 2. Streams at once: each stream's audio arrives in real time (continuous speech, utterances
 *    of `--utterance` seconds, each ending in the exact decode of all of it, as the service
 *    does); an update is due every interval; one still running when the next is due delays
 *    it. Latency: from the end of an audio chunk to the update that first covers it.
 *
 * Random weights write arbitrary tokens, so decoding is forced to a speech rate
 * (--tokens-per-second, 4: brisk English): an update decodes the rollback plus that rate times
 * the audio since the last one, and fixed text grows at that rate.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeAudio } from '../audio/decode.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { ROLLBACK_TOKENS } from '../engine/asr/live-transcript.ts';
import { LiveUtterance } from '../engine/asr/live-utterance.ts';
import type { Quantization } from '../pipeline/types.ts';
import { AUDIO_DIR } from '../testing/shared.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    quant: { type: 'string', default: 'int8' },
    threads: { type: 'string', default: '0' },
    streams: { type: 'string', default: '1,2,4' },
    intervals: { type: 'string', default: '1,2' },
    /** Wall seconds each streams × interval run lasts. */
    seconds: { type: 'string', default: '30' },
    utterance: { type: 'string', default: '12' },
    'tokens-per-second': { type: 'string', default: '4' },
    'skip-positions': { type: 'boolean', default: false },
  },
});
const SR = 16000;
const rate = Number(values['tokens-per-second']);
const now = () => performance.now() / 1000;
const sleep = (s: number) => new Promise((r) => setTimeout(r, Math.max(0, s * 1000)));

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
const median = (xs: number[]) => quantile(xs, 0.5);

/** The budget of an update: everything at first, then the rollback plus the new audio's tokens. */
function budget(first: boolean, seconds: number, since: number): number {
  return first ? Math.max(1, Math.ceil(rate * seconds)) : ROLLBACK_TOKENS + Math.ceil(rate * since);
}

async function positions(model: AsrModel, audio: Float32Array): Promise<Record<string, any>> {
  const live = new LiveUtterance(model, { language: 'English' });
  const times = new Map<number, { seconds: number; prefilled: number; decoded: number }>();
  // Audio (s) the last update covered, and where the open piece began.
  let covered = 0;
  let pieceStart = 0;
  for (let t = 1; t <= 62; t++) {
    const t0 = now();
    const u = await live.update(audio.subarray(0, t * SR), { maxNewTokens: budget(covered === pieceStart, t - pieceStart, t - covered), ignoreStopTokens: true });
    times.set(t, { seconds: now() - t0, prefilled: u.prefilled, decoded: u.decoded });
    covered = u.covered / SR;
    if (u.cutAt !== undefined) pieceStart = covered;
  }
  const at = (t: number) => ({
    update: times.get(t)!.seconds,
    median5: median([-2, -1, 0, 1, 2].map((d) => times.get(t + d)!.seconds)),
    prefilled: times.get(t)!.prefilled,
    decoded: times.get(t)!.decoded,
  });
  const points = Object.fromEntries([5, 15, 30, 60].map((t) => [t, at(t)]));
  const dearest = [...times.entries()].reduce((a, b) => (b[1].seconds > a[1].seconds ? b : a));
  return {
    points,
    ratio60to5: points[60].median5 / points[5].median5,
    dearest: { at: dearest[0], ...dearest[1] },
    cuts: live.cuts.map((c) => +(c / SR).toFixed(2)),
    all: [...times.entries()].map(([t, v]) => [t, +v.seconds.toFixed(3), v.prefilled]),
  };
}

async function streams(model: AsrModel, audio: Float32Array, count: number, interval: number, wall: number): Promise<Record<string, any>> {
  const utterance = Number(values.utterance);
  const latencies: number[] = [];
  const updateSeconds: number[] = [];
  const finals: Promise<unknown>[] = [];
  const t0 = now();
  const run = async (k: number) => {
    // Streams start a little apart, as callers do.
    const start = t0 + (k * interval) / count;
    await sleep(start - now());
    let uttStart = 0; // audio time (s) where the current utterance began
    let live = new LiveUtterance(model, { language: 'English', owner: k });
    let covered = 0; // audio time the last update covered
    let first = true;
    while (now() - start < wall) {
      const heard = Math.min(now() - start, wall);
      const due = covered + interval;
      if (heard < due) {
        await sleep(due - heard);
        continue;
      }
      // Audio up to the last whole chunk heard.
      const upTo = Math.floor(heard / interval) * interval;
      if (upTo - uttStart >= utterance) {
        // The utterance ends: its exact decode runs beside the next utterance's updates.
        const offset = Math.floor((uttStart * SR) % (audio.length - utterance * SR));
        finals.push(model.submit({ samples: audio.subarray(offset, offset + utterance * SR), language: 'English', maxNewTokens: Math.ceil(rate * utterance) }, { owner: k, ignoreStopTokens: true }));
        uttStart += utterance;
        live.release();
        live = new LiveUtterance(model, { language: 'English', owner: k });
        first = true;
        covered = uttStart;
        continue;
      }
      const from = Math.floor((uttStart * SR) % (audio.length - 60 * SR));
      const t1 = now();
      await live.update(audio.subarray(from, from + Math.round((upTo - uttStart) * SR)), { maxNewTokens: budget(first, upTo - uttStart, upTo - covered), ignoreStopTokens: true });
      const done = now();
      updateSeconds.push(done - t1);
      for (let c = covered + interval; c <= upTo + 1e-9; c += interval) latencies.push(done - (start + c));
      covered = upTo;
      first = false;
    }
  };
  await Promise.all(Array.from({ length: count }, (_, k) => run(k)));
  await Promise.all(finals);
  const p95 = quantile(latencies, 0.95);
  return {
    streams: count,
    interval,
    updates: updateSeconds.length,
    latencyP50: median(latencies),
    latencyP95: p95,
    updateP50: median(updateSeconds),
    // Real time is kept when the chunk-to-delta latency stays within one interval and a half.
    keepsUp: p95 <= 1.5 * interval,
  };
}

const model = await AsrModel.load(values.model!, { device: 'cpu', quant: values.quant as Quantization, threads: Number(values.threads) });
model.setMaxBatchSize(16);
const audio = (await decodeAudio(join(AUDIO_DIR, 'notld', '119s_theres_supposed_to_be_another_broadcast.wav'))).samples;
// Warm-up: the graphs' first runs.
await new LiveUtterance(model).update(audio.subarray(0, 3 * SR), { maxNewTokens: 4, ignoreStopTokens: true });

const result: Record<string, any> = { quant: values.quant, tokensPerSecond: rate };
if (!values['skip-positions']) result.positions = await positions(model, audio);
result.concurrency = [];
for (const interval of values.intervals!.split(',').map(Number)) {
  for (const count of values.streams!.split(',').map(Number)) {
    const r = await streams(model, audio, count, interval, Number(values.seconds));
    console.error(`bench-realtime: ${count} streams, updates every ${interval} s: p50 ${r.latencyP50.toFixed(2)} s, p95 ${r.latencyP95.toFixed(2)} s`);
    result.concurrency.push(r);
  }
}
await model.release();
console.log(JSON.stringify(result));
