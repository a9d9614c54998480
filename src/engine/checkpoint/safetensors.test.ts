import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { floatToBf16Bits, SafetensorsStore, writeSafetensors } from './safetensors.ts';

test('safetensors: tensors read into a reused buffer equal fresh reads; a buffer too small is refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qwen3-asr-st-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const values = [0.5, -1.25, 3, 1e-3, -7.5, 0];
  const words = Uint16Array.from(values, floatToBf16Bits);
  const file = join(dir, 'model.safetensors');
  writeSafetensors(file, [
    { name: 'a', dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2, 3]) },
    { name: 'w', dtype: 'BF16', shape: [2, 3], data: new Uint8Array(words.buffer) },
  ]);
  const store = SafetensorsStore.openFile(file);
  const reused = new Uint8Array(64).fill(0xee);
  const raw = store.readRaw('w', () => reused);
  assert.equal(raw.buffer, reused.buffer, 'read into the given buffer');
  assert.equal(raw.length, 12, 'a view of the tensor bytes only');
  assert.deepEqual(Array.from(raw), Array.from(store.readRaw('w')));
  const into = store.readBf16Words('w', [2, 3], () => reused.subarray(16));
  assert.deepEqual(Array.from(into!), Array.from(words));
  assert.equal(into!.byteOffset, 16, 'in place, where the allocator put it');
  assert.equal(reused[15], 0xee, 'nothing outside the tensor is written');
  assert.throws(() => store.readRaw('w', () => new Uint8Array(4)), /readRaw w: a buffer of 4 bytes for 12/);
});
