import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliSettings, parseSettings, readSetting, SETTING_GROUPS, SETTING_KEYS, SETTINGS, SettingError, type Setting } from './settings.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('defaults: the original names and defaults, except DEVICE=cpu', () => {
  const { given, ...values } = parseSettings({});
  assert.deepEqual(given, new Set());
  assert.deepEqual(values, {
    host: '127.0.0.1',
    port: 8000,
    apiKey: undefined,
    maxUploadMb: 500,
    maxQueue: 32,
    maxAudioSeconds: 14400,
    decodeConcurrency: 2,
    decodeTimeoutSeconds: 120,
    jobTimeoutSeconds: 3600,
    corsOrigins: undefined,
    tlsCertFile: undefined,
    tlsKeyFile: undefined,
    shutdownGraceSeconds: 30,
    realtimeMaxSessions: 32,
    realtimeUpdateSeconds: 1,
    realtimeMaxUtteranceSeconds: 30,
    logLevel: 'info',
    uploadDir: tmpdir(),
    modelName: 'Qwen/Qwen3-ASR-1.7B',
    forcedAligner: undefined,
    device: 'cpu',
    dtype: 'bfloat16',
    quant: 'int8',
    threads: 0,
    maxBatchSize: 16,
    maxNewTokens: undefined,
    segmentSeconds: 20,
    vad: 'on',
    vadThreshold: 0.5,
    vadMinSilenceMs: 1000,
    cache: true,
    prepackedWeights: false,
    cacheDir: join(homedir(), '.cache', 'qwen3-asr'),
    int8Kernel: undefined,
    glibcTunables: undefined,
    hfHome: undefined,
    hfHubCache: undefined,
    huggingfaceHubCache: undefined,
    xdgCacheHome: undefined,
    hfEndpoint: undefined,
    hfOffline: false,
    hfToken: undefined,
    ffmpeg: 'ffmpeg',
    ortProfile: undefined,
    testShared: undefined,
    goldenExtra: undefined,
  });
});

