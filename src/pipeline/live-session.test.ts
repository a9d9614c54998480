/**
 * Live sessions through the pipeline on tiny-a (fp32): audio in pieces, partial deltas that
 * are a prefix of the completed transcript, completed equal to the file transcription of the
 * same samples, turn detection on a recording with pauses, and bad input refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeAudio } from '../audio/decode.ts';
import { encodeWav } from '../audio/wav.ts';
import { AUDIO_DIR, goldenSets } from '../testing/shared.ts';
import { createTranscriber } from './transcriber.ts';
import { PipelineError, type LiveEvent, type LiveOptions, type Transcriber } from './types.ts';

const [tinyA] = goldenSets('asr', ['tiny-a']);
const CLIP = join(AUDIO_DIR, 'notld', '10s_back_down_the_road.wav');

/** A clip as 16-bit PCM at `rate` (ffmpeg's resampler, as a client would produce it). */
function pcm16(path: string, rate: number): Buffer {
  return execFileSync('ffmpeg', ['-v', 'error', '-i', path, '-ac', '1', '-ar', String(rate), '-f', 's16le', '-'], { maxBuffer: 1 << 28 });
}

function pieces(bytes: Buffer, pieceBytes: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += pieceBytes) out.push(bytes.subarray(i, i + pieceBytes));
  return out;
}

