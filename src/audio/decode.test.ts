import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsStore } from '../engine/checkpoint/safetensors.ts';
import { AUDIO_DIR, goldenPath } from '../testing/shared.ts';
import { AudioDecodeError, decodeAudio, MIN_SOURCE_SAMPLE_RATE, type AudioDecoderName, type DecodedAudio } from './decode.ts';
import { decodeEmbedded } from './embedded.ts';
import { audioSecondsFromMoov, mp4AudioSeconds } from './mp4.ts';
import { findFfmpeg, parseSourceSampleRate } from './ffmpeg.ts';
import { resample } from './resample.ts';
import { decodeWav, encodeWav } from './wav.ts';

const JFK = join(AUDIO_DIR, 'jfk.wav');
const tmp = mkdtempSync(join(tmpdir(), 'qwen3-asr-decode-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const jfk = decodeWav(new Uint8Array(readFileSync(JFK)), JFK).channelData[0];
/** The fixtures are the first 4 s of jfk.wav. */
const CLIP_SECONDS = 4;
const clip = jfk.subarray(0, CLIP_SECONDS * 16000);
const clipWav = join(tmp, 'clip.wav');
writeFileSync(clipWav, encodeWav(clip, 16000, 'float32'));

const ffmpeg = await findFfmpeg();
const NO_FFMPEG = 'ffmpeg is not on PATH: encoded fixtures cannot be generated (CI installs it)';

/** Encodes clip.wav with ffmpeg; returns the path, or a skip reason when this ffmpeg lacks the encoder. */
function encode(name: string, args: string[], input: string[] = ['-i', clipWav]): { path?: string; skip?: string } {
  if (!ffmpeg) return { skip: NO_FFMPEG };
  const path = join(tmp, name);
  const r = spawnSync(ffmpeg.path, ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...input, ...args, path], { encoding: 'utf8' });
  if (r.status !== 0) return { skip: `this ffmpeg cannot write ${name}: ${r.stderr.trim().split('\n').at(-1)}` };
  return { path };
}

const video = ['-f', 'lavfi', '-i', 'color=c=black:s=64x64:r=10', '-i', clipWav];
/**
 * `aacTail`: ffmpeg 5.1 keeps the AAC encoder's padding in the last frame (up to one 1024-sample
 * frame at the source rate) even where the container says the stream is shorter; the embedded
 * decoder trims it. Every other format must match the source length within 12 ms.
 */
const FORMATS: Array<{ name: string; file: string; args: string[]; input?: string[]; rate: number; channels: number; aacTail?: boolean }> = [
  { name: 'mp3 (44.1 kHz stereo)', file: 'clip.mp3', args: ['-ar', '44100', '-ac', '2', '-c:a', 'libmp3lame', '-b:a', '128k'], rate: 44100, channels: 2 },
  { name: 'flac', file: 'clip.flac', args: ['-c:a', 'flac'], rate: 16000, channels: 1 },
  { name: 'ogg/vorbis (22.05 kHz)', file: 'clip.ogg', args: ['-ar', '22050', '-c:a', 'libvorbis'], rate: 22050, channels: 1 },
  { name: 'opus', file: 'clip.opus', args: ['-c:a', 'libopus', '-b:a', '64k'], rate: 48000, channels: 1 },
  { name: 'm4a/aac (32 kHz)', file: 'clip.m4a', args: ['-ar', '32000', '-c:a', 'aac', '-b:a', '96k'], rate: 32000, channels: 1, aacTail: true },
  { name: 'webm/opus', file: 'clip.webm', args: ['-c:a', 'libopus', '-b:a', '64k'], rate: 48000, channels: 1 },
  { name: 'mp4 video + aac', file: 'clip.mp4', input: video, args: ['-shortest', '-c:v', 'mpeg4', '-c:a', 'aac', '-b:a', '96k'], rate: 16000, channels: 1, aacTail: true },
  { name: 'mov video + aac', file: 'clip.mov', input: video, args: ['-shortest', '-c:v', 'mpeg4', '-c:a', 'aac', '-b:a', '96k'], rate: 16000, channels: 1, aacTail: true },
  { name: 'mkv video + opus', file: 'clip.mkv', input: video, args: ['-shortest', '-c:v', 'mpeg4', '-c:a', 'libopus', '-b:a', '64k'], rate: 48000, channels: 1 },
];

/** Best normalised cross-correlation of `a` against `ref` over lags in ±maxLag samples. */
function alignedCorrelation(a: Float32Array, ref: Float32Array, maxLag = 320): { corr: number; lag: number } {
  let best = { corr: -1, lag: 0 };
  for (let lag = -maxLag; lag <= maxLag; lag += 1) {
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    const from = Math.max(0, -lag);
    const to = Math.min(ref.length, a.length - lag);
    for (let i = from; i < to; i += 4) {
      const x = a[i + lag];
      const y = ref[i];
      sxy += x * y;
      sxx += x * x;
      syy += y * y;
    }
    const corr = sxy / Math.sqrt(sxx * syy || 1);
    if (corr > best.corr) best = { corr, lag };
  }
  // Refine at full resolution around the coarse optimum.
  for (let lag = best.lag - 3; lag <= best.lag + 3; lag++) {
    let sxy = 0;
    let sxx = 0;
    let syy = 0;
    for (let i = Math.max(0, -lag); i < Math.min(ref.length, a.length - lag); i++) {
      sxy += a[i + lag] * ref[i];
      sxx += a[i + lag] ** 2;
      syy += ref[i] ** 2;
    }
    const corr = sxy / Math.sqrt(sxx * syy || 1);
    if (corr > best.corr) best = { corr, lag };
  }
  return best;
}

function checkDecoded(r: DecodedAudio, decoder: AudioDecoderName, ref: Float32Array, what: string, extraTail = 0): void {
  assert.equal(r.decoder, decoder, what);
  assert.equal(r.sampleRate, 16000);
  assert.equal(r.duration, r.samples.length / 16000);
  const excess = r.duration - ref.length / 16000;
  assert.ok(excess >= -0.012 && excess <= 0.012 + extraTail, `${what}: duration ${r.duration} s, expected ${ref.length / 16000} s`);
  let peak = 0;
  for (const v of r.samples) peak = Math.max(peak, Math.abs(v));
  assert.ok(peak <= 1 && peak > 0.1, `${what}: peak ${peak}`);
  const { corr, lag } = alignedCorrelation(r.samples, ref);
  assert.ok(corr > 0.99, `${what}: correlation ${corr.toFixed(4)} at lag ${lag}`);
  assert.ok(Math.abs(lag) <= 160, `${what}: decoder delay of ${lag} samples left in the output`);
}

for (const f of FORMATS) {
  const fixture = encode(f.file, f.args, f.input);
  test(`${f.name}: ffmpeg and the embedded decoder both decode it`, { skip: fixture.skip ?? false }, async () => {
    const viaFfmpeg = await decodeAudio(fixture.path!, { decoder: 'ffmpeg' });
    checkDecoded(viaFfmpeg, 'ffmpeg', clip, `${f.file} via ffmpeg`, f.aacTail ? 1024 / f.rate : 0);
    assert.equal(viaFfmpeg.sourceSampleRate, f.rate, `${f.file} via ffmpeg: source rate`);
    assert.equal(viaFfmpeg.channels, f.channels, `${f.file} via ffmpeg: channels`);
    const viaEmbedded = await decodeAudio(fixture.path!, { decoder: 'embedded' });
    checkDecoded(viaEmbedded, 'embedded', clip, `${f.file} via embedded`);
    assert.equal(viaEmbedded.sourceSampleRate, f.rate, `${f.file} via embedded: source rate`);
  });
}

test('automatic choice: ffmpeg when it is on PATH, the embedded decoder when not preferred or absent', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  const mp3 = join(tmp, FORMATS[0].file);
  assert.equal((await decodeAudio(mp3)).decoder, 'ffmpeg');
  assert.equal((await decodeAudio(mp3, { preferFfmpeg: false })).decoder, 'embedded');
  assert.equal((await decodeAudio(mp3, { ffmpegPath: join(tmp, 'no-such-ffmpeg') })).decoder, 'embedded');
});

