import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIO_DIR } from '../testing/shared.ts';
import { AudioDecodeError } from './errors.ts';
import { decodeWav, encodeWav, looksLikeWav, WavStreamReader } from './wav.ts';

// ------------------------------------------------------------------------------------------
// A byte-level WAV builder, so every header variant can be produced exactly.
// ------------------------------------------------------------------------------------------

interface Chunk {
  id: string;
  body: Uint8Array;
  /** Size written in the chunk header (default body.length). */
  declared?: number;
}

function le(bytes: number, value: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  return out;
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const text = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

function fmtBody(tag: number, channels: number, rate: number, bits: number, blockAlign = channels * Math.ceil(bits / 8)): Uint8Array {
  return cat(le(2, tag), le(2, channels), le(4, rate), le(4, rate * blockAlign), le(2, blockAlign), le(2, bits));
}

function extensibleBody(subTag: number, channels: number, rate: number, bits: number, container: number): Uint8Array {
  const guidTail = Uint8Array.from([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]);
  return cat(fmtBody(0xfffe, channels, rate, container * 8, channels * container), le(2, 22), le(2, bits), le(4, 3), le(2, subTag), guidTail);
}

function riff(chunks: Chunk[], kind = 'RIFF'): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const c of chunks) {
    parts.push(text(c.id), le(4, c.declared ?? c.body.length), c.body);
    if (c.body.length % 2 === 1) parts.push(new Uint8Array(1)); // pad byte
  }
  const body = cat(text('WAVE'), ...parts);
  return cat(text(kind), le(4, kind === 'RIFF' ? body.length : 0xffffffff), body);
}

function int16Data(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setInt16(2 * i, v, true));
  return out;
}

const data = (body: Uint8Array, declared?: number): Chunk => ({ id: 'data', body, declared });
const fmt = (body: Uint8Array): Chunk => ({ id: 'fmt ', body });

// ------------------------------------------------------------------------------------------

test('PCM 8/16/24/32-bit and float32/64 are scaled like libsndfile', () => {
  const u8 = decodeWav(riff([fmt(fmtBody(1, 1, 8000, 8)), data(Uint8Array.from([0, 64, 128, 255]))]));
  assert.deepEqual(Array.from(u8.channelData[0]), [-1, -0.5, 0, 127 / 128]);

  const s16 = decodeWav(riff([fmt(fmtBody(1, 1, 16000, 16)), data(int16Data([-32768, -16384, 0, 32767]))]));
  assert.deepEqual(Array.from(s16.channelData[0]), [-1, -0.5, 0, Math.fround(32767 / 32768)]);

  const s24bytes = Uint8Array.from([0x00, 0x00, 0x80, 0x00, 0x00, 0x40, 0xff, 0xff, 0x7f]);
  const s24 = decodeWav(riff([fmt(fmtBody(1, 1, 48000, 24)), data(s24bytes)]));
  assert.deepEqual(Array.from(s24.channelData[0]), [-1, 0.5, Math.fround(8388607 / 8388608)]);

  const s32bytes = cat(le(4, 0x80000000), le(4, 0x40000000), le(4, 0xffffffff));
  const s32 = decodeWav(riff([fmt(fmtBody(1, 1, 48000, 32)), data(s32bytes)]));
  assert.deepEqual(Array.from(s32.channelData[0]), [-1, 0.5, Math.fround(-1 / 2 ** 31)]);

  const f32 = new Uint8Array(12);
  new DataView(f32.buffer).setFloat32(0, 0.25, true);
  new DataView(f32.buffer).setFloat32(4, -1.5, true); // floats are not clipped by the reader
  new DataView(f32.buffer).setFloat32(8, 1e-8, true);
  const F32 = decodeWav(riff([fmt(fmtBody(3, 1, 22050, 32)), data(f32)]));
  assert.deepEqual(Array.from(F32.channelData[0]), [0.25, -1.5, Math.fround(1e-8)]);
  assert.equal(F32.format.encoding, 'float');
  assert.equal(F32.format.sampleRate, 22050);

  const f64 = new Uint8Array(16);
  new DataView(f64.buffer).setFloat64(0, 0.1, true);
  new DataView(f64.buffer).setFloat64(8, -0.75, true);
  const F64 = decodeWav(riff([fmt(fmtBody(3, 1, 8000, 64)), data(f64)]));
  assert.deepEqual(Array.from(F64.channelData[0]), [Math.fround(0.1), -0.75]);
});

