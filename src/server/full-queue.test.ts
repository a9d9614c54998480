/**
 * Uploads are decoded and checked before they wait for inference: with the queue full of real
 * requests (tiny checkpoint), a burst of bad uploads gets 400s, not 503s, a good upload gets
 * 503 once decoded, and no temp file (upload or decoded samples) is left behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createTranscriber } from '../pipeline/transcriber.ts';
import type { Transcriber } from '../pipeline/types.ts';
import { assertEmptyDir, form, listenUrl, speechWav, testServerConfig, until } from '../testing/http.ts';
import { buildApp } from './app.ts';
import { toTranscriberConfig } from './config.ts';

let scratch: string;
let uploadDir: string;
let app: FastifyInstance;
let transcriber: Transcriber;
let url: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-full-queue-'));
  uploadDir = await mkdtemp(join(scratch, 'uploads-'));
  const c = testServerConfig(uploadDir, {
    maxBatchSize: 1,
    segmentSeconds: 10,
    maxUploadBytes: 64 * 1024 * 1024,
    maxQueue: 2,
    maxAudioSeconds: 3600,
    decodeConcurrency: 4,
    shutdownGraceMs: 30_000,
  });
  // The decoded samples go to UPLOAD_DIR too, so the folder shows every temp file.
  transcriber = createTranscriber({ ...toTranscriberConfig(c), cacheDir: false });
  app = buildApp({ config: c, transcriber, logger: false });
  url = await listenUrl(app);
  await transcriber.whenReady();
});

after(async () => {
  await app.close();
  await transcriber.close();
  await rm(scratch, { recursive: true, force: true });
});

test('a burst of bad uploads against a full queue gets 400s, a good one 503, and no temp file is left', { timeout: 120_000 }, async () => {
  // Long enough that the running job outlasts the test (it is cancelled at the end).
  const long = await speechWav(20 * 60);
  const stop = new AbortController();
  // One running (batch of 1), two waiting (MAX_QUEUE=2): the queue is full.
  const fill = [0, 1, 2].map((i) =>
    fetch(url + '/transcribe', { method: 'POST', body: form({}, { data: long, name: `long${i}.wav` }), signal: stop.signal }).catch((e) => e),
  );
  await until('the queue is full', () => transcriber.activeJobs === 1 && transcriber.queueLength === 2, 60_000);

  const good = await fetch(url + '/v1/audio/transcriptions', { method: 'POST', body: form({ model: 'm' }, { data: await speechWav(3), name: 'ok.wav' }) });
  assert.equal(good.status, 503, 'a good upload meets the full queue once decoded');
  assert.equal((await good.json()).error.code, 'overloaded');
  assert.equal(good.headers.get('retry-after'), '5');

  const noise = Buffer.alloc(48_000);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) & 0xff;
  const bad = Array.from({ length: 20 }, (_, i) => {
    const kind = i % 4;
    const file =
      kind === 0 || kind === 2
        ? { data: '', name: `empty${i}.wav` }
        : kind === 1
          ? { data: i % 8 === 1 ? 'not audio, just text' : noise, name: `bytes${i}.mp3` }
          : { data: Buffer.from('RIFF\u0000\u0000\u0000\u0000WAVEjunk'), name: `broken${i}.wav` };
    const path = i % 2 === 0 ? '/transcribe' : '/v1/audio/transcriptions';
    return fetch(url + path, { method: 'POST', body: form(path === '/transcribe' ? {} : { model: 'm' }, file) }).then(async (res) => ({
      name: file.name,
      status: res.status,
      body: await res.text(),
    }));
  });
  const answers = await Promise.all(bad);
  for (const a of answers) {
    assert.equal(a.status, 400, `${a.name}: ${a.status} ${a.body}`);
    assert.match(a.body, /empty|could not be decoded|too short/i, a.name);
    assert.ok(!a.body.includes(uploadDir), `${a.name}: the server's temp path is not shown`);
  }
  assert.equal(transcriber.queueLength, 2, 'the queue was full throughout');

  stop.abort();
  await Promise.all(fill);
  await until('the worker is idle', () => transcriber.activeJobs === 0 && transcriber.queueLength === 0);
  await assertEmptyDir(uploadDir);
  const health = await (await fetch(url + '/health')).json();
  assert.equal(health.status, 'healthy');
});