test('golden MP3 (44.1 kHz stereo): both decoders match the reference waveform after alignment', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  const store = SafetensorsStore.openFile(goldenPath('tiny-a', 'cases', 'en_3s_mp3.audio.safetensors'));
  const golden = store.readFloat32('waveform');
  for (const decoder of ['ffmpeg', 'embedded'] as const) {
    const r = await decodeAudio(goldenPath('tiny-a', 'audio', 'en_3s_44k_stereo.mp3'), { decoder });
    assert.deepEqual([r.sourceSampleRate, r.decoder], [44100, decoder]);
    assert.ok(Math.abs(r.samples.length - golden.length) <= 2, `${decoder}: ${r.samples.length} vs ${golden.length} samples`);
    const { corr } = alignedCorrelation(r.samples, golden, 400);
    assert.ok(corr > 0.99, `${decoder}: correlation ${corr}`);
  }
});

test('golden MP3 with no ffmpeg installed: the embedded decoder alone', async () => {
  const golden = SafetensorsStore.openFile(goldenPath('tiny-a', 'cases', 'en_3s_mp3.audio.safetensors')).readFloat32('waveform');
  const r = await decodeAudio(goldenPath('tiny-a', 'audio', 'en_3s_44k_stereo.mp3'), { ffmpegPath: join(tmp, 'no-such-ffmpeg') });
  assert.equal(r.decoder, 'embedded');
  assert.ok(alignedCorrelation(r.samples, golden, 400).corr > 0.99, 'correlation');
});

