import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { checkpointProblem, findCachedSnapshot, resolveCheckpoint } from './resolve.ts';
import { hubCacheDir, isRepoId } from './hub-download.ts';
import { goldenPath } from '../../testing/shared.ts';

const TINY = goldenPath('tiny-a', 'checkpoint');
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
let scratch = '';

before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'qwen3-asr-resolve-'));
});
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** Builds `<home>/hub/models--owner--name` by hand, the way huggingface_hub lays it out. */
function fakeCache(home: string, repoId: string, files: string[], ref: string | undefined = 'main'): string {
  const repoDir = join(home, 'hub', `models--${repoId.replace('/', '--')}`);
  const snap = join(repoDir, 'snapshots', COMMIT);
  mkdirSync(join(repoDir, 'blobs'), { recursive: true });
  mkdirSync(snap, { recursive: true });
  for (const [i, name] of files.entries()) {
    const blob = join(repoDir, 'blobs', `blob${i}`);
    copyFileSync(join(TINY, name), blob);
    symlinkSync(relative(snap, blob), join(snap, name));
  }
  if (ref) {
    mkdirSync(join(repoDir, 'refs'), { recursive: true });
    writeFileSync(join(repoDir, 'refs', ref), COMMIT);
  }
  return snap;
}

test('a folder is returned as an absolute path', async () => {
  assert.equal(await resolveCheckpoint(TINY), TINY);
  const cwd = process.cwd();
  try {
    process.chdir(goldenPath('tiny-a'));
    // process.cwd() after chdir is the real path: compare real paths (../shared may be a symlink).
    assert.equal(realpathSync(await resolveCheckpoint('./checkpoint')), realpathSync(TINY));
    // An existing relative path wins even when it has the owner/name shape of a repo id.
    process.chdir(goldenPath());
    assert.ok(isRepoId('tiny-a/checkpoint'));
    assert.equal(realpathSync(await resolveCheckpoint('tiny-a/checkpoint', { offline: true })), realpathSync(TINY));
  } finally {
    process.chdir(cwd);
  }
});

test('~ is the home folder', async () => {
  const saved = process.env.HOME;
  process.env.HOME = goldenPath('tiny-a');
  try {
    assert.equal(await resolveCheckpoint('~/checkpoint'), TINY);
  } finally {
    process.env.HOME = saved;
  }
});

test('bad folders are rejected with the reason', async () => {
  await assert.rejects(resolveCheckpoint(join(scratch, 'missing')), /checkpoint folder .*missing does not exist/);
  await assert.rejects(resolveCheckpoint('./surely-not-here'), /does not exist; pass a folder/);
  await assert.rejects(resolveCheckpoint('just-a-name'), /not a Hugging Face repo id of the form owner\/name either/);
  await assert.rejects(resolveCheckpoint(goldenPath('README.md')), /is a file/);
  await assert.rejects(resolveCheckpoint(goldenPath()), /not a complete checkpoint folder: config\.json is missing/);
  await assert.rejects(resolveCheckpoint('  '), /no checkpoint given/);
  const noWeights = join(scratch, 'no-weights');
  mkdirSync(noWeights);
  copyFileSync(join(TINY, 'config.json'), join(noWeights, 'config.json'));
  await assert.rejects(resolveCheckpoint(noWeights), /neither model\.safetensors nor model\.safetensors\.index\.json/);
});

test('checkpointProblem follows the shard index', () => {
  const dir = join(scratch, 'sharded');
  mkdirSync(dir);
  copyFileSync(join(TINY, 'config.json'), join(dir, 'config.json'));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
  writeFileSync(join(dir, 'model-00001-of-00002.safetensors'), '');
  assert.match(checkpointProblem(dir)!, /model-00002-of-00002\.safetensors .*is missing/);
  writeFileSync(join(dir, 'model-00002-of-00002.safetensors'), '');
  assert.equal(checkpointProblem(dir), undefined);
  writeFileSync(join(dir, 'model.safetensors.index.json'), '{');
  assert.match(checkpointProblem(dir)!, /not valid JSON/);
});

