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
import { AsrModel } from '../asr/asr-model.ts';
import { SafetensorsStore, writeSafetensors } from './safetensors.ts';
import { goldenPath, REPO_ROOT } from '../../testing/shared.ts';

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

test('a non-finite weight is refused with its tensor, file and element, in every float dtype', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qwen3-asr-nonfinite-'));
  scratch.push(dir);
  const file = join(dir, 'w.safetensors');
  // The bad value sits at element 2; the good tensors hold the largest finite values.
  const bf16 = (bits: number[]) => Buffer.from(Uint16Array.from(bits).buffer);
  const f16 = bf16;
  const f32 = (v: number[]) => Buffer.from(Float32Array.from(v).buffer);
  writeSafetensors(file, [
    { name: 'bf16.ok', dtype: 'BF16', shape: [3], data: bf16([0x3f80, 0xbf80, 0x7f7f]) }, // 1, -1, largest finite
    { name: 'bf16.inf', dtype: 'BF16', shape: [4], data: bf16([0x3f80, 0, 0x7f80, 0]) },
    { name: 'bf16.nan', dtype: 'BF16', shape: [4], data: bf16([0, 0, 0xffc1, 0]) },
    { name: 'f16.inf', dtype: 'F16', shape: [4], data: f16([0x3c00, 0, 0xfc00, 0]) },
    { name: 'f16.ok', dtype: 'F16', shape: [2], data: f16([0x7bff, 0x3c00]) }, // 65504, 1
    { name: 'f32.nan', dtype: 'F32', shape: [4], data: f32([1, 2, NaN, 4]) },
  ]);
  const store = SafetensorsStore.openFile(file);
  assert.deepEqual(Array.from(store.readFloat32('bf16.ok')), [1, -1, 3.3895313892515355e38]);
  assert.deepEqual(Array.from(store.readFloat32('f16.ok')), [65504, 1]);
  for (const name of ['bf16.inf', 'bf16.nan', 'f16.inf', 'f32.nan']) {
    assert.throws(
      () => store.readFloat32(name),
      (e: Error) => e.message.includes(file) && e.message.includes(`tensor ${name} holds a non-finite value at element 2`),
      name,
    );
  }
  // The raw bf16 words that W8A8 weights are quantised from pass the same check.
  assert.deepEqual(Array.from(store.readBf16Words('bf16.ok')!), [0x3f80, 0xbf80, 0x7f7f]);
  assert.equal(store.readBf16Words('f16.ok'), undefined, 'other dtypes are read as float32');
  for (const name of ['bf16.inf', 'bf16.nan']) {
    assert.throws(() => store.readBf16Words(name), (e: Error) => e.message.includes(file) && e.message.includes(`tensor ${name} holds a non-finite value at element 2`), name);
  }
});

test('16-bit weights: a non-finite word is found at every position of the two-at-a-time check, and the largest finite values pass', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qwen3-asr-nonfinite-pairs-'));
  scratch.push(dir);
  const file = join(dir, 'w.safetensors');
  // Seven words: three pairs and an odd last word; finite words at the edge of the range.
  const kinds = [
    { dtype: 'BF16', finite: [0x7f7f, 0xff7f, 0x0001, 0x8000], bad: [0x7f80, 0xff80, 0x7fc0, 0xffff] },
    { dtype: 'F16', finite: [0x7bff, 0xfbff, 0x0001, 0x8000], bad: [0x7c00, 0xfc00, 0x7e00, 0xffff] },
  ] as const;
  const tensors: { name: string; dtype: 'BF16' | 'F16'; shape: number[]; data: Buffer }[] = [];
  for (const { dtype, finite, bad } of kinds) {
    const ok: number[] = Array.from({ length: 7 }, (_, i) => finite[i % finite.length]);
    tensors.push({ name: `${dtype}.ok`, dtype, shape: [7], data: Buffer.from(Uint16Array.from(ok).buffer) });
    for (let at = 0; at < 7; at++) {
      const words = [...ok];
      words[at] = bad[at % bad.length];
      tensors.push({ name: `${dtype}.bad${at}`, dtype, shape: [7], data: Buffer.from(Uint16Array.from(words).buffer) });
    }
  }
  writeSafetensors(file, tensors);
  const store = SafetensorsStore.openFile(file);
  for (const { dtype } of kinds) {
    assert.equal(store.readFloat32(`${dtype}.ok`).length, 7);
    for (let at = 0; at < 7; at++) {
      const name = `${dtype}.bad${at}`;
      assert.throws(() => store.readFloat32(name), (e: Error) => e.message.includes(`tensor ${name} holds a non-finite value at element ${at}`), name);
    }
  }
});
