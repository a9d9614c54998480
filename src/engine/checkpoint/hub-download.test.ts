import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { downloadSnapshot, HubError, isCheckpointFile, repoCacheDir, type DownloadProgress } from './hub-download.ts';
import { resolveCheckpoint } from './resolve.ts';
import { goldenPath } from '../../testing/shared.ts';

const SOURCE = goldenPath('tiny-a', 'checkpoint');
const REPO = 'Qwen/Tiny-ASR';
const PRIVATE_REPO = 'acme/private-asr';
const TOKEN = 'hf_test_token';
const COMMIT = 'a'.repeat(8) + '0123456789abcdef0123456789abcdef';
/** Treated as LFS files, served through the CDN redirect (as the real repos do for weights). */
const LFS = new Set(['model.safetensors', 'merges.txt']);

interface RepoFile {
  name: string;
  data: Buffer;
  sha256: string;
  gitBlobId: string;
}

const files: RepoFile[] = [];
for (const name of readdirSync(SOURCE).sort()) {
  const data = readFileSync(join(SOURCE, name));
  files.push({
    name,
    data,
    sha256: createHash('sha256').update(data).digest('hex'),
    gitBlobId: createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex'),
  });
}
// Files a hub repo holds besides the checkpoint; the downloader must leave them alone.
for (const [name, text] of [['README.md', '# Tiny ASR\n'], ['.gitattributes', '*.safetensors filter=lfs\n'], ['pytorch_model.bin', 'not wanted']]) {
  const data = Buffer.from(text);
  files.push({ name, data, sha256: createHash('sha256').update(data).digest('hex'), gitBlobId: createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex') });
}
const byName = new Map(files.map((f) => [f.name, f]));
const bySha = new Map(files.map((f) => [f.sha256, f]));

interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range?: string;
  auth?: string;
  bytes: number;
}

/** Behaviour switches of the fake hub, reset before every test. */
const hub = {
  requests: [] as Logged[],
  /** CDN: the next response for these files stops after half of the body. */
  truncateOnce: new Set<string>(),
  /** CDN: serve these files with one byte flipped. */
  corrupt: new Set<string>(),
  /** CDN: for these files send half of the body and keep the connection open. */
  stall: new Set<string>(),
};

let hubServer: Server;
let cdnServer: Server;
let hubUrl = '';
let cdnUrl = '';
let scratch = '';

/** Serves `data` honouring a `Range: bytes=N-` header, optionally cut short. */
function sendBody(req: IncomingMessage, res: ServerResponse, data: Buffer, headers: Record<string, string>, log: Logged, truncate: boolean): void {
  let start = 0;
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    start = Number(m[1]);
    if (start >= data.length) {
      res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
      return;
    }
    res.writeHead(206, { ...headers, 'content-length': String(data.length - start), 'content-range': `bytes ${start}-${data.length - 1}/${data.length}`, 'accept-ranges': 'bytes' });
  } else {
    res.writeHead(200, { ...headers, 'content-length': String(data.length), 'accept-ranges': 'bytes' });
  }
  if (req.method === 'HEAD') return void res.end();
  const body = data.subarray(start);
  if (truncate) {
    const half = body.subarray(0, Math.floor(body.length / 2));
    log.bytes = half.length;
    // Send half, then kill the connection, as a dropped network link would.
    res.write(half, () => res.destroy());
    return;
  }
  log.bytes = body.length;
  res.end(body);
}

