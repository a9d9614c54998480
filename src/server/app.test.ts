/**
 * The HTTP service end to end: real Fastify servers on loopback ports, the real transcriber
 * (tiny random checkpoint), requests through fetch and the official `openai` client. The
 * transcripts are nonsense, but in fp32 on one thread they are deterministic, so every
 * transcript is checked exactly: against the tiny-a goldens where they cover the request
 * (en_3s), against the output of this pipeline otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import type { FastifyInstance } from 'fastify';
import { createTranscriber } from '../pipeline/transcriber.ts';
import type { TranscribeOptions, Transcriber } from '../pipeline/types.ts';
import { listenUrl, speechWav, testServerConfig } from '../testing/http.ts';
import { goldenPath, readJson } from '../testing/shared.ts';
import { buildApp } from './app.ts';
import type { ServerConfig } from './config.ts';

const API_KEY = 'test-key-7f3a';
const AUTH = { authorization: `Bearer ${API_KEY}` };
const MAX_UPLOAD_BYTES = 24 * 1024 * 1024;
const ALIGNER = goldenPath('aligner-a', 'checkpoint');

const tinyGoldens = readJson<{ cases: { case: string; generated_ids: number[]; parsed_text: string; parsed_language: string }[] }>(goldenPath('tiny-a', 'index.json')).cases;
const tinyGolden = (name: string) => tinyGoldens.find((c) => c.case === name)!;
/** en_3s with English forced: generation stops on its own, at the golden's tokens. */
const EN3S_ENGLISH = tinyGolden('en_3s__lang_english');
const EN3S_ENGLISH_TEXT = 'targeted ons';
/** en_3s, language detected: the golden's 32 tokens, then on to the 3 s budget (69 tokens). */
const EN3S_AUTO = tinyGolden('en_3s__auto');
const EN3S_AUTO_TEXT = "(children⛾⛾⛾⛾ competitive Cord Cord Cord Cord Cord Cord Cord Cord Cord Cord Cord Cord Cord Cord Cord('/:('/:('/:";
/**
 * The random aligner puts both words of en_3s's English transcript at 341.84 s (class 4273),
 * past the end of its 3.0048 s: word times stop at the audio's end (to the ms).
 */
const EN3S_WORDS = [
  { text: 'targeted', start: 3.004, end: 3.004 },
  { text: 'ons', start: 3.004, end: 3.004 },
];
/**
 * The first 25 s of speechWav (jfk.wav repeated), English forced, in 10 s segments. tiny-a
 * loops on "(children": the repetition guard stops each segment there.
 */
const SPEECH_25S_SEGMENTS = [
  { start: 0, end: 11, text: '(children' },
  { start: 11, end: 22, text: '(children' },
  { start: 22, end: 25, text: 'targeted(children' },
];
const SPEECH_25S_TEXT = SPEECH_25S_SEGMENTS.map((s) => s.text).join(' ');
/** The first 40 s, English forced: each 10 s segment's settled text as it is decoded (one loop each). */
const SPEECH_40S_DELTAS = ['(children', ' (children', ' (children', ' (children'];

interface Server {
  app: FastifyInstance;
  url: string;
  transcriber: Transcriber;
  uploadDir: string;
  openai: OpenAI;
}

const servers: Server[] = [];
const transcribers: Transcriber[] = [];
let scratch: string;
let main: Server;
let aligned: Server;
let en3s: Buffer;
let longWav: Buffer;

function makeConfig(uploadDir: string, over: Partial<ServerConfig> = {}): ServerConfig {
  return testServerConfig(uploadDir, {
    segmentSeconds: 120,
    maxUploadBytes: MAX_UPLOAD_BYTES,
    apiKey: API_KEY,
    decodeConcurrency: 2,
    decodeTimeoutMs: 120_000,
    shutdownGraceMs: 30_000,
    realtime: { maxSessions: 4, updateSeconds: 1, maxUtteranceSeconds: 30 },
    ...over,
  });
}

function newTranscriber(config: ServerConfig): Transcriber {
  const t = createTranscriber({
    model: config.modelName,
    aligner: config.forcedAligner,
    device: 'cpu',
    quant: 'none',
    threads: 1,
    maxBatchSize: 4,
    maxQueue: config.maxQueue,
    hfOffline: true,
    // Short segments, so that a 40 s file gives several segments (several stream deltas).
    segmentSeconds: 10,
  });
  transcribers.push(t);
  return t;
}

async function startServer(config: ServerConfig, transcriber: Transcriber): Promise<Server> {
  const app = buildApp({ config, transcriber, logger: false });
  const url = await listenUrl(app);
  const server = { app, url, transcriber, uploadDir: config.uploadDir, openai: new OpenAI({ apiKey: API_KEY, baseURL: `${url}/v1`, maxRetries: 0 }) };
  servers.push(server);
  return server;
}

