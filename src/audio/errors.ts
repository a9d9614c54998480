/**
 * The one error type of the audio front end's decoding side. Callers map `code` to their own
 * errors (HTTP 400/413, PipelineError('audio_empty' | 'audio_undecodable' | 'audio_too_long'),
 * CLI exit codes).
 *
 * - `empty`: nothing to transcribe: a 0-byte file, a container without an audio stream, or
 *   an audio stream holding zero samples.
 * - `undecodable`: the bytes are not audio any available decoder can read (text, random bytes,
 *   a corrupt or truncated header, a decoder that failed or timed out, an unreadable file).
 * - `unsupported`: the format was recognised but its encoding is one no available decoder
 *   handles (e.g. an ADPCM WAV on a machine without ffmpeg), or its sample rate is below
 *   MIN_SOURCE_SAMPLE_RATE (normalize.ts explains the floor).
 * - `too_long`: the decoded audio would last longer than the caller's `maxSeconds`; decoding
 *   stopped as soon as it passed the limit (or before it began, when a header said so).
 */
export type AudioDecodeErrorCode = 'empty' | 'undecodable' | 'unsupported' | 'too_long';

export interface AudioDecodeErrorDetails {
  /** A decoder was killed at its time limit (another one would likely hang too). */
  timedOut?: boolean;
  /**
   * The verdict is about the audio itself, not about one decoder (a sample rate below the floor,
   * audio past the length limit): trying another decoder cannot change it.
   */
  conclusive?: boolean;
  /** `too_long`: the limit in seconds that was passed. */
  limitSeconds?: number;
  /** The source sample rate, where it is the reason for the error. */
  sampleRate?: number;
}

export class AudioDecodeError extends Error {
  constructor(
    readonly code: AudioDecodeErrorCode,
    /** The file (or a description of the source) the message is about. */
    readonly file: string,
    message: string,
    readonly details: AudioDecodeErrorDetails = {},
  ) {
    super(`${file}: ${message}`);
    this.name = 'AudioDecodeError';
  }
}

/** Shortest spelling of a limit in seconds, with hours or minutes beside it when it is a whole number of them. */
function describeSeconds(seconds: number): string {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds} s (${seconds / 3600} h)`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds} s (${seconds / 60} min)`;
  return `${seconds} s`;
}

/**
 * The `too_long` error. `seconds` is the audio's full length when a header gave it, undefined
 * when decoding was stopped at the limit (the rest was never decoded).
 */
export function audioTooLongError(file: string, limitSeconds: number, seconds?: number): AudioDecodeError {
  const length = seconds !== undefined ? `lasts ${seconds.toFixed(1)} s, longer than` : 'is longer than';
  const stopped = seconds !== undefined ? 'it was not decoded' : `decoding stopped at ${describeSeconds(limitSeconds)}`;
  return new AudioDecodeError(
    'too_long',
    file,
    `the audio ${length} the limit of ${describeSeconds(limitSeconds)} set by MAX_AUDIO_SECONDS; ${stopped}`,
    { conclusive: true, limitSeconds },
  );
}

/**
 * Refuses a source rate below `floor` (normalize.ts MIN_SOURCE_SAMPLE_RATE explains it): a
 * conclusive 'unsupported' naming the rate.
 */
export function checkSourceRate(file: string, sampleRate: number, floor: number): void {
  if (sampleRate >= floor) return;
  throw new AudioDecodeError(
    'unsupported',
    file,
    `its sample rate of ${sampleRate} Hz is below the ${floor} Hz minimum (no speech recording is sampled that slowly; a header claiming it is corrupt or hostile)`,
    { conclusive: true, sampleRate },
  );
}
