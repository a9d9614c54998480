/**
 * `qwen3-asr listen`: the real command (bin/qwen3-asr) streaming a clip to a test server
 * (tiny checkpoint) and to an engine of its own, raw PCM from stdin, and its output rules
 * (partials in place on a terminal, finished utterances one a line). The utterances it prints
 * are checked against a session the test runs itself with the same samples.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { FastifyInstance } from 'fastify';
import { createTranscriber } from '../pipeline/transcriber.ts';
import type { Transcriber } from '../pipeline/types.ts';
import { buildApp } from '../server/app.ts';
import { listenUrl, testServerConfig } from '../testing/http.ts';
import { AUDIO_DIR, REPO_ROOT, goldenPath } from '../testing/shared.ts';
import { realtimeUrl, TranscriptPrinter } from './listen.ts';

const BIN = join(REPO_ROOT, 'bin', 'qwen3-asr');
const TINY = goldenPath('tiny-a', 'checkpoint');
const CLIP = join(AUDIO_DIR, 'notld', '7s_i_wonder_what_happened.wav');
const API_KEY = 'listen-key';

let transcriber: Transcriber;
let app: FastifyInstance;
let base: string;
let pcm: Buffer;
/** Completed transcripts of the clip, server VAD with OpenAI's defaults, from the test's own session. */
let expected: string[];

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, QWEN3_ASR_CACHE: '0', THREADS: '1', HF_HUB_OFFLINE: '1' };
  for (const k of ['LOG_LEVEL', 'MODEL_NAME', 'QUANT', 'DEVICE', 'VAD', 'API_KEY', 'NODE_TEST_CONTEXT']) delete env[k];
  return env;
}

function cli(args: string[], stdin?: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(BIN, args, { cwd: REPO_ROOT, env: childEnv(), timeout: 180_000, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(new Error(`listen did not exit normally: ${err.message}\n${stderr}`));
      resolve({ code: err ? ((err as { code: number }).code as number) : 0, stdout, stderr });
    });
    if (stdin) child.stdin!.end(stdin);
    else child.stdin!.end();
  });
}

before(async () => {
  pcm = execFileSync('ffmpeg', ['-nostdin', '-loglevel', 'error', '-i', CLIP, '-ac', '1', '-ar', '16000', '-f', 's16le', '-'], { maxBuffer: 64 << 20 });
  transcriber = createTranscriber({
    model: TINY,
    device: 'cpu',
    quant: 'none',
    threads: 1,
    maxBatchSize: 4,
    maxQueue: 4,
    hfOffline: true,
    cacheDir: false,
    live: { maxSessions: 4, updateSeconds: 1, maxUtteranceSeconds: 30 },
  });
  const config = testServerConfig('/tmp', {
    maxQueue: 4,
    apiKey: API_KEY,
    shutdownGraceMs: 5_000,
    realtime: { maxSessions: 4, updateSeconds: 1, maxUtteranceSeconds: 30 },
  });
  app = buildApp({ config, transcriber, logger: false });
  [base] = await Promise.all([listenUrl(app), transcriber.whenReady()]);

  // The reference: the clip's 16 kHz samples in 100 ms appends, then a commit, as listen sends them.
  const ws = new WebSocket(`${realtimeUrl(base)}`, { headers: { authorization: `Bearer ${API_KEY}` } });
  const events: any[] = [];
  ws.on('message', (d) => events.push(JSON.parse(String(d))));
  await new Promise((r) => ws.once('open', r));
  ws.send(JSON.stringify({ type: 'session.update', session: { type: 'transcription', audio: { input: { format: { type: 'audio/pcm', rate: 16000 }, turn_detection: { type: 'server_vad' } } } } }));
  for (let off = 0; off < pcm.length; off += 3200) ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: pcm.subarray(off, off + 3200).toString('base64') }));
  // A second commit finds the buffer empty: its error comes after every committed event.
  ws.send(JSON.stringify({ type: 'input_audio_buffer.commit' }));
  ws.send(JSON.stringify({ type: 'input_audio_buffer.commit', event_id: 'probe' }));
  const done = () => {
    const committed = events.filter((e) => e.type === 'input_audio_buffer.committed').length;
    const probed = events.some((e) => e.type === 'error' && e.error.event_id === 'probe');
    return probed && events.filter((e) => e.type === 'conversation.item.input_audio_transcription.completed').length === committed;
  };
  for (let i = 0; i < 600 && !done(); i++) await new Promise((r) => setTimeout(r, 100));
  ws.close();
  assert.ok(done(), JSON.stringify(events.map((e) => e.type)));
  expected = events.filter((e) => e.type === 'conversation.item.input_audio_transcription.completed').map((e) => e.transcript.trim()).filter(Boolean);
  assert.ok(expected.length >= 2, 'the clip holds two utterances apart by a pause');
});

