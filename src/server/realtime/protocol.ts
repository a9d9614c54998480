/**
 * The client side of `/v1/realtime`: parsing and validating the events a client sends, in the
 * two dialects the endpoint speaks, into one normalised form the connection acts on.
 *
 * - OpenAI's Realtime API in transcription mode: `session.update` with `session.type:
 *   "transcription"` (GA shape, `audio.input.{format, transcription, turn_detection}`) or the
 *   beta `transcription_session.update` (`input_audio_format`, `input_audio_transcription`,
 *   `turn_detection`); `input_audio_buffer.append|commit|clear`.
 * - vLLM's dialect for Qwen3-ASR: `session.update` with a top-level `model` and no `session`
 *   object; 16 kHz PCM16; `input_audio_buffer.commit` starts decoding and `commit {final: true}`
 *   ends the audio.
 *
 * A client's dialect is the one its first `session.update` is written in. Nothing here knows
 * about sockets or the pipeline, so every rule is testable on plain strings.
 */
import type { LiveAudioFormat } from '../../pipeline/types.ts';

export type Dialect = 'openai' | 'vllm';

/** OpenAI's limit on the audio of one `input_audio_buffer.append` (decoded bytes). */
export const MAX_APPEND_BYTES = 15 * 1024 * 1024;
/**
 * Largest WebSocket message read at all. Above MAX_APPEND_BYTES of audio in base64 plus the
 * JSON around it, so an oversized append still arrives and is answered with an error event;
 * a message beyond this closes the socket (1009) before it is buffered.
 */
export const MAX_MESSAGE_BYTES = 24 * 1024 * 1024;
/** Longest prompt (context) accepted, as on `/v1/audio/transcriptions`. */
export const MAX_PROMPT_CHARS = 4000;

/** PCM16 rates `audio/pcm` accepts: OpenAI's 24 kHz, and 16 kHz, the model's own rate (no resampling). */
export const PCM_RATES: readonly number[] = [24000, 16000];
/** OpenAI's server_vad defaults. */
export const DEFAULT_TURN_DETECTION: TurnDetection = { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 };
/** The rate vLLM's dialect streams at. */
export const VLLM_FORMAT: LiveAudioFormat = { type: 'pcm16', rate: 16000 };

/** Server VAD as the session runs it (semantic_vad arrives here as server_vad). */
export interface TurnDetection {
  type: 'server_vad';
  threshold: number;
  prefix_padding_ms: number;
  silence_duration_ms: number;
}

/** The fields of one session update that were present; absent ones keep their current value. */
export interface SessionPatch {
  format?: LiveAudioFormat;
  /** Transcription model name: echoed, otherwise ignored (this server runs one model). */
  model?: string;
  /** The language hint as given ("" = detect); resolved against the checkpoint by the connection. */
  language?: string;
  /** Where the language was given, for an error's `param`. */
  languageParam?: string;
  prompt?: string;
  turnDetection?: TurnDetection | null;
}

export type ClientEvent =
  | { type: 'session.update'; dialect: 'openai'; legacy: boolean; eventId?: string; patch: SessionPatch }
  | { type: 'session.update'; dialect: 'vllm'; eventId?: string; model: string; patch: SessionPatch }
  | { type: 'input_audio_buffer.append'; eventId?: string; audio: Buffer }
  | { type: 'input_audio_buffer.commit'; eventId?: string; final: boolean }
  | { type: 'input_audio_buffer.clear'; eventId?: string };

/** A client mistake: becomes an `error` event; the socket stays open. */
export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    /** The client's `event_id` of the event at fault, when it sent one. */
    readonly eventId: string | null = null,
    readonly type: 'invalid_request_error' | 'server_error' = 'invalid_request_error',
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Events of OpenAI's conversation (speech-to-speech) mode: named so the refusal says why. */
const CONVERSATION_EVENTS = new Set([
  'conversation.item.create',
  'conversation.item.delete',
  'conversation.item.retrieve',
  'conversation.item.truncate',
  'response.create',
  'response.cancel',
  'output_audio_buffer.clear',
]);

