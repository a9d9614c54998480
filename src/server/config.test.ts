import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_SEGMENT_SECONDS } from '../pipeline/run-transcription.ts';
import { readSetting, SettingError } from '../settings/settings.ts';
import { readServerConfig, toTranscriberConfig } from './config.ts';

test('defaults: the original names and defaults, except DEVICE=cpu and HOST=127.0.0.1', () => {
  assert.deepEqual(readServerConfig({}), {
    host: '127.0.0.1',
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
    maxAudioSeconds: 14400,
    decodeConcurrency: 2,
    decodeTimeoutMs: 120_000,
    jobTimeoutMs: 3_600_000,
    corsOrigins: [],
    tls: undefined,
    shutdownGraceMs: 30_000,
    realtime: { maxSessions: 32, updateSeconds: 1, maxUtteranceSeconds: 30 },
  });
});

test('TLS needs both files; CORS_ORIGINS is a comma-separated list', () => {
  assert.throws(() => readServerConfig({ TLS_CERT_FILE: '/c.pem' }), (e) => e instanceof SettingError && e.variable === 'TLS_KEY_FILE');
  assert.throws(() => readServerConfig({ TLS_KEY_FILE: '/k.pem' }), (e) => e instanceof SettingError && e.variable === 'TLS_CERT_FILE');
  assert.deepEqual(readServerConfig({ TLS_CERT_FILE: '/c.pem', TLS_KEY_FILE: '/k.pem' }).tls, { certFile: '/c.pem', keyFile: '/k.pem' });
  assert.deepEqual(readServerConfig({ CORS_ORIGINS: ' https://a.example , http://b:3000,' }).corsOrigins, ['https://a.example', 'http://b:3000']);
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
    MAX_AUDIO_SECONDS: '600',
    DECODE_CONCURRENCY: '3',
    DECODE_TIMEOUT_SECONDS: '2.5',
    JOB_TIMEOUT_SECONDS: '0',
    CORS_ORIGINS: '*',
    TLS_CERT_FILE: '/tls/cert.pem',
    TLS_KEY_FILE: '/tls/key.pem',
    SHUTDOWN_GRACE_SECONDS: '5',
    REALTIME_MAX_SESSIONS: '0',
    REALTIME_UPDATE_SECONDS: '2',
    REALTIME_MAX_UTTERANCE_SECONDS: '60',
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
    maxAudioSeconds: 600,
    decodeConcurrency: 3,
    decodeTimeoutMs: 2500,
    jobTimeoutMs: 0,
    corsOrigins: ['*'],
    tls: { certFile: '/tls/cert.pem', keyFile: '/tls/key.pem' },
    shutdownGraceMs: 5000,
    realtime: { maxSessions: 0, updateSeconds: 2, maxUtteranceSeconds: 60 },
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
    maxAudioSeconds: 600,
    decodeConcurrency: 3,
    decodeTimeoutMs: 2500,
    jobTimeoutMs: 0,
    scratchDir: resolve('relative/uploads'),
    hfHome: '/cache',
    hfEndpoint: 'https://mirror.example',
    hfOffline: true,
    hfToken: 'hf_x',
    live: { maxSessions: 0, updateSeconds: 2, maxUtteranceSeconds: 60 },
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