function hubHandler(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url!, hubUrl);
  const log: Logged = { server: 'hub', method: req.method!, path: url.pathname + url.search, range: req.headers.range, auth: req.headers.authorization, bytes: 0 };
  hub.requests.push(log);
  const notFound = (code: string, msg: string): void => {
    res.writeHead(404, { 'content-type': 'application/json', 'x-error-code': code }).end(JSON.stringify({ error: msg }));
  };

  const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
  const resolveMatch = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
  const repo = api?.[1] ?? resolveMatch?.[1];
  if (repo === PRIVATE_REPO) {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return void res.writeHead(401, { 'content-type': 'application/json', 'x-error-code': 'RepoNotFound' }).end(JSON.stringify({ error: 'Invalid credentials in Authorization header' }));
    }
  } else if (repo !== REPO) {
    return notFound('RepoNotFound', 'Repository not found');
  }
  if (api) {
    const rev = decodeURIComponent(api[2]);
    if (rev !== 'main' && rev !== COMMIT) return notFound('RevisionNotFound', `Invalid rev id: ${rev}`);
    const siblings = files.map((f) =>
      LFS.has(f.name)
        ? { rfilename: f.name, blobId: createHash('sha1').update(f.name).digest('hex'), size: f.data.length, lfs: { sha256: f.sha256, size: f.data.length, pointerSize: 134 } }
        : { rfilename: f.name, blobId: f.gitBlobId, size: f.data.length },
    );
    return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: repo, sha: COMMIT, siblings }));
  }
  if (resolveMatch) {
    if (resolveMatch[2] !== COMMIT && resolveMatch[2] !== 'main') return notFound('RevisionNotFound', 'Invalid rev id');
    const file = byName.get(decodeURIComponent(resolveMatch[3]));
    if (!file) return notFound('EntryNotFound', 'Entry not found');
    if (LFS.has(file.name)) {
      return void res
        .writeHead(302, {
          location: `${cdnUrl}/repos/${file.sha256}?response-content-disposition=attachment`,
          'x-repo-commit': COMMIT,
          'x-linked-etag': `"${file.sha256}"`,
          'x-linked-size': String(file.data.length),
          etag: `"${createHash('sha1').update(file.name).digest('hex')}"`,
        })
        .end();
    }
    return sendBody(req, res, file.data, { 'x-repo-commit': COMMIT, etag: `"${file.gitBlobId}"` }, log, false);
  }
  notFound('NotFound', 'Not found');
}

function cdnHandler(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url!, cdnUrl);
  const log: Logged = { server: 'cdn', method: req.method!, path: url.pathname, range: req.headers.range, auth: req.headers.authorization, bytes: 0 };
  hub.requests.push(log);
  const file = bySha.get(url.pathname.replace('/repos/', ''));
  if (!file) return void res.writeHead(404).end();
  let data = file.data;
  if (hub.corrupt.has(file.name)) {
    data = Buffer.from(data);
    data[data.length >> 1] ^= 0xff;
  }
  if (hub.stall.has(file.name)) {
    res.writeHead(200, { etag: `"${file.sha256}"`, 'content-length': String(data.length) });
    log.bytes = data.length >> 1;
    res.write(data.subarray(0, data.length >> 1));
    return;
  }
  const truncate = hub.truncateOnce.delete(file.name);
  sendBody(req, res, data, { etag: `"${file.sha256}"` }, log, truncate);
}

function listen(server: Server): Promise<string> {
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'qwen3-asr-hub-'));
  hubServer = createServer(hubHandler);
  cdnServer = createServer(cdnHandler);
  hubUrl = await listen(hubServer);
  cdnUrl = await listen(cdnServer);
});

after(async () => {
  hubServer.closeAllConnections();
  cdnServer.closeAllConnections();
  await new Promise((done) => hubServer.close(done));
  await new Promise((done) => cdnServer.close(done));
  rmSync(scratch, { recursive: true, force: true });
});

let homeCount = 0;
/** A fresh, empty HF_HOME for one test, and reset fake-hub switches. */
function freshHome(): string {
  hub.requests = [];
  hub.truncateOnce.clear();
  hub.corrupt.clear();
  hub.stall.clear();
  const home = join(scratch, `home-${homeCount++}`);
  mkdirSync(home);
  return home;
}

const checkpointNames = files.filter((f) => isCheckpointFile(f.name)).map((f) => f.name).sort();

function baseOpts(hfHome: string, logs: string[] = []) {
  return { hfHome, endpoint: hubUrl, token: '', retryDelayMs: 0, log: (m: string) => logs.push(m) };
}

test('isCheckpointFile keeps configs, weights and tokenizer files, skips the rest', () => {
  for (const name of ['config.json', 'model-00001-of-00002.safetensors', 'merges.txt', 'vocab.json', 'assets/korean_dict_jieba.dict', 'chat_template.jinja']) {
    assert.ok(isCheckpointFile(name), name);
  }
  for (const name of ['README.md', '.gitattributes', 'pytorch_model.bin', 'model.onnx', 'figure.png', 'model.gguf']) {
    assert.ok(!isCheckpointFile(name), name);
  }
});