test('16 kHz WAV goes through the built-in reader untouched', async () => {
  const r = await decodeAudio(JFK);
  assert.deepEqual([r.decoder, r.sourceSampleRate, r.channels, r.duration], ['wav', 16000, 1, 11]);
  assert.deepEqual(r.samples, jfk);
});

test('multichannel WAV is mixed by channel mean; loud float WAV is divided by its peak', async () => {
  const stereoPath = join(tmp, 'stereo.wav');
  const right = clip.map((v) => -0.5 * v);
  writeFileSync(stereoPath, encodeWav([clip, right], 16000, 'float32'));
  const stereo = await decodeAudio(stereoPath);
  assert.deepEqual([stereo.decoder, stereo.channels], ['wav', 2]);
  for (let i = 0; i < clip.length; i += 997) assert.equal(stereo.samples[i], Math.fround((clip[i] + right[i]) / 2), `sample ${i}`);

  const loudPath = join(tmp, 'loud.wav');
  const loud = clip.map((v, i) => (i === 1234 ? 2 : v));
  writeFileSync(loudPath, encodeWav(loud, 16000, 'float32'));
  const r = await decodeAudio(loudPath);
  assert.equal(r.samples[1234], 1);
  assert.equal(r.samples[5000], Math.fround(loud[5000] / 2));
});

test('WAV at another rate: built-in reader + resampler without ffmpeg, ffmpeg (soxr) when preferred', async () => {
  const path = join(tmp, 'clip-44k.wav');
  const up = resample(clip, 16000, 44100);
  writeFileSync(path, encodeWav([up, up], 44100, 'pcm16'));
  const builtIn = await decodeAudio(path, { preferFfmpeg: false });
  assert.deepEqual([builtIn.decoder, builtIn.sourceSampleRate, builtIn.channels], ['wav', 44100, 2]);
  assert.equal(builtIn.samples.length, Math.ceil((up.length * 16000) / 44100));
  checkDecoded(builtIn, 'wav', clip, 'wav 44.1 kHz via built-in');
  if (ffmpeg) {
    const viaFfmpeg = await decodeAudio(path);
    checkDecoded(viaFfmpeg, 'ffmpeg', clip, 'wav 44.1 kHz via ffmpeg');
    assert.equal(viaFfmpeg.sourceSampleRate, 44100);
  }
});

