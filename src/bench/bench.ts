/**
 * `npm run bench`: speed on full-size random checkpoints (made on first use with the
 * project's own generator; speed does not depend on the weights' values) and a real 60 s
 * recording from ../shared/audio. Each configuration runs in its own process, and so do the
 * product ceilings of the machine (bench-kernels.ts) and the long-recording run.
 *
 *   npm run bench -- [--sizes 1.7b,0.6b] [--quants int8,int4,none] [--out FILE] [--threads N]
 *   npm run bench -- --concurrency 1,4,8,16 [--sizes 1.7b,0.6b]   (many callers, int8: bench-concurrency.ts)
 *   npm run bench -- --realtime [--sizes 1.7b,0.6b]                (live transcription, int8: bench-realtime.ts)
 *
 * Prints a table and writes the JSON results (default bench-results/bench-<time>.json).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { intraOpThreads } from '../engine/runtime/cpu-threads.ts';
import { thisProcessHugePages } from '../engine/runtime/huge-pages.ts';
import { AUDIO_DIR, REPO_ROOT } from '../testing/shared.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1.7b,0.6b' },
    quants: { type: 'string', default: 'int8,int4,none' },
    out: { type: 'string' },
    threads: { type: 'string', default: '0' },
    'cache-dir': { type: 'string', default: join(REPO_ROOT, '.bench') },
    /** Model, quantisation and length of the long-recording run ('' skips it). */
    'pipeline-size': { type: 'string', default: '1.7b' },
    'pipeline-quant': { type: 'string', default: 'int8' },
    minutes: { type: 'string', default: '10' },
    /** Client counts for the serving benchmark (bench-concurrency.ts); given, only it runs. */
    concurrency: { type: 'string' },
    /** Live transcription (bench-realtime.ts), int8; given, only it runs. */
    realtime: { type: 'boolean', default: false },
    /** Streams tried at once per model in the realtime benchmark, as size:list;size:list. */
    'realtime-streams': { type: 'string', default: '0.6b:2,4,6;1.7b:1,2,3' },
  },
});

const AUDIO = join(AUDIO_DIR, 'notld', '60s_i_dont_want_anyones_life_on_my_hands.wav');
/** ONNX Runtime intra-op threads of every measurement (--threads, or the engine's default). */
const threads = intraOpThreads(Number(values.threads));
/** Whether malloc uses huge pages (huge-pages.ts); the measurements run in children that inherit it. */
const hugePages = thisProcessHugePages();
const tsx = ['--import', 'tsx'];

function checkpoint(size: string): string {
  const dir = join(values['cache-dir']!, `qwen3-asr-${size}`);
  if (!existsSync(join(dir, 'config.json'))) {
    console.error(`bench: generating a random ${size} checkpoint in ${dir}`);
    execFileSync(process.execPath, [...tsx, join(REPO_ROOT, 'src/tools/make-checkpoint.ts'), '--size', size, '--out', dir], { stdio: 'inherit' });
  }
  return dir;
}