/** Waits until `events` holds an event matching `done`. */
async function until(events: LiveEvent[], done: (e: LiveEvent) => boolean, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!events.some(done)) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out; events: ${JSON.stringify(events.map((e) => e.type))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('live sessions (tiny-a, fp32)', () => {
  let transcriber: Transcriber;
  let scratch: string;

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'live-test-'));
    transcriber = createTranscriber({
      model: tinyA.path('checkpoint'),
      device: 'cpu',
      quant: 'none',
      threads: 1,
      maxBatchSize: 8,
      maxQueue: 8,
      hfOffline: true,
      cacheDir: false,
      live: { maxSessions: 4, updateSeconds: 1, maxUtteranceSeconds: 30 },
    });
    await transcriber.whenReady();
  });
  after(async () => {
    await transcriber?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  const manual: LiveOptions = { format: { type: 'pcm16', rate: 24000 }, language: 'English', turnDetection: null };

  test('client commits: deltas (paced audio) are a prefix of completed', async () => {
    const bytes = pcm16(CLIP, 24000);
    const events: LiveEvent[] = [];
    const live = transcriber.openLive(manual, (e) => events.push(e));
    // Pieces of 100 ms, a little faster than real time, so updates run while audio comes.
    for (const piece of pieces(bytes, 4800)) {
      live.append(piece);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await live.commit(), 1);
    await until(events, (e) => e.type === 'completed' || e.type === 'failed');
    live.close();
    const completed = events.find((e) => e.type === 'completed') as Extract<LiveEvent, { type: 'completed' }>;
    assert.ok(completed, JSON.stringify(events));
    const deltas = events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text).join('');
    assert.ok(completed.text.startsWith(deltas), `deltas ${JSON.stringify(deltas)} are a prefix of ${JSON.stringify(completed.text)}`);
    assert.ok(events.findIndex((e) => e.type === 'committed') < events.indexOf(completed));
    assert.ok(Math.abs(completed.seconds - bytes.length / 2 / 24000) < 0.01, `${completed.seconds} s`);
  });

  test('a long utterance (decoded in pieces past 16 s): deltas go on past the cut and stay a prefix of completed', async () => {
    const bytes = pcm16(join(AUDIO_DIR, 'notld', '119s_theres_supposed_to_be_another_broadcast.wav'), 16000).subarray(0, 28 * 16000 * 2);
    const events: { event: LiveEvent; fed: number }[] = [];
    const plain: LiveEvent[] = [];
    let fed = 0;
    const live = transcriber.openLive({ ...manual, format: { type: 'pcm16', rate: 16000 } }, (event) => {
      events.push({ event, fed });
      plain.push(event);
    });
    // 100 ms pieces at about five times real time: updates run all along the utterance.
    for (const piece of pieces(bytes, 3200)) {
      live.append(piece);
      fed += piece.length / 2 / 16000;
      await new Promise((r) => setTimeout(r, 20));
    }
    await live.commit();
    await until(plain, (e) => e.type === 'completed' || e.type === 'failed');
    live.close();
    const completed = events.find((e) => e.event.type === 'completed')?.event as Extract<LiveEvent, { type: 'completed' }>;
    assert.ok(completed, JSON.stringify(events.map((e) => e.event)));
    const deltas = events.filter((e) => e.event.type === 'delta');
    const text = deltas.map((e) => (e.event as { text: string }).text).join('');
    assert.ok(completed.text.startsWith(text), `deltas ${JSON.stringify(text)} are a prefix of ${JSON.stringify(completed.text)}`);
    assert.ok(
      deltas.some((e) => e.fed > 20),
      `deltas after the first piece ends (at ${deltas.map((e) => e.fed.toFixed(1)).join(', ')} s of audio)`,
    );
  });

  test('client commits: completed equals the file transcription of the same samples at the same rate', async () => {
    const bytes = pcm16(CLIP, 24000);
    const events: LiveEvent[] = [];
    const live = transcriber.openLive(manual, (e) => events.push(e));
    for (const piece of pieces(bytes, 48000)) live.append(piece);
    await live.commit();
    await until(events, (e) => e.type === 'completed' || e.type === 'failed');
    live.close();
    const completed = events.find((e) => e.type === 'completed') as Extract<LiveEvent, { type: 'completed' }>;
    const file = join(scratch, 'clip24k.wav');
    const samples = new Float32Array(bytes.length / 2);
    for (let i = 0; i < samples.length; i++) samples[i] = bytes.readInt16LE(2 * i) / 32768;
    writeFileSync(file, encodeWav(samples, 24000, 'pcm16'));
    const viaFile = await transcriber.transcribeFile(file, { language: 'English' });
    assert.equal(completed.text, viaFile.text);
  });

  test('server VAD: speech_started, speech_stopped, committed and completed, in order, per utterance; none in a pause', async () => {
    const clip = (await decodeAudio(CLIP)).samples;
    const pause = 16000 * 3;
    const audio = new Float32Array(clip.length * 2 + pause * 2);
    audio.set(clip, 0);
    audio.set(clip, clip.length + pause);
    const bytes = Buffer.from(encodeWav(audio, 16000, 'pcm16').subarray(44));
    const events: LiveEvent[] = [];
    const live = transcriber.openLive(
      { format: { type: 'pcm16', rate: 16000 }, language: 'English', turnDetection: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 } },
      (e) => events.push(e),
    );
    for (const piece of pieces(bytes, 3200)) live.append(piece);
    await live.commit().catch(() => undefined);
    const started = () => events.filter((e) => e.type === 'speech_started').length;
    await until(events, () => started() >= 2 && events.filter((e) => e.type === 'completed' || e.type === 'failed').length >= started());
    live.close();
    const numbers = [...new Set(events.flatMap((e) => ('utterance' in e ? [e.utterance] : [])))];
    for (const u of numbers) {
      const mine = events.filter((e) => 'utterance' in e && e.utterance === u).map((e) => e.type);
      const order = ['speech_started', 'speech_stopped', 'committed', 'completed'].map((t) => mine.indexOf(t as LiveEvent['type']));
      assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1])), `utterance ${u}: ${mine.join(', ')}`);
    }
    const clipMs = (clip.length / 16000) * 1000;
    const starts = events.flatMap((e) => (e.type === 'speech_started' ? [e.audioStartMs] : []));
    const copyMs = clipMs + 3000;
    assert.ok(starts.some((ms) => Math.abs(ms - (starts[0] + copyMs)) <= 100), `the second copy's speech starts where the first one's does, ${copyMs} ms later: ${starts.join(', ')} ms`);
    assert.ok(!starts.some((ms) => ms > clipMs + 300 && ms < copyMs), `no utterance starts inside the pause: ${starts.join(', ')} ms`);
  });

  test('bad input: an empty commit, odd PCM bytes, an unknown language and rate are refused; the session goes on', async () => {
    const events: LiveEvent[] = [];
    const live = transcriber.openLive(manual, (e) => events.push(e));
    await assert.rejects(live.commit(), (e) => e instanceof PipelineError && e.code === 'bad_request' && /Nothing to commit/.test(e.message));
    assert.throws(() => live.append(new Uint8Array(3)), (e) => e instanceof PipelineError && e.code === 'bad_request');
    assert.throws(() => live.configure({ language: 'Klingon' }), (e) => e instanceof PipelineError && e.code === 'bad_request');
    assert.throws(() => live.configure({ format: { type: 'pcm16', rate: 7 } }), (e) => e instanceof PipelineError && /7 Hz/.test(e.message));
    live.append(pcm16(CLIP, 24000).subarray(0, 48000));
    assert.equal(await live.commit(), 1);
    await until(events, (e) => e.type === 'completed');
    live.close();
    assert.throws(() => live.append(new Uint8Array(2)), /closed/);
  });

  test('sessions are bounded, and closing frees them', async () => {
    const open = Array.from({ length: 4 }, () => transcriber.openLive(manual, () => undefined));
    assert.throws(() => transcriber.openLive(manual, () => undefined), (e) => e instanceof PipelineError && e.code === 'queue_full');
    for (const s of open) s.close();
    assert.equal(transcriber.liveSessions, 0);
    const audio = pcm16(CLIP, 24000).subarray(0, 24000 * 2 * 3);
    for (let i = 0; i < 100; i++) {
      const s = transcriber.openLive(manual, () => undefined);
      s.append(audio);
      s.close();
    }
    assert.equal(transcriber.liveSessions, 0);
  });
});