test('WAV encodings the built-in reader lacks (ADPCM) fall back to ffmpeg / the embedded decoder', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  const adpcm = encode('clip-adpcm.wav', ['-c:a', 'adpcm_ms']);
  assert.ok(adpcm.path, adpcm.skip);
  const r = await decodeAudio(adpcm.path);
  assert.equal(r.decoder, 'ffmpeg');
  assert.ok(alignedCorrelation(r.samples, clip).corr > 0.99, 'correlation');
  await assert.rejects(decodeAudio(adpcm.path, { decoder: 'wav' }), (e: unknown) => e instanceof AudioDecodeError && e.code === 'unsupported' && /MS ADPCM/.test(e.message));
});

/** Asserts an AudioDecodeError with the code, mentioning the file and matching `pattern`. */
async function expectFailure(path: string, code: string, pattern: RegExp, opts: Parameters<typeof decodeAudio>[1] = {}): Promise<void> {
  await assert.rejects(decodeAudio(path, opts), (e: unknown) => {
    assert.ok(e instanceof AudioDecodeError, `not an AudioDecodeError: ${String(e)}`);
    assert.equal(e.code, code, `${path}: ${e.message}`);
    assert.ok(e.message.includes(path), `message does not name the file: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('bad input: empty, missing, directory, random bytes, text — clear errors from every decoder', async () => {
  const empty = join(tmp, 'empty.mp3');
  writeFileSync(empty, new Uint8Array(0));
  const random = join(tmp, 'random.mp3');
  let seed = 3;
  writeFileSync(random, Uint8Array.from({ length: 8192 }, () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 24));
  const text = join(tmp, 'notes.txt');
  writeFileSync(text, 'Meeting notes: this is a text file, not a recording.\nSecond line.\n');
  const fakeWav = join(tmp, 'fake.wav');
  writeFileSync(fakeWav, 'RIFF\x10\x00\x00\x00WAVEjunk');

  for (const decoder of [undefined, 'embedded', ...(ffmpeg ? ['ffmpeg' as const] : [])] as const) {
    const opts = { decoder };
    await expectFailure(empty, 'empty', /file is empty \(0 bytes\)/, opts);
    await expectFailure(join(tmp, 'missing.wav'), 'undecodable', /cannot read file \(ENOENT\)/, opts);
    await expectFailure(tmp, 'undecodable', /not a regular file/, opts);
    await expectFailure(random, 'undecodable', /not a (recognised|decodable) audio or video (format|file)/, opts);
    await expectFailure(text, 'undecodable', /not a recognised audio|not a decodable audio|a text file, not audio/, opts);
  }
  await expectFailure(fakeWav, 'undecodable', /WAV file has no fmt chunk|no data chunk/, { decoder: 'wav' });
  await expectFailure(random, 'undecodable', /not a WAV file/, { decoder: 'wav' });
  await expectFailure(random, 'unsupported', /is not available/, { decoder: 'ffmpeg', ffmpegPath: join(tmp, 'no-such-ffmpeg') });
});

test('truncated MP3: a few hundred bytes are undecodable, half a file decodes what is there', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  const mp3 = encode('whole.mp3', ['-ar', '44100', '-c:a', 'libmp3lame', '-b:a', '128k']);
  assert.ok(mp3.path, mp3.skip);
  const bytes = readFileSync(mp3.path);
  const tiny = join(tmp, 'tiny.mp3');
  writeFileSync(tiny, bytes.subarray(0, 300));
  const half = join(tmp, 'half.mp3');
  writeFileSync(half, bytes.subarray(0, bytes.length >> 1));
  for (const decoder of ['ffmpeg', 'embedded'] as const) {
    await expectFailure(tiny, 'undecodable', /decod/, { decoder });
    const r = await decodeAudio(half, { decoder });
    assert.ok(r.duration > 1 && r.duration < CLIP_SECONDS * 0.75, `${decoder}: half file gave ${r.duration} s`);
  }
});

test('a video without an audio track is reported as empty', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  const silentVideo = encode('silent.mp4', ['-t', '1', '-c:v', 'mpeg4'], ['-f', 'lavfi', '-i', 'color=c=black:s=64x64:r=10']);
  assert.ok(silentVideo.path, silentVideo.skip);
  for (const decoder of [undefined, 'ffmpeg', 'embedded'] as const) {
    await expectFailure(silentVideo.path, 'empty', /no audio (stream|track)/, { decoder });
  }
});

test('a hanging ffmpeg is killed at the timeout; abort signals stop it too', async () => {
  const fake = join(tmp, 'hanging-ffmpeg.sh');
  writeFileSync(fake, '#!/bin/sh\ncase "$*" in *-version*) echo "ffmpeg version fake"; exit 0;; esac\nexec sleep 60\n');
  chmodSync(fake, 0o755);
  const mp3 = goldenPath('tiny-a', 'audio', 'en_3s_44k_stereo.mp3');
  // Automatic mode does not fall through to another decoder after a timeout.
  await assert.rejects(decodeAudio(mp3, { ffmpegPath: fake, timeoutMs: 300 }), (e: unknown) => {
    assert.ok(e instanceof AudioDecodeError && e.details.timedOut === true, String(e));
    assert.match(e.message, /ffmpeg did not finish within 0\.3 s/);
    return true;
  });
  const controller = new AbortController();
  const pending = decodeAudio(mp3, { decoder: 'ffmpeg', ffmpegPath: fake, signal: controller.signal });
  setTimeout(() => controller.abort(new Error('client went away')), 100);
  await assert.rejects(pending, /client went away/);
  await assert.rejects(decodeAudio(mp3, { signal: AbortSignal.abort(new Error('already gone')) }), /already gone/);
});

test('the source rate is read from the input stream, not the output', () => {
  const stderr = [
    "Input #0, mp3, from 'file:/x.mp3':",
    '  Duration: 00:00:03.06, start: 0.025057, bitrate: 129 kb/s',
    '  Stream #0:0: Audio: mp3, 44100 Hz, stereo, fltp, 128 kb/s',
    'Stream mapping:',
    '  Stream #0:0 -> #0:0 (mp3 (mp3float) -> pcm_f32le (native))',
    "Output #0, wav, to 'pipe:1':",
    '  Stream #0:0: Audio: pcm_f32le ([3][0][0][0] / 0x0003), 16000 Hz, stereo, flt, 1024 kb/s',
  ].join('\n');
  assert.equal(parseSourceSampleRate(stderr), 44100);
  const video = "Input #0, mov,mp4:\n  Stream #0:0[0x1](und): Video: h264, yuv420p, 64x64, 10 fps\n  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, 69 kb/s\nOutput #0";
  assert.equal(parseSourceSampleRate(video), 48000);
  assert.equal(parseSourceSampleRate('garbage'), undefined);
});

// ---------------------------------------------------------------------------------------------
// Bounds on what a small file may decode to: the sample-rate floor and maxSeconds.

/** A 16-bit PCM WAV header for `dataBytes` of samples (0xFFFFFFFF: "to the end of the file"). */
function wavHeader(rate: number, channels: number, dataBytes: number): Buffer {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(dataBytes === 0xffffffff ? 0xffffffff : 36 + dataBytes, 4);
  h.write('WAVEfmt ', 8, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(channels, 22);
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * channels * 2, 28);
  h.writeUInt16LE(channels * 2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}

/** Asserts a rejection with AudioDecodeError `code` that stopped the fallback chain, matching `pattern`. */
async function expectVerdict(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<AudioDecodeError> {
  let caught: AudioDecodeError | undefined;
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof AudioDecodeError, `not an AudioDecodeError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    assert.equal(e.details.conclusive, true, 'a verdict on the audio itself');
    caught = e;
    return true;
  });
  return caught!;
}

test('a WAV header claiming 7 Hz is refused by every decoder, naming the rate, before any resampling', async () => {
  // 32 kB of samples: at 7 Hz that header claims 38 minutes of audio.
  const path = join(tmp, 'seven-hz.wav');
  const noise = Buffer.alloc(32000);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 97) & 0xff;
  writeFileSync(path, Buffer.concat([wavHeader(7, 1, noise.length), noise]));
  for (const decoder of [undefined, 'wav', 'embedded', ...(ffmpeg ? ['ffmpeg' as const] : [])] as const) {
    const started = performance.now();
    const e = await expectVerdict(decodeAudio(path, { decoder }), 'unsupported', /sample rate of 7 Hz is below the 4000 Hz minimum/);
    assert.equal(e.details.sampleRate, 7);
    assert.ok(e.message.includes(path), 'names the file');
    assert.ok(performance.now() - started < 10_000, `${decoder ?? 'auto'}: refused after ${performance.now() - started} ms`);
  }
  // The floor itself is accepted.
  const floor = join(tmp, 'four-khz.wav');
  writeFileSync(floor, Buffer.concat([wavHeader(MIN_SOURCE_SAMPLE_RATE, 1, 8000), noise.subarray(0, 8000)]));
  const r = await decodeAudio(floor, { decoder: 'wav' });
  assert.deepEqual([r.sourceSampleRate, r.duration], [4000, 1]);
});