function form(fields: Record<string, string | string[]>, file?: { data: Buffer | string; name: string; type?: string }): FormData {
  const fd = new FormData();
  if (file) fd.append('file', new Blob([typeof file.data === 'string' ? file.data : new Uint8Array(file.data)], { type: file.type ?? 'application/octet-stream' }), file.name);
  for (const [key, value] of Object.entries(fields)) for (const v of [value].flat()) fd.append(key, v);
  return fd;
}

async function post(server: Server, path: string, body: FormData | string, headers: Record<string, string> = AUTH, signal?: AbortSignal): Promise<Response> {
  return fetch(server.url + path, { method: 'POST', body, headers, signal });
}

/** Temp files are removed when the response closes, just after the client has it: wait for that. */
async function assertNoTempFiles(server: Server): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await readdir(server.uploadDir)).length === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.deepEqual(await readdir(server.uploadDir), [], 'upload folder is empty');
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 3000 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(condition(), what);
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-server-test-'));
  en3s = await readFile(goldenPath('tiny-a', 'audio', 'en_3s.wav'));
  longWav = await speechWav(120);

  const mainDir = await mkdtemp(join(scratch, 'uploads-'));
  const mainConfig = makeConfig(mainDir);
  main = await startServer(mainConfig, newTranscriber(mainConfig));

  const alignedDir = await mkdtemp(join(scratch, 'uploads-'));
  const alignedConfig = makeConfig(alignedDir, { forcedAligner: ALIGNER, apiKey: undefined, maxQueue: 4 });
  aligned = await startServer(alignedConfig, newTranscriber(alignedConfig));
  await Promise.all([main.transcriber.whenReady(), aligned.transcriber.whenReady()]);
});

after(async () => {
  try {
    await Promise.allSettled(servers.map((s) => s.app.close()));
    await Promise.allSettled(transcribers.map((t) => t.close()));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

describe('original API', () => {
  test('GET / describes the service (API key required)', async () => {
    const res = await fetch(main.url + '/', { headers: AUTH });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.model, 'checkpoint', 'a model folder by its name, not its path');
    assert.equal(body.name, 'checkpoint API');
    assert.match(body.description, /Supports 30 languages/);
    assert.equal(body.endpoints['/transcribe'], 'Transcribe audio files (POST)');
    assert.equal(body.endpoints['/v1/audio/transcriptions'] !== undefined, true);

    const denied = await fetch(main.url + '/');
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('www-authenticate'), 'Bearer');
    assert.match((await denied.json()).detail, /Authorization: Bearer/);
  });

  test('GET /health reports the model, without the API key', async () => {
    const res = await fetch(main.url + '/health');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'healthy', model_loaded: true, model_name: 'checkpoint', device: 'cpu', queue_length: 0 });
    assert.ok(res.headers.get('x-request-id'));
  });

  test('POST /transcribe answers in the original shape', async () => {
    const res = await post(main, '/transcribe', form({ language: 'en' }, { data: en3s, name: 'en_3s.wav', type: 'audio/wav' }));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(Object.keys(body).sort(), ['language', 'metadata', 'text', 'timestamps']);
    assert.equal(EN3S_ENGLISH_TEXT, EN3S_ENGLISH.parsed_text, 'the golden transcript');
    assert.equal(body.text, EN3S_ENGLISH_TEXT);
    assert.equal(body.language, 'English', 'a forced language comes back as its Qwen name');
    assert.equal(body.timestamps, null);
    assert.equal(body.metadata.model, 'checkpoint');
    assert.equal(body.metadata.device, 'cpu');
    assert.match(body.metadata.processing_time, /^\d+\.\d\ds$/);
    // en_3s with English forced stops on its own stop token (the golden's 22 tokens).
    assert.equal(body.metadata.truncated, false);
    assert.equal(body.metadata.repetition_stopped, false);
  });

  test('POST /transcribe detects the language and accepts lax booleans', async () => {
    const res = await post(main, '/transcribe', form({ language: 'auto', return_time_stamps: 'Off' }, { data: en3s, name: 'en_3s.wav' }));
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.language, EN3S_AUTO.parsed_language, 'the golden detects no language');
    assert.ok(EN3S_AUTO_TEXT.startsWith(EN3S_AUTO.parsed_text));
    assert.equal(body.text, EN3S_AUTO_TEXT);
    assert.equal(body.timestamps, null);
  });

  test('return_time_stamps=true gives word timestamps when an aligner is configured', async () => {
    const res = await post(aligned, '/transcribe', form({ language: 'English', return_time_stamps: 'yes' }, { data: en3s, name: 'en.wav' }), {});
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.language, 'English');
    assert.equal(body.text, EN3S_ENGLISH_TEXT);
    // Random aligner weights: times far beyond the 3 s of audio (as in the aligner goldens), clamped to its end.
    assert.deepEqual(body.timestamps, EN3S_WORDS);
  });
});