test('every variable is read', () => {
  const env = {
    HOST: '127.0.0.1',
    PORT: '9000',
    API_KEY: 'secret',
    MAX_UPLOAD_MB: '0.5',
    MAX_QUEUE: '0',
    LOG_LEVEL: 'Debug',
    UPLOAD_DIR: 'relative/uploads',
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
    MODEL_NAME: ' /models/asr ',
    FORCED_ALIGNER: 'Qwen/Qwen3-ForcedAligner-0.6B',
    DEVICE: 'CUDA:1',
    DTYPE: 'Float16',
    QUANT: 'INT4',
    THREADS: '2',
    MAX_INFERENCE_BATCH_SIZE: '-1',
    MAX_NEW_TOKENS: '512',
    SEGMENT_SECONDS: '1200',
    VAD: 'OFF',
    VAD_THRESHOLD: '.35',
    VAD_MIN_SILENCE_MS: '2500',
    QWEN3_ASR_CACHE: 'off',
    QWEN3_ASR_CACHE_DIR: '/cache/qwen3-asr',
    QWEN3_ASR_INT8_KERNEL: 'u8u8',
    GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1',
    HF_HOME: '/cache',
    HF_HUB_CACHE: '/hub',
    HUGGINGFACE_HUB_CACHE: '/legacy-hub',
    XDG_CACHE_HOME: '/xdg',
    HF_ENDPOINT: 'https://mirror.example',
    HF_HUB_OFFLINE: 'YES',
    HF_TOKEN: 'hf_x',
    QWEN3_ASR_FFMPEG: '/opt/ffmpeg/bin/ffmpeg',
    QWEN3_ASR_ORT_PROFILE: '/tmp/profile',
    QWEN3_ASR_PREPACKED_WEIGHTS: 'on',
    QWEN3_ASR_SHARED: '/data/shared',
    QWEN3_ASR_GOLDEN_EXTRA: '/a:/b',
  };
  assert.deepEqual(Object.keys(env).sort(), SETTING_KEYS.map((k) => SETTINGS[k].env).sort(), 'this test sets every variable of the table');
  const { given, ...values } = parseSettings(env);
  assert.deepEqual(given, new Set(SETTING_KEYS));
  assert.deepEqual(values, {
    host: '127.0.0.1',
    port: 9000,
    apiKey: 'secret',
    maxUploadMb: 0.5,
    maxQueue: 0,
    logLevel: 'debug',
    uploadDir: resolve('relative/uploads'),
    maxAudioSeconds: 600,
    decodeConcurrency: 3,
    decodeTimeoutSeconds: 2.5,
    jobTimeoutSeconds: 0,
    corsOrigins: '*',
    tlsCertFile: '/tls/cert.pem',
    tlsKeyFile: '/tls/key.pem',
    shutdownGraceSeconds: 5,
    realtimeMaxSessions: 0,
    realtimeUpdateSeconds: 2,
    realtimeMaxUtteranceSeconds: 60,
    modelName: '/models/asr',
    forcedAligner: 'Qwen/Qwen3-ForcedAligner-0.6B',
    device: 'cuda:1',
    dtype: 'float16',
    quant: 'int4',
    threads: 2,
    maxBatchSize: Number.MAX_SAFE_INTEGER,
    maxNewTokens: 512,
    segmentSeconds: 1200,
    vad: 'off',
    vadThreshold: 0.35,
    vadMinSilenceMs: 2500,
    cache: false,
    prepackedWeights: true,
    cacheDir: '/cache/qwen3-asr',
    int8Kernel: 'u8u8',
    glibcTunables: 'glibc.malloc.hugetlb=1',
    hfHome: '/cache',
    hfHubCache: '/hub',
    huggingfaceHubCache: '/legacy-hub',
    xdgCacheHome: '/xdg',
    hfEndpoint: 'https://mirror.example',
    hfOffline: true,
    hfToken: 'hf_x',
    ffmpeg: '/opt/ffmpeg/bin/ffmpeg',
    ortProfile: '/tmp/profile',
    testShared: '/data/shared',
    goldenExtra: '/a:/b',
  });
});

test('blank values mean "use the default"', () => {
  const s = parseSettings({ API_KEY: '  ', FORCED_ALIGNER: '', PORT: '', QWEN3_ASR_CACHE: ' ', QWEN3_ASR_INT8_KERNEL: '', THREADS: '\t' });
  assert.equal(s.apiKey, undefined);
  assert.equal(s.forcedAligner, undefined);
  assert.equal(s.port, 8000);
  assert.equal(s.cache, true, 'a blank QWEN3_ASR_CACHE keeps the cache on');
  assert.equal(s.int8Kernel, undefined);
  assert.equal(s.threads, 0);
  assert.deepEqual(s.given, new Set(), 'a blank value counts as not given');
});

test('QWEN3_ASR_CACHE: 0/false/no/off turn the cache off, 1/true/yes/on keep it on', () => {
  for (const v of ['0', 'false', 'no', 'off', 'OFF', 'False']) assert.equal(readSetting('cache', { QWEN3_ASR_CACHE: v }), false, v);
  for (const v of ['1', 'true', 'yes', 'on', 'ON']) assert.equal(readSetting('cache', { QWEN3_ASR_CACHE: v }), true, v);
});

