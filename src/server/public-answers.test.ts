/**
 * What the server tells anyone who asks: the translations 501 stops the official client's
 * retries (exactly one request arrives), and /health names the model without local paths,
 * also in a load error. A stand-in transcriber replaces the model (none is needed here).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import type { FastifyInstance } from 'fastify';
import { listenUrl, stubTranscriber, testServerConfig } from '../testing/http.ts';
import { buildApp } from './app.ts';

const apps: FastifyInstance[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function start(modelName: string, transcriber = stubTranscriber({ modelName })): Promise<{ app: FastifyInstance; url: string }> {
  const uploadDir = await mkdtemp(join(tmpdir(), 'qwen3-asr-public-'));
  dirs.push(uploadDir);
  const app = buildApp({ config: testServerConfig(uploadDir, { modelName }), transcriber, logger: false });
  apps.push(app);
  return { app, url: await listenUrl(app) };
}

describe('translations', () => {
  test('the 501 says not to retry: the official client sends exactly one request', async () => {
    const { app, url } = await start('Qwen/Qwen3-ASR-0.6B');
    let arrived = 0;
    app.server.on('request', (req) => {
      if (req.url?.startsWith('/v1/audio/translations')) arrived++;
    });
    // The client's default: up to 2 retries for 5xx answers without x-should-retry: false.
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${url}/v1`, maxRetries: 2 });
    await assert.rejects(client.audio.translations.create({ file: await toFile(Buffer.from('RIFF'), 'a.wav'), model: 'whisper-1' }), (err: any) => {
      assert.equal(err.status, 501);
      assert.equal(err.code, 'unsupported');
      assert.equal(err.headers.get('x-should-retry'), 'false');
      return true;
    });
    assert.equal(arrived, 1);
  });
});

describe('/health', () => {
  test('a model folder is shown by its name, never its path', async () => {
    const folder = join(tmpdir(), 'models', 'qwen3-asr-0.6b');
    const { url } = await start(folder);
    const body = await (await fetch(url + '/health')).json();
    assert.equal(body.model_name, 'qwen3-asr-0.6b');
    assert.ok(!JSON.stringify(body).includes(tmpdir()), JSON.stringify(body));
  });

  test('a repo id is shown as it is', async () => {
    const { url } = await start('Qwen/Qwen3-ASR-1.7B');
    assert.equal((await (await fetch(url + '/health')).json()).model_name, 'Qwen/Qwen3-ASR-1.7B');
  });

  test('a load error keeps no local paths', async () => {
    const folder = '/srv/models/qwen3-asr-0.6b';
    const error = `${folder}: no config.json (ENOENT: no such file or directory, open '${folder}/config.json'); cache /var/cache/hf/hub`;
    const { url } = await start(folder, stubTranscriber({ modelName: folder, state: 'failed', loadError: error }));
    const res = await fetch(url + '/health');
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.status, 'unhealthy');
    assert.equal(body.model_name, 'qwen3-asr-0.6b');
    assert.equal(body.error, "qwen3-asr-0.6b: no config.json (ENOENT: no such file or directory, open 'qwen3-asr-0.6b/config.json'); cache hub");
  });
});
