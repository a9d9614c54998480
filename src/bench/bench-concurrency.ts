/**
 * Serving many callers at once: `node --import tsx src/bench/bench-concurrency.ts --model DIR
 * --quant int8 --levels 1,4,8,16`. Each level runs that many clients, each sending its next
 * 20 s clip as soon as its last one is transcribed, until every client has sent
 * `--per-client` clips (at least one round of 16 in all); every request goes through
 * runTranscription, as in the service's worker, with decoding forced to 4 tokens per audio
 * second (random weights' natural length means nothing). The same clients are then served one
 * request at a time (a FIFO in front of the pipeline: what the service did before continuous
 * batching), so throughput and latency compare in the same run. Prints one JSON line.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeAudio } from '../audio/decode.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { runTranscription } from '../pipeline/run-transcription.ts';
import type { Quantization } from '../pipeline/types.ts';
import { AUDIO_DIR } from '../testing/shared.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    quant: { type: 'string', default: 'int8' },
    threads: { type: 'string', default: '0' },
    levels: { type: 'string', default: '1,4,8,16' },
    'batch-size': { type: 'string', default: '16' },
    /** Requests in all at each level: every client sends its share. */
    requests: { type: 'string', default: '16' },
    'clip-seconds': { type: 'string', default: '20' },
  },
});
const SR = 16000;
const clipSeconds = Number(values['clip-seconds']);
const now = () => performance.now() / 1000;

/** Distinct clips: consecutive windows of the real recordings in ../shared/audio that are long enough. */
async function clips(count: number): Promise<Float32Array[]> {
  const dir = join(AUDIO_DIR, 'notld');
  const out: Float32Array[] = [];
  const files = readdirSync(dir).filter((f) => f.endsWith('.wav')).sort();
  for (const f of files) {
    const samples = (await decodeAudio(join(dir, f))).samples;
    for (let at = 0; at + clipSeconds * SR <= samples.length; at += clipSeconds * SR) out.push(samples.slice(at, at + clipSeconds * SR));
  }
  if (out.length === 0) throw new Error(`no ${clipSeconds} s clip in ${dir}`);
  return Array.from({ length: count }, (_, i) => out[i % out.length]);
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

const model = await AsrModel.load(values.model!, { device: 'cpu', quant: values.quant as Quantization, threads: Number(values.threads) });
model.setMaxBatchSize(Number(values['batch-size']));
const total = Number(values.requests);
const audio = await clips(total);
const transcribe = (samples: Float32Array) => runTranscription(model, undefined, samples, {}, { segmentSeconds: 20, forceTokensPerSecond: 4 });
// Warm-up: first runs of each session.
await transcribe(audio[0].subarray(0, 3 * SR));

/** `clients` closed-loop clients sending `total` clips in all; `oneAtATime` serves them through a FIFO. */
async function run(clients: number, oneAtATime: boolean) {
  let next = 0;
  let fifo = Promise.resolve();
  const latencies: number[] = [];
  const start = now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < total; i = next++) {
        const sent = now();
        if (oneAtATime) {
          const turn = fifo.then(() => transcribe(audio[i]));
          fifo = turn.then(() => undefined);
          await turn;
        } else await transcribe(audio[i]);
        latencies.push(now() - sent);
      }
    }),
  );
  const wall = now() - start;
  return {
    clients,
    requests: total,
    seconds: wall,
    audioSecondsPerSecond: (total * clipSeconds) / wall,
    p50: quantile(latencies, 0.5),
    p95: quantile(latencies, 0.95),
  };
}

const levels: Record<string, unknown>[] = [];
for (const clients of values.levels!.split(',').map(Number)) {
  const batched = await run(clients, false);
  const single = clients === 1 ? batched : await run(clients, true);
  const row = { clients, batched, oneAtATime: single, throughputRatio: batched.audioSecondsPerSecond / single.audioSecondsPerSecond };
  console.error(JSON.stringify(row));
  levels.push(row);
}
await model.release();
console.log(JSON.stringify({ quant: values.quant, batchSize: Number(values['batch-size']), clipSeconds, tokensPerSecond: 4, levels }));