describe('OpenAI API through the official client', () => {
  test('json (default) and the usage block', async () => {
    const res = await main.openai.audio.transcriptions.create({ file: await toFile(en3s, 'en_3s.wav'), model: 'whisper-1' });
    assert.equal(res.text, EN3S_AUTO_TEXT);
    assert.deepEqual((res as any).usage, { type: 'duration', seconds: 4 });

    // The tokens behind that text begin with the golden's 32 (the golden stops there).
    const verbose: any = await main.openai.audio.transcriptions.create({ file: await toFile(en3s, 'en_3s.wav'), model: 'whisper-1', response_format: 'verbose_json' });
    assert.equal(verbose.text, EN3S_AUTO_TEXT);
    assert.deepEqual(verbose.segments[0].tokens.slice(0, EN3S_AUTO.generated_ids.length), EN3S_AUTO.generated_ids);
  });

  test('text, srt and vtt are plain-text bodies', async () => {
    const file = () => toFile(longWav.subarray(0, 44 + 25 * 32000), 'speech.wav');
    const text = await main.openai.audio.transcriptions.create({ file: await file(), model: 'm', response_format: 'text', language: 'en' });
    assert.equal(text, SPEECH_25S_TEXT);

    // One cue per segment (how long texts split into cues is subtitles.test.ts's).
    const cues: [string, string, string][] = [
      ['00:00:00,000', '00:00:11,000', '(children'],
      ['00:00:11,000', '00:00:22,000', '(children'],
      ['00:00:22,000', '00:00:25,000', 'targeted(children'],
    ];
    const srt = await main.openai.audio.transcriptions.create({ file: await file(), model: 'm', response_format: 'srt', language: 'en' });
    assert.equal(srt, cues.map(([from, to, lines], i) => `${i + 1}\n${from} --> ${to}\n${lines}\n\n`).join(''));
    const vtt = await main.openai.audio.transcriptions.create({ file: await file(), model: 'm', response_format: 'vtt', language: 'en' });
    assert.equal(vtt, `WEBVTT\n\n${cues.map(([from, to, lines]) => `${from.replace(',', '.')} --> ${to.replace(',', '.')}\n${lines}\n\n`).join('')}`);

    // Content types as clients see them.
    const raw = await post(main, '/v1/audio/transcriptions', form({ response_format: 'vtt' }, { data: en3s, name: 'a.wav' }));
    assert.equal(raw.headers.get('content-type'), 'text/vtt; charset=utf-8');
    const rawText = await post(main, '/v1/audio/transcriptions', form({ response_format: 'text' }, { data: en3s, name: 'a.wav' }));
    assert.equal(rawText.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(await rawText.text(), EN3S_AUTO_TEXT, 'text is not JSON-encoded');
  });

  test('verbose_json has segments in OpenAI shape and lowercase language', async () => {
    const res: any = await main.openai.audio.transcriptions.create({
      file: await toFile(longWav.subarray(0, 44 + 25 * 32000), 'speech.wav'),
      model: 'm',
      response_format: 'verbose_json',
      language: 'en',
      timestamp_granularities: ['segment'],
    });
    assert.equal(res.task, 'transcribe');
    assert.equal(res.language, 'english');
    assert.equal(res.duration, 25);
    assert.equal(res.text, SPEECH_25S_TEXT);
    assert.equal(res.words, undefined);
    assert.deepEqual(
      res.segments.map((s: any) => ({ start: s.start, end: s.end, text: s.text })),
      SPEECH_25S_SEGMENTS,
      '25 s in segments of 10 s, each cut at a quiet point up to 5 s later',
    );
    let previousEnd = 0;
    res.segments.forEach((s: any, i: number) => {
      assert.deepEqual(Object.keys(s).sort(), ['avg_logprob', 'compression_ratio', 'end', 'id', 'no_speech_prob', 'repetition_stopped', 'seek', 'start', 'temperature', 'text', 'tokens', 'truncated']);
      // Every segment loops on "(children": the guard stops it before the budget.
      assert.equal(s.repetition_stopped, true);
      assert.equal(s.truncated, false);
      assert.equal(s.id, i);
      assert.ok(s.start >= previousEnd - 1e-9 && s.end > s.start);
      assert.equal(s.seek, Math.round(s.start * 100));
      assert.ok(Array.isArray(s.tokens) && s.tokens.every(Number.isInteger));
      assert.equal(s.temperature, 0);
      assert.equal(s.no_speech_prob, s.text === '' ? 1 : 0);
      previousEnd = s.end;
    });
    assert.ok(Math.abs(previousEnd - 25) < 0.01, 'segments cover the audio');
  });

  test('verbose_json words come from the forced aligner', async () => {
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${aligned.url}/v1`, maxRetries: 0 });
    const res: any = await client.audio.transcriptions.create({
      file: await toFile(en3s, 'en.wav'),
      model: 'm',
      response_format: 'verbose_json',
      language: 'en',
      timestamp_granularities: ['word', 'segment'],
    });
    const words = EN3S_WORDS.map(({ text, start, end }) => ({ word: text, start, end }));
    assert.equal(res.text, EN3S_ENGLISH_TEXT);
    assert.deepEqual(res.words, words);
    assert.equal(res.segments.length, 1);
    // The segment's tokens: the golden's, less the stop token.
    assert.deepEqual(res.segments[0].tokens, EN3S_ENGLISH.generated_ids.slice(0, -1));

    // Word granularity alone: words, no segments.
    const wordsOnly: any = await client.audio.transcriptions.create({
      file: await toFile(en3s, 'en.wav'),
      model: 'm',
      response_format: 'verbose_json',
      language: 'en',
      timestamp_granularities: ['word'],
    });
    assert.equal(wordsOnly.segments, undefined);
    assert.deepEqual(wordsOnly.words, words);
  });

  test('stream=true: transcript.text.delta events as text is decoded, then transcript.text.done', async () => {
    const stream = await main.openai.audio.transcriptions.create({
      file: await toFile(longWav.subarray(0, 44 + 40 * 32000), 'speech.wav'),
      model: 'm',
      language: 'en',
      stream: true,
    });
    const events: any[] = [];
    for await (const event of stream) events.push(event);
    const done = events.at(-1);
    assert.equal(done.type, 'transcript.text.done');
    const deltas = events.slice(0, -1);
    assert.deepEqual(deltas, SPEECH_40S_DELTAS.map((delta) => ({ type: 'transcript.text.delta', delta })));
    assert.equal(done.text, SPEECH_40S_DELTAS.join(''), 'the deltas add up to the final text');

    // The wire format: event + data lines, no [DONE] sentinel.
    const raw = await post(main, '/v1/audio/transcriptions', form({ stream: 'true', response_format: 'text' }, { data: en3s, name: 'a.wav' }));
    assert.equal(raw.status, 200);
    assert.match(raw.headers.get('content-type') ?? '', /^text\/event-stream/);
    const wire = await raw.text();
    const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    assert.equal(wire, event('transcript.text.delta', { delta: EN3S_AUTO_TEXT }) + event('transcript.text.done', { text: EN3S_AUTO_TEXT }));
  });

  test('GET /v1/models lists the one model; retrieve by id', async () => {
    const list = await main.openai.models.list();
    assert.equal(list.data.length, 1);
    const model = list.data[0];
    assert.equal(model.id, 'checkpoint');
    assert.equal(model.object, 'model');
    assert.equal(model.owned_by, 'local');
    assert.ok(Number.isInteger(model.created));
    assert.deepEqual(await main.openai.models.retrieve('checkpoint'), model);
    await assert.rejects(main.openai.models.retrieve('gpt-4o'), (err: any) => err.status === 404 && err.code === 'model_not_found');
  });

  test('translations answer 501 in the OpenAI envelope', async () => {
    await assert.rejects(
      main.openai.audio.translations.create({ file: await toFile(en3s, 'en.wav'), model: 'whisper-1' }),
      (err: any) => err.status === 501 && err.code === 'unsupported' && /not supported/.test(err.message),
    );
  });
});

describe('documentation', () => {
  test('/docs, /redoc and /openapi.json work without the API key', async () => {
    const docs = await fetch(main.url + '/docs');
    assert.equal(docs.status, 200);
    assert.match(await docs.text(), /swagger-ui/i);

    const spec = await (await fetch(main.url + '/openapi.json')).json();
    assert.equal(spec.openapi, '3.0.3');
    for (const path of ['/', '/health', '/transcribe', '/v1/audio/transcriptions', '/v1/models', '/v1/audio/translations']) assert.ok(spec.paths[path], path);
    const upload = spec.paths['/v1/audio/transcriptions'].post.requestBody.content['multipart/form-data'].schema;
    assert.deepEqual({ type: upload.properties.file.type, format: upload.properties.file.format }, { type: 'string', format: 'binary' });
    assert.deepEqual(upload.properties.response_format.enum, ['json', 'text', 'srt', 'verbose_json', 'vtt']);
    assert.equal(spec.paths['/transcribe'].post.requestBody.content['multipart/form-data'].schema.properties.file.format, 'binary');
    assert.ok(spec.components.securitySchemes.bearerAuth);
    assert.equal(spec.paths['/redoc'], undefined, 'documentation routes are not part of the API');

    const redoc = await fetch(main.url + '/redoc');
    assert.equal(redoc.status, 200);
    assert.match(await redoc.text(), /<redoc spec-url="openapi.json">/);
    const bundle = await fetch(main.url + '/redoc/redoc.standalone.js');
    assert.equal(bundle.status, 200);
    assert.match(bundle.headers.get('content-type') ?? '', /javascript/);
    assert.ok((await bundle.arrayBuffer()).byteLength > 100_000, 'the ReDoc bundle is served locally');
  });
});

describe('concurrency', () => {
  // A is 20 minutes of audio: 110 segments, about 15 s of work for the tiny model, which could
  // finish within this test's timeout even if disconnecting did not cancel it. So the test
  // watches A itself, through the transcriber the server calls: A must end as cancelled, with
  // at most the rows already decoding when the client left finished after that.
  test('/health answers during a long transcription; a full queue gives 503 + Retry-After; disconnecting frees the place', { timeout: 40_000 }, async () => {
    const jobs: { segments: number; outcome: Promise<string> }[] = [];
    const watched = new Proxy(main.transcriber, {
      get(target, prop) {
        if (prop === 'transcribeFile') {
          return (path: string, opts: TranscribeOptions = {}) => {
            const job = { segments: 0, outcome: Promise.resolve('') };
            const result = target.transcribeFile(path, {
              ...opts,
              onSegment: (segment) => {
                job.segments++;
                opts.onSegment?.(segment);
              },
            });
            job.outcome = result.then(
              () => 'finished',
              (err) => err.code ?? err.message,
            );
            jobs.push(job);
            return result;
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const server = await startServer(makeConfig(await mkdtemp(join(scratch, 'uploads-'))), watched);

    const twentyMinutes = await speechWav(20 * 60, 8000);
    const long = () => form({ stream: 'true', language: 'en' }, { data: twentyMinutes, name: 'long.wav' });
    // A: streamed, so we know when it is running.
    const abortA = new AbortController();
    const resA = await post(server, '/v1/audio/transcriptions', long(), AUTH, abortA.signal);
    assert.equal(resA.status, 200);
    const reader = resA.body!.getReader();
    let wire = '';
    const decoder = new TextDecoder();
    while (!wire.includes('transcript.text.delta') && !wire.includes('transcript.text.done')) {
      const { value, done } = await reader.read();
      if (done) break;
      wire += decoder.decode(value);
    }
    assert.ok(wire.includes('transcript.text.delta') && !wire.includes('transcript.text.done'), 'job A is running');

    // The event loop is free: /health answers while A runs.
    const health = await fetch(server.url + '/health');
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, 'healthy');

    // A shares the batch with up to 3 more jobs (MAX_INFERENCE_BATCH_SIZE=4): B1-B3, long too,
    // run beside it; B4 waits (MAX_QUEUE=1); C finds the queue full.
    const others = [1, 2, 3].map(() => {
      const abort = new AbortController();
      const res = post(server, '/v1/audio/transcriptions', long(), AUTH, abort.signal).catch((e) => e);
      return { abort, res };
    });
    await until('A and B1-B3 run together', () => main.transcriber.activeJobs === 4);
    const abortB = new AbortController();
    const resB = post(server, '/v1/audio/transcriptions', form({}, { data: en3s, name: 'b.wav' }), AUTH, abortB.signal).catch((e) => e);
    await until('B4 is queued', () => main.transcriber.queueLength === 1);
    const resC = await post(server, '/transcribe', form({}, { data: en3s, name: 'c.wav' }));
    assert.equal(resC.status, 503);
    assert.equal(resC.headers.get('retry-after'), '5');
    assert.match((await resC.json()).detail, /busy/);
    const resC2 = await post(server, '/v1/audio/transcriptions', form({}, { data: en3s, name: 'c.wav' }));
    assert.equal(resC2.status, 503);
    assert.equal((await resC2.json()).error.code, 'overloaded');

    // Clients that leave free their places: B4 leaves the queue, A and B1-B3 are cancelled.
    abortB.abort();
    await until('B4 left the queue', () => main.transcriber.queueLength === 0);
    const [jobA, ...running] = jobs.slice(0, 4);
    const jobB = jobs[4];
    assert.equal(await jobB.outcome, 'aborted', 'B4 left the queue unrun');
    const segmentsBeforeAbort = jobA.segments;
    assert.ok(segmentsBeforeAbort >= 1 && segmentsBeforeAbort < 110, `A was running: ${segmentsBeforeAbort} of 110 segments done`);
    abortA.abort();
    for (const o of others) o.abort.abort();
    await reader.cancel().catch(() => undefined);
    assert.equal(await jobA.outcome, 'aborted', 'A was cancelled, not run to the end');
    for (const job of running) assert.equal(await job.outcome, 'aborted', 'B1-B3 were cancelled');
    // Cancelling takes effect at the worker's next decoding step: a row leaves the shared batch
    // there. Segments still reach the caller after the abort only from rows that finished before
    // the cancel reached the worker (and were in flight to this thread): at most one batch.
    assert.ok(jobA.segments - segmentsBeforeAbort <= 4, `${jobA.segments - segmentsBeforeAbort} segments of A finished after the abort`);
    await until('the worker is idle', () => main.transcriber.activeJobs === 0);
    const next = await post(server, '/transcribe', form({}, { data: en3s, name: 'd.wav' }));
    assert.equal(next.status, 200, 'the server takes new work once the aborted jobs are gone');
    assert.equal((await next.json()).text, EN3S_AUTO_TEXT);
    await resB;
    await Promise.all(others.map((o) => o.res));
    await assertNoTempFiles(server);
  });

  test('a client that disconnects mid-upload leaves no temp file', async () => {
    const boundary = 'qwen3-asr-test-boundary';
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\nContent-Type: audio/wav\r\n\r\n`;
    const controller = new AbortController();
    let sent = false;
    // Sends the start of the file, then stalls until the client gives up.
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!sent) {
          sent = true;
          c.enqueue(new TextEncoder().encode(head));
          c.enqueue(new Uint8Array(longWav.subarray(0, 256 * 1024)));
          return;
        }
        await new Promise((resolve) => controller.signal.addEventListener('abort', resolve));
      },
    });
    const response = fetch(main.url + '/v1/audio/transcriptions', {
      method: 'POST',
      body,
      headers: { ...AUTH, 'content-type': `multipart/form-data; boundary=${boundary}` },
      signal: controller.signal,
      duplex: 'half',
    } as RequestInit).catch((err) => err);
    await until('the upload is being written to a temp file', () => readdirSync(main.uploadDir).length === 1);
    controller.abort();
    assert.ok((await response) instanceof Error);
    await assertNoTempFiles(main);
    assert.equal((await (await fetch(main.url + '/health')).json()).status, 'healthy');
  });
});

