/**
 * End-to-end tests of the `qwen3-asr` command: the real entry point (bin/qwen3-asr, which runs
 * bin/qwen3-asr.js through scripts/node.sh) is
 * spawned as a child process against the tiny random checkpoints in the shared golden folder,
 * so argument parsing, the worker-thread engine, decoding, rendering, exit codes and the
 * split between stdout (results only) and stderr (messages) are all exercised together.
 *
 * The tiny checkpoints produce nonsense, but deterministic nonsense: token ids, raw output,
 * language and text must equal what the reference implementation computed (golden index.json).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SrtParser from 'srt-parser-2';
import webvtt from 'webvtt-parser';
import { AUDIO_DIR, REPO_ROOT, goldenPath, readJson } from '../testing/shared.ts';
import { subtitles, verboseJson } from '../formats/response-formats.ts';
import type { TranscriptionResult } from '../pipeline/types.ts';
import { readServerConfig } from '../server/config.ts';
import { cliSettings, SettingError, type Env } from '../settings/settings.ts';

const BIN = join(REPO_ROOT, 'bin', 'qwen3-asr');
const MODEL = goldenPath('tiny-a', 'checkpoint');
const ALIGNER = goldenPath('aligner-a', 'checkpoint');
const EN_3S = goldenPath('tiny-a', 'audio', 'en_3s.wav');
const DE_7S = goldenPath('tiny-a', 'audio', 'de_7s.wav');
const LONG_40S = goldenPath('tiny-a', 'audio', 'long_40s.wav');
const MP3 = goldenPath('tiny-a', 'audio', 'en_3s_44k_stereo.mp3');
const MODEL_ARGS = ['--model', MODEL, '--quant', 'none'];

const asrIndex = readJson(goldenPath('tiny-a', 'index.json'));
const alignerIndex = readJson(goldenPath('aligner-a', 'index.json'));
const CONTEXT: string = asrIndex.model.context_string;
/** The golden cases were generated with this cap (index.json model.max_new_tokens). */
const GOLDEN_MAX_NEW_TOKENS = String(asrIndex.model.max_new_tokens);

function asrCase(name: string) {
  const c = asrIndex.cases.find((x: { case: string }) => x.case === name);
  assert.ok(c, `golden case ${name} missing`);
  return c;
}

