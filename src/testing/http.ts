/**
 * Test support for the server's production behaviour: speech of any length built from jfk.wav,
 * multipart forms, waiting for conditions, the Prometheus text format.
 */
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AUDIO_DIR, goldenPath } from './shared.ts';

/** The tiny random checkpoint, and the settings that make it deterministic and quick (fp32, one thread). */
export const TINY_CHECKPOINT = goldenPath('tiny-a', 'checkpoint');
export const TINY_ENV = { MODEL_NAME: TINY_CHECKPOINT, QUANT: 'none', THREADS: '1', HF_HUB_OFFLINE: '1', QWEN3_ASR_CACHE: '0', VAD: 'off' };

/** A 16-bit PCM mono WAV of `seconds` at `rate` made by repeating jfk.wav (real speech, 16 kHz). */
export async function speechWav(seconds: number, rate: 16000 | 8000 = 16000): Promise<Buffer> {
  const jfk = await readFile(join(AUDIO_DIR, 'jfk.wav'));
  let pos = 12;
  let data: Buffer | undefined;
  while (pos + 8 <= jfk.length) {
    const id = jfk.toString('ascii', pos, pos + 4);
    const size = jfk.readUInt32LE(pos + 4);
    if (id === 'data') data = jfk.subarray(pos + 8, pos + 8 + size);
    pos += 8 + size + (size & 1);
  }
  assert.ok(data, 'jfk.wav has a data chunk');
  const step = 16000 / rate;
  const source = new Int16Array(data.buffer, data.byteOffset, data.length / 2).filter((_, i) => i % step === 0);
  const pcm = new Int16Array(Math.round(seconds * rate));
  for (let off = 0; off < pcm.length; off += source.length) pcm.set(source.subarray(0, Math.min(source.length, pcm.length - off)), off);
  const bytes = pcm.length * 2;
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + bytes, 4);
  header.write('WAVEfmt ', 8, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(bytes, 40);
  return Buffer.concat([header, Buffer.from(pcm.buffer)]);
}

export function form(fields: Record<string, string>, file?: { data: Buffer | string; name: string }): FormData {
  const fd = new FormData();
  if (file) fd.append('file', new Blob([typeof file.data === 'string' ? file.data : new Uint8Array(file.data)]), file.name);
  for (const [key, value] of Object.entries(fields)) fd.append(key, value);
  return fd;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits (up to `ms`) for `condition`; fails naming `what`. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await condition()) return;
    await sleep(20);
  }
  assert.ok(await condition(), what);
}

/** Temp files are removed as responses close, just after the client has them: waits a little for an empty folder. */
export async function assertEmptyDir(dir: string, what = 'no temp file is left'): Promise<void> {
  await until(`${what}: ${dir} is empty`, async () => (await readdir(dir)).length === 0, 3000).catch(async () => {
    assert.deepEqual(await readdir(dir), [], what);
  });
}

/** The samples of a Prometheus text exposition, by `name{labels}` as written (labels in the order given). */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*(?:\{.*\})?)\s+(\S+)(?:\s+\d+)?$/.exec(line);
    assert.ok(m, `a valid sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}
