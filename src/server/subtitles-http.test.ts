/**
 * SRT and VTT over HTTP: with a forced aligner configured, the cues follow the words' times;
 * without one (or for a language it does not cover) they are the segments' times shared out
 * by text length. The real pipeline runs the tiny random checkpoint and aligner-a; a stand-in
 * transcriber plays a detected language the aligner does not support.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import type { FastifyInstance } from 'fastify';
import { createTranscriber } from '../pipeline/transcriber.ts';
import { PipelineError, type TranscribeOptions, type Transcriber, type TranscriptionResult } from '../pipeline/types.ts';
import { listenUrl, testServerConfig } from '../testing/http.ts';
import { goldenPath } from '../testing/shared.ts';
import { buildApp } from './app.ts';

const TINY = goldenPath('tiny-a', 'checkpoint');
const ALIGNER = goldenPath('aligner-a', 'checkpoint');

const apps: FastifyInstance[] = [];
const transcribers: Transcriber[] = [];
const dirs: string[] = [];
let en3s: Buffer;

before(async () => {
  en3s = await readFile(goldenPath('tiny-a', 'audio', 'en_3s.wav'));
});
after(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  await Promise.allSettled(transcribers.map((t) => t.close()));
  await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function start(transcriber: Transcriber, forcedAligner?: string): Promise<OpenAI> {
  const uploadDir = await mkdtemp(join(tmpdir(), 'qwen3-asr-subtitles-'));
  dirs.push(uploadDir);
  const config = testServerConfig(uploadDir, { forcedAligner, maxUploadBytes: 8 * 1024 * 1024, maxQueue: 4 });
  const app = buildApp({ config, transcriber, logger: false });
  apps.push(app);
  return new OpenAI({ apiKey: 'unused', baseURL: `${await listenUrl(app)}/v1`, maxRetries: 0 });
}

function realTranscriber(aligner?: string): Transcriber {
  const t = createTranscriber({ model: TINY, aligner, device: 'cpu', quant: 'none', threads: 1, maxBatchSize: 4, maxQueue: 4, hfOffline: true, segmentSeconds: 20 });
  transcribers.push(t);
  return t;
}

describe('subtitles with the real pipeline (tiny-a, aligner-a)', () => {
  let plain: OpenAI;
  let aligned: OpenAI;
  before(async () => {
    const withoutAligner = realTranscriber();
    const withAligner = realTranscriber(ALIGNER);
    plain = await start(withoutAligner);
    aligned = await start(withAligner, ALIGNER);
    await Promise.all([withoutAligner.whenReady(), withAligner.whenReady()]);
  });

  test('with an aligner, srt and vtt cues take the words\' times; without, the segment\'s', async () => {
    const ask = async (client: OpenAI, response_format: 'srt' | 'vtt') =>
      client.audio.transcriptions.create({ file: await toFile(en3s, 'en_3s.wav'), model: 'm', response_format, language: 'en' }) as unknown as Promise<string>;
    // en_3s (3.0048 s): the random aligner places both words at 341.84 s, clamped to the end
    // of the audio (3.004 s); the cue starts there and is stretched to the segment's end.
    assert.equal(await ask(aligned, 'srt'), '1\n00:00:03,004 --> 00:00:03,005\ntargeted ons\n\n');
    assert.equal(await ask(aligned, 'vtt'), 'WEBVTT\n\n00:00:03.004 --> 00:00:03.005\ntargeted ons\n\n');
    // Without an aligner the one cue is the whole segment.
    assert.equal(await ask(plain, 'srt'), '1\n00:00:00,000 --> 00:00:03,005\ntargeted ons\n\n');
    // A language the aligner does not cover: the segment's times, no error.
    const thai = (await aligned.audio.transcriptions.create({ file: await toFile(en3s, 'en_3s.wav'), model: 'm', response_format: 'srt', language: 'th' })) as unknown as string;
    assert.match(thai, /^1\n00:00:00,000 --> 00:00:03,005\n/);
  });

  test('verbose_json words stop at the end of the audio', async () => {
    const res: any = await aligned.audio.transcriptions.create({
      file: await toFile(en3s, 'en_3s.wav'),
      model: 'm',
      response_format: 'verbose_json',
      language: 'en',
      timestamp_granularities: ['word'],
    });
    assert.ok(res.words.length > 0);
    for (const w of res.words) assert.ok(w.start <= w.end && w.end <= res.duration, JSON.stringify(w));
  });
});

describe('subtitles when the detected language is one the aligner does not support', () => {
  const SEGMENTS = [{ id: 0, start: 0, end: 4, text: 'مرحبا بكم', language: 'Arabic', raw: '', tokenIds: [], textTokenIds: [], truncated: false, repetitionStopped: false }];
  const calls: TranscribeOptions[] = [];
  const stub = {
    state: 'ready',
    whenReady: async () => undefined,
    modelName: 'Qwen/Qwen3-ASR-0.6B',
    device: 'cpu',
    languages: ['English', 'Arabic', 'Thai'],
    alignerLanguages: ['English', 'Chinese'],
    queueLength: 0,
    activeJobs: 0,
    liveSessions: 0,
    transcribeFile: async (_path: string, opts: TranscribeOptions = {}): Promise<TranscriptionResult> => {
      calls.push({ ...opts, signal: undefined });
      if (opts.timestamps) throw new PipelineError('aligner_language_unsupported', 'The audio was detected as Arabic, which the forced aligner does not support.');
      return { text: SEGMENTS[0].text, language: 'Arabic', duration: 4, segments: SEGMENTS };
    },
    close: async () => undefined,
  } as unknown as Transcriber;

  test('srt asks for words, then does without them', async () => {
    const client = await start(stub, 'stub-aligner');
    calls.length = 0;
    const srt = (await client.audio.transcriptions.create({ file: await toFile(en3s, 'a.wav'), model: 'm', response_format: 'srt' })) as unknown as string;
    assert.equal(srt, '1\n00:00:00,000 --> 00:00:04,000\nمرحبا بكم\n\n');
    assert.deepEqual(calls.map((c) => c.timestamps), [true, false]);

    // A forced language the aligner does not cover: no words asked for at all.
    calls.length = 0;
    await client.audio.transcriptions.create({ file: await toFile(en3s, 'a.wav'), model: 'm', response_format: 'vtt', language: 'ar' });
    assert.deepEqual(calls.map((c) => c.timestamps), [false]);

    // Words asked for explicitly still fail with the aligner's reason.
    await assert.rejects(
      client.audio.transcriptions.create({ file: await toFile(en3s, 'a.wav'), model: 'm', response_format: 'verbose_json', timestamp_granularities: ['word'] }),
      (err: any) => err.status === 400 && /detected as Arabic/.test(err.message),
    );
  });
});