describe('bad input', () => {
  const mp3 = () => readFile(goldenPath('tiny-a', 'audio', 'en_3s_44k_stereo.mp3'));
  const cases: {
    name: string;
    send: () => Promise<Response>;
    status: number;
    check: (body: any) => void;
  }[] = [
    {
      name: 'no file (original)',
      send: () => post(main, '/transcribe', form({ language: 'en' })),
      status: 422,
      check: (b) => assert.deepEqual(b.detail, [{ type: 'missing', loc: ['body', 'file'], msg: 'Field required', input: null }]),
    },
    {
      name: 'no file (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', form({ model: 'whisper-1' })),
      status: 400,
      check: (b) => assert.deepEqual(b.error, { message: "Missing required parameter: 'file'.", type: 'invalid_request_error', param: 'file', code: 'missing_required_parameter' }),
    },
    {
      name: 'not multipart at all (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', JSON.stringify({ file: 'x' }), { ...AUTH, 'content-type': 'application/json' }),
      status: 400,
      check: (b) => assert.equal(b.error.param, 'file'),
    },
    {
      name: 'empty file',
      send: () => post(main, '/v1/audio/transcriptions', form({}, { data: Buffer.alloc(0), name: 'empty.wav' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'file');
        assert.match(b.error.message, /empty/i);
        assert.ok(!b.error.message.includes(main.uploadDir), 'no server path in the message');
      },
    },
    {
      name: 'random bytes',
      send: () => post(main, '/transcribe', form({}, { data: Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)), name: 'noise.mp3' })),
      status: 400,
      check: (b) => assert.match(b.detail, /could not be decoded/),
    },
    {
      name: 'truncated mp3',
      send: async () => post(main, '/v1/audio/transcriptions', form({}, { data: (await mp3()).subarray(0, 300), name: 'cut.mp3', type: 'audio/mpeg' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'file');
        assert.match(b.error.message, /could not be decoded|empty|too short/i);
      },
    },
    {
      name: 'a text file sent as the audio',
      send: () => post(main, '/v1/audio/transcriptions', form({}, { data: 'hello, this is not audio at all\n'.repeat(20), name: 'notes.txt', type: 'text/plain' })),
      status: 400,
      check: (b) => assert.match(b.error.message, /could not be decoded/),
    },
    {
      name: 'text sent in the file field (original)',
      send: () => post(main, '/transcribe', form({ file: 'hello' })),
      status: 422,
      check: (b) => assert.deepEqual(b.detail[0].loc, ['body', 'file']),
    },
    {
      name: 'text sent in the file field (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', form({ file: 'hello' })),
      status: 400,
      check: (b) => assert.match(b.error.message, /must be an uploaded file/),
    },
    {
      name: 'bad boolean (original)',
      send: () => post(main, '/transcribe', form({ return_time_stamps: 'maybe' }, { data: en3s, name: 'a.wav' })),
      status: 422,
      check: (b) =>
        assert.deepEqual(b.detail, [
          { type: 'bool_parsing', loc: ['body', 'return_time_stamps'], msg: 'Input should be a valid boolean, unable to interpret input', input: 'maybe' },
        ]),
    },
    {
      name: 'bad boolean (OpenAI stream)',
      send: () => post(main, '/v1/audio/transcriptions', form({ stream: 'sometimes' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'stream');
        assert.match(b.error.message, /expected a boolean/);
      },
    },
    {
      name: 'unknown language (original)',
      send: () => post(main, '/transcribe', form({ language: 'Klingon' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => assert.match(b.detail, /^Unsupported language: Klingon\. Supported: \['Chinese', 'English'/),
    },
    {
      name: 'unknown language (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', form({ language: 'xx' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'language');
        assert.equal(b.error.code, 'unsupported_value');
        assert.match(b.error.message, /Supported: .*'English'/);
      },
    },
    {
      name: 'unknown response_format',
      send: () => post(main, '/v1/audio/transcriptions', form({ response_format: 'diarized_json' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) =>
        assert.deepEqual(b.error, {
          message: "Unsupported value for 'response_format': 'diarized_json'. Supported values: json, text, srt, verbose_json, vtt.",
          type: 'invalid_request_error',
          param: 'response_format',
          code: 'unsupported_value',
        }),
    },
    {
      name: 'stream with srt',
      send: () => post(main, '/v1/audio/transcriptions', form({ response_format: 'srt', stream: 'true' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'stream');
        assert.equal(b.error.code, 'unsupported_value');
      },
    },
    {
      name: 'temperature out of range',
      send: () => post(main, '/v1/audio/transcriptions', form({ temperature: '1.5' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => assert.equal(b.error.param, 'temperature'),
    },
    {
      name: 'unknown timestamp granularity',
      send: () => post(main, '/v1/audio/transcriptions', form({ response_format: 'verbose_json', 'timestamp_granularities[]': 'word,sentence' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'timestamp_granularities');
        assert.match(b.error.message, /'sentence'/);
      },
    },
    {
      name: 'word timestamps without an aligner (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', form({ response_format: 'verbose_json', timestamp_granularities: ['segment', 'word'] }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => {
        assert.equal(b.error.param, 'timestamp_granularities');
        assert.match(b.error.message, /FORCED_ALIGNER/);
      },
    },
    {
      name: 'return_time_stamps without an aligner (original)',
      send: () => post(main, '/transcribe', form({ return_time_stamps: 'true' }, { data: en3s, name: 'a.wav' })),
      status: 400,
      check: (b) => assert.match(b.detail, /^return_time_stamps=True requires `forced_aligner`/),
    },
    {
      name: 'timestamps for a language the aligner does not support',
      send: () => post(aligned, '/transcribe', form({ return_time_stamps: '1', language: 'th' }, { data: en3s, name: 'a.wav' }), {}),
      status: 400,
      check: (b) => assert.match(b.detail, /Thai.*forced aligner supports/),
    },
    {
      name: 'oversized upload (original)',
      send: () => post(main, '/transcribe', form({}, { data: Buffer.alloc(MAX_UPLOAD_BYTES + 1000), name: 'big.wav' })),
      status: 413,
      check: (b) => assert.match(b.detail, new RegExp(`^Maximum content size limit \\(${MAX_UPLOAD_BYTES}\\) exceeded`)),
    },
    {
      name: 'oversized upload (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', form({}, { data: Buffer.alloc(MAX_UPLOAD_BYTES + 1), name: 'big.wav' })),
      status: 413,
      check: (b) => {
        assert.equal(b.error.code, 'file_too_large');
        assert.match(b.error.message, /Maximum content size limit/);
      },
    },
    {
      name: 'malformed multipart body',
      send: () =>
        post(main, '/v1/audio/transcriptions', '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF', {
          ...AUTH,
          'content-type': 'multipart/form-data; boundary=xyz',
        }),
      status: 400,
      check: (b) => assert.match(b.error.message, /multipart/i),
    },
    {
      name: 'missing API key (OpenAI)',
      send: () => post(main, '/v1/audio/transcriptions', form({}, { data: en3s, name: 'a.wav' }), {}),
      status: 401,
      check: (b) => {
        assert.equal(b.error.code, 'invalid_api_key');
        assert.match(b.error.message, /didn't provide an API key/);
      },
    },
    {
      name: 'wrong API key (OpenAI)',
      send: () => fetch(main.url + '/v1/models', { headers: { authorization: 'Bearer nope' } }),
      status: 401,
      check: (b) => assert.deepEqual(b.error, { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' }),
    },
    {
      name: 'wrong API key (original)',
      send: () => post(main, '/transcribe', form({}, { data: en3s, name: 'a.wav' }), { authorization: 'Bearer nope' }),
      status: 401,
      check: (b) => assert.deepEqual(b, { detail: 'Invalid API key.' }),
    },
    {
      name: 'translations',
      send: () => post(main, '/v1/audio/translations', form({ model: 'whisper-1' }, { data: en3s, name: 'a.wav' })),
      status: 501,
      check: (b) => assert.equal(b.error.code, 'unsupported'),
    },
    {
      name: 'unknown path (OpenAI)',
      send: () => fetch(main.url + '/v1/audio/speech', { method: 'POST', headers: AUTH }),
      status: 404,
      check: (b) => assert.equal(b.error.message, 'Invalid URL (POST /v1/audio/speech)'),
    },
    {
      name: 'wrong method (original)',
      send: () => fetch(main.url + '/transcribe', { headers: AUTH }),
      status: 405,
      check: (b) => assert.deepEqual(b, { detail: 'Method Not Allowed' }),
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const res = await c.send();
      const text = await res.text();
      assert.equal(res.status, c.status, text);
      c.check(JSON.parse(text));
      await assertNoTempFiles(c.name.includes('aligner does not') ? aligned : main);
    });
  }

  test('the server is still healthy and left no temp files', async () => {
    const res = await fetch(main.url + '/health');
    assert.equal((await res.json()).status, 'healthy');
    const ok = await main.openai.audio.transcriptions.create({ file: await toFile(en3s, 'en.wav'), model: 'm' });
    assert.equal(ok.text, EN3S_AUTO_TEXT);
    await assertNoTempFiles(main);
    await assertNoTempFiles(aligned);
  });
});

describe('model states', () => {
  test('"loading" before the model is ready: /health says so, transcriptions get 503', async () => {
    // The real transcriber, seen through a gate that holds it in 'loading' until opened:
    // the only way to observe the loading state without depending on how fast it loads.
    let open = false;
    const gated = new Proxy(main.transcriber, {
      get(target, prop) {
        if (prop === 'state') return open ? target.state : 'loading';
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const dir = await mkdtemp(join(scratch, 'uploads-'));
    const server = await startServer(makeConfig(dir), gated);

    const loading = await fetch(server.url + '/health');
    assert.equal(loading.status, 200);
    assert.deepEqual(await loading.json(), { status: 'loading', model_loaded: false, model_name: 'checkpoint', device: 'cpu', queue_length: 0 });
    const original = await post(server, '/transcribe', form({}, { data: en3s, name: 'a.wav' }));
    assert.equal(original.status, 503);
    assert.deepEqual(await original.json(), { detail: 'Model not loaded yet' });
    const openai = await post(server, '/v1/audio/transcriptions', form({}, { data: en3s, name: 'a.wav' }));
    assert.equal(openai.status, 503);
    assert.equal((await openai.json()).error.code, 'model_not_ready');

    open = true;
    assert.equal((await (await fetch(server.url + '/health')).json()).status, 'healthy');
    await assertNoTempFiles(server);
  });

  test('a model that fails to load makes /health unhealthy (503) with the error', async () => {
    const emptyModel = await mkdtemp(join(scratch, 'no-model-'));
    const dir = await mkdtemp(join(scratch, 'uploads-'));
    const config = makeConfig(dir, { modelName: emptyModel });
    const server = await startServer(config, newTranscriber(config));
    await assert.rejects(server.transcriber.whenReady());
    const res = await fetch(server.url + '/health');
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.status, 'unhealthy');
    assert.equal(body.model_loaded, false);
    assert.ok(body.error.length > 0);
    const refused = await post(server, '/v1/audio/transcriptions', form({}, { data: en3s, name: 'a.wav' }));
    assert.equal(refused.status, 503);
    assert.match((await refused.json()).error.message, /failed to load/);
  });
});
