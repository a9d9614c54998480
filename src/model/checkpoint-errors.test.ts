/**
 * Bad checkpoints fail with errors that name the file and the problem, never a crash or a
 * silent misload. Each case is a scratch copy of tiny-a with one thing broken (the large
 * tokenizer files are symlinked, not copied).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AsrModel } from './asr-model.ts';
import { goldenPath, REPO_ROOT } from '../testing/shared.ts';

const SRC = goldenPath('tiny-a', 'checkpoint');
const scratch: string[] = [];
after(() => scratch.forEach((d) => rmSync(d, { recursive: true, force: true })));

function brokenCopy(edit: (dir: string) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'qwen3-asr-badckpt-'));
  scratch.push(dir);
  for (const f of readdirSync(SRC)) {
    if (f === 'vocab.json' || f === 'merges.txt') symlinkSync(join(SRC, f), join(dir, f));
    else copyFileSync(join(SRC, f), join(dir, f));
  }
  edit(dir);
  return dir;
}

function editConfig(dir: string, change: (cfg: any) => void): void {
  const file = join(dir, 'config.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8'));
  change(cfg);
  writeFileSync(file, JSON.stringify(cfg));
}

const load = (dir: string) => AsrModel.load(dir, { device: 'cpu', quant: 'none', threads: 1 });

test('missing config.json names the file', async () => {
  const dir = brokenCopy((d) => unlinkSync(join(d, 'config.json')));
  await assert.rejects(load(dir), (e: Error) => e.message.includes(join(dir, 'config.json')) && /cannot read/.test(e.message));
});

test('config.json that is not JSON names the file', async () => {
  const dir = brokenCopy((d) => writeFileSync(join(d, 'config.json'), '{"model_type": "qwen3_asr",'));
  await assert.rejects(load(dir), (e: Error) => e.message.includes('config.json') && /not valid JSON/.test(e.message));
});

test('unknown model_type is named', async () => {
  const dir = brokenCopy((d) => editConfig(d, (c) => (c.model_type = 'whisper')));
  await assert.rejects(load(dir), (e: Error) => /unknown model_type "whisper"/.test(e.message) && e.message.includes('config.json'));
});

test('missing weights name the folder', async () => {
  const dir = brokenCopy((d) => unlinkSync(join(d, 'model.safetensors')));
  await assert.rejects(load(dir), (e: Error) => e.message.includes(dir) && /no model\.safetensors/.test(e.message));
});

test('a truncated safetensors file is reported as such', async () => {
  const dir = brokenCopy((d) => truncateSync(join(d, 'model.safetensors'), 1_000_000));
  await assert.rejects(load(dir), (e: Error) => e.message.includes('model.safetensors') && /truncated|do not fit/.test(e.message));
});

test('a safetensors file with garbage instead of a header is reported', async () => {
  const dir = brokenCopy((d) => writeFileSync(join(d, 'model.safetensors'), Buffer.from('this is not a safetensors file at all')));
  await assert.rejects(load(dir), (e: Error) => e.message.includes('model.safetensors') && /corrupt safetensors header/.test(e.message));
});

test('a tensor whose shape disagrees with config.json names the tensor, both shapes and the file', async () => {
  const dir = brokenCopy((d) => editConfig(d, (c) => (c.thinker_config.audio_config.encoder_ffn_dim = 96)));
  await assert.rejects(
    load(dir),
    (e: Error) => /thinker\.audio_tower\.layers\.0\.fc1\.weight has shape \[128,64\], expected \[96,64\]/.test(e.message) && e.message.includes('model.safetensors'),
  );
});

test('a missing tensor is named', async () => {
  const dir = brokenCopy((d) => editConfig(d, (c) => (c.thinker_config.text_config.num_hidden_layers = 3)));
  await assert.rejects(load(dir), (e: Error) => /thinker\.model\.layers\.2\.\S+ is missing/.test(e.message));
});

test('a missing tokenizer file is named', async () => {
  const dir = brokenCopy((d) => unlinkSync(join(d, 'vocab.json')));
  await assert.rejects(load(dir), (e: Error) => e.message.includes('vocab.json'));
});

test('an ASR load of an aligner checkpoint says what it is', async () => {
  await assert.rejects(load(goldenPath('aligner-a', 'checkpoint')), (e: Error) => /aligner checkpoint, not a Qwen3-ASR model/.test(e.message));
});

test('DEVICE=cuda without the CUDA execution provider says how to install it', async (t) => {
  const bin = join(REPO_ROOT, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64');
  if (existsSync(join(bin, 'libonnxruntime_providers_cuda.so'))) {
    t.skip('the CUDA provider is installed here (npm run install:cuda): nothing to refuse');
    return;
  }
  await assert.rejects(
    AsrModel.load(SRC, { device: 'cuda', quant: 'none', threads: 1, cacheDir: false }),
    (e: Error) => e.name === 'DeviceError' && /DEVICE=cuda/.test(e.message) && /npm run install:cuda/.test(e.message),
  );
});