const CLIENT_EVENTS = ['session.update', 'transcription_session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear'];

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** Parses one text message. Throws ProtocolError for anything that is not a valid client event. */
export function parseClientEvent(text: string): ClientEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError('invalid_json', `The message is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new ProtocolError('invalid_event', 'A client event must be a JSON object with a "type".');
  const eventId = typeof raw.event_id === 'string' ? raw.event_id : undefined;
  const fail = (code: string, message: string, param: string | null = null) => new ProtocolError(code, message, param, eventId ?? null);
  const type = raw.type;
  if (typeof type !== 'string') throw fail('invalid_event', 'The event has no "type" string.', 'type');
  switch (type) {
    case 'session.update':
      if (raw.session !== undefined) return { type, dialect: 'openai', legacy: false, eventId, patch: gaSession(raw.session, fail) };
      if (typeof raw.model === 'string') return { type, dialect: 'vllm', eventId, model: raw.model, patch: vllmSession(raw, fail) };
      throw fail(
        'missing_required_parameter',
        'session.update needs a "session" object (OpenAI: {"type": "transcription", "audio": {...}}) or a top-level "model" (vLLM).',
        'session',
      );
    case 'transcription_session.update':
      return { type: 'session.update', dialect: 'openai', legacy: true, eventId, patch: legacySession(raw.session, fail) };
    case 'input_audio_buffer.append':
      return { type, eventId, audio: base64Audio(raw.audio, fail) };
    case 'input_audio_buffer.commit':
      if (raw.final !== undefined && typeof raw.final !== 'boolean') throw fail('invalid_type', `"final" must be a boolean, got ${show(raw.final)}.`, 'final');
      return { type, eventId, final: raw.final === true };
    case 'input_audio_buffer.clear':
      return { type, eventId };
  }
  if (CONVERSATION_EVENTS.has(type)) {
    throw fail('unsupported_event', `'${type}' belongs to conversation sessions; this server runs transcription sessions only.`, 'type');
  }
  throw fail('invalid_event_type', `Unknown event type '${type.slice(0, 80)}'. Supported: ${CLIENT_EVENTS.join(', ')}.`, 'type');
}

type Fail = (code: string, message: string, param?: string | null) => ProtocolError;

/** The audio of an append: standard base64, at most MAX_APPEND_BYTES once decoded. */
function base64Audio(audio: unknown, fail: Fail): Buffer {
  if (typeof audio !== 'string') throw fail('missing_required_parameter', 'input_audio_buffer.append needs "audio": base64-encoded audio bytes.', 'audio');
  // Checked on the text's length, before any decoding: 4 characters carry 3 bytes.
  const bytes = Math.floor((audio.length * 3) / 4) - (audio.endsWith('==') ? 2 : audio.endsWith('=') ? 1 : 0);
  if (bytes > MAX_APPEND_BYTES) {
    throw fail(
      'audio_too_large',
      `The appended audio is ${(bytes / 1048576).toFixed(1)} MiB; one input_audio_buffer.append carries at most ${MAX_APPEND_BYTES / 1048576} MiB. Send it in smaller pieces.`,
      'audio',
    );
  }
  // Buffer.from skips characters outside the alphabet silently: a corrupted message would
  // become noise in the transcript instead of an error.
  if (audio.length % 4 !== 0 || !BASE64.test(audio)) throw fail('invalid_base64', '"audio" is not valid base64 (standard alphabet, padded to a multiple of 4 characters).', 'audio');
  return Buffer.from(audio, 'base64');
}

/** GA: `session: {type: "transcription", audio: {input: {format, transcription, turn_detection, noise_reduction}}, include}`. */
function gaSession(session: unknown, fail: Fail): SessionPatch {
  if (!isObject(session)) throw fail('invalid_type', `"session" must be an object, got ${show(session)}.`, 'session');
  if (session.type !== undefined && session.type !== 'transcription') {
    throw fail('invalid_value', `This server runs transcription sessions only: session.type must be "transcription", got ${show(session.type)}.`, 'session.type');
  }
  include(session.include, 'session.include', fail);
  const patch: SessionPatch = {};
  if (session.audio === undefined) return patch;
  if (!isObject(session.audio)) throw fail('invalid_type', `"session.audio" must be an object, got ${show(session.audio)}.`, 'session.audio');
  if (session.audio.output !== undefined) throw fail('invalid_value', 'Transcription sessions have no audio output: remove session.audio.output.', 'session.audio.output');
  const input = session.audio.input;
  if (input === undefined) return patch;
  if (!isObject(input)) throw fail('invalid_type', `"session.audio.input" must be an object, got ${show(input)}.`, 'session.audio.input');
  const at = 'session.audio.input';
  if (input.format !== undefined) patch.format = gaFormat(input.format, `${at}.format`, fail);
  if (input.transcription !== undefined) transcription(input.transcription, `${at}.transcription`, patch, fail);
  if (input.turn_detection !== undefined) patch.turnDetection = turnDetection(input.turn_detection, `${at}.turn_detection`, fail);
  noiseReduction(input.noise_reduction, `${at}.noise_reduction`, fail);
  return patch;
}

/** Beta: `session: {input_audio_format, input_audio_transcription, turn_detection, input_audio_noise_reduction, include}`. */
function legacySession(session: unknown, fail: Fail): SessionPatch {
  if (!isObject(session)) throw fail('invalid_type', `"session" must be an object, got ${show(session)}.`, 'session');
  include(session.include, 'session.include', fail);
  const patch: SessionPatch = {};
  const format = session.input_audio_format;
  if (format !== undefined) {
    const formats: Record<string, LiveAudioFormat> = { pcm16: { type: 'pcm16', rate: 24000 }, g711_ulaw: { type: 'pcmu' }, g711_alaw: { type: 'pcma' } };
    if (typeof format !== 'string' || !(format in formats)) {
      throw fail('invalid_value', `Unsupported input_audio_format ${show(format)}. Supported: pcm16 (24 kHz), g711_ulaw, g711_alaw.`, 'session.input_audio_format');
    }
    patch.format = formats[format];
  }
  if (session.input_audio_transcription !== undefined && session.input_audio_transcription !== null) {
    transcription(session.input_audio_transcription, 'session.input_audio_transcription', patch, fail);
  }
  if (session.turn_detection !== undefined) patch.turnDetection = turnDetection(session.turn_detection, 'session.turn_detection', fail);
  noiseReduction(session.input_audio_noise_reduction, 'session.input_audio_noise_reduction', fail);
  return patch;
}

/** vLLM: `{type: "session.update", model, language?}`; the audio is always 16 kHz PCM16, decoded without VAD. */
function vllmSession(raw: Json, fail: Fail): SessionPatch {
  const patch: SessionPatch = { format: VLLM_FORMAT, turnDetection: null, model: raw.model as string };
  if (raw.language !== undefined && raw.language !== null) {
    if (typeof raw.language !== 'string') throw fail('invalid_type', `"language" must be a string, got ${show(raw.language)}.`, 'language');
    patch.language = raw.language;
    patch.languageParam = 'language';
  }
  return patch;
}

function gaFormat(format: unknown, at: string, fail: Fail): LiveAudioFormat {
  if (!isObject(format) || typeof format.type !== 'string') throw fail('invalid_type', `"${at}" must be an object with a "type", got ${show(format)}.`, at);
  switch (format.type) {
    case 'audio/pcm': {
      const rate = format.rate ?? 24000;
      if (typeof rate !== 'number' || !PCM_RATES.includes(rate)) {
        throw fail('invalid_value', `Unsupported ${at}.rate ${show(rate)}: audio/pcm is 16-bit mono little-endian at ${PCM_RATES.join(' or ')} Hz.`, `${at}.rate`);
      }
      return { type: 'pcm16', rate };
    }
    case 'audio/pcmu':
      return { type: 'pcmu' };
    case 'audio/pcma':
      return { type: 'pcma' };
    default:
      throw fail('invalid_value', `Unsupported audio format ${show(format.type)}. Supported: audio/pcm (24000 or 16000 Hz), audio/pcmu, audio/pcma.`, `${at}.type`);
  }
}

function transcription(t: unknown, at: string, patch: SessionPatch, fail: Fail): void {
  // `transcription: null` turns transcription off in OpenAI's API; here it is the service itself.
  if (t === null) throw fail('invalid_value', `${at} cannot be null: transcription is what this server does.`, at);
  if (!isObject(t)) throw fail('invalid_type', `"${at}" must be an object, got ${show(t)}.`, at);
  if (t.model !== undefined && t.model !== null) {
    if (typeof t.model !== 'string') throw fail('invalid_type', `"${at}.model" must be a string.`, `${at}.model`);
    patch.model = t.model;
  }
  if (t.language !== undefined && t.language !== null) {
    if (typeof t.language !== 'string') throw fail('invalid_type', `"${at}.language" must be a string, got ${show(t.language)}.`, `${at}.language`);
    patch.language = t.language;
    patch.languageParam = `${at}.language`;
  } else if (t.language === null) {
    patch.language = '';
  }
  if (t.prompt !== undefined && t.prompt !== null) {
    if (typeof t.prompt !== 'string') throw fail('invalid_type', `"${at}.prompt" must be a string.`, `${at}.prompt`);
    if (t.prompt.length > MAX_PROMPT_CHARS) throw fail('string_above_max_length', `"${at}.prompt" is longer than ${MAX_PROMPT_CHARS} characters.`, `${at}.prompt`);
    patch.prompt = t.prompt;
  } else if (t.prompt === null) {
    patch.prompt = '';
  }
}

/** server_vad as given (defaults filled in); semantic_vad runs as server_vad with OpenAI's defaults; null: the client commits. */
function turnDetection(td: unknown, at: string, fail: Fail): TurnDetection | null {
  if (td === null) return null;
  if (!isObject(td)) throw fail('invalid_type', `"${at}" must be an object or null, got ${show(td)}.`, at);
  const type = td.type ?? 'server_vad';
  // The speech-end decision of semantic_vad needs a turn model this server does not have; its
  // eagerness only shifts when a turn ends, so plain silence detection is the nearest behaviour.
  if (type === 'semantic_vad') {
    if (td.eagerness !== undefined && !['low', 'medium', 'high', 'auto'].includes(td.eagerness as string)) {
      throw fail('invalid_value', `Unsupported ${at}.eagerness ${show(td.eagerness)}. Supported: low, medium, high, auto.`, `${at}.eagerness`);
    }
    return { ...DEFAULT_TURN_DETECTION };
  }
  if (type !== 'server_vad') throw fail('invalid_value', `Unsupported ${at}.type ${show(type)}. Supported: server_vad, semantic_vad (runs as server_vad), or null.`, `${at}.type`);
  const number = (key: string, min: number, max: number, integer: boolean, fallback: number, exclusive = false): number => {
    const v = td[key];
    if (v === undefined || v === null) return fallback;
    const inside = typeof v === 'number' && Number.isFinite(v) && (exclusive ? v > min && v < max : v >= min && v <= max);
    if (!inside || (integer && !Number.isInteger(v))) {
      const range = exclusive ? `between ${min} and ${max} (exclusive)` : `from ${min} to ${max}`;
      throw fail('invalid_value', `${at}.${key} must be ${integer ? 'an integer' : 'a number'} ${range}, got ${show(v)}.`, `${at}.${key}`);
    }
    return v as number;
  };
  number('idle_timeout_ms', 0, 3_600_000, true, 0);
  // The ranges the pipeline's VAD takes: 0 or 1 would make every window speech or none.
  return {
    type: 'server_vad',
    threshold: number('threshold', 0, 1, false, DEFAULT_TURN_DETECTION.threshold, true),
    prefix_padding_ms: number('prefix_padding_ms', 0, 5_000, true, DEFAULT_TURN_DETECTION.prefix_padding_ms),
    silence_duration_ms: number('silence_duration_ms', 100, 10_000, true, DEFAULT_TURN_DETECTION.silence_duration_ms),
  };
}

/** Accepted and not applied: the audio reaches the model as sent. */
function noiseReduction(nr: unknown, at: string, fail: Fail): void {
  if (nr === undefined || nr === null) return;
  if (!isObject(nr) || (nr.type !== undefined && nr.type !== 'near_field' && nr.type !== 'far_field')) {
    throw fail('invalid_value', `${at} must be null or {"type": "near_field" | "far_field"}, got ${show(nr)}.`, at);
  }
}

/** `item.input_audio_transcription.logprobs` is accepted; no log-probabilities are returned. */
function include(list: unknown, at: string, fail: Fail): void {
  if (list === undefined || list === null) return;
  if (!Array.isArray(list) || list.some((v) => v !== 'item.input_audio_transcription.logprobs')) {
    throw fail('invalid_value', `${at} may only list "item.input_audio_transcription.logprobs", got ${show(list)}.`, at);
  }
}
