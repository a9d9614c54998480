/**
 * Built-in WAV reader: RIFF/RF64/BW64 "WAVE" files with PCM integer (8/16/24/32-bit, or any
 * width in a byte-aligned container), IEEE float (32/64-bit), A-law and µ-law samples, plain or
 * WAVE_FORMAT_EXTENSIBLE, any channel count and rate.
 *
 * Samples are scaled as libsndfile does (what the official pipeline reads through
 * librosa/soundfile): signed integers divide by 2^(container bits − 1) (int16 / 32768,
 * int32 / 2³¹), 8-bit unsigned is (x − 128) / 128, floats stay as they are, A-law/µ-law go
 * through the G.711 tables to 16-bit and then / 32768.
 *
 * The parser is incremental (`WavStreamReader.push(bytes)`), so the same code reads a file in
 * blocks and ffmpeg's WAV output from a pipe. It walks the chunk list, skipping chunks it does
 * not need (LIST, fact, JUNK, bext, ...; odd sizes are followed by one pad byte), and takes
 * the data chunk:
 * - with its declared size when that is plausible (trailing chunks after the data are ignored);
 * - to the end of the stream when the size is 0 or 0xFFFFFFFF (streamed writers, ffmpeg
 *   writing to a pipe) or larger than the file (a truncated file: whole frames only, like
 *   libsndfile);
 * - RF64/BW64: the 64-bit size from the ds64 chunk.
 *
 * Unsupported encodings (ADPCM, MPEG-in-WAV, ...) raise AudioDecodeError('unsupported') so
 * the caller can hand the file to ffmpeg or the embedded decoder.
 */
import { open } from 'node:fs/promises';
import { AudioDecodeError } from './errors.ts';

export type WavEncoding = 'pcm' | 'float' | 'alaw' | 'ulaw';

export interface WavFormat {
  encoding: WavEncoding;
  channels: number;
  sampleRate: number;
  /** Declared significant bits per sample. */
  bitsPerSample: number;
  /** Bytes each sample occupies in the data chunk (the container width). */
  bytesPerSample: number;
  /** The format tag (after resolving WAVE_FORMAT_EXTENSIBLE's sub-format). */
  formatTag: number;
}

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_ALAW = 0x0006;
const WAVE_FORMAT_MULAW = 0x0007;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

const FORMAT_NAMES: Record<number, string> = {
  0x0002: 'MS ADPCM',
  0x0011: 'IMA ADPCM',
  0x0031: 'GSM 6.10',
  0x0050: 'MPEG',
  0x0055: 'MPEG Layer 3',
  0x00ff: 'AAC',
  0x2000: 'AC-3',
  0xf1ac: 'FLAC',
};

/** Longest run of header bytes (everything before the data chunk) we are willing to buffer. */
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

/** True when the bytes start like a RIFF/RF64/BW64 WAVE file. */
export function looksLikeWav(head: Uint8Array): boolean {
  if (head.length < 12) return false;
  const id = ascii(head, 0);
  return (id === 'RIFF' || id === 'RF64' || id === 'BW64') && ascii(head, 8) === 'WAVE';
}

function ascii(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at], b[at + 1], b[at + 2], b[at + 3]);
}

function u16(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000;
}

function u64(b: Uint8Array, at: number): number {
  return u32(b, at) + u32(b, at + 4) * 0x100000000;
}

