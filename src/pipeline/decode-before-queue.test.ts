/**
 * Files are decoded and checked before their jobs wait (decode-pool.ts): in worker threads,
 * a bounded number at once, each within a time limit, the samples written to a file that is
 * removed however the job ends. And a running job past its time limit is cancelled.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertEmptyDir, speechWav, TINY_CHECKPOINT, until } from '../testing/http.ts';
import { AUDIO_DIR } from '../testing/shared.ts';
import { DecodePool } from './decode-pool.ts';
import { createTranscriber } from './transcriber.ts';
import type { PipelineStats, Transcriber } from './types.ts';

let scratch: string;
let inputs: string;
let longWav: string;
let tenMinutes: string;
const JFK = join(AUDIO_DIR, 'jfk.wav');

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-decode-test-'));
  inputs = await mkdtemp(join(scratch, 'inputs-'));
  longWav = join(inputs, 'long.wav');
  await writeFile(longWav, await speechWav(20 * 60, 8000));
  tenMinutes = join(inputs, 'ten.wav');
  await writeFile(tenMinutes, await speechWav(10 * 60));
  await writeFile(join(inputs, 'empty.wav'), '');
  await writeFile(join(inputs, 'text.mp3'), 'this is not audio at all, just some text in a file');
});

function tinyTranscriber(dir: string, over: Partial<Parameters<typeof createTranscriber>[0]> = {}): Transcriber {
  return createTranscriber({
    model: TINY_CHECKPOINT,
    device: 'cpu',
    quant: 'none',
    threads: 1,
    maxBatchSize: 2,
    maxQueue: 1,
    hfOffline: true,
    cacheDir: false,
    segmentSeconds: 10,
    scratchDir: dir,
    ...over,
  });
}

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const codeOf = (err: unknown) => (err as { code?: string }).code;

describe('the decode pool', () => {
  test('decodes to a raw float32 samples file and reports the audio length', async () => {
    const dir = await mkdtemp(join(scratch, 'pool-'));
    const pool = new DecodePool({ concurrency: 1, timeoutMs: 60_000, dir });
    try {
      const file = await pool.decode(JFK);
      assert.equal(file.audioSeconds, 11);
      assert.ok(file.path.startsWith(dir) && existsSync(file.path));
      const { size } = await import('node:fs/promises').then((fs) => fs.stat(file.path));
      assert.equal(size, 11 * 16000 * 4, '11 s of 16 kHz float32');
      await rm(file.path);
    } finally {
      await pool.close();
    }
    await assertEmptyDir(dir);
  });

  test('bad files fail with the decoder\'s own error and leave no file', async () => {
    const dir = await mkdtemp(join(scratch, 'pool-'));
    const pool = new DecodePool({ concurrency: 2, timeoutMs: 60_000, dir });
    const empty = join(inputs, 'empty.wav');
    const text = join(inputs, 'text.mp3');
    const short = join(inputs, 'short.wav');
    await writeFile(short, await speechWav(0.05));
    try {
      await assert.rejects(pool.decode(empty), (e) => codeOf(e) === 'empty');
      await assert.rejects(pool.decode(text), (e) => codeOf(e) === 'undecodable');
      await assert.rejects(pool.decode(short), (e) => codeOf(e) === 'audio_too_short');
      await assert.rejects(pool.decode(join(inputs, 'missing.wav')), (e) => codeOf(e) === 'undecodable' && /missing\.wav/.test((e as Error).message));
    } finally {
      await pool.close();
    }
    await assertEmptyDir(dir);
  });

  test('audio longer than maxSeconds is refused', async () => {
    const dir = await mkdtemp(join(scratch, 'pool-'));
    const pool = new DecodePool({ concurrency: 1, timeoutMs: 60_000, maxSeconds: 5, dir });
    try {
      // The decoder refuses it (AudioDecodeError 'too_long'), or the pool's own check does.
      await assert.rejects(pool.decode(JFK), (e) => ['too_long', 'audio_too_long'].includes(codeOf(e)!));
    } finally {
      await pool.close();
    }
    await assertEmptyDir(dir);
  });

  test('a decode past its time limit is stopped (decode_timeout), its file removed, and the pool goes on', async () => {
    const dir = await mkdtemp(join(scratch, 'pool-'));
    const pool = new DecodePool({ concurrency: 1, timeoutMs: 60_000, dir });
    // How long 20 minutes of 8 kHz audio take to decode and resample here.
    const t0 = performance.now();
    await rm((await pool.decode(longWav)).path);
    const full = performance.now() - t0;
    await pool.close();

    const limited = new DecodePool({ concurrency: 1, timeoutMs: Math.max(20, Math.round(full / 10)), dir });
    try {
      const t1 = performance.now();
      await assert.rejects(limited.decode(longWav), (e) => codeOf(e) === 'decode_timeout' && /took longer than/.test((e as Error).message));
      assert.ok(performance.now() - t1 < full, `answered at the limit (${Math.round(performance.now() - t1)} ms), not after the decode (${Math.round(full)} ms)`);
      // The next file gets the freed place (a new worker if the old one had to be terminated).
      const next = await limited.decode(join(inputs, 'ten.wav')).catch((e) => e);
      assert.equal(codeOf(next), 'decode_timeout', 'ten minutes take longer than the limit too');
    } finally {
      await limited.close();
    }
    await assertEmptyDir(dir);
  });

  test('at most `concurrency` files decode at once; the others wait in order; a cancelled one frees its place', async () => {
    const dir = await mkdtemp(join(scratch, 'pool-'));
    const pool = new DecodePool({ concurrency: 1, timeoutMs: 60_000, dir });
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, pool.running)), 1);
    try {
      const cancel = new AbortController();
      const order: string[] = [];
      const a = pool.decode(tenMinutes).then((f) => (order.push('a'), f));
      const b = pool.decode(tenMinutes, cancel.signal).then(
        (f) => f,
        (e) => (order.push('b'), e),
      );
      const c = pool.decode(JFK).then((f) => (order.push('c'), f));
      assert.equal(pool.running, 1);
      assert.equal(pool.queued, 2);
      cancel.abort();
      assert.equal(codeOf(await b), 'aborted');
      assert.equal(pool.queued, 1, 'the cancelled file left the line');
      const files = await Promise.all([a, c]);
      assert.deepEqual(order, ['b', 'a', 'c']);
      assert.equal(most, 1);
      for (const f of files) await rm(f.path);

      // Cancelled while it decodes: the caller is answered at once and the file is removed.
      const running = new AbortController();
      const d = pool.decode(longWav, running.signal);
      await until('d decodes', () => pool.running === 1);
      running.abort();
      await assert.rejects(d, (e) => codeOf(e) === 'aborted');
    } finally {
      clearInterval(watch);
      await pool.close();
    }
    await assertEmptyDir(dir);
  });

  test('close fails waiting and running files with shutting_down and removes their files', async () => {
    const dir = await mkdtemp(join(scratch, 'pool-'));
    const pool = new DecodePool({ concurrency: 1, timeoutMs: 60_000, dir });
    const running = pool.decode(longWav).catch((e) => e);
    const waiting = pool.decode(JFK).catch((e) => e);
    await until('one decodes', () => pool.running === 1);
    await pool.close();
    assert.equal(codeOf(await running), 'shutting_down');
    assert.equal(codeOf(await waiting), 'shutting_down');
    await assert.rejects(pool.decode(JFK), (e) => codeOf(e) === 'shutting_down');
    await assertEmptyDir(dir);
  });
});

describe('the transcriber', () => {
  let transcriber: Transcriber;
  let dir: string;
  const stats: PipelineStats[] = [];

  before(async () => {
    dir = await mkdtemp(join(scratch, 'transcriber-'));
    transcriber = tinyTranscriber(dir);
    transcriber.onStats!((s) => stats.push(s));
    await transcriber.whenReady();
  });

  after(async () => {
    await transcriber.close();
  });

  test('a decoded file is removed when its job is done or fails; bad audio is refused while the queue is full', async () => {
    const ok = await transcriber.transcribeFile(JFK, { language: 'English' });
    assert.equal(ok.duration, 11);
    await assertEmptyDir(dir);
    assert.ok(stats.some((s) => s.type === 'decoded' && s.audioSeconds === 11), 'the decode was reported');
    assert.ok(stats.some((s) => s.type === 'started'), 'the queue wait was reported');

    // Two long jobs run (MAX batch 2), one waits (MAX_QUEUE 1): the queue is full.
    const stop = new AbortController();
    const busy = [1, 2, 3].map(() => transcriber.transcribeFile(tenMinutes, { signal: stop.signal }).catch((e) => e));
    await until('two run and one waits', () => transcriber.activeJobs === 2 && transcriber.queueLength === 1);
    await assert.rejects(transcriber.transcribeFile(join(inputs, 'empty.wav')), (e) => codeOf(e) === 'empty');
    await assert.rejects(transcriber.transcribeFile(join(inputs, 'text.mp3')), (e) => codeOf(e) === 'undecodable');
    await assert.rejects(transcriber.transcribeFile(JFK), (e) => codeOf(e) === 'queue_full', 'good audio meets the full queue once decoded');

    // Aborted: the waiting one leaves the queue, the running ones the batch; every file goes.
    stop.abort();
    for (const r of await Promise.all(busy)) assert.equal(codeOf(r), 'aborted');
    await until('the worker is idle', () => transcriber.activeJobs === 0);
    await assertEmptyDir(dir);
  });

  test('a job past JOB_TIMEOUT is cancelled with job_timeout; its rows leave the batch and the next job runs', async () => {
    const t = tinyTranscriber(dir, { jobTimeoutMs: 2000 });
    const steps: number[] = [];
    t.onStats!((s) => s.type === 'steps' && steps.push(s.steps));
    try {
      await t.whenReady();
      const t0 = performance.now();
      const timedOut = await t.transcribeFile(tenMinutes).catch((e) => e);
      const elapsed = performance.now() - t0;
      assert.equal(codeOf(timedOut), 'job_timeout', String(timedOut));
      assert.match(timedOut.message, /did not finish within 2 s/);
      assert.ok(elapsed < 10_000, `answered at the limit (${Math.round(elapsed)} ms)`);
      // Its rows leave at the next decoding step: the worker confirms, and the place is free.
      await until('the timed-out job left the worker', () => t.activeJobs === 0, 5000);
      // No more steps are decoded for it: the batch is idle (a report covers at most the second before it).
      await new Promise((r) => setTimeout(r, 1500));
      const before = steps.length;
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(steps.length, before, 'the batch stopped decoding');
      const next = await t.transcribeFile(JFK, { language: 'English' });
      assert.equal(next.duration, 11);
    } finally {
      await t.close();
    }
    await assertEmptyDir(dir);
  });

  test('close cancels running and queued jobs with shutting_down and removes every file', async () => {
    const t = tinyTranscriber(dir, { maxBatchSize: 1, maxQueue: 2 });
    await t.whenReady();
    const jobs = [1, 2].map(() => t.transcribeFile(tenMinutes).catch((e) => e));
    await until('one runs and one waits', () => t.activeJobs === 1 && t.queueLength === 1);
    const decoding = t.transcribeFile(longWav).catch((e) => e);
    await t.close();
    for (const r of await Promise.all([...jobs, decoding])) assert.equal(codeOf(r), 'shutting_down', String(r));
    await assert.rejects(t.transcribeFile(JFK), (e) => codeOf(e) === 'shutting_down');
    await assertEmptyDir(dir);
  });
});