if (values.realtime) {
  // Live transcription, int8, each model in its own process.
  const streamsOf = new Map(values['realtime-streams']!.split(';').map((p) => p.split(':') as [string, string]));
  const runs: Record<string, any>[] = [];
  for (const size of values.sizes!.split(',').reverse()) {
    console.error(`bench: ${size} int8, live transcription ...`);
    const out = execFileSync(
      process.execPath,
      [...tsx, join(REPO_ROOT, 'src/bench/bench-realtime.ts'), '--model', checkpoint(size), '--quant', 'int8', '--threads', values.threads!, '--streams', streamsOf.get(size) ?? '1,2,4'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
    );
    runs.push({ size, ...JSON.parse(out.trim().split('\n').pop()!) });
  }
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(`ONNX Runtime intra-op threads: ${threads}; malloc huge pages: ${hugePages}; decoding forced to 4 tokens per audio second\n`);
  console.log('Compute per update along one utterance (s; the update there / median of the five around it):\n');
  console.log('| model | 5 s | 15 s | 30 s | 60 s | 60 s ÷ 5 s |');
  console.log('|---|---|---|---|---|---|');
  for (const r of runs) {
    const p = r.positions.points;
    console.log(`| ${r.size} | ${[5, 15, 30, 60].map((t) => `${f(p[t].update)} / ${f(p[t].median5)}`).join(' | ')} | ${f(r.positions.ratio60to5)} |`);
  }
  console.log('\nStreams at once, audio in real time (latency from the end of a chunk to its update, s):\n');
  console.log('| model | streams | update every | p50 | p95 | keeps up |');
  console.log('|---|---|---|---|---|---|');
  for (const r of runs) for (const c of r.concurrency) console.log(`| ${r.size} | ${c.streams} | ${c.interval} s | ${f(c.latencyP50)} | ${f(c.latencyP95)} | ${c.keepsUp ? 'yes' : 'no'} |`);
  const outFile = values.out ?? join(REPO_ROOT, 'bench-results', `bench-realtime-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(outFile, '..'), { recursive: true });
  writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), threads, hugePages, runs }, null, 2));
  console.error(`bench: results written to ${outFile}`);
  process.exit(0);
}

if (values.concurrency) {
  // Many callers at once against one at a time, int8, each model in its own process.
  const runs: Record<string, any>[] = [];
  for (const size of values.sizes!.split(',')) {
    console.error(`bench: ${size} int8, ${values.concurrency} concurrent clients ...`);
    const out = execFileSync(
      process.execPath,
      [...tsx, join(REPO_ROOT, 'src/bench/bench-concurrency.ts'), '--model', checkpoint(size), '--quant', 'int8', '--levels', values.concurrency, '--threads', values.threads!],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
    );
    runs.push({ size, ...JSON.parse(out.trim().split('\n').pop()!) });
  }
  const f = (x: number, d = 1) => x.toFixed(d);
  console.log(`ONNX Runtime intra-op threads: ${threads}; malloc huge pages: ${hugePages}; 20 s clips, 4 tokens per audio second\n`);
  console.log('| model | clients | batched: audio-s/s, p50 / p95 latency s | one at a time: audio-s/s, p50 / p95 s | throughput ratio |');
  console.log('|---|---|---|---|---|');
  for (const r of runs) {
    for (const l of r.levels) {
      console.log(`| ${r.size} | ${l.clients} | ${f(l.batched.audioSecondsPerSecond)}, ${f(l.batched.p50)} / ${f(l.batched.p95)} | ${f(l.oneAtATime.audioSecondsPerSecond)}, ${f(l.oneAtATime.p50)} / ${f(l.oneAtATime.p95)} | ${f(l.throughputRatio, 2)} |`);
    }
  }
  const outFile = values.out ?? join(REPO_ROOT, 'bench-results', `bench-concurrency-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(outFile, '..'), { recursive: true });
  writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), threads, hugePages, runs }, null, 2));
  console.error(`bench: results written to ${outFile}`);
  process.exit(0);
}

const rows: Record<string, any>[] = [];
for (const size of values.sizes!.split(',')) {
  const dir = checkpoint(size);
  for (const quant of values.quants!.split(',')) {
    console.error(`bench: ${size} ${quant} ...`);
    const out = execFileSync(
      process.execPath,
      [...tsx, join(REPO_ROOT, 'src/bench/bench-model.ts'), '--model', dir, '--quant', quant, '--audio', AUDIO, '--threads', values.threads!],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
    );
    const row = { size, ...JSON.parse(out.trim().split('\n').pop()!) };
    rows.push(row);
    console.error(JSON.stringify(row));
  }
}

// The machine's ceilings for the engine's own products (bench-kernels.ts).
console.error('bench: product ceilings of this machine ...');
const kernels = JSON.parse(
  execFileSync(process.execPath, [...tsx, join(REPO_ROOT, 'src/bench/bench-kernels.ts'), '--threads', values.threads!], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    .trim()
    .split('\n')
    .pop()!,
);

// Long recording through the whole pipeline, with and without timestamps, and the aligner.
let pipeline: Record<string, any> | undefined;
if (values['pipeline-size']) {
  const model = checkpoint(values['pipeline-size']);
  const aligner = checkpoint('aligner');
  console.error(`bench: ${values.minutes}-minute recording through the pipeline (${values['pipeline-size']} ${values['pipeline-quant']}) ...`);
  const out = execFileSync(
    process.execPath,
    [...tsx, join(REPO_ROOT, 'src/bench/bench-pipeline.ts'), '--model', model, '--aligner', aligner, '--quant', values['pipeline-quant']!, '--minutes', values.minutes!, '--threads', values.threads!],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 },
  );
  pipeline = { size: values['pipeline-size'], ...JSON.parse(out.trim().split('\n').pop()!) };
}