function parseFmt(body: Uint8Array, name: string): WavFormat {
  if (body.length < 16) throw new AudioDecodeError('undecodable', name, `WAV fmt chunk is ${body.length} bytes, expected at least 16`);
  let formatTag = u16(body, 0);
  const channels = u16(body, 2);
  const sampleRate = u32(body, 4);
  const blockAlign = u16(body, 12);
  const bitsPerSample = u16(body, 14);
  if (formatTag === WAVE_FORMAT_EXTENSIBLE) {
    if (body.length < 40) throw new AudioDecodeError('undecodable', name, `WAVE_FORMAT_EXTENSIBLE fmt chunk is ${body.length} bytes, expected 40`);
    // The sub-format GUID's first two bytes are the plain format tag (KSDATAFORMAT_SUBTYPE_*).
    formatTag = u16(body, 24);
  }
  if (channels < 1) throw new AudioDecodeError('undecodable', name, 'WAV header declares 0 channels');
  if (sampleRate < 1) throw new AudioDecodeError('undecodable', name, 'WAV header declares a sample rate of 0');
  let encoding: WavEncoding;
  if (formatTag === WAVE_FORMAT_PCM) encoding = 'pcm';
  else if (formatTag === WAVE_FORMAT_IEEE_FLOAT) encoding = 'float';
  else if (formatTag === WAVE_FORMAT_ALAW) encoding = 'alaw';
  else if (formatTag === WAVE_FORMAT_MULAW) encoding = 'ulaw';
  else {
    const what = FORMAT_NAMES[formatTag] ?? `format tag 0x${formatTag.toString(16).padStart(4, '0')}`;
    throw new AudioDecodeError('unsupported', name, `WAV encoding ${what} is not supported by the built-in WAV reader`);
  }
  // Container width: block_align / channels when consistent (12-bit samples in 16-bit words,
  // 24-bit in 32-bit words), otherwise the declared bits rounded up to whole bytes.
  let bytesPerSample = Math.ceil(bitsPerSample / 8);
  if (blockAlign > 0 && blockAlign % channels === 0 && blockAlign / channels >= bytesPerSample) bytesPerSample = blockAlign / channels;
  const ok =
    (encoding === 'pcm' && bytesPerSample >= 1 && bytesPerSample <= 4 && bitsPerSample >= 1) ||
    (encoding === 'float' && (bytesPerSample === 4 || bytesPerSample === 8)) ||
    ((encoding === 'alaw' || encoding === 'ulaw') && bytesPerSample === 1);
  if (!ok) {
    throw new AudioDecodeError('unsupported', name, `WAV ${encoding} with ${bitsPerSample} bits per sample (${bytesPerSample}-byte container) is not supported`);
  }
  return { encoding, channels, sampleRate, bitsPerSample, bytesPerSample, formatTag };
}

// G.711 expansion to 16-bit linear (ITU-T G.711 / the classic Sun reference code).
const ALAW_TABLE = new Float32Array(256);
const ULAW_TABLE = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const a = i ^ 0x55;
  let t = (a & 0x0f) << 4;
  const seg = (a & 0x70) >> 4;
  if (seg === 0) t += 8;
  else if (seg === 1) t += 0x108;
  else t = (t + 0x108) << (seg - 1);
  ALAW_TABLE[i] = (a & 0x80 ? t : -t) / 32768;
  const u = ~i & 0xff;
  let m = ((u & 0x0f) << 3) + 0x84;
  m <<= (u & 0x70) >> 4;
  ULAW_TABLE[i] = (u & 0x80 ? 0x84 - m : m - 0x84) / 32768;
}

/**
 * Converts whole frames of raw data to interleaved float32 samples (libsndfile scaling).
 * `bytes.length` must be a multiple of the frame size.
 */
export function convertSamples(bytes: Uint8Array, fmt: WavFormat): Float32Array {
  const n = bytes.length / fmt.bytesPerSample;
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const w = fmt.bytesPerSample;
  if (fmt.encoding === 'float') {
    if (w === 4) for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
    else for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
  } else if (fmt.encoding === 'alaw') {
    for (let i = 0; i < n; i++) out[i] = ALAW_TABLE[bytes[i]];
  } else if (fmt.encoding === 'ulaw') {
    for (let i = 0; i < n; i++) out[i] = ULAW_TABLE[bytes[i]];
  } else if (w === 1) {
    for (let i = 0; i < n; i++) out[i] = (bytes[i] - 128) / 128;
  } else if (w === 2) {
    for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true) / 32768;
  } else if (w === 3) {
    for (let i = 0, o = 0; i < n; i++, o += 3) {
      const v = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16);
      out[i] = ((v << 8) >> 8) / 8388608;
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true) / 2147483648;
  }
  return out;
}

export interface WavHeader extends WavFormat {
  /** Data bytes when known (declared and plausible); undefined = read to the end. */
  dataBytes?: number;
  /** Where the sample data starts in the stream (bytes). */
  dataOffset: number;
}

/**
 * Frames the data chunk holds: its declared size, else what the stream has after the header
 * (`totalBytes`, when known); undefined when neither is known (a pipe).
 */
export function wavFrameCount(header: WavHeader, totalBytes?: number): number | undefined {
  const frameBytes = header.bytesPerSample * header.channels;
  const bytes = header.dataBytes ?? (totalBytes !== undefined ? Math.max(0, totalBytes - header.dataOffset) : undefined);
  return bytes === undefined ? undefined : Math.floor(bytes / frameBytes);
}

/**
 * Incremental WAV reader. Feed it the file's bytes in order with `push`; each call returns the
 * interleaved float32 samples (whole frames) that became available. `header` is set once the
 * data chunk has been reached. `end()` checks that a data chunk was found.
 */
