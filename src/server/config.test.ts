import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_SEGMENT_SECONDS } from '../pipeline/run-transcription.ts';
import { readSetting, SettingError } from '../settings/settings.ts';
import { readServerConfig, toTranscriberConfig } from './config.ts';

test('defaults: the original names and defaults, except DEVICE=cpu', () => {
  assert.deepEqual(readServerConfig({}), {
    host: '0.0.0.0',
    port: 8000,
    modelName: 'Qwen/Qwen3-ASR-1.7B',
    device: 'cpu',
    dtype: 'bfloat16',
    quant: 'int8',
    threads: 0,
    maxBatchSize: 16,
    maxNewTokens: undefined,
    segmentSeconds: 20,
    vad: { threshold: 0.5, minSilenceMs: 1000 },
    forcedAligner: undefined,
    hfHome: undefined,
    hfEndpoint: undefined,
    hfOffline: false,
    hfToken: undefined,
    maxUploadBytes: 500 * 1024 * 1024,
    maxQueue: 32,
    apiKey: undefined,
    logLevel: 'info',
    uploadDir: tmpdir(),
  });
});

test("the settings' defaults are the pipeline's own", () => {
  assert.equal(readSetting('segmentSeconds', {}), DEFAULT_SEGMENT_SECONDS);
  assert.equal(readSetting('maxBatchSize', {}), DEFAULT_MAX_BATCH_SIZE);
});

test('every server variable is read and shaped for the app and the pipeline', () => {
  const c = readServerConfig({
    MODEL_NAME: ' /models/asr ',
    DEVICE: 'CUDA:1',
    DTYPE: 'Float16',
    MAX_INFERENCE_BATCH_SIZE: '-1',
    MAX_NEW_TOKENS: '512',
    SEGMENT_SECONDS: '60',
    HF_HOME: '/cache',
    PORT: '9000',
    HOST: '127.0.0.1',
    QUANT: 'int4',
    THREADS: '2',
    MAX_UPLOAD_MB: '0.5',
    MAX_QUEUE: '0',
    API_KEY: 'secret',
    LOG_LEVEL: 'debug',
    FORCED_ALIGNER: 'Qwen/Qwen3-ForcedAligner-0.6B',
    HF_ENDPOINT: 'https://mirror.example',
    HF_HUB_OFFLINE: '1',
    HF_TOKEN: 'hf_x',
    UPLOAD_DIR: 'relative/uploads',
    VAD: 'OFF',
  });
  assert.deepEqual(c, {
    host: '127.0.0.1',
    port: 9000,
    modelName: '/models/asr',
    device: 'cuda:1',
    dtype: 'float16',
    quant: 'int4',
    threads: 2,
    maxBatchSize: Number.MAX_SAFE_INTEGER,
    maxNewTokens: 512,
    segmentSeconds: 60,
    vad: undefined,
    forcedAligner: 'Qwen/Qwen3-ForcedAligner-0.6B',
    hfHome: '/cache',
    hfEndpoint: 'https://mirror.example',
    hfOffline: true,
    hfToken: 'hf_x',
    maxUploadBytes: 512 * 1024,
    maxQueue: 0,
    apiKey: 'secret',
    logLevel: 'debug',
    uploadDir: resolve('relative/uploads'),
  });

  const log = () => undefined;
  assert.deepEqual(toTranscriberConfig(c, log), {
    model: '/models/asr',
    aligner: 'Qwen/Qwen3-ForcedAligner-0.6B',
    device: 'cuda:1',
    quant: 'int4',
    threads: 2,
    maxBatchSize: Number.MAX_SAFE_INTEGER,
    maxNewTokens: 512,
    segmentSeconds: 60,
    vad: undefined,
    maxQueue: 0,
    hfHome: '/cache',
    hfEndpoint: 'https://mirror.example',
    hfOffline: true,
    hfToken: 'hf_x',
    log,
  });
});

test('an invalid value of any variable, the engine\'s included, stops the server naming it', () => {
  for (const [variable, value] of [
    ['PORT', '80a'],
    ['QWEN3_ASR_CACHE', 'maybe'],
    ['QWEN3_ASR_INT8_KERNEL', 'bogus'],
    ['HF_HUB_OFFLINE', 'maybe'],
  ]) {
    assert.throws(
      () => readServerConfig({ [variable]: value }),
      (err: unknown) => err instanceof SettingError && err.variable === variable && err.message.startsWith(`${variable}: `),
      `${variable}=${value}`,
    );
  }
});

test('npm start with an invalid value exits 2 before loading anything, naming the variable', async () => {
  const { execFile } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  for (const [variable, value] of [
    ['QWEN3_ASR_INT8_KERNEL', 'bogus'],
    ['QWEN3_ASR_CACHE', 'maybe'],
    ['THREADS', '-1'],
  ]) {
    const r = await new Promise<{ code: number; stderr: string }>((done) =>
      execFile(process.execPath, ['--import', 'tsx', main], { env: { PATH: process.env.PATH, [variable]: value, PORT: '0' }, timeout: 60_000, encoding: 'utf8' }, (err, _stdout, stderr) =>
        done({ code: err ? Number((err as { code?: unknown }).code) : 0, stderr }),
      ),
    );
    assert.equal(r.code, 2, `${variable}=${value}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^qwen3-asr: invalid configuration: ${variable}: .*${value}`), `${variable}=${value}`);
  }
});