test('full download reproduces the files byte for byte in the Hugging Face cache layout', async () => {
  const home = freshHome();
  const logs: string[] = [];
  const dir = await downloadSnapshot(REPO, baseOpts(home, logs));
  const repoDir = repoCacheDir(join(home, 'hub'), REPO);
  assert.equal(repoDir, join(home, 'hub', 'models--Qwen--Tiny-ASR'));
  assert.equal(dir, join(repoDir, 'snapshots', COMMIT));
  assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), COMMIT);
  assert.deepEqual(readdirSync(dir).sort(), checkpointNames);
  for (const name of checkpointNames) {
    const f = byName.get(name)!;
    const link = join(dir, name);
    assert.ok(lstatSync(link).isSymbolicLink(), `${name} is a symlink`);
    const blob = LFS.has(name) ? f.sha256 : f.gitBlobId;
    assert.equal(readlinkSync(link), `../../blobs/${blob}`);
    assert.ok(readFileSync(link).equals(f.data), `${name} content`);
  }
  assert.deepEqual(readdirSync(join(repoDir, 'blobs')).filter((n) => n.endsWith('.incomplete')), []);
  // Unrelated repo files were never requested.
  assert.ok(!hub.requests.some((r) => /README|gitattributes|pytorch_model/.test(r.path)), 'skipped files were not fetched');
  // LFS files came from the CDN, not the hub.
  assert.ok(hub.requests.some((r) => r.server === 'cdn' && r.path.includes(byName.get('model.safetensors')!.sha256)));
  assert.ok(logs.some((l) => l.includes(COMMIT)), 'the commit is logged');

  // Resolving offline finds it without any request.
  hub.requests = [];
  assert.equal(await resolveCheckpoint(REPO, { hfHome: home, offline: true }), dir);
  assert.equal(hub.requests.length, 0);

  // Online again: one API request, no file is downloaded a second time.
  assert.equal(await resolveCheckpoint(REPO, { hfHome: home, endpoint: hubUrl, token: '' }), dir);
  assert.deepEqual(hub.requests.map((r) => r.path), [`/api/models/${REPO}/revision/main?blobs=true`]);
});

test('onProgress reports every file from its first byte to its last, with running totals', async () => {
  const home = freshHome();
  const events: DownloadProgress[] = [];
  await downloadSnapshot(REPO, { ...baseOpts(home), onProgress: (p) => events.push(p), onProgressIntervalMs: 0 });
  const total = checkpointNames.reduce((n, name) => n + byName.get(name)!.data.length, 0);
  const check = (events: DownloadProgress[]) => {
    assert.deepEqual([...new Set(events.map((e) => e.fileIndex))], checkpointNames.map((_, i) => i + 1), 'files in order, each reported');
    for (const e of events) {
      assert.equal(e.repo, REPO);
      assert.equal(e.files, checkpointNames.length);
      assert.equal(e.totalBytes, total);
      assert.equal(e.fileSize, byName.get(e.file)!.data.length, `${e.file}: size`);
      assert.ok(e.fileBytes >= 0 && e.fileBytes <= e.fileSize!, `${e.file}: ${e.fileBytes} bytes`);
    }
    for (let i = 1; i < events.length; i++) assert.ok(events[i].bytes >= events[i - 1].bytes, `bytes went back at event ${i}`);
    for (const name of checkpointNames) {
      const mine = events.filter((e) => e.file === name);
      assert.equal(mine[0].fileBytes, 0, `${name} starts at 0`);
      assert.equal(mine.at(-1)!.fileBytes, byName.get(name)!.data.length, `${name} ends whole`);
    }
    assert.equal(events.at(-1)!.bytes, total, 'the last event counts every byte');
  };
  check(events);
  // The weights arrive in many pieces, each reported (no interval between reports here).
  const weights = events.filter((e) => e.file === 'model.safetensors').map((e) => e.fileBytes);
  assert.ok(new Set(weights).size > 3, `model.safetensors: ${weights.length} reports`);

  // Cached: every file is reported once, whole, and nothing is fetched.
  events.length = 0;
  hub.requests = [];
  await downloadSnapshot(REPO, { ...baseOpts(home), onProgress: (p) => events.push(p) });
  assert.deepEqual(events.map((e) => [e.file, e.fileBytes]), checkpointNames.map((name) => [name, byName.get(name)!.data.length]));
  assert.equal(events.at(-1)!.bytes, total);
  assert.equal(hub.requests.length, 1, 'only the listing');
});

