/**
 * `/metrics` and `/ready` on a real app and transcriber (tiny checkpoint): the exposition
 * parses, and after traffic the counters, histograms and gauges moved by what was sent.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createTranscriber } from '../pipeline/transcriber.ts';
import type { Transcriber } from '../pipeline/types.ts';
import { form, listenUrl, parsePrometheus, sleep, speechWav, testServerConfig, until } from '../testing/http.ts';
import { goldenPath } from '../testing/shared.ts';
import { buildApp } from './app.ts';
import { toTranscriberConfig } from './config.ts';

const KEY = 'metrics-key-1';
const AUTH = { authorization: `Bearer ${KEY}` };

let scratch: string;
let app: FastifyInstance;
let transcriber: Transcriber;
let url: string;
let en3s: Buffer;

async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(url + '/metrics', { headers: AUTH });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

/** A sample's value; 0 for a labelled series not yet written. */
function value(m: Map<string, number>, key: string): number {
  return m.get(key) ?? 0;
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-metrics-'));
  en3s = await readFile(goldenPath('tiny-a', 'audio', 'en_3s.wav'));
  const c = testServerConfig(scratch, {
    segmentSeconds: 10,
    maxUploadBytes: 16 * 1024 * 1024,
    maxQueue: 4,
    apiKey: KEY,
    maxAudioSeconds: 3600,
    decodeConcurrency: 2,
    shutdownGraceMs: 30_000,
  });
  transcriber = createTranscriber({ ...toTranscriberConfig(c), cacheDir: false });
  app = buildApp({ config: c, transcriber, logger: false });
  url = await listenUrl(app);
});

after(async () => {
  await app.close();
  await transcriber.close();
  await rm(scratch, { recursive: true, force: true });
});

test('/ready is 503 while the model loads, then 200; it needs no key', async () => {
  const loading = await fetch(url + '/ready');
  if (transcriber.state === 'loading') {
    assert.equal(loading.status, 503);
    assert.deepEqual(await loading.json(), { status: 'loading' });
    const m = await scrape();
    assert.equal(m.get('qwen3_asr_model_state{state="loading"}'), 1);
  } else await loading.body?.cancel();
  await transcriber.whenReady();
  const ready = await fetch(url + '/ready');
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready' });
});

test('/metrics needs the API key when one is set', async () => {
  const res = await fetch(url + '/metrics');
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer');
});