function alignerCase(name: string) {
  const c = alignerIndex.cases.find((x: { case: string }) => x.case === name);
  assert.ok(c, `aligner golden case ${name} missing`);
  // Long fields are stored as JSON strings in the index.
  const parse = (v: unknown) => (typeof v === 'string' ? JSON.parse(v) : v);
  return { ...c, items: parse(c.items), transcription: c.transcription ? parse(c.transcription) : undefined };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Environment of the child: no compiled-graph cache, two threads, no network, the official cuts
 * (VAD off: the goldens are defined on them), nothing inherited that changes output.
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, QWEN3_ASR_CACHE: '0', THREADS: '2', HF_HUB_OFFLINE: '1', VAD: 'off', ...extra };
  for (const k of ['LOG_LEVEL', 'MODEL_NAME', 'FORCED_ALIGNER', 'QUANT', 'DEVICE', 'MAX_INFERENCE_BATCH_SIZE', 'NODE_TEST_CONTEXT']) {
    if (!(k in extra)) delete env[k];
  }
  return env;
}

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      BIN,
      args,
      { cwd: REPO_ROOT, env: childEnv(extraEnv), maxBuffer: 64 << 20, timeout: 180_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number') {
          // Spawn failure or killed by the timeout: not an exit code the CLI chose.
          reject(new Error(`qwen3-asr ${args.join(' ')} did not exit normally: ${err.message}\nstderr: ${stderr}`));
          return;
        }
        resolve({ code: err ? ((err as { code: number }).code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** Runs a command that must succeed; returns stdout. */
async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  assert.equal(r.code, 0, `qwen3-asr ${args.join(' ')} exited ${r.code}\nstderr: ${r.stderr}`);
  // No TTY and no LOG_LEVEL: no progress, no info logs, no error messages (ONNX Runtime may
  // still print its own native warnings on some machines, so stderr is not required empty).
  assert.doesNotMatch(r.stderr, /qwen3-asr:|transcribing|loading /, `unexpected stderr: ${r.stderr}`);
  return r.stdout;
}

/** Parses stdout that must be exactly one JSON document followed by a newline. */
function oneJson(stdout: string): any {
  assert.ok(stdout.endsWith('\n'), 'output ends with a newline');
  return JSON.parse(stdout);
}

function checkGoldenAsr(out: any, name: string, numSamples: number): void {
  const c = asrCase(name);
  assert.deepEqual(out.token_ids, c.generated_ids, `${name}: token ids`);
  assert.equal(out.raw, c.decoded_text, `${name}: raw`);
  assert.equal(out.language, c.parsed_language, `${name}: language`);
  assert.equal(out.text, c.parsed_text, `${name}: text`);
  assert.equal(out.truncated, c.stop_reason === 'max_new_tokens', `${name}: truncated`);
  assert.equal(out.duration, numSamples / 16000);
  assert.equal(out.segments.length, 1);
  assert.deepEqual(
    { start: out.segments[0].start, end: out.segments[0].end, token_ids: out.segments[0].token_ids, text: out.segments[0].text },
    { start: 0, end: numSamples / 16000, token_ids: c.generated_ids, text: c.parsed_text },
  );
}

// ---------------------------------------------------------------------------------------------
// Golden transcriptions

test('transcribe --json reproduces the golden en_3s__auto case', async () => {
  const out = oneJson(await ok(['transcribe', EN_3S, ...MODEL_ARGS, '--json', '--max-new-tokens', GOLDEN_MAX_NEW_TOKENS]));
  checkGoldenAsr(out, 'en_3s__auto', asrCase('en_3s__auto').num_samples);
});

test('transcribe --language English reproduces en_3s__lang_english', async () => {
  const out = oneJson(await ok(['transcribe', EN_3S, ...MODEL_ARGS, '--json', '--max-new-tokens', GOLDEN_MAX_NEW_TOKENS, '--language', 'English']));
  checkGoldenAsr(out, 'en_3s__lang_english', asrCase('en_3s__lang_english').num_samples);
  assert.equal(out.language, 'English');
});

test('transcribe --context reproduces en_3s__context (newline, CJK, decomposed é passed through argv)', async () => {
  const out = oneJson(await ok(['transcribe', EN_3S, ...MODEL_ARGS, '--json', '--max-new-tokens', GOLDEN_MAX_NEW_TOKENS, '--context', CONTEXT]));
  checkGoldenAsr(out, 'en_3s__context', asrCase('en_3s__context').num_samples);
});

test('--vad on cuts around the speech the model finds; --vad off cuts from the start', async () => {
  const jfk = join(AUDIO_DIR, 'jfk.wav');
  const args = ['transcribe', jfk, ...MODEL_ARGS, '--language', 'English', '--max-new-tokens', '8', '--json'];
  const on = oneJson(await ok([...args, '--vad', 'on']));
  const off = oneJson(await ok([...args, '--vad', 'off']));
  assert.equal(off.segments[0].start, 0);
  assert.equal(off.segments[off.segments.length - 1].end, off.duration);
  assert.ok(on.segments.length >= 1);
  // jfk.wav opens with a breath of silence: the speech starts later.
  assert.ok(on.segments[0].start > 0, `first segment at ${on.segments[0].start} s`);
  assert.ok(on.segments[on.segments.length - 1].end <= on.duration);
  const bad = await cli([...args, '--vad', 'maybe']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--vad/);
});

test('transcribe decodes a 44.1 kHz stereo MP3 (whichever decoder is available)', async () => {
  const out = oneJson(await ok(['transcribe', MP3, ...MODEL_ARGS, '--json', '--max-new-tokens', '8']));
  // Decoders differ by a few samples (encoder delay, resampler); the golden has 48083.
  assert.ok(Math.abs(out.duration - 48083 / 16000) < 0.05, `duration ${out.duration}`);
  assert.equal(out.segments.length, 1);
  assert.ok(out.token_ids.length >= 1 && out.token_ids.length <= 8, `${out.token_ids.length} tokens`);
  assert.ok(out.token_ids.every((id: unknown) => Number.isInteger(id)));
  assert.equal(typeof out.text, 'string');
});

// ---------------------------------------------------------------------------------------------
// Output formats: one reference run with --json, then every --format from the same input,
// compared with what the service's own renderers make of that result.

const FORMAT_ARGS = ['transcribe', LONG_40S, ...MODEL_ARGS, '--max-new-tokens', '12', '--segment-seconds', '10'];

function resultFromCliJson(out: any): TranscriptionResult {
  return {
    text: out.text,
    language: out.language,
    duration: out.duration,
    segments: out.segments.map((s: any) => ({
      id: s.id,
      start: s.start,
      end: s.end,
      text: s.text,
      language: s.language,
      raw: s.raw,
      tokenIds: s.token_ids,
      textTokenIds: s.text_token_ids,
      truncated: s.truncated,
      repetitionStopped: s.repetition_stopped,
      ...(s.words ? { words: s.words } : {}),
    })),
    ...(out.words ? { words: out.words } : {}),
  };
}

const entities = createRequire(import.meta.url)('webvtt-parser/html-entities.json') as Record<`&${string}`, string>;
const noSpace = (s: string) => s.replace(/\s+/gu, '');

/** Cue times in order, never backwards, inside the audio. */
function checkCueTimes(cues: { start: number; end: number }[], duration: number): void {
  let prevEnd = 0;
  for (const [i, c] of cues.entries()) {
    assert.ok(c.start >= prevEnd - 1e-9, `cue ${i + 1} starts at ${c.start}, before the previous end ${prevEnd}`);
    assert.ok(c.end >= c.start, `cue ${i + 1} ends before it starts`);
    assert.ok(c.end <= Math.round(duration * 1000) / 1000 + 1e-9, `cue ${i + 1} ends at ${c.end}, after the audio (${duration})`);
    prevEnd = c.end;
  }
}

test('--format text|json|verbose_json|srt|vtt render the --json result as the service does', async () => {
  const ref = oneJson(await ok([...FORMAT_ARGS, '--json']));
  const result = resultFromCliJson(ref);
  assert.ok(ref.segments.length >= 3, `--segment-seconds 10 cuts 40 s into several segments, got ${ref.segments.length}`);
  assert.equal(ref.segments[0].start, 0);
  assert.equal(ref.segments.at(-1).end, ref.duration);
  for (let i = 1; i < ref.segments.length; i++) assert.equal(ref.segments[i].start, ref.segments[i - 1].end);
  for (const s of ref.segments) assert.ok(s.end - s.start <= 15 + 1e-9, `segment of ${s.end - s.start} s`);
  assert.ok(noSpace(ref.text).length > 0, 'the tiny model writes something for long_40s');

  const text = await ok([...FORMAT_ARGS, '--format', 'text']);
  const json = await ok([...FORMAT_ARGS, '--format', 'json']);
  const verbose = await ok([...FORMAT_ARGS, '--format', 'verbose_json']);
  const srt = await ok([...FORMAT_ARGS, '--format', 'srt']);
  const vtt = await ok([...FORMAT_ARGS, '--format', 'vtt']);

  assert.equal(text, ref.text + '\n');
  assert.deepEqual(oneJson(json), { text: ref.text, language: ref.language });

  const v = oneJson(verbose);
  assert.deepEqual(v, verboseJson(result, { granularities: ['segment'] }));
  assert.equal(v.task, 'transcribe');
  assert.equal(v.segments?.length, ref.segments.length);
  assert.equal(v.words, undefined, 'no words without --timestamps');

  // SRT: exactly the service's rendering, strictly well-formed blocks, parsed back by srt-parser-2.
  assert.equal(srt, subtitles(result, 'srt'));
  const blocks = srt.split('\n\n').filter((b) => b !== '');
  assert.ok(srt.endsWith('\n\n'));
  for (const [i, b] of blocks.entries()) {
    assert.match(b, /^\d+\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\n.+(\n.+)?$/u, `SRT block ${i + 1}`);
    assert.ok(b.startsWith(`${i + 1}\n`), `SRT cues numbered from 1: block ${i + 1}`);
  }
  const srtCues = new SrtParser().fromSrt(srt);
  assert.equal(srtCues.length, blocks.length);
  assert.ok(srtCues.length >= ref.segments.length);
  checkCueTimes(srtCues.map((c) => ({ start: c.startSeconds, end: c.endSeconds })), ref.duration);
  assert.equal(noSpace(srtCues.map((c) => c.text).join('')), noSpace(ref.text), 'SRT keeps the whole transcript, in order');

  // WebVTT: the service's rendering, no parser errors, same cues and times as the SRT.
  assert.equal(vtt, subtitles(result, 'vtt'));
  assert.ok(vtt.startsWith('WEBVTT\n\n'));
  const parsed = new webvtt.WebVTTParser(entities).parse(vtt, 'subtitles');
  assert.deepEqual(parsed.errors, []);
  assert.equal(parsed.cues.length, srtCues.length);
  checkCueTimes(parsed.cues.map((c) => ({ start: c.startTime, end: c.endTime })), ref.duration);
  parsed.cues.forEach((c, i) => {
    // The two parsers compute seconds with different float arithmetic (8.476 vs 8.475999…).
    assert.ok(Math.abs(c.startTime - srtCues[i].startSeconds) < 1e-6, `cue ${i + 1} start: VTT ${c.startTime}, SRT ${srtCues[i].startSeconds}`);
    assert.ok(Math.abs(c.endTime - srtCues[i].endSeconds) < 1e-6, `cue ${i + 1} end: VTT ${c.endTime}, SRT ${srtCues[i].endSeconds}`);
  });
  const vttText = parsed.cues.map((c) => c.tree.children.map((n) => (n.type === 'text' ? n.value : '')).join('')).join('');
  assert.equal(noSpace(vttText), noSpace(ref.text));
});

// ---------------------------------------------------------------------------------------------
// Word timestamps and forced alignment

test('--timestamps --aligner --format verbose_json returns the golden words of de_7s__asr_tiny-a_context', async () => {
  const c = alignerCase('de_7s__asr_tiny-a_context');
  const out = oneJson(
    await ok([
      'transcribe', DE_7S, ...MODEL_ARGS, '--max-new-tokens', GOLDEN_MAX_NEW_TOKENS, '--context', CONTEXT,
      '--timestamps', '--aligner', ALIGNER, '--format', 'verbose_json',
    ]),
  );
  assert.equal(out.text, c.transcription.text);
  assert.equal(out.language, '', 'nothing detected: OpenAI language name ""');
  assert.equal(out.duration, Math.round((c.num_samples / 16000) * 1000) / 1000);
  assert.equal(out.segments.length, 1);
  // The golden times, clamped to the end of the audio (random weights put words past it).
  const end = Math.floor(c.num_samples / 16) / 1000;
  assert.deepEqual(
    out.words,
    c.transcription.time_stamps.map((w: { text: string; start_time: number; end_time: number }) => ({ word: w.text, start: Math.min(w.start_time, end), end: Math.min(w.end_time, end) })),
  );
});

test('align --json prints the golden items of the aligner-a en_3s case, clamped to the audio', async () => {
  const c = alignerCase('en_3s');
  const end = Math.floor(c.num_samples / 16) / 1000;
  const out = oneJson(
    await ok(['align', EN_3S, '--text', c.text, '--language', 'English', '--aligner', ALIGNER, '--quant', 'none', '--json']),
  );
  assert.equal(out.text, c.text);
  assert.equal(out.language, 'English');
  assert.deepEqual(
    out.items.map((i: { text: string; start: number; end: number }) => ({ text: i.text, start: Math.round(i.start * 1000) / 1000, end: Math.round(i.end * 1000) / 1000 })),
    c.items.map((i: { text: string; start_time: number; end_time: number }) => ({ text: i.text, start: Math.min(i.start_time, end), end: Math.min(i.end_time, end) })),
  );
});

// ---------------------------------------------------------------------------------------------
// Help and bad usage: exit 2 for usage errors, 1 for failures, message on stderr, stdout empty.

test('--help prints the usage on stdout and exits 0', async () => {
  const r = await cli(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^Usage:\n {2}qwen3-asr transcribe <audio>/);
  assert.equal(r.stderr, '');
});

test('--version and -V print the package version on stdout and exit 0', async () => {
  const { version } = readJson(join(REPO_ROOT, 'package.json'));
  assert.match(version, /^\d+\.\d+\.\d+/);
  for (const flag of ['--version', '-V']) {
    const r = await cli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
    assert.equal(r.stderr, '');
  }
  const inCommand = await inProcess(['transcribe', '--version'], false);
  assert.deepEqual(inCommand, { code: 0, stdout: `${version}\n`, stderr: '' });
});

test('src/cli/main.ts run directly (npm run cli) starts the CLI, also through a symlinked path with a space', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'qwen3-asr cli '));
  try {
    const link = join(tmp, 'main.ts');
    symlinkSync(join(REPO_ROOT, 'src', 'cli', 'main.ts'), link);
    for (const script of [join(REPO_ROOT, 'src', 'cli', 'main.ts'), link]) {
      const r = await new Promise<Run>((resolve) =>
        execFile(process.execPath, ['--import', 'tsx', script, '--help'], { cwd: REPO_ROOT, env: childEnv(), encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stdout, stderr }),
        ),
      );
      assert.equal(r.code, 0, `${script}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage:/, `${script} printed nothing: main() did not run`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

async function fails(args: string[], code: 1 | 2, message: RegExp): Promise<Run> {
  const r = await cli(args);
  assert.equal(r.code, code, `qwen3-asr ${args.join(' ')}: exit ${r.code}, expected ${code}\nstderr: ${r.stderr}`);
  assert.equal(r.stdout, '', `qwen3-asr ${args.join(' ')}: nothing on stdout`);
  assert.match(r.stderr, /^qwen3-asr: /, 'the message starts with the program name');
  assert.match(r.stderr, message);
  if (code === 2) assert.match(r.stderr, /\nUsage:\n/, 'usage errors show the usage');
  else assert.doesNotMatch(r.stderr, /Usage:/, 'failures do not dump the usage');
  return r;
}

test('usage errors exit 2 naming the problem', async () => {
  await fails([], 2, /missing command/);
  await fails(['frobnicate', EN_3S], 2, /unknown command "frobnicate"/);
  await fails(['transcribe', EN_3S, ...MODEL_ARGS, '--bogus'], 2, /Unknown option '--bogus'/);
  await fails(['transcribe', EN_3S, ...MODEL_ARGS, '--quant', 'int3'], 2, /--quant: must be one of none, int8, int4; got "int3"/);
  await fails(['transcribe', EN_3S, ...MODEL_ARGS, '--language', 'klingon'], 2, /Unsupported language: klingon/);
  await fails(['align', EN_3S, '--language', 'English', '--aligner', ALIGNER, '--quant', 'none'], 2, /align needs --text/);
});

/**
 * More argument checks, through main() in this process (they all fail before a model is
 * created, so a process each would only cost time): exit code, stderr, and an empty stdout.
 */
async function mainInProcess(argv: string[], env: Env = {}): Promise<Run> {
  const { main } = await import('./main.ts');
  // Collectors, not process.stdout: the test runner reports through this process's stdout.
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } }, env);
  return { code, stdout, stderr };
}

test('argument values are checked before any model is loaded (in process)', async () => {
  const cases: [string[], RegExp][] = [
    [['transcribe', ...MODEL_ARGS], /exactly one audio file, got 0/],
    [['transcribe', EN_3S, EN_3S, ...MODEL_ARGS], /exactly one audio file, got 2/],
    [['transcribe', EN_3S, ...MODEL_ARGS, '--format', 'xml'], /--format must be one of text, json, verbose_json, srt, vtt, got "xml"/],
    [['transcribe', EN_3S, ...MODEL_ARGS, '--max-new-tokens', '0'], /--max-new-tokens: must be at least 1; got 0/],
    [['transcribe', EN_3S, ...MODEL_ARGS, '--threads', '1.5'], /--threads: must be an integer; got "1\.5"/],
    [['transcribe', EN_3S, ...MODEL_ARGS, '--segment-seconds', 'ten'], /--segment-seconds: must be an integer; got "ten"/],
    [['transcribe', EN_3S, ...MODEL_ARGS, '--device', 'tpu'], /--device: must be cpu, cuda or cuda:N \(N = GPU index\); got "tpu"/],
    [['transcribe', EN_3S, ...MODEL_ARGS, '--json=yes'], /Option '--json' does not take an argument/],
    [['transcribe', EN_3S, '--quant', 'none', '--model'], /Option '--model <value>' argument missing/],
    [['align', EN_3S, '--text', 'hello', '--aligner', ALIGNER], /align needs --language/],
    [['align', EN_3S, '--text', 'hello', '--language', 'auto', '--aligner', ALIGNER], /not auto-detection/],
    [['align', EN_3S, '--text', 'hello', '--language', 'klingon', '--aligner', ALIGNER], /Unsupported language: klingon/],
  ];
  for (const [argv, message] of cases) {
    const r = await mainInProcess(argv);
    assert.equal(r.code, 2, `${argv.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.equal(r.stdout, '', `${argv.join(' ')}: nothing on stdout`);
    assert.match(r.stderr, /^qwen3-asr: /);
    assert.match(r.stderr, message, argv.join(' '));
  }
  const help = await mainInProcess(['help']);
  assert.deepEqual({ code: help.code, stderr: help.stderr }, { code: 0, stderr: '' });
  assert.match(help.stdout, /^Usage:/);
});

/**
 * Runs `transcribe` on a file that does not exist: a run whose arguments and settings are all
 * accepted gets as far as reading the file (exit 1, ENOENT); one with a refused value exits 2.
 */
async function settingsCheck(flags: string[], env: Env = {}): Promise<Run> {
  return mainInProcess(['transcribe', join(tmpdir(), 'qwen3-asr-no-such-file.wav'), ...flags], env);
}

function accepted(r: Run, what: string): void {
  assert.equal(r.code, 1, `${what}: exit ${r.code}, expected the run to get as far as the missing file\n${r.stderr}`);
  assert.match(r.stderr, /cannot read file \(ENOENT\)/, what);
}

function refused(r: Run, message: string, what: string): void {
  assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.ok(r.stderr.startsWith(`qwen3-asr: ${message}\n`), `${what}: expected "${message}", got ${r.stderr.split('\n')[0]}`);
}

test('a setting flag accepts every value the server accepts for its variable, and refuses the rest with the same message', async () => {
  // For each flag: values the server accepts and values it refuses (whichever they are: the
  // server's parse decides, the CLI must agree).
  const samples: Record<string, string[]> = {
    model: ['Qwen/Qwen3-ASR-0.6B', '/models/asr', ' '],
    aligner: ['Qwen/Qwen3-ForcedAligner-0.6B', './aligner'],
    device: ['cpu', 'CUDA', 'cuda:0', 'cuda:12', 'gpu', 'cuda:x', 'cuda:1234', 'tpu'],
    quant: ['none', 'int8', 'INT8', 'int4', 'int3', 'fp16'],
    threads: ['0', '1', '+2', '1024', '1025', '-1', '1.5', 'many'],
    'batch-size': ['-1', '1', '16', '100000', '0', '-2', '1.5', 'all'],
    'max-new-tokens': ['1', '512', '0', '-1', 'x'],
    'segment-seconds': ['10', '20', '1200', '9', '1201', 'ten'],
    vad: ['on', 'off', 'OFF', 'yes', '1', 'auto'],
    'vad-threshold': ['0.5', '.3', '0.99', '0', '1', '-0.1', '0.5x', 'half'],
    'vad-min-silence-ms': ['100', '1000', '10000', '99', '10001', '1.5', 'x'],
    'hf-home': ['/cache/hf', '~/hf'],
  };
  const flags = cliSettings();
  assert.deepEqual(Object.keys(samples).sort(), flags.map(({ flag }) => flag.name).sort(), 'a sample list for every setting flag');
  let refusals = 0;
  for (const { setting, flag } of flags) {
    for (const value of samples[flag.name]) {
      let serverProblem: string | undefined;
      try {
        readServerConfig({ [setting.env]: value });
      } catch (err) {
        assert.ok(err instanceof SettingError, String(err));
        serverProblem = err.problem;
      }
      const what = `--${flag.name}=${value} (server: ${setting.env}=${value} ${serverProblem ? 'refused' : 'accepted'})`;
      const r = await settingsCheck([`--${flag.name}=${value}`]);
      if (serverProblem === undefined) accepted(r, what);
      else {
        refusals++;
        refused(r, `--${flag.name}: ${serverProblem}`, what);
      }
    }
  }
  assert.ok(refusals >= 15, `the samples include refused values (${refusals})`);
});

test('settings from the environment: the CLI takes what the server takes, a flag overrides its variable, an invalid variable exits 2 naming it', async () => {
  accepted(await settingsCheck([], { THREADS: '0', MAX_INFERENCE_BATCH_SIZE: '-1', QUANT: 'INT8', QWEN3_ASR_CACHE: 'off' }), 'THREADS=0 MAX_INFERENCE_BATCH_SIZE=-1 QUANT=INT8');
  accepted(await settingsCheck(['--threads', '2'], { THREADS: 'many' }), 'the flag overrides an invalid THREADS');
  refused(await settingsCheck([], { THREADS: 'many' }), 'THREADS: must be an integer; got "many"', 'THREADS=many');
  refused(await settingsCheck([], { QWEN3_ASR_INT8_KERNEL: 'bogus' }), 'QWEN3_ASR_INT8_KERNEL: must be one of u8s8, u8u8; got "bogus"', 'QWEN3_ASR_INT8_KERNEL=bogus');
  refused(await settingsCheck([], { QWEN3_ASR_CACHE: 'maybe' }), 'QWEN3_ASR_CACHE: must be a boolean (1/0, true/false, yes/no, on/off); got "maybe"', 'QWEN3_ASR_CACHE=maybe');
  refused(await settingsCheck([], { HF_HUB_OFFLINE: 'maybe' }), 'HF_HUB_OFFLINE: must be a boolean (1/0, true/false, yes/no, on/off); got "maybe"', 'HF_HUB_OFFLINE=maybe');
});

/** Runs the CLI in this process with stderr a terminal or not; returns what each stream got. */
async function inProcess(args: string[], tty: boolean): Promise<Run> {
  const { main } = await import('./main.ts');
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t), isTTY: tty } }, childEnv() as Env);
  return { code, stdout, stderr };
}