test('an invalid value stops start-up with a message naming the variable', () => {
  const bad: [Record<string, string>, string, RegExp][] = [
    [{ PORT: '80a' }, 'PORT', /integer/],
    [{ PORT: '70000' }, 'PORT', /between 0 and 65535/],
    [{ DEVICE: 'gpu' }, 'DEVICE', /cpu, cuda or cuda:N/],
    [{ DEVICE: 'cuda:x' }, 'DEVICE', /cuda:N/],
    [{ DTYPE: 'bf16' }, 'DTYPE', /bfloat16, float16, float32/],
    [{ QUANT: 'int3' }, 'QUANT', /none, int8, int4/],
    [{ SEGMENT_SECONDS: '5' }, 'SEGMENT_SECONDS', /between 10 and 1200/],
    [{ SEGMENT_SECONDS: '2000' }, 'SEGMENT_SECONDS', /between 10 and 1200/],
    [{ MAX_INFERENCE_BATCH_SIZE: '0' }, 'MAX_INFERENCE_BATCH_SIZE', /positive integer or -1/],
    [{ MAX_INFERENCE_BATCH_SIZE: '-2' }, 'MAX_INFERENCE_BATCH_SIZE', /positive integer or -1/],
    [{ MAX_INFERENCE_BATCH_SIZE: '1.5' }, 'MAX_INFERENCE_BATCH_SIZE', /integer/],
    [{ MAX_NEW_TOKENS: '0' }, 'MAX_NEW_TOKENS', /at least 1/],
    [{ VAD: 'yes' }, 'VAD', /one of on, off; got "yes"/],
    [{ VAD_THRESHOLD: '0' }, 'VAD_THRESHOLD', /between 0 and 1 \(exclusive\)/],
    [{ VAD_THRESHOLD: '1' }, 'VAD_THRESHOLD', /between 0 and 1 \(exclusive\)/],
    [{ VAD_THRESHOLD: '-0.5' }, 'VAD_THRESHOLD', /between 0 and 1/],
    [{ VAD_THRESHOLD: '0.5x' }, 'VAD_THRESHOLD', /between 0 and 1/],
    [{ VAD_MIN_SILENCE_MS: '99' }, 'VAD_MIN_SILENCE_MS', /between 100 and 10000/],
    [{ VAD_MIN_SILENCE_MS: '10001' }, 'VAD_MIN_SILENCE_MS', /between 100 and 10000/],
    [{ VAD_MIN_SILENCE_MS: '1.5' }, 'VAD_MIN_SILENCE_MS', /integer/],
    [{ MAX_NEW_TOKENS: '1.5' }, 'MAX_NEW_TOKENS', /integer/],
    [{ MAX_UPLOAD_MB: '0' }, 'MAX_UPLOAD_MB', /positive number/],
    [{ MAX_UPLOAD_MB: '1e3' }, 'MAX_UPLOAD_MB', /positive number/],
    [{ MAX_QUEUE: '-1' }, 'MAX_QUEUE', /at least 0/],
    [{ THREADS: 'many' }, 'THREADS', /integer/],
    [{ THREADS: '2000' }, 'THREADS', /between 0 and 1024/],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL', /fatal, error, warn, info, debug, trace, silent/],
    [{ HF_HUB_OFFLINE: 'maybe' }, 'HF_HUB_OFFLINE', /boolean/],
    [{ QWEN3_ASR_CACHE: 'maybe' }, 'QWEN3_ASR_CACHE', /boolean/],
    [{ QWEN3_ASR_INT8_KERNEL: 'bogus' }, 'QWEN3_ASR_INT8_KERNEL', /one of u8s8, u8u8; got "bogus"/],
  ];
  for (const [env, variable, pattern] of bad) {
    const isNamed = (err: unknown) =>
      err instanceof SettingError && err.variable === variable && err.source === variable && err.message.startsWith(`${variable}: `) && pattern.test(err.message);
    assert.throws(() => parseSettings(env), isNamed, `${JSON.stringify(env)} is refused naming ${variable}`);
    // The engine's own reads (readSetting) refuse it the same way.
    const key = SETTING_KEYS.find((k) => SETTINGS[k].env === variable)!;
    assert.throws(() => readSetting(key, env), isNamed, `readSetting: ${JSON.stringify(env)}`);
  }
});

