/**
 * The length of an MP4-family file's (mp4, m4a, mov, 3gp) first audio track, read from its
 * index (moov → trak → mdia: mdhd's duration / timescale for the track whose hdlr is 'soun'),
 * without decoding anything.
 *
 * Why: the embedded decoder cannot decode such a file until it has its index, which encoders
 * usually write after the audio, so the whole file decodes in one piece before its length is
 * known. An hour of silent AAC is about 230 kB; reading the index first lets the length limit
 * refuse it before any decoding. Only top-level boxes are walked on disk (8-byte headers, with
 * seeks); the moov box, small next to the media, is read whole when it is under MAX_MOOV_BYTES.
 * Anything unexpected (no moov, fragmented files whose durations are 0, odd box sizes) gives
 * undefined: the caller then relies on the limit checks made while decoding.
 */
import { open } from 'node:fs/promises';

/** Larger indexes are not read (a 10-hour file's moov is a few MB). */
const MAX_MOOV_BYTES = 64 * 1024 * 1024;

interface Box {
  type: string;
  /** Body start and end (after the header). */
  start: number;
  end: number;
}

function* boxes(b: Uint8Array, from: number, to: number): Generator<Box> {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = from;
  while (at + 8 <= to) {
    let size = dv.getUint32(at);
    const type = String.fromCharCode(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
    let header = 8;
    if (size === 1) {
      if (at + 16 > to) return;
      size = Number(dv.getBigUint64(at + 8));
      header = 16;
    } else if (size === 0) {
      size = to - at;
    }
    if (size < header || at + size > to) return;
    yield { type, start: at + header, end: at + size };
    at += size;
  }
}

function child(b: Uint8Array, parent: Box, type: string): Box | undefined {
  for (const box of boxes(b, parent.start, parent.end)) if (box.type === type) return box;
  return undefined;
}

/** Seconds of the first 'soun' track described by a moov box's bytes; undefined when not found. */
export function audioSecondsFromMoov(moov: Uint8Array): number | undefined {
  const dv = new DataView(moov.buffer, moov.byteOffset, moov.byteLength);
  for (const trak of boxes(moov, 0, moov.length)) {
    if (trak.type !== 'trak') continue;
    const mdia = child(moov, trak, 'mdia');
    if (!mdia) continue;
    const hdlr = child(moov, mdia, 'hdlr');
    const mdhd = child(moov, mdia, 'mdhd');
    if (!hdlr || !mdhd || hdlr.end - hdlr.start < 12) continue;
    const handler = String.fromCharCode(...moov.subarray(hdlr.start + 8, hdlr.start + 12));
    if (handler !== 'soun') continue;
    const version = moov[mdhd.start];
    const need = version === 1 ? 32 : 20;
    if (mdhd.end - mdhd.start < need) return undefined;
    const timescale = version === 1 ? dv.getUint32(mdhd.start + 20) : dv.getUint32(mdhd.start + 12);
    const duration = version === 1 ? Number(dv.getBigUint64(mdhd.start + 24)) : dv.getUint32(mdhd.start + 16);
    // 0 (fragmented files) and all-ones ("unknown") say nothing.
    if (timescale === 0 || duration === 0 || (version === 0 && duration === 0xffffffff)) return undefined;
    return duration / timescale;
  }
  return undefined;
}

/** True when the bytes start like an ISO BMFF file (an 'ftyp' box first). */
export function looksLikeMp4(head: Uint8Array): boolean {
  return head.length >= 8 && head[4] === 0x66 && head[5] === 0x74 && head[6] === 0x79 && head[7] === 0x70;
}

/** The first audio track's length in seconds from the file's index; undefined when it cannot be read. */
export async function mp4AudioSeconds(path: string): Promise<number | undefined> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const header = new Uint8Array(16);
    const dv = new DataView(header.buffer);
    for (let at = 0; at + 8 <= size; ) {
      const { bytesRead } = await fh.read(header, 0, 16, at);
      if (bytesRead < 8) return undefined;
      let boxSize = dv.getUint32(0);
      let headerBytes = 8;
      if (boxSize === 1) {
        if (bytesRead < 16) return undefined;
        boxSize = Number(dv.getBigUint64(8));
        headerBytes = 16;
      } else if (boxSize === 0) {
        boxSize = size - at;
      }
      if (boxSize < headerBytes || at + boxSize > size) return undefined;
      const type = String.fromCharCode(header[4], header[5], header[6], header[7]);
      if (type === 'moov') {
        const bodyBytes = boxSize - headerBytes;
        if (bodyBytes > MAX_MOOV_BYTES) return undefined;
        const moov = new Uint8Array(bodyBytes);
        const read = await fh.read(moov, 0, bodyBytes, at + headerBytes);
        return read.bytesRead === bodyBytes ? audioSecondsFromMoov(moov) : undefined;
      }
      at += boxSize;
    }
    return undefined;
  } finally {
    await fh.close();
  }
}