test('after traffic, the metrics count it: requests, audio, processing, real-time factor, queue, decoding steps, tokens', async () => {
  await transcriber.whenReady();
  const before = await scrape();
  assert.equal(before.get('qwen3_asr_model_state{state="ready"}'), 1);
  assert.ok(before.get('qwen3_asr_model_load_seconds')! > 0, 'the load time is known');
  assert.ok(before.get('process_resident_memory_bytes')! > 0, 'process metrics are there');
  assert.equal(before.get('qwen3_asr_realtime_sessions'), 0);

  const ok1 = await fetch(url + '/transcribe', { method: 'POST', headers: AUTH, body: form({}, { data: en3s, name: 'a.wav' }) });
  assert.equal(ok1.status, 200);
  const ok2 = await fetch(url + '/v1/audio/transcriptions', { method: 'POST', headers: AUTH, body: form({ model: 'm', response_format: 'verbose_json' }, { data: en3s, name: 'b.wav' }) });
  assert.equal(ok2.status, 200);
  const bad = await fetch(url + '/transcribe', { method: 'POST', headers: AUTH, body: form({}, { data: 'not audio', name: 'c.wav' }) });
  assert.equal(bad.status, 400);
  await bad.body?.cancel();
  const missing = await fetch(url + '/no/such/path?x=1', { headers: AUTH });
  assert.equal(missing.status, 404);
  const [, verbose] = await Promise.all([ok1.text(), ok2.json(), missing.text()]);
  const seconds: number = verbose.duration;
  // The engine reports its steps about once a second.
  await sleep(1500);
  const now = await scrape();
  const delta = (key: string) => value(now, key) - value(before, key);

  assert.equal(delta('qwen3_asr_http_requests_total{route="/transcribe",method="POST",status="200"}'), 1);
  assert.equal(delta('qwen3_asr_http_requests_total{route="/v1/audio/transcriptions",method="POST",status="200"}'), 1);
  assert.equal(delta('qwen3_asr_http_requests_total{route="/transcribe",method="POST",status="400"}'), 1);
  assert.equal(delta('qwen3_asr_http_requests_total{route="unmatched",method="GET",status="404"}'), 1, 'unknown paths share one series');
  assert.ok(![...now.keys()].some((k) => k.includes('/no/such/path')), 'the raw URL is never a label');
  assert.ok(delta('qwen3_asr_http_response_seconds_count{route="/transcribe"}') === 2);

  assert.ok(Math.abs(delta('qwen3_asr_audio_seconds_total') - 2 * seconds) < 0.01, `two uploads of ${seconds} s`);
  assert.equal(delta('qwen3_asr_processing_seconds_count'), 2);
  assert.ok(delta('qwen3_asr_processing_seconds_sum') > 0);
  assert.equal(delta('qwen3_asr_real_time_factor_count'), 2);
  const rtf = delta('qwen3_asr_real_time_factor_sum') / 2;
  const expectedRtf = delta('qwen3_asr_processing_seconds_sum') / (2 * seconds);
  assert.ok(rtf > 0 && Math.abs(rtf / expectedRtf - 1) < 1e-3, `real-time factor ${rtf}, expected ${expectedRtf} (${seconds} s)`);
  assert.equal(delta('qwen3_asr_audio_decode_seconds_count'), 2, 'the two good uploads were decoded');
  assert.equal(delta('qwen3_asr_queue_wait_seconds_count'), 2);

  const steps = delta('qwen3_asr_decode_steps_total');
  const tokens = delta('qwen3_asr_decoded_tokens_total');
  assert.ok(steps > 0, 'decoding steps were counted');
  assert.ok(tokens >= steps, 'each step decodes a token per row');
  assert.equal(delta('qwen3_asr_decode_step_rows_count'), steps, 'one rows observation per step');
  assert.equal(delta('qwen3_asr_decode_step_rows_sum'), tokens, 'rows per step add up to the tokens');
  assert.equal(now.get('qwen3_asr_queue_depth'), 0);
  assert.equal(now.get('qwen3_asr_active_jobs'), 0);
  assert.equal(now.get('qwen3_asr_decoding_uploads{state="running"}'), 0);
  assert.equal(now.get('qwen3_asr_shutting_down'), 0);
});

test('while a transcription runs, the gauges show it: a job active, tokens per second', async () => {
  const long = await speechWav(60);
  const running = fetch(url + '/transcribe', { method: 'POST', headers: AUTH, body: form({}, { data: long, name: 'long.wav' }) });
  let seen: Map<string, number> | undefined;
  await until('a scrape shows the job decoding', async () => {
    const m = await scrape();
    if (m.get('qwen3_asr_active_jobs') === 1 && m.get('qwen3_asr_decoded_tokens_per_second')! > 0) seen = m;
    return seen !== undefined;
  });
  assert.ok(seen);
  assert.equal((await running).status, 200);
});

test('draining: /ready fails at once, new requests get 503 with Retry-After, /health and /metrics still answer', async () => {
  const slow = fetch(url + '/health');
  const drained = app.lifecycle.drain(5000);
  const ready = await fetch(url + '/ready');
  assert.equal(ready.status, 503);
  assert.deepEqual(await ready.json(), { status: 'shutting_down' });
  const refused = await fetch(url + '/v1/audio/transcriptions', { method: 'POST', headers: AUTH, body: form({ model: 'm' }, { data: en3s, name: 'late.wav' }) });
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '5');
  assert.equal((await refused.json()).error.code, 'shutting_down', 'the OpenAI routes answer in their own style');
  const original = await fetch(url + '/transcribe', { method: 'POST', headers: AUTH, body: form({}, { data: en3s, name: 'late.wav' }) });
  assert.equal(original.status, 503);
  assert.match((await original.json()).detail, /shutting down/);
  const health = await fetch(url + '/health');
  assert.equal(health.status, 200);
  assert.equal((await health.json()).status, 'healthy');
  assert.equal((await scrape()).get('qwen3_asr_shutting_down'), 1);
  await (await slow).text();
  assert.equal(await drained, true, 'nothing was left running');
});