test('a FLAC at 3 kHz is refused by ffmpeg and the embedded decoder', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  const low = encode('low-rate.flac', ['-t', '2', '-c:a', 'flac'], ['-f', 'lavfi', '-i', 'sine=f=300:r=3000']);
  assert.ok(low.path, low.skip);
  for (const decoder of [undefined, 'ffmpeg', 'embedded'] as const) {
    await expectVerdict(decodeAudio(low.path, { decoder }), 'unsupported', /sample rate of 3000 Hz is below the 4000 Hz minimum/);
  }
});

test('maxSeconds: a WAV is refused from its header, before a sample is read', async () => {
  const path = join(tmp, 'twenty-seconds.wav');
  const pcm = Buffer.alloc(20 * 16000 * 2);
  writeFileSync(path, Buffer.concat([wavHeader(16000, 1, pcm.length), pcm]));
  for (const decoder of [undefined, 'wav'] as const) {
    const e = await expectVerdict(decodeAudio(path, { decoder, maxSeconds: 10 }), 'too_long', /lasts 20\.0 s, longer than the limit of 10 s set by MAX_AUDIO_SECONDS/);
    assert.equal(e.details.limitSeconds, 10);
    assert.ok(e.message.includes(path), 'names the file');
  }
  // Exactly at the limit is fine.
  assert.equal((await decodeAudio(path, { maxSeconds: 20 })).duration, 20);

  // A streamed header ("to the end of the file") over 9 hours of (sparse) zeros: the length
  // comes from the file size, so the refusal takes no decoding at all.
  const huge = join(tmp, 'nine-hours.wav');
  writeFileSync(huge, wavHeader(16000, 1, 0xffffffff));
  truncateSync(huge, 44 + 9 * 3600 * 16000 * 2);
  for (const decoder of [undefined, 'wav'] as const) {
    const started = performance.now();
    await expectVerdict(decodeAudio(huge, { decoder, maxSeconds: 14400 }), 'too_long', /lasts 32400\.0 s, longer than the limit of 14400 s \(4 h\)/);
    assert.ok(performance.now() - started < 2000, `refused after ${performance.now() - started} ms`);
  }
});