test('progress on a terminal: the parts of the model as they load, then the transcription in steps to 100 %; stdout only the text', async () => {
  const file = join(AUDIO_DIR, 'notld', '89s_ill_come_back_down_as_soon_as.wav');
  const r = await inProcess(['transcribe', file, ...MODEL_ARGS, '--threads', '2', '--max-new-tokens', '4', '--segment-seconds', '30'], true);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^[^\r]*\n$/u, 'one line of text on stdout');
  // One line per stage, rewritten in place: \r, the text, erase to the end of the line.
  const lines = r.stderr.split('\n');
  assert.equal(lines.at(-1), '', 'the last stage ends with a newline');
  assert.deepEqual(lines[0].split('\x1b[K').filter(Boolean), ['\rloading 1/2: audio encoder', '\rloading 2/2: text decoder']);
  const shown = lines[1].split('\x1b[K').filter(Boolean);
  // 88.9 s of audio: m:ss with the seconds floored.
  assert.equal(shown[0], '\rtranscribing   0% (0:00 / 1:28)', 'progress starts at 0%');
  assert.equal(shown.at(-1), '\rtranscribing 100% (1:28 / 1:28)', 'progress ends at 100%');
  const percents = shown.map((l) => Number(/^\rtranscribing +(\d+)% \(\d+:\d\d \/ 1:28\)$/.exec(l)?.[1]));
  assert.ok(percents.every((p, i) => p >= (percents[i - 1] ?? 0)), `percentages in order: ${percents}`);
});