export class WavStreamReader {
  header: WavHeader | undefined;
  private readonly name: string;
  /** Total stream length when known (files), to detect truncated data chunks. */
  private readonly totalBytes: number | undefined;
  private pending: Uint8Array = new Uint8Array(0);
  /** Bytes consumed before `pending` starts. */
  private consumed = 0;
  private skip = 0;
  private fmt: WavFormat | undefined;
  private rf64DataBytes: number | undefined;
  private started = false;
  private dataLeft = Infinity;
  private frameBytes = 0;

  constructor(name: string, totalBytes?: number) {
    this.name = name;
    this.totalBytes = totalBytes;
  }

  /** True once a data chunk of declared size has been read completely. */
  get finished(): boolean {
    return this.header !== undefined && this.dataLeft <= 0;
  }

  push(chunk: Uint8Array): Float32Array {
    if (this.header) return this.takeData(chunk);
    this.pending = concat(this.pending, chunk);
    this.parseHeader();
    if (!this.header) return EMPTY;
    const rest = this.pending;
    this.pending = new Uint8Array(0);
    return this.takeData(rest);
  }

  /** Call at end of stream; throws when the data chunk was never reached. */
  end(): void {
    if (this.header) return;
    if (!this.started) {
      throw new AudioDecodeError('undecodable', this.name, 'not a WAV file (no RIFF/RF64 WAVE header), or the header is truncated');
    }
    if (!this.fmt) throw new AudioDecodeError('undecodable', this.name, 'WAV file has no fmt chunk');
    throw new AudioDecodeError('undecodable', this.name, 'WAV file has no data chunk (truncated?)');
  }

  private takeData(chunk: Uint8Array): Float32Array {
    let bytes = chunk;
    if (this.dataLeft !== Infinity) {
      if (this.dataLeft <= 0) return EMPTY;
      if (bytes.length > this.dataLeft) bytes = bytes.subarray(0, this.dataLeft);
      this.dataLeft -= bytes.length;
    }
    // Keep a partial frame for the next chunk.
    if (this.pending.length) {
      bytes = concat(this.pending, bytes);
      this.pending = new Uint8Array(0);
    }
    const whole = bytes.length - (bytes.length % this.frameBytes);
    if (whole < bytes.length) this.pending = bytes.slice(whole);
    if (whole === 0) return EMPTY;
    return convertSamples(bytes.subarray(0, whole), this.fmt!);
  }

  private parseHeader(): void {
    const name = this.name;
    const p = this.pending;
    let at = 0;
    if (!this.started) {
      if (p.length < 12) return;
      if (!looksLikeWav(p)) {
        if (ascii(p, 0) === 'RIFX') throw new AudioDecodeError('unsupported', name, 'big-endian WAV (RIFX) is not supported by the built-in WAV reader');
        throw new AudioDecodeError('undecodable', name, 'not a WAV file (no RIFF/RF64 WAVE header)');
      }
      this.started = true;
      at = 12;
    }
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, p.length - at);
        this.skip -= n;
        at += n;
        if (this.skip > 0) break;
      }
      if (p.length - at < 8) break;
      const id = ascii(p, at);
      const size = u32(p, at + 4);
      if (id === 'data') {
        if (!this.fmt) throw new AudioDecodeError('undecodable', name, 'WAV data chunk comes before the fmt chunk');
        const start = this.consumed + at + 8;
        let dataBytes: number | undefined = size;
        if (size === 0xffffffff && this.rf64DataBytes !== undefined) dataBytes = this.rf64DataBytes;
        if (dataBytes === 0 || dataBytes === 0xffffffff) dataBytes = undefined;
        if (dataBytes !== undefined && this.totalBytes !== undefined && start + dataBytes > this.totalBytes) dataBytes = undefined;
        this.header = { ...this.fmt, dataBytes, dataOffset: start };
        this.frameBytes = this.fmt.bytesPerSample * this.fmt.channels;
        this.dataLeft = dataBytes ?? Infinity;
        at += 8;
        this.consumed += at;
        this.pending = p.subarray(at);
        return;
      }
      if (id === 'fmt ' || id === 'ds64') {
        if (p.length - at < 8 + size) {
          if (size > MAX_HEADER_BYTES) throw new AudioDecodeError('undecodable', name, `WAV ${id.trim()} chunk claims ${size} bytes`);
          break; // wait for the rest of the chunk
        }
        const body = p.subarray(at + 8, at + 8 + size);
        if (id === 'fmt ') this.fmt = parseFmt(body, name);
        else if (size >= 16) this.rf64DataBytes = u64(body, 8);
        at += 8 + size + (size & 1);
      } else {
        // Chunks we do not need, padded to an even size.
        at += 8;
        this.skip = size + (size & 1);
      }
    }
    // Keep only the unparsed tail.
    this.consumed += at;
    this.pending = p.subarray(at);
    if (this.pending.length > MAX_HEADER_BYTES) throw new AudioDecodeError('undecodable', name, 'WAV header is implausibly large (no data chunk in the first 64 MiB)');
  }
}