test('A-law and µ-law expand through the G.711 tables', () => {
  // µ-law 0xFF and 0x7F are ±0, 0x00 is the most negative value (−32124), 0x80 the most positive.
  const ulaw = decodeWav(riff([fmt(fmtBody(7, 1, 8000, 8)), data(Uint8Array.from([0xff, 0x00, 0x80]))]));
  assert.deepEqual(Array.from(ulaw.channelData[0]), [0, -32124 / 32768, 32124 / 32768]);
  // A-law 0xD5 is +8, 0x55 is −8, 0xAA is +32256 (largest), 0x2A is −32256.
  const alaw = decodeWav(riff([fmt(fmtBody(6, 1, 8000, 8)), data(Uint8Array.from([0xd5, 0x55, 0xaa, 0x2a]))]));
  assert.deepEqual(Array.from(alaw.channelData[0]), [8 / 32768, -8 / 32768, 32256 / 32768, -32256 / 32768]);
});

test('WAVE_FORMAT_EXTENSIBLE, multichannel interleaving and 24-in-32 containers', () => {
  const frames = [
    [0x100000, -0x200000, 0x7fffff],
    [-0x400000, 0, 1],
  ];
  const raw = new Uint8Array(frames.length * 3 * 4);
  const dv = new DataView(raw.buffer);
  frames.flat().forEach((v, i) => dv.setInt32(4 * i, v * 256, true)); // 24 valid bits, left-justified
  const wav = decodeWav(riff([fmt(extensibleBody(1, 3, 96000, 24, 4)), data(raw)]));
  assert.equal(wav.format.channels, 3);
  assert.equal(wav.format.bytesPerSample, 4);
  assert.deepEqual(Array.from(wav.channelData[0]), [0x100000 / 2 ** 23, -0x400000 / 2 ** 23]);
  assert.deepEqual(Array.from(wav.channelData[1]), [-0x200000 / 2 ** 23, 0]);
  assert.deepEqual(Array.from(wav.channelData[2]), [Math.fround(0x7fffff / 2 ** 23), Math.fround(1 / 2 ** 23)]);

  const f = new Uint8Array(8);
  new DataView(f.buffer).setFloat32(0, 0.5, true);
  new DataView(f.buffer).setFloat32(4, -0.5, true);
  const ext = decodeWav(riff([fmt(extensibleBody(3, 2, 44100, 32, 4)), data(f)]));
  assert.equal(ext.format.encoding, 'float');
  assert.deepEqual([ext.channelData[0][0], ext.channelData[1][0]], [0.5, -0.5]);
});

test('odd chunks are skipped: LIST with odd size and pad byte, fact, JUNK; chunks after data ignored', () => {
  const samples = [1000, -2000, 3000];
  const list: Chunk = { id: 'LIST', body: text('INFOISFT\x05\x00\x00\x00abcd\x00') }; // 17 bytes: odd
  const fact: Chunk = { id: 'fact', body: le(4, 3) };
  const junk: Chunk = { id: 'JUNK', body: new Uint8Array(28) };
  const trailer: Chunk = { id: 'id3 ', body: text('not audio at all') };
  const bytes = riff([junk, fmt(fmtBody(1, 1, 16000, 16)), list, fact, data(int16Data(samples)), trailer]);
  assert.deepEqual(Array.from(decodeWav(bytes).channelData[0]), samples.map((v) => v / 32768));
});

test('streamed WAVs: data size 0 or 0xFFFFFFFF (and RIFF size 0xFFFFFFFF) read to end of file', () => {
  const samples = [1, 2, 3, 4, 5];
  for (const declared of [0, 0xffffffff]) {
    const bytes = riff([fmt(fmtBody(1, 1, 16000, 16)), data(int16Data(samples), declared)]);
    new DataView(bytes.buffer).setUint32(4, 0xffffffff, true);
    assert.deepEqual(Array.from(decodeWav(bytes).channelData[0]), samples.map((v) => v / 32768), `declared ${declared}`);
  }
});

test('truncated data chunk: whole frames up to the end of the file', () => {
  const full = riff([fmt(fmtBody(1, 1, 16000, 16)), data(int16Data([10, 20, 30, 40, 50]), 1000)]);
  const bytes = full.subarray(0, full.length - 1); // cut inside the last sample
  assert.deepEqual(Array.from(decodeWav(bytes).channelData[0]), [10, 20, 30, 40].map((v) => v / 32768));
  // Stereo: a half frame at the end is dropped.
  const stereo = riff([fmt(fmtBody(1, 2, 16000, 16)), data(int16Data([1, 2, 3]), 1000)]);
  const wav = decodeWav(stereo);
  assert.deepEqual([Array.from(wav.channelData[0]), Array.from(wav.channelData[1])], [[1 / 32768], [2 / 32768]]);
});