test('a transfer cut short is resumed with a Range request instead of starting over', async () => {
  const home = freshHome();
  const weights = byName.get('model.safetensors')!;
  hub.truncateOnce.add('model.safetensors');
  const logs: string[] = [];
  const dir = await downloadSnapshot(REPO, { ...baseOpts(home, logs), progressIntervalMs: 0 });
  assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(weights.data));
  assert.ok(logs.some((l) => /^model\.safetensors: \d+\.\d%, [\d.]+ MB of 19\.9 MB, [\d.]+ MB\/s$/.test(l)), 'progress lines give percent and speed');
  const cdn = hub.requests.filter((r) => r.server === 'cdn' && r.path.includes(weights.sha256));
  assert.equal(cdn.length, 2, 'one cut transfer and one resumed transfer');
  assert.equal(cdn[0].range, undefined);
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1].range ?? '')?.[1]);
  assert.ok(resumedAt > 0, `second request resumes (${cdn[1].range})`);
  assert.equal(resumedAt + cdn[1].bytes, weights.data.length, 'the resumed transfer carries only the rest');
  assert.ok(logs.some((l) => l.includes('resuming')), 'the retry is logged');
});

test('an interrupted run leaves a partial blob that the next run resumes', async () => {
  const home = freshHome();
  const weights = byName.get('model.safetensors')!;
  hub.truncateOnce.add('model.safetensors');
  await assert.rejects(downloadSnapshot(REPO, { ...baseOpts(home), retries: 0 }), (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.match(err.message, /model\.safetensors/);
    assert.match(err.message, /run again to resume/);
    return true;
  });
  const repoDir = repoCacheDir(join(home, 'hub'), REPO);
  const partial = join(repoDir, 'blobs', `${weights.sha256}.incomplete`);
  const have = readFileSync(partial).length;
  assert.ok(have > 0 && have < weights.data.length, `partial blob holds ${have} bytes`);
  assert.ok(!existsSync(join(repoDir, 'refs', 'main')), 'no ref for an incomplete snapshot');
  await assert.rejects(resolveCheckpoint(REPO, { hfHome: home, offline: true }), /HF_HUB_OFFLINE/);

  hub.requests = [];
  const dir = await downloadSnapshot(REPO, baseOpts(home));
  assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(weights.data));
  const cdn = hub.requests.filter((r) => r.server === 'cdn');
  assert.equal(cdn.length, 1, 'only the unfinished file is fetched again');
  assert.equal(cdn[0].range, `bytes=${have}-`);
  assert.equal(cdn[0].bytes, weights.data.length - have);
  assert.ok(!existsSync(partial));
});

test('a blob whose sha256 does not match is deleted and reported', async () => {
  const home = freshHome();
  const weights = byName.get('model.safetensors')!;
  hub.corrupt.add('model.safetensors');
  await assert.rejects(downloadSnapshot(REPO, baseOpts(home)), (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.match(err.message, /model\.safetensors/);
    assert.match(err.message, /corrupt/);
    assert.match(err.message, new RegExp(weights.sha256));
    return true;
  });
  const blobs = join(repoCacheDir(join(home, 'hub'), REPO), 'blobs');
  assert.ok(!existsSync(join(blobs, weights.sha256)), 'no corrupt blob kept');
  assert.ok(!existsSync(join(blobs, `${weights.sha256}.incomplete`)), 'no corrupt partial kept');
  assert.ok(!existsSync(join(repoCacheDir(join(home, 'hub'), REPO), 'snapshots', COMMIT, 'model.safetensors')));
});

test('an unknown repo gives a clear 404 error', async () => {
  const home = freshHome();
  await assert.rejects(downloadSnapshot('Qwen/No-Such-Model', baseOpts(home)), (err: Error) => {
    assert.ok(err instanceof HubError);
    assert.equal((err as HubError).status, 404);
    assert.match(err.message, /Qwen\/No-Such-Model/);
    assert.match(err.message, /not found/);
    return true;
  });
  await assert.rejects(resolveCheckpoint('Qwen/No-Such-Model', { hfHome: home, endpoint: hubUrl, token: '' }), /Qwen\/No-Such-Model.*not found.*HTTP 404/);
});

test('an unknown revision is reported as such', async () => {
  const home = freshHome();
  await assert.rejects(downloadSnapshot(REPO, { ...baseOpts(home), revision: 'v9' }), /revision not found/);
});