test('maxSeconds: ffmpeg and the embedded decoder stop at the limit on a long silent FLAC', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  // A minute of silence: 14 kB of FLAC (an hour is 640 kB).
  const silence = encode('silence-60s.flac', ['-t', '60', '-c:a', 'flac'], ['-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono']);
  assert.ok(silence.path, silence.skip);
  assert.ok(statSync(silence.path).size < 32 * 1024);
  for (const decoder of [undefined, 'ffmpeg', 'embedded'] as const) {
    const e = await expectVerdict(
      decodeAudio(silence.path, { decoder, maxSeconds: 15 }),
      'too_long',
      /the audio is longer than the limit of 15 s set by MAX_AUDIO_SECONDS; decoding stopped at 15 s/,
    );
    assert.ok(e.message.includes(silence.path), 'names the file');
  }
  for (const decoder of ['ffmpeg', 'embedded'] as const) {
    const r = await decodeAudio(silence.path, { decoder, maxSeconds: 60 });
    assert.equal(r.duration, 60, `${decoder}: exactly at the limit is fine`);
  }

  // The embedded decoder hands on nothing past the limit: the block that passes it is dropped.
  let frames = 0;
  const pending = decodeEmbedded(silence.path, { timeoutMs: 60_000, maxSeconds: 15, minSampleRate: MIN_SOURCE_SAMPLE_RATE, onBlock: (mono) => void (frames += mono.length) });
  await expectVerdict(pending, 'too_long', /decoding stopped at 15 s/);
  assert.ok(frames <= 15 * 16000, `${frames} frames handed on`);
});