test('RF64/BW64: the data size comes from the ds64 chunk', () => {
  const samples = int16Data([7, 8, 9, 10]);
  const trailer: Chunk = { id: 'LIST', body: new Uint8Array(6) };
  const ds64: Chunk = { id: 'ds64', body: cat(le(8, 0), le(8, samples.length - 2), le(8, 0), le(4, 0)) };
  for (const kind of ['RF64', 'BW64']) {
    const bytes = riff([ds64, fmt(fmtBody(1, 1, 16000, 16)), data(samples, 0xffffffff), trailer], kind);
    assert.deepEqual(Array.from(decodeWav(bytes).channelData[0]), [7, 8, 9].map((v) => v / 32768), kind);
  }
});

test('feeding the reader one byte at a time gives the same samples', () => {
  const list: Chunk = { id: 'LIST', body: new Uint8Array(5) };
  const bytes = riff([fmt(fmtBody(1, 2, 16000, 24)), list, data(Uint8Array.from({ length: 60 }, (_, i) => (i * 37) & 0xff))]);
  const whole = new WavStreamReader('x').push(bytes);
  const reader = new WavStreamReader('x');
  const pieces: number[] = [];
  for (let i = 0; i < bytes.length; i++) pieces.push(...reader.push(bytes.subarray(i, i + 1)));
  reader.end();
  assert.equal(whole.length, 20);
  assert.deepEqual(pieces, Array.from(whole));
});

test('errors name the file and the problem', () => {
  const expectError = (bytes: Uint8Array, code: string, pattern: RegExp): void => {
    assert.throws(
      () => decodeWav(bytes, 'clip.wav'),
      (err: unknown) => err instanceof AudioDecodeError && err.code === code && pattern.test(err.message) && err.message.startsWith('clip.wav: '),
      `expected ${code} ${pattern}`,
    );
  };
  expectError(text('hello, this is not a wav file'), 'undecodable', /not a WAV file/);
  expectError(new Uint8Array(0), 'undecodable', /not a WAV file/);
  expectError(riff([fmt(fmtBody(2, 1, 16000, 4))]), 'unsupported', /MS ADPCM is not supported/);
  expectError(riff([fmt(fmtBody(0x55, 2, 44100, 0, 1))]), 'unsupported', /MPEG Layer 3/);
  expectError(riff([fmt(fmtBody(1, 1, 16000, 16))]), 'undecodable', /no data chunk/);
  expectError(riff([data(int16Data([1]))]), 'undecodable', /data chunk comes before the fmt chunk/);
  expectError(riff([fmt(fmtBody(1, 0, 16000, 16)), data(int16Data([1]))]), 'undecodable', /0 channels/);
  expectError(riff([fmt(fmtBody(1, 1, 0, 16)), data(int16Data([1]))]), 'undecodable', /sample rate of 0/);
  expectError(riff([fmt(fmtBody(3, 1, 16000, 16)), data(int16Data([1]))]), 'unsupported', /float with 16 bits/);
  expectError(riff([{ id: 'fmt ', body: new Uint8Array(8) }, data(int16Data([1]))]), 'undecodable', /fmt chunk is 8 bytes/);
  expectError(cat(text('RIFX'), le(4, 4), text('WAVE')), 'unsupported', /big-endian/);
});

test('encodeWav round-trips through the reader (float32 exactly, pcm16 to 1/32767)', () => {
  const l = Float32Array.from([0, 0.5, -0.25, 1, -1]);
  const r = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5]);
  assert.ok(looksLikeWav(encodeWav([l, r], 44100)), 'header');
  const f = decodeWav(encodeWav([l, r], 44100));
  assert.equal(f.format.sampleRate, 44100);
  assert.deepEqual(f.channelData, [l, r]);
  const p = decodeWav(encodeWav(l, 8000, 'pcm16'));
  for (let i = 0; i < l.length; i++) assert.ok(Math.abs(p.channelData[0][i] - l[i]) <= 1 / 32767, `sample ${i}`);
});

test('jfk.wav (16-bit PCM) decodes to its 176000 samples, equal to a direct int16 read', () => {
  const bytes = new Uint8Array(readFileSync(join(AUDIO_DIR, 'jfk.wav')));
  const wav = decodeWav(bytes, 'jfk.wav');
  assert.deepEqual([wav.format.sampleRate, wav.format.channels, wav.format.bitsPerSample], [16000, 1, 16]);
  const samples = wav.channelData[0];
  assert.equal(samples.length, 176000);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const dataStart = bytes.length - 2 * samples.length; // canonical 44-byte header, data last
  for (const i of [0, 1, 1000, 88000, 175999]) assert.equal(samples[i], dv.getInt16(dataStart + 2 * i, true) / 32768, `sample ${i}`);
});
