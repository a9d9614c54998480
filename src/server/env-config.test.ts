import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { EnvConfigError, parseEnvConfig, toTranscriberConfig } from './env-config.ts';

test('defaults: the original names and defaults, except DEVICE=cpu', () => {
  const c = parseEnvConfig({});
  assert.deepEqual(c, {
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

test('every variable is read', () => {
  const c = parseEnvConfig({
    MODEL_NAME: ' /models/asr ',
    DEVICE: 'CUDA:1',
    DTYPE: 'Float16',
    MAX_INFERENCE_BATCH_SIZE: '-1',
    MAX_NEW_TOKENS: '512',
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
  });
  assert.equal(c.modelName, '/models/asr');
  assert.equal(c.device, 'cuda:1');
  assert.equal(c.dtype, 'float16');
  assert.equal(c.maxBatchSize, Number.MAX_SAFE_INTEGER, '-1 means no limit, as in the original');
  assert.equal(c.maxNewTokens, 512);
  assert.equal(c.hfHome, '/cache');
  assert.equal(c.port, 9000);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.quant, 'int4');
  assert.equal(c.threads, 2);
  assert.equal(c.maxUploadBytes, 512 * 1024);
  assert.equal(c.maxQueue, 0);
  assert.equal(c.apiKey, 'secret');
  assert.equal(c.logLevel, 'debug');
  assert.equal(c.forcedAligner, 'Qwen/Qwen3-ForcedAligner-0.6B');
  assert.equal(c.hfEndpoint, 'https://mirror.example');
  assert.equal(c.hfOffline, true);
  assert.equal(c.hfToken, 'hf_x');
  assert.equal(c.uploadDir, resolve('relative/uploads'));

  const t = toTranscriberConfig(c);
  assert.deepEqual(
    { model: t.model, aligner: t.aligner, device: t.device, quant: t.quant, threads: t.threads, maxNewTokens: t.maxNewTokens, maxQueue: t.maxQueue, hfOffline: t.hfOffline },
    { model: '/models/asr', aligner: 'Qwen/Qwen3-ForcedAligner-0.6B', device: 'cuda:1', quant: 'int4', threads: 2, maxNewTokens: 512, maxQueue: 0, hfOffline: true },
  );
});

test('blank values mean "use the default"', () => {
  const c = parseEnvConfig({ API_KEY: '  ', FORCED_ALIGNER: '', PORT: '' });
  assert.equal(c.apiKey, undefined);
  assert.equal(c.forcedAligner, undefined);
  assert.equal(c.port, 8000);
});

test('an invalid value stops start-up with a message naming the variable', () => {
  const bad: [Record<string, string>, string, RegExp][] = [
    [{ PORT: '80a' }, 'PORT', /integer/],
    [{ PORT: '70000' }, 'PORT', /between 0 and 65535/],
    [{ DEVICE: 'gpu' }, 'DEVICE', /cpu, cuda or cuda:N/],
    [{ DEVICE: 'cuda:x' }, 'DEVICE', /cuda:N/],
    [{ DTYPE: 'bf16' }, 'DTYPE', /bfloat16, float16, float32/],
    [{ QUANT: 'int3' }, 'QUANT', /none, int8, int4/],
    [{ SEGMENT_SECONDS: '5' }, 'SEGMENT_SECONDS', /10/],
    [{ SEGMENT_SECONDS: '2000' }, 'SEGMENT_SECONDS', /1200/],
    [{ MAX_INFERENCE_BATCH_SIZE: '0' }, 'MAX_INFERENCE_BATCH_SIZE', /positive integer or -1/],
    [{ MAX_INFERENCE_BATCH_SIZE: '-2' }, 'MAX_INFERENCE_BATCH_SIZE', /between -1/],
    [{ MAX_NEW_TOKENS: '0' }, 'MAX_NEW_TOKENS', /between 1/],
    [{ MAX_NEW_TOKENS: '1.5' }, 'MAX_NEW_TOKENS', /integer/],
    [{ MAX_UPLOAD_MB: '0' }, 'MAX_UPLOAD_MB', /positive number/],
    [{ MAX_UPLOAD_MB: '1e3' }, 'MAX_UPLOAD_MB', /positive number/],
    [{ MAX_QUEUE: '-1' }, 'MAX_QUEUE', /between 0/],
    [{ THREADS: 'many' }, 'THREADS', /integer/],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', /fatal, error, warn, info, debug, trace, silent/],
    [{ HF_HUB_OFFLINE: 'maybe' }, 'HF_HUB_OFFLINE', /boolean/],
  ];
  for (const [env, variable, pattern] of bad) {
    assert.throws(
      () => parseEnvConfig(env),
      (err: unknown) => err instanceof EnvConfigError && err.variable === variable && err.message.startsWith(`${variable}: `) && pattern.test(err.message),
      `${JSON.stringify(env)} is refused naming ${variable}`,
    );
  }
});