test('a private repo needs the token, which is sent to the hub but not to the CDN', async () => {
  const home = freshHome();
  await assert.rejects(downloadSnapshot(PRIVATE_REPO, baseOpts(home)), (err: Error) => {
    assert.equal((err as HubError).status, 401);
    assert.match(err.message, /HF_TOKEN/);
    return true;
  });
  hub.requests = [];
  const dir = await downloadSnapshot(PRIVATE_REPO, { ...baseOpts(home), token: TOKEN });
  assert.ok(readFileSync(join(dir, 'config.json')).equals(byName.get('config.json')!.data));
  assert.ok(hub.requests.filter((r) => r.server === 'hub').every((r) => r.auth === `Bearer ${TOKEN}`));
  assert.ok(hub.requests.filter((r) => r.server === 'cdn').every((r) => r.auth === undefined));
});

test('offline mode with an empty cache says where it looked and how to fix it', async () => {
  const home = freshHome();
  await assert.rejects(resolveCheckpoint(REPO, { hfHome: home, offline: true }), (err: Error) => {
    assert.match(err.message, /Qwen\/Tiny-ASR/);
    assert.ok(err.message.includes(join(home, 'hub', 'models--Qwen--Tiny-ASR')), err.message);
    assert.match(err.message, /HF_HUB_OFFLINE=0/);
    return true;
  });
  assert.equal(hub.requests.length, 0, 'offline means no request');
});

test('an unreachable hub is a clear network error, and a complete cache is used instead', async () => {
  const home = freshHome();
  // A port that was just free: nothing listens there.
  const closed = createServer();
  const deadUrl = await listen(closed);
  await new Promise((done) => closed.close(done));
  await assert.rejects(downloadSnapshot(REPO, { ...baseOpts(home), endpoint: deadUrl }), (err: Error) => {
    assert.ok(err instanceof HubError && err.network);
    assert.ok(err.message.includes(deadUrl), err.message);
    assert.match(err.message, /HF_HUB_OFFLINE=1/);
    return true;
  });
  const dir = await downloadSnapshot(REPO, baseOpts(home));
  const logs: string[] = [];
  assert.equal(await resolveCheckpoint(REPO, { hfHome: home, endpoint: deadUrl, token: '', log: (m) => logs.push(m) }), dir);
  assert.ok(logs.some((l) => l.includes('using the cached snapshot')), logs.join('\n'));
});

test('a cut transfer without retries can also resume after a leftover partial file written by hand', async () => {
  const home = freshHome();
  const vocab = byName.get('vocab.json')!; // a plain git file, served by the hub itself
  const blobs = join(repoCacheDir(join(home, 'hub'), REPO), 'blobs');
  mkdirSync(blobs, { recursive: true });
  const have = 1000;
  writeFileSync(join(blobs, `${vocab.gitBlobId}.incomplete`), vocab.data.subarray(0, have));
  const dir = await downloadSnapshot(REPO, baseOpts(home));
  assert.ok(readFileSync(join(dir, 'vocab.json')).equals(vocab.data));
  const req = hub.requests.find((r) => r.path.endsWith('/vocab.json'))!;
  assert.equal(req.range, `bytes=${have}-`);
  assert.equal(req.bytes, vocab.data.length - have);
});

test('aborting through the signal stops the download and keeps the partial file for later', async () => {
  const home = freshHome();
  const weights = byName.get('model.safetensors')!;
  const controller = new AbortController();
  hub.stall.add('model.safetensors');
  // Abort once the weights transfer has started (the server holds the rest of the body back).
  const log = (msg: string) => {
    if (msg.startsWith('model.safetensors: downloading')) controller.abort();
  };
  await assert.rejects(downloadSnapshot(REPO, { ...baseOpts(home), log, signal: controller.signal }), (err: Error) => {
    assert.equal(err.name, 'AbortError');
    return true;
  });
  const repoDir = repoCacheDir(join(home, 'hub'), REPO);
  assert.ok(existsSync(join(repoDir, 'blobs', `${weights.sha256}.incomplete`)), 'partial file kept for a resume');
  assert.ok(!existsSync(join(repoDir, 'refs', 'main')));
  // Aborted before it starts: no request at all.
  hub.requests = [];
  await assert.rejects(downloadSnapshot(REPO, { ...baseOpts(home), signal: AbortSignal.abort() }), { name: 'AbortError' });
  assert.equal(hub.requests.length, 0);
});