const f = (x: number, d = 1) => x.toFixed(d);
const header = '| model | quant | load s (first / cached) | peak RSS MB | encoder audio-s/s | prefill tok/s | decode tok/s b1 / b8 / b8÷b1, after 60 s | the same after a 20 s segment | RTF 60 s @4 tok/s, one sequence | RTF 60 s @4 tok/s, pipeline |';
console.log(`ONNX Runtime intra-op threads: ${threads}; malloc huge pages: ${hugePages}\n`);
console.log(header);
console.log(header.replace(/[^|]+/g, '---'));
for (const r of rows) {
  console.log(
    `| ${r.size} | ${r.quant} | ${f(r.loadSeconds)} / ${r.cachedLoadSeconds === undefined ? '-' : f(r.cachedLoadSeconds)} | ${f(r.peakRssMB, 0)} | ${f(r.encoderAudioSecondsPerSecond)} | ${f(r.prefillTokensPerSecond)} | ${f(r.decodeTokensPerSecondB1)} / ${f(r.decodeTokensPerSecondB8)} / ${f(r.batch8Speedup)} | ${f(r.decodeTokensPerSecondB1Segment)} / ${f(r.decodeTokensPerSecondB8Segment)} / ${f(r.batch8SpeedupSegment)} | ${f(r.rtf, 3)} | ${f(r.pipelineRtf, 3)} (${r.pipelineSegments} segments) |`,
  );
}
console.log(
  `\nProduct ceilings (bench-kernels.ts: the weight products of one 0.6B decoder step alone, ${f(kernels.weightMB, 0)} MB of int8): ` +
    `one row ${f(kernels.w8a8Row1Ms)} ms with W8A8 (${kernels.int8Kernel} kernel, ${f(kernels.w8a8StreamGBps)} GB/s), ${f(kernels.int4Row1Ms)} ms with 4-bit MatMulNBits; ` +
    `3 rows take ${f(kernels.w8a8Rows3Over1, 2)}x and 8 rows ${f(kernels.w8a8Rows8Over1, 2)}x the time of 1 (W8A8), so batch-8 decoding can be at most ` +
    `${f(kernels.batch8CeilingOverBatch1)}x batch 1 even without attention; W8A8 at 512 rows: ${f(kernels.w8a8GopsAt512Rows, 0)} GOP/s.`,
);
if (pipeline) {
  const p = pipeline.pipeline;
  console.log(`\n${pipeline.size} ${pipeline.quant}, ${f(p.audioSeconds / 60)}-minute recording, ${p.segments} segments of ≤${p.segmentSeconds} s, batch ${p.batch}, 4 tokens per audio second:`);
  console.log(`- without timestamps: ${f(p.seconds)} s, RTF ${f(p.rtf, 3)} (${f(1 / p.rtf)}x real time)`);
  const w = pipeline.pipelineWithTimestamps;
  if (w) console.log(`- with word timestamps: ${f(w.seconds)} s, RTF ${f(w.rtf, 3)} (${f(1 / w.rtf)}x real time), ${w.words} words`);
  const a = pipeline.aligner;
  if (a) console.log(`- forced aligner alone: ${f(a.audioSecondsPerSecond)} audio-s/s (${f(a.audioSeconds)} s, ${a.words} words in ${f(a.seconds, 2)} s)`);
  console.log(`- peak RSS ${f(pipeline.peakRssMB, 0)} MB`);
}
const outFile = values.out ?? join(REPO_ROOT, 'bench-results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
mkdirSync(join(outFile, '..'), { recursive: true });
writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), audio: AUDIO, threads, hugePages, results: rows, kernels, pipeline }, null, 2));
console.error(`bench: results written to ${outFile}`);