test('a flag overrides its variable, and an invalid flag value is named by the flag', () => {
  const s = parseSettings({ THREADS: '4', QUANT: 'int4' }, { threads: '0', 'batch-size': '-1' });
  assert.equal(s.threads, 0);
  assert.equal(s.maxBatchSize, Number.MAX_SAFE_INTEGER);
  assert.equal(s.quant, 'int4', 'no flag: the variable');
  assert.ok(s.given.has('threads') && s.given.has('maxBatchSize') && s.given.has('quant'));
  // The flag wins even over an invalid variable: that variable is not used.
  assert.equal(parseSettings({ THREADS: 'many' }, { threads: '3' }).threads, 3);
  assert.throws(
    () => parseSettings({}, { threads: '1.5' }),
    (err: unknown) => err instanceof SettingError && err.variable === 'THREADS' && err.source === '--threads' && err.message === '--threads: must be an integer; got "1.5"',
  );
});

test('the table: every entry has a variable, a known group, a doc line, a type and a default; names and flags are unique', () => {
  const envs = new Set<string>();
  const flags = new Set<string>();
  for (const key of SETTING_KEYS) {
    const s: Setting = SETTINGS[key];
    assert.match(s.env, /^[A-Z][A-Z0-9_]*$/, key);
    assert.ok(!envs.has(s.env), `${s.env} twice`);
    envs.add(s.env);
    assert.ok(SETTING_GROUPS.includes(s.group), `${s.env}: group ${s.group}`);
    assert.ok(s.doc.length > 0 && !s.doc.includes('\n'), `${s.env}: one line of doc`);
    assert.ok(s.type && s.default, `${s.env}: type and default`);
    if (s.cli) {
      assert.ok(!flags.has(s.cli.name), `--${s.cli.name} twice`);
      flags.add(s.cli.name);
    }
  }
  assert.deepEqual(
    cliSettings().map(({ flag }) => flag.name),
    ['model', 'aligner', 'device', 'quant', 'threads', 'batch-size', 'max-new-tokens', 'segment-seconds', 'vad', 'vad-threshold', 'vad-min-silence-ms', 'hf-home'],
  );
});

/** Source text with comments blanked out, so a comment that mentions the environment does not count. */
function withoutComments(source: string): string {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '))
    .split('\n')
    .map((line) => (/^\s*\/\//.test(line) ? '' : line))
    .join('\n');
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => /\.(ts|js|mjs)$/.test(name) && !name.endsWith('.test.ts'))
    .map((name) => join(dir, name));
}

/** `process.env`, `process['env']`, or `{ env } = process`. */
const READS_ENV = /\bprocess\s*(?:\.\s*env\b|\[\s*['"`]env['"`]\s*\])|\{[^}]*\benv\b[^}]*\}\s*=\s*process\b/;

test('nothing but the settings module reads the environment (src/ and bin/, tests aside)', () => {
  const settingsFile = join(REPO_ROOT, 'src', 'settings', 'settings.ts');
  const files = [...sourceFiles(join(REPO_ROOT, 'src')), ...sourceFiles(join(REPO_ROOT, 'bin'))].filter((f) => f !== settingsFile);
  assert.ok(files.length > 50, `scanned ${files.length} files`);
  const offenders = files.flatMap((f) =>
    withoutComments(readFileSync(f, 'utf8'))
      .split('\n')
      .flatMap((line, i) => (READS_ENV.test(line) ? [`${relative(REPO_ROOT, f)}:${i + 1}: ${line.trim()}`] : [])),
  );
  assert.deepEqual(offenders, [], 'read settings through src/settings/settings.ts (add the variable to its table)');
  // The scanner itself: it sees each form of reading, and not a mention in a comment.
  for (const line of ['const x = process.env.FOO;', "process['env'].FOO", 'const { env } = process;', 'f(process.env)']) assert.match(withoutComments(line), READS_ENV, line);
  assert.doesNotMatch(withoutComments('// reads process.env\n/* process.env */'), READS_ENV);
});
