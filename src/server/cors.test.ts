/**
 * CORS_ORIGINS through the real app (buildApp) with a stand-in transcriber (no model is needed
 * to answer preflights): off by default, a list of origins, or any origin; preflights for the
 * API routes pass with the Authorization header asked for, before authentication.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { listenUrl, stubTranscriber, testServerConfig } from '../testing/http.ts';
import { buildApp } from './app.ts';

const API_KEY = 'cors-key-41';
const PAGE = 'https://app.example';

const apps: FastifyInstance[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function start(corsOrigins: string[]): Promise<string> {
  const uploadDir = await mkdtemp(join(tmpdir(), 'qwen3-asr-cors-'));
  dirs.push(uploadDir);
  const config = testServerConfig(uploadDir, { modelName: 'Qwen/Qwen3-ASR-0.6B', apiKey: API_KEY, corsOrigins });
  const app = buildApp({ config, transcriber: stubTranscriber(), logger: false });
  apps.push(app);
  return listenUrl(app);
}

function preflight(url: string, origin: string, method = 'POST'): Promise<Response> {
  return fetch(url, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization, content-type, x-stainless-os' },
  });
}

describe('CORS_ORIGINS', () => {
  test('a list: preflights for both APIs pass with Authorization, other origins get no grant', async () => {
    const base = await start([PAGE, 'http://localhost:5173']);
    const routes = [
      ['/v1/audio/transcriptions', 'POST'],
      ['/transcribe', 'POST'],
      ['/v1/models', 'GET'],
      ['/health', 'GET'],
    ];
    for (const [path, method] of routes) {
      const res = await preflight(base + path, PAGE, method);
      assert.equal(res.status, 204, path);
      assert.equal(res.headers.get('access-control-allow-origin'), PAGE, path);
      assert.match(res.headers.get('access-control-allow-headers') ?? '', /authorization/i, path);
      assert.match(res.headers.get('access-control-allow-methods') ?? '', /POST/, path);
      assert.ok(Number(res.headers.get('access-control-max-age')) > 0, path);
      assert.equal(res.headers.get('access-control-allow-credentials'), null, 'Bearer tokens, no cookies');
    }
    const stranger = await preflight(base + '/v1/audio/transcriptions', 'https://evil.example');
    assert.equal(stranger.headers.get('access-control-allow-origin'), null, 'an origin not listed is not granted');

    // The real request: the grant comes with the answer, also with an error (a browser can read the 401).
    const denied = await fetch(base + '/v1/models', { headers: { origin: PAGE } });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get('access-control-allow-origin'), PAGE);
    const ok = await fetch(base + '/v1/models', { headers: { origin: PAGE, authorization: `Bearer ${API_KEY}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), PAGE);
    assert.match(ok.headers.get('access-control-expose-headers') ?? '', /x-request-id/);
  });

  test('"*": any origin', async () => {
    const base = await start(['*']);
    const res = await preflight(base + '/v1/audio/transcriptions', 'https://anywhere.example');
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.match(res.headers.get('access-control-allow-headers') ?? '', /authorization/i);
    const health = await fetch(base + '/health', { headers: { origin: 'https://anywhere.example' } });
    assert.equal(health.headers.get('access-control-allow-origin'), '*');
  });

  test('empty (the default): no CORS headers at all', async () => {
    const base = await start([]);
    const res = await preflight(base + '/v1/audio/transcriptions', PAGE);
    assert.notEqual(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    const health = await fetch(base + '/health', { headers: { origin: PAGE } });
    assert.equal(health.status, 200);
    assert.equal(health.headers.get('access-control-allow-origin'), null);
  });
});
