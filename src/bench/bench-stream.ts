/**
 * When streamed text arrives: `node --import tsx src/bench/bench-stream.ts --model DIR
 * [--quant int8] [--audio WAV]`. Transcribes the recording as `stream=true` does (the
 * pipeline's settled partial texts and finished segments through the same DeltaBuilder), with
 * decoding forced to 4 tokens per audio second and the language forced (random weights write
 * no language header, and would stop or loop at random), and prints when the first delta came,
 * when the transcription ended, how many deltas there were and whether they add up to the
 * final text. One JSON line.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeAudio } from '../audio/decode.ts';
import { AsrModel } from '../engine/asr/asr-model.ts';
import { DeltaBuilder } from '../formats/response-formats.ts';
import { runTranscription } from '../pipeline/run-transcription.ts';
import type { Quantization } from '../pipeline/types.ts';
import { AUDIO_DIR } from '../testing/shared.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    quant: { type: 'string', default: 'int8' },
    threads: { type: 'string', default: '0' },
    audio: { type: 'string', default: join(AUDIO_DIR, 'notld', '60s_i_dont_want_anyones_life_on_my_hands.wav') },
  },
});
const now = () => performance.now() / 1000;
const model = await AsrModel.load(values.model!, { device: 'cpu', quant: values.quant as Quantization, threads: Number(values.threads) });
const samples = (await decodeAudio(values.audio!)).samples;
await runTranscription(model, undefined, samples.subarray(0, 3 * 16000), { language: 'English' }, { segmentSeconds: 20, forceTokensPerSecond: 4 }); // warm-up

const runs: Record<string, unknown>[] = [];
for (let round = 0; round < 3; round++) {
  const deltas = new DeltaBuilder();
  const sent: { at: number; text: string }[] = [];
  const start = now();
  const send = (text: string) => text && sent.push({ at: now() - start, text });
  const result = await runTranscription(
    model,
    undefined,
    samples,
    { language: 'English', onPartial: (i, text, language) => send(deltas.partial(i, text, language)), onSegment: (s) => send(deltas.push(s)) },
    { segmentSeconds: 20, forceTokensPerSecond: 4 },
  );
  const total = now() - start;
  runs.push({
    audioSeconds: samples.length / 16000,
    segments: result.segments.length,
    firstDeltaSeconds: sent[0]?.at,
    seconds: total,
    deltas: sent.length,
    // Characters of the final text already sent at each quarter of the run.
    sentByQuarter: [0.25, 0.5, 0.75, 1].map((q) => sent.filter((d) => d.at <= q * total).reduce((n, d) => n + d.text.length, 0)),
    finalChars: result.text.length,
    addsUp: sent.map((d) => d.text).join('') === result.text,
  });
  console.error(JSON.stringify(runs[runs.length - 1]));
}
await model.release();
console.log(JSON.stringify({ quant: values.quant, runs }));