after(async () => {
  await app?.close();
  await transcriber?.close();
});

describe('qwen3-asr listen', () => {
  test('--fast with a clip against a server: the finished utterances, one a line', async () => {
    const r = await cli(['listen', CLIP, '--fast', '--url', base, '--api-key', API_KEY]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), expected);
    assert.equal(r.stderr, '');
  });

  test('raw PCM16 on stdin (-) gives the same lines', async () => {
    const r = await cli(['listen', '-', '--url', `ws://${base.slice('http://'.length)}/v1/realtime`, '--api-key', API_KEY], pcm);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), expected);
  });

  test('without --url: an engine in the process, the same lines', async () => {
    const r = await cli(['listen', CLIP, '--fast', '--model', TINY, '--quant', 'none']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), expected);
  });

  test('a wrong key, a bad rate, no input: messages and exit codes', async () => {
    const refused = await cli(['listen', CLIP, '--fast', '--url', base, '--api-key', 'nope']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /HTTP 401.*Incorrect API key/);
    assert.equal(refused.stdout, '');
    const rate = await cli(['listen', '-', '--rate', '44100', '--url', base]);
    assert.equal(rate.code, 2);
    assert.match(rate.stderr, /--rate must be 16000 or 24000/);
    const none = await cli(['listen']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /listen takes one FILE or -/);
    const missing = await cli(['listen', join(AUDIO_DIR, 'no-such-file.wav'), '--url', base]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no-such-file\.wav/);
  });
});

describe('listen output and URLs', () => {
  const sink = (isTTY: boolean) => {
    const writes: string[] = [];
    return { writes, out: { write: (t: string) => writes.push(t), isTTY, columns: 30 } };
  };

  test('on a terminal: partials redrawn in place, finished utterances on their own lines', () => {
    const { writes, out } = sink(true);
    const p = new TranscriptPrinter(out);
    p.delta('a', 'hello');
    p.delta('a', ' world');
    p.completed('a', 'hello world!');
    p.delta('b', 'x'.repeat(50));
    p.end();
    assert.deepEqual(writes, [
      '\r\x1b[K\x1b[2mhello\x1b[0m',
      '\r\x1b[K\x1b[2mhello world\x1b[0m',
      '\r\x1b[K',
      'hello world!\n',
      `\r\x1b[K\x1b[2m…${'x'.repeat(28)}\x1b[0m`,
      '\r\x1b[K',
    ]);
  });

  test('not a terminal: only finished utterances', () => {
    const { writes, out } = sink(false);
    const p = new TranscriptPrinter(out);
    p.delta('a', 'hello');
    p.completed('a', ' hello world ');
    p.completed('b', '');
    p.end();
    assert.deepEqual(writes, ['hello world\n']);
  });

  test('--url forms', () => {
    assert.equal(String(realtimeUrl('http://h:8000')), 'ws://h:8000/v1/realtime?intent=transcription');
    assert.equal(String(realtimeUrl('https://h/asr/')), 'wss://h/asr/v1/realtime?intent=transcription');
    assert.equal(String(realtimeUrl('wss://h/v1')), 'wss://h/v1/realtime?intent=transcription');
    assert.equal(String(realtimeUrl('ws://h/v1/realtime?model=x')), 'ws://h/v1/realtime?model=x');
    assert.throws(() => realtimeUrl('ftp://h'), /ws:\/\/, wss:\/\//);
    assert.throws(() => realtimeUrl('nonsense'), /--url must be a URL/);
  });
});
