/**
 * Test support for the server's production behaviour: a server configuration for tests, a
 * stand-in transcriber, listening on a loopback port, speech of any length built from jfk.wav,
 * multipart forms, waiting for conditions, the Prometheus text format.
 */
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Transcriber } from '../pipeline/types.ts';
import type { ServerConfig } from '../server/config.ts';
import { AUDIO_DIR, goldenPath } from './shared.ts';

/** The tiny random checkpoint, and the settings that make it deterministic and quick (fp32, one thread). */
export const TINY_CHECKPOINT = goldenPath('tiny-a', 'checkpoint');
export const TINY_ENV = { MODEL_NAME: TINY_CHECKPOINT, QUANT: 'none', THREADS: '1', HF_HUB_OFFLINE: '1', QWEN3_ASR_CACHE: '0', VAD: 'off' };

/**
 * A server configuration for tests: loopback on a free port, the tiny checkpoint on the CPU in
 * fp32 on one thread, offline, silent, small limits, no API key, no CORS, realtime off; `over`
 * replaces any of it.
 */
export function testServerConfig(uploadDir: string, over: Partial<ServerConfig> = {}): ServerConfig {
  return {
    host: '127.0.0.1',
    port: 0,
    modelName: TINY_CHECKPOINT,
    device: 'cpu',
    dtype: 'float32',
    quant: 'none',
    threads: 1,
    maxBatchSize: 4,
    segmentSeconds: 20,
    hfOffline: true,
    maxUploadBytes: 1024 * 1024,
    maxQueue: 1,
    logLevel: 'silent',
    uploadDir,
    maxAudioSeconds: 14400,
    decodeConcurrency: 1,
    decodeTimeoutMs: 60_000,
    jobTimeoutMs: 0,
    corsOrigins: [],
    shutdownGraceMs: 1000,
    realtime: { maxSessions: 0, updateSeconds: 1, maxUtteranceSeconds: 30 },
    ...over,
  };
}

/** Just enough of a Transcriber for routes that never transcribe; `over` replaces or adds members. */
export function stubTranscriber(over: Partial<Transcriber> & Record<string, unknown> = {}): Transcriber {
  return {
    state: 'ready',
    whenReady: async () => undefined,
    modelName: 'Qwen/Qwen3-ASR-0.6B',
    device: 'cpu',
    languages: ['English'],
    queueLength: 0,
    activeJobs: 0,
    liveSessions: 0,
    transcribeFile: async () => {
      throw new Error('not used');
    },
    close: async () => undefined,
    ...over,
  } as unknown as Transcriber;
}

/** Starts `app` on a free loopback port; its base URL (`scheme` https for a TLS server). */
export async function listenUrl(app: FastifyInstance, scheme: 'http' | 'https' = 'http'): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `${scheme}://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

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
  return pcm16Wav(pcm, rate);
}

/** A 16-bit PCM mono WAV of `samples` (16-bit samples, as an Int16Array or their raw little-endian bytes) at `rate`. */
export function pcm16Wav(samples: Int16Array | Buffer, rate: number): Buffer {
  const data = samples instanceof Buffer ? samples : Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
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
