/**
 * The one error type of the audio front end's decoding side. Callers map `code` to their own
 * errors (HTTP 400, PipelineError('audio_empty' | 'audio_undecodable'), CLI exit codes).
 *
 * - `empty`: nothing to transcribe: a 0-byte file, a container without an audio stream, or
 *   an audio stream holding zero samples.
 * - `undecodable`: the bytes are not audio any available decoder can read (text, random bytes,
 *   a corrupt or truncated header, a decoder that failed or timed out, an unreadable file).
 * - `unsupported`: the format was recognised but its encoding is one no available decoder
 *   handles (e.g. an ADPCM WAV on a machine without ffmpeg).
 */
export type AudioDecodeErrorCode = 'empty' | 'undecodable' | 'unsupported';

export class AudioDecodeError extends Error {
  constructor(
    readonly code: AudioDecodeErrorCode,
    /** The file (or a description of the source) the message is about. */
    readonly file: string,
    message: string,
    /** `timedOut`: a decoder was killed at its time limit (another one would likely hang too). */
    readonly details: { timedOut?: boolean } = {},
  ) {
    super(`${file}: ${message}`);
    this.name = 'AudioDecodeError';
  }
}