test('a repo id is found in the Hugging Face cache through refs/main', async () => {
  const home = join(scratch, 'home-cached');
  const snap = fakeCache(home, 'Qwen/Qwen3-ASR-0.6B', ['config.json', 'model.safetensors', 'vocab.json']);
  assert.equal(await resolveCheckpoint('Qwen/Qwen3-ASR-0.6B', { hfHome: home, offline: true }), snap);
  assert.equal(await resolveCheckpoint('Qwen/Qwen3-ASR-0.6B', { hfHome: home, download: false }), snap);
  // A commit hash needs no ref.
  assert.equal(await resolveCheckpoint('Qwen/Qwen3-ASR-0.6B', { hfHome: home, offline: true, revision: COMMIT }), snap);
  // Another branch was never cached.
  await assert.rejects(resolveCheckpoint('Qwen/Qwen3-ASR-0.6B', { hfHome: home, offline: true, revision: 'v2' }), /Qwen3-ASR-0\.6B@v2 is not in the Hugging Face cache at .*\(no refs\/v2\)/);
});

test('HF_HOME and HF_HUB_CACHE from the environment locate the cache', async () => {
  const home = join(scratch, 'home-env');
  const snap = fakeCache(home, 'Qwen/Qwen3-ASR-1.7B', ['config.json', 'model.safetensors']);
  assert.equal(hubCacheDir(undefined, { HF_HOME: home }), join(home, 'hub'));
  assert.equal(hubCacheDir(undefined, { HF_HOME: '/elsewhere', HF_HUB_CACHE: join(home, 'hub') }), join(home, 'hub'));
  assert.equal(hubCacheDir(undefined, { XDG_CACHE_HOME: '/xdg' }), '/xdg/huggingface/hub');
  assert.equal(hubCacheDir('/explicit', { HF_HOME: home }), '/explicit/hub');
  const saved = { HF_HOME: process.env.HF_HOME, HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE };
  try {
    delete process.env.HF_HUB_CACHE;
    process.env.HF_HOME = home;
    process.env.HF_HUB_OFFLINE = '1';
    assert.equal(await resolveCheckpoint('Qwen/Qwen3-ASR-1.7B'), snap);
    delete process.env.HF_HOME;
    process.env.HF_HUB_CACHE = join(home, 'hub');
    assert.equal(await resolveCheckpoint('Qwen/Qwen3-ASR-1.7B'), snap);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('a partly cached snapshot is reported with what is missing', async () => {
  const home = join(scratch, 'home-partial');
  fakeCache(home, 'Qwen/Qwen3-ASR-0.6B', ['config.json']);
  const found = findCachedSnapshot('Qwen/Qwen3-ASR-0.6B', { hfHome: home });
  assert.equal(found.commit, COMMIT);
  assert.match(found.problem!, /model\.safetensors/);
  await assert.rejects(resolveCheckpoint('Qwen/Qwen3-ASR-0.6B', { hfHome: home, offline: true }), (err: Error) => {
    assert.match(err.message, /only partly in the Hugging Face cache/);
    assert.match(err.message, /neither model\.safetensors/);
    assert.match(err.message, /HF_HUB_OFFLINE=0/);
    return true;
  });
});

test('an uncached repo with downloads disabled names the cache folder', async () => {
  const home = join(scratch, 'home-empty');
  await assert.rejects(resolveCheckpoint('Qwen/Qwen3-ForcedAligner-0.6B', { hfHome: home, download: false }), (err: Error) => {
    assert.ok(err.message.includes(join(home, 'hub', 'models--Qwen--Qwen3-ForcedAligner-0.6B')), err.message);
    assert.match(err.message, /downloads are disabled/);
    return true;
  });
});