test('--progress writes progress lines where stderr is no terminal; --no-progress silences a terminal', async () => {
  const args = ['transcribe', EN_3S, ...MODEL_ARGS, '--threads', '2', '--max-new-tokens', '4'];
  const r = await inProcess([...args, '--progress'], false);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n');
  assert.deepEqual(lines.slice(0, 3), ['loading 1/2: audio encoder', 'loading 2/2: text decoder', 'transcribing   0% (0:00 / 0:03)']);
  assert.deepEqual(lines.slice(-2), ['transcribing 100% (0:03 / 0:03)', '']);
  assert.doesNotMatch(r.stderr, /[\r\x1b]/, 'no terminal control characters');

  const quiet = await inProcess([...args, '--no-progress'], true);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stderr, '');
  assert.equal(quiet.stdout, r.stdout);
  await fails(['transcribe', EN_3S, ...MODEL_ARGS, '--progress', '--no-progress'], 2, /--progress and --no-progress contradict/);
});

test('download progress: shown from the first byte of a transfer, in place on a terminal; a cached snapshot shows nothing', async () => {
  const { progressPrinter } = await import('./main.ts');
  let clock = 0;
  const file = (name: string, fileIndex: number, fileBytes: number, fileSize: number, before: number) => ({
    stage: 'download' as const, repo: 'Qwen/Tiny', file: name, fileIndex, files: 2, fileBytes, fileSize, bytes: before + fileBytes, totalBytes: 3_000_000_000,
  });
  const run = (mode: 'terminal' | 'lines', events: ReturnType<typeof file>[], stepMs = 300) => {
    let out = '';
    const p = progressPrinter({ write: (t: string) => (out += t), isTTY: mode === 'terminal' }, mode, () => clock);
    for (const e of events) {
      clock += stepMs;
      p.load(e);
    }
    p.end();
    return out;
  };
  // Cached: each file reported once, whole.
  assert.equal(run('terminal', [file('config.json', 1, 1_000_000_000, 1_000_000_000, 0), file('model.safetensors', 2, 2_000_000_000, 2_000_000_000, 1_000_000_000)]), '');
  const transfer = [
    file('config.json', 1, 1_000_000_000, 1_000_000_000, 0),
    file('model.safetensors', 2, 0, 2_000_000_000, 1_000_000_000),
    file('model.safetensors', 2, 500_000_000, 2_000_000_000, 1_000_000_000),
    file('model.safetensors', 2, 2_000_000_000, 2_000_000_000, 1_000_000_000),
  ];
  assert.equal(
    run('terminal', transfer),
    '\rdownloading Qwen/Tiny  33% (1.00 GB / 3.00 GB; model.safetensors, file 2 of 2)\x1b[K' +
      '\rdownloading Qwen/Tiny  50% (1.50 GB / 3.00 GB; model.safetensors, file 2 of 2)\x1b[K' +
      '\rdownloading Qwen/Tiny 100% (3.00 GB / 3.00 GB; model.safetensors, file 2 of 2)\x1b[K\n',
  );
  // Lines: the start, then at most one a second (with a new percentage), and the end.
  assert.deepEqual(run('lines', transfer, 1100).split('\n').map((l) => l.slice(0, 26)), ['downloading Qwen/Tiny  33%', 'downloading Qwen/Tiny  50%', 'downloading Qwen/Tiny 100%', '']);
  assert.deepEqual(run('lines', transfer, 300).split('\n').map((l) => l.slice(0, 26)), ['downloading Qwen/Tiny  33%', 'downloading Qwen/Tiny 100%', '']);
});

