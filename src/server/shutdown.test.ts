/**
 * The server as a real process (`node --import tsx src/server/main.ts`, and `npm start`) on
 * the tiny checkpoint: a model that fails to load ends it with exit code 1; SIGTERM or SIGINT
 * fails readiness and refuses new requests at once, lets running work finish within
 * SHUTDOWN_GRACE_SECONDS (and cancels it after), releases the engine, exits 0, and leaves no
 * temp file; through `npm start` the signal reaches node.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { assertEmptyDir, form, parsePrometheus, speechWav, TINY_ENV, until } from '../testing/http.ts';
import { REPO_ROOT } from '../testing/shared.ts';

let scratch: string;
const started: ServerProcess[] = [];

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-shutdown-'));
});

after(async () => {
  // A failed test must not leave a server running: each is stopped by its own pid.
  for (const s of started) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
  await rm(scratch, { recursive: true, force: true });
});

async function start(env: Record<string, string>, opts: { npm?: boolean; waitListening?: boolean } = {}): Promise<ServerProcess> {
  const p = startServerProcess(env, opts);
  const s = await p;
  started.push(s);
  return s;
}

async function metric(s: ServerProcess, name: string): Promise<number | undefined> {
  const res = await fetch(s.url + '/metrics');
  return parsePrometheus(await res.text()).get(name);
}

test('a model that fails to load ends the process with exit code 1 and says why', { timeout: 120_000 }, async () => {
  const missing = join(scratch, 'no-such-model');
  const s = await start({ ...TINY_ENV, MODEL_NAME: missing, UPLOAD_DIR: scratch }, { waitListening: false });
  const { code } = await s.exited;
  assert.equal(code, 1, s.output());
  assert.match(s.output(), new RegExp(`the model ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} failed to load: `));
});

test('SIGTERM during a transcription: it completes, readiness fails and new requests get 503, exit 0 within the grace', { timeout: 180_000 }, async () => {
  const uploads = await mkdtemp(join(scratch, 'uploads-'));
  const s = await start({ ...TINY_ENV, UPLOAD_DIR: uploads, SHUTDOWN_GRACE_SECONDS: '60', SEGMENT_SECONDS: '10' });
  await until('the model is ready', async () => (await fetch(s.url + '/ready')).status === 200, 90_000);

  const running = fetch(s.url + '/transcribe', { method: 'POST', body: form({ language: 'English' }, { data: await speechWav(60), name: 'speech.wav' }) });
  await until('the transcription runs', async () => (await metric(s, 'qwen3_asr_active_jobs')) === 1);
  const signalled = Date.now();
  s.child.kill('SIGTERM');
  await s.waitFor(/SIGTERM: shutting down/);

  const ready = await fetch(s.url + '/ready');
  assert.equal(ready.status, 503);
  assert.deepEqual(await ready.json(), { status: 'shutting_down' });
  const refused = await fetch(s.url + '/transcribe', { method: 'POST', body: form({}, { data: await speechWav(2), name: 'late.wav' }) }).catch((e) => e);
  if (refused instanceof Error) assert.match(String(refused.cause ?? refused), /ECONNREFUSED|ECONNRESET|other side closed/);
  else {
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.match((await refused.json()).detail, /shutting down/);
  }

  const done = await running;
  assert.equal(done.status, 200, 'the running transcription finished');
  assert.ok((await done.json()).text.length > 0);
  const { code, signal } = await s.exited;
  assert.equal(signal, null);
  assert.equal(code, 0, s.output());
  assert.ok(Date.now() - signalled < 60_000, 'it exited within the grace');
  assert.match(s.output(), /"shut down"/);
  await assertEmptyDir(uploads);
});

test('SIGINT past the grace: running and queued transcriptions are cancelled with 503, a stalled upload is cut, exit 0, no temp file', { timeout: 180_000 }, async () => {
  const uploads = await mkdtemp(join(scratch, 'uploads-'));
  const s = await start({ ...TINY_ENV, UPLOAD_DIR: uploads, SHUTDOWN_GRACE_SECONDS: '1', SEGMENT_SECONDS: '10', MAX_INFERENCE_BATCH_SIZE: '1' });
  await until('the model is ready', async () => (await fetch(s.url + '/ready')).status === 200, 90_000);

  const long = await speechWav(20 * 60);
  const running = fetch(s.url + '/v1/audio/transcriptions', { method: 'POST', body: form({ model: 'm' }, { data: long, name: 'a.wav' }) });
  const queued = fetch(s.url + '/v1/audio/transcriptions', { method: 'POST', body: form({ model: 'm' }, { data: long, name: 'b.wav' }) });
  await until('one runs and one waits', async () => (await metric(s, 'qwen3_asr_active_jobs')) === 1 && (await metric(s, 'qwen3_asr_queue_depth')) === 1, 60_000);
  // An upload that stalls half way: its temp file exists until the connection is cut.
  const stalled = stalledUpload(s.url);
  // Three uploads: the two transcriptions' (kept until their responses close) and the stalled one.
  await until('the stalled upload has its temp file', async () => (await readdir(uploads)).filter((f) => f.startsWith('qwen3-asr-upload-')).length === 3);
  const signalled = Date.now();
  s.child.kill('SIGINT');

  for (const res of await Promise.all([running, queued])) {
    const body = await res.json();
    assert.equal(res.status, 503, JSON.stringify(body));
    assert.equal(body.error.code, 'shutting_down', JSON.stringify(body));
  }
  const { code } = await s.exited;
  assert.equal(code, 0, s.output());
  // Not the minutes the transcriptions would take: the grace, then cancelling and closing.
  assert.ok(Date.now() - signalled < 30_000, `exited soon after the grace (${Date.now() - signalled} ms)\n${s.output()}`);
  assert.match(s.output(), /still running at the end of the grace: cancelling them/);
  const cut = await stalled;
  assert.ok(cut instanceof Error && !/answered/.test(cut.message), `the stalled upload was cut: ${cut}\n${s.output()}`);
  await assertEmptyDir(uploads);
});

/** Sends the head of a multipart upload and half a WAV, then nothing; resolves with the error when the server cuts it. */
function stalledUpload(url: string): Promise<unknown> {
  const boundary = 'qwen3-asr-stall';
  return new Promise((resolve) => {
    const req = request(url + '/transcribe', { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
    req.on('error', resolve);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(new Error(`answered ${res.statusCode}`)));
    });
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="stall.wav"\r\nContent-Type: audio/wav\r\n\r\n`);
    req.write(Buffer.alloc(256 * 1024, 1));
  });
}

test('npm start: SIGTERM to npm reaches node, which shuts down and exits 0 (no node left running)', { timeout: 180_000 }, async () => {
  const uploads = await mkdtemp(join(scratch, 'uploads-'));
  const s = await start({ ...TINY_ENV, UPLOAD_DIR: uploads }, { npm: true });
  const pid = Number(/"pid":(\d+)/.exec(await s.waitFor(/"pid":\d+/))![0].slice(6));
  assert.notEqual(pid, s.child.pid, 'npm runs node as its child');
  await until('the model is ready', async () => (await fetch(s.url + '/ready')).status === 200, 90_000);
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  s.child.kill('SIGTERM');
  try {
    await until('node has exited', () => !alive(), 30_000);
  } finally {
    // Left running (the signal stopped at a shell between npm and node): stopped by its pid.
    if (alive()) process.kill(pid, 'SIGKILL');
  }
  const { code } = await s.exited;
  assert.equal(code, 0, s.output());
  assert.match(s.output(), /SIGTERM: shutting down/);
});

interface ServerProcess {
  child: ChildProcess;
  /** Set once the server listens. */
  url: string;
  /** Everything written so far to stdout and stderr. */
  output: () => string;
  /** Exit code and signal, once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when a line matching `pattern` has been written. */
  waitFor: (pattern: RegExp, ms?: number) => Promise<string>;
}

/**
 * Starts the server as a process (`node --import tsx src/server/main.ts`, or `npm start` with
 * `npm: true`) on a free port with the given environment, and waits until it listens (unless
 * `waitListening` is false). Its output is kept for the test's messages.
 */
async function startServerProcess(env: Record<string, string>, opts: { npm?: boolean; waitListening?: boolean } = {}): Promise<ServerProcess> {
  const [cmd, args] = opts.npm ? ['npm', ['start', '--silent']] : [process.execPath, ['--import', 'tsx', 'src/server/main.ts']];
  const child = spawn(cmd, args, {
    cwd: REPO_ROOT,
    // Only what npm and node need from this environment: the test's own settings stay the only ones.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    text += chunk.toString('utf8');
    for (const w of [...waiters]) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  let ended = false;
  void exited.then(() => {
    ended = true;
    for (const w of [...waiters]) w();
  });
  const waitFor = (pattern: RegExp, ms = 90_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(text);
        if (m) {
          done();
          resolve(m[0]);
        } else if (ended) {
          done();
          reject(new Error(`the server exited before ${pattern}:\n${text}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${pattern} within ${ms} ms:\n${text}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const server: ServerProcess = { child, url: '', output: () => text, exited, waitFor };
  if (opts.waitListening === false) return server;
  const listening = await waitFor(/Server listening at (http:\/\/[\d.:]+)/);
  server.url = /http:\/\/[\d.:]+/.exec(listening)![0];
  return server;
}