test('maxSeconds and timeoutMs must be positive numbers', async () => {
  for (const bad of [0, -5, NaN, Infinity, '60' as unknown as number]) {
    await assert.rejects(decodeAudio(JFK, { maxSeconds: bad }), (e: unknown) => e instanceof RangeError && /maxSeconds must be a positive number of seconds/.test(e.message));
  }
  await assert.rejects(decodeAudio(JFK, { timeoutMs: 0 }), /timeoutMs must be a positive number/);
  assert.equal((await decodeAudio(JFK, { maxSeconds: 11 })).duration, 11);
});

test('maxSeconds: an MP4-family file is refused from its index, before anything is decoded', { skip: ffmpeg ? false : NO_FFMPEG }, async () => {
  // The index (moov) after the audio, as encoders write it by default, and before it (faststart).
  const tail = encode('silence-60s.m4a', ['-t', '60', '-c:a', 'aac', '-b:a', '16k'], ['-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono']);
  const front = encode('silence-60s-faststart.m4a', ['-t', '60', '-c:a', 'aac', '-b:a', '16k', '-movflags', '+faststart'], ['-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono']);
  for (const file of [tail, front]) {
    assert.ok(file.path, file.skip);
    const seconds = await mp4AudioSeconds(file.path);
    assert.ok(seconds !== undefined && Math.abs(seconds - 60) < 0.2, `${file.path}: ${seconds} s`);
    for (const decoder of [undefined, 'ffmpeg', 'embedded'] as const) {
      await expectVerdict(decodeAudio(file.path, { decoder, maxSeconds: 15 }), 'too_long', /the audio lasts 60\.\d s, longer than the limit of 15 s set by MAX_AUDIO_SECONDS; it was not decoded/);
    }
  }
  assert.equal((await decodeAudio(tail.path!, { decoder: 'embedded', maxSeconds: 61 })).sourceSampleRate, 8000, 'within the limit it decodes');
  // Bytes that are not an index say nothing.
  assert.equal(audioSecondsFromMoov(new Uint8Array([0, 0, 0, 9, 0x74, 0x72, 0x61, 0x6b, 0])), undefined);
  assert.equal(await mp4AudioSeconds(JFK), undefined);
});