test('align refuses a language the forced aligner does not support (exit 2, after loading it)', async () => {
  await fails(['align', EN_3S, '--text', 'hello', '--language', 'Thai', '--aligner', ALIGNER, '--quant', 'none'], 2, /forced aligner does not support Thai; it supports .*English/);
});

test('failures exit 1 with one clear message', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'qwen3-asr-cli-'));
  try {
    const missing = join(tmp, 'missing.wav');
    await fails(['transcribe', missing, ...MODEL_ARGS], 1, /missing\.wav: cannot read file \(ENOENT\)/);
    await fails(['transcribe', tmp, ...MODEL_ARGS], 1, /: not a regular file/);
    await fails(['align', missing, '--text', 'hi', '--language', 'English', '--aligner', ALIGNER, '--quant', 'none'], 1, /missing\.wav: cannot read file \(ENOENT\)/);

    const notes = join(tmp, 'notes.wav');
    writeFileSync(notes, 'These are meeting notes, not audio.\n');
    await fails(['transcribe', notes, ...MODEL_ARGS], 1, /notes\.wav: not a (decodable|recognised) audio or video/);

    const r = await fails(['transcribe', EN_3S, '--model', join(tmp, 'no-such-model'), '--quant', 'none'], 1, /no-such-model does not exist/);
    assert.equal(r.stderr.match(/does not exist/g)!.length, 1, `the load error is printed once:\n${r.stderr}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