const EMPTY = new Float32Array(0);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

export interface WavData {
  format: WavFormat;
  /** One array per channel. */
  channelData: Float32Array[];
}

/** Decodes a whole in-memory WAV file to planar float32 channels. */
export function decodeWav(bytes: Uint8Array, name = 'WAV data'): WavData {
  const reader = new WavStreamReader(name, bytes.length);
  const interleaved = reader.push(bytes);
  reader.end();
  const fmt = reader.header!;
  const channels = fmt.channels;
  const frames = interleaved.length / channels;
  const channelData: Float32Array[] = [];
  for (let c = 0; c < channels; c++) {
    const ch = new Float32Array(frames);
    for (let f = 0; f < frames; f++) ch[f] = interleaved[f * channels + c];
    channelData.push(ch);
  }
  const { dataBytes: _bytes, dataOffset: _offset, ...format } = fmt;
  return { format, channelData };
}

/**
 * Streams a WAV file from disk in blocks: `onSamples` receives interleaved float32 frames
 * (after `onHeader` has been called with the format and the file's size; it may throw to stop
 * before any sample is read). Async reads keep the event loop free.
 */
export async function readWavFile(
  path: string,
  handlers: { onHeader: (fmt: WavHeader, fileBytes: number) => void; onSamples: (interleaved: Float32Array) => void },
  blockBytes = 256 * 1024,
): Promise<WavHeader> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new AudioDecodeError('undecodable', path, `cannot open file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const size = (await fh.stat()).size;
    const reader = new WavStreamReader(path, size);
    const buf = new Uint8Array(blockBytes);
    let announced = false;
    for (let pos = 0; pos < size; ) {
      const { bytesRead } = await fh.read(buf, 0, blockBytes, pos);
      if (bytesRead <= 0) break;
      pos += bytesRead;
      // push() may keep references to the bytes it was given: hand it a copy of the block.
      const samples = reader.push(buf.slice(0, bytesRead));
      if (reader.header && !announced) {
        announced = true;
        handlers.onHeader(reader.header, size);
      }
      if (samples.length) handlers.onSamples(samples);
      if (reader.finished) break; // chunks after the audio data (LIST, id3, ...) are not needed
    }
    reader.end();
    return reader.header!;
  } finally {
    await fh.close();
  }
}

/**
 * Encodes planar channels as a canonical WAV file (RIFF, fmt, data): IEEE float32, or 16-bit
 * PCM rounded and clipped the way libsndfile writes it (x·32767, saturating).
 * Handy for dumping segments and for tests.
 */
export function encodeWav(channels: Float32Array | readonly Float32Array[], sampleRate: number, format: 'float32' | 'pcm16' = 'float32'): Uint8Array {
  const planar = channels instanceof Float32Array ? [channels] : channels;
  if (planar.length < 1) throw new Error('encodeWav: no channels');
  const frames = planar[0].length;
  for (const c of planar) if (c.length !== frames) throw new Error('encodeWav: channels differ in length');
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) throw new Error(`encodeWav: bad sample rate ${sampleRate}`);
  const width = format === 'float32' ? 4 : 2;
  const dataBytes = frames * planar.length * width;
  const out = new Uint8Array(44 + dataBytes);
  const dv = new DataView(out.buffer);
  const tag = (at: number, s: string): void => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  tag(0, 'RIFF');
  dv.setUint32(4, 36 + dataBytes, true);
  tag(8, 'WAVE');
  tag(12, 'fmt ');
  dv.setUint32(16, 16, true);
  dv.setUint16(20, format === 'float32' ? WAVE_FORMAT_IEEE_FLOAT : WAVE_FORMAT_PCM, true);
  dv.setUint16(22, planar.length, true);
  dv.setUint32(24, sampleRate, true);
  dv.setUint32(28, sampleRate * planar.length * width, true);
  dv.setUint16(32, planar.length * width, true);
  dv.setUint16(34, width * 8, true);
  tag(36, 'data');
  dv.setUint32(40, dataBytes, true);
  let o = 44;
  for (let f = 0; f < frames; f++) {
    for (const c of planar) {
      if (format === 'float32') dv.setFloat32(o, c[f], true);
      else dv.setInt16(o, Math.max(-32768, Math.min(32767, Math.round(c[f] * 32767))), true);
      o += width;
    }
  }
  return out;
}
