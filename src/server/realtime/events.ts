/**
 * The server side of `/v1/realtime`: the events sent to a client, in OpenAI's shapes (GA and
 * beta session objects) and vLLM's. Every event carries a unique `event_id` (vLLM clients
 * ignore it); ids are a random per-connection prefix and a counter, so they are unique without
 * a random draw per event.
 */
import { randomBytes } from 'node:crypto';
import type { LiveAudioFormat } from '../../pipeline/types.ts';
import type { Dialect, ProtocolError, TurnDetection } from './protocol.ts';

/** The effective configuration of a connection, as echoed in session objects. */
export interface SessionState {
  id: string;
  format: LiveAudioFormat;
  /** Transcription model named by the client (echoed), else the server's. */
  model: string;
  /** Language hint as the client gave it ("" = detect). */
  language: string;
  prompt: string;
  turnDetection: TurnDetection | null;
}

export type ServerEvent = { type: string; event_id: string } & Record<string, unknown>;

/** `prefix_` and 16 random URL-safe characters. */
export function randomId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url')}`;
}

/** Ids of one connection: events and items. */
export class IdSource {
  private readonly base = randomBytes(9).toString('base64url');
  private events = 0;

  event(): string {
    return `event_${this.base}${(++this.events).toString(36)}`;
  }

  /** The item id of utterance `n` (the pipeline numbers them from 1). */
  item(n: number): string {
    return `item_${this.base}${n.toString(36).padStart(3, '0')}`;
  }
}

function gaFormat(format: LiveAudioFormat): Record<string, unknown> {
  return format.type === 'pcm16' ? { type: 'audio/pcm', rate: format.rate } : { type: `audio/${format.type}` };
}

function legacyFormat(format: LiveAudioFormat): string {
  return format.type === 'pcm16' ? 'pcm16' : format.type === 'pcmu' ? 'g711_ulaw' : 'g711_alaw';
}

/** GA transcription session object (`session.created`, `session.updated`). */
export function gaSessionObject(s: SessionState): Record<string, unknown> {
  return {
    type: 'transcription',
    object: 'realtime.transcription_session',
    id: s.id,
    audio: {
      input: {
        format: gaFormat(s.format),
        // Not applied: the audio reaches the model as sent.
        noise_reduction: null,
        transcription: { model: s.model, language: s.language || null, prompt: s.prompt },
        turn_detection: s.turnDetection,
      },
    },
    include: [],
  };
}

/** Beta transcription session object (`transcription_session.updated`). */
export function legacySessionObject(s: SessionState): Record<string, unknown> {
  return {
    id: s.id,
    object: 'realtime.transcription_session',
    modalities: ['text'],
    input_audio_format: legacyFormat(s.format),
    input_audio_transcription: { model: s.model, language: s.language || null, prompt: s.prompt },
    turn_detection: s.turnDetection,
    input_audio_noise_reduction: null,
    include: [],
  };
}

/** Builds the events of one connection. */
export class EventBuilder {
  readonly ids = new IdSource();

  private ev(type: string, fields: Record<string, unknown> = {}): ServerEvent {
    return { type, event_id: this.ids.event(), ...fields };
  }

  /**
   * Sent on connect, before the dialect is known: OpenAI's shape (`session`) with vLLM's
   * top-level `id` and `created`, which each kind of client reads and the other ignores.
   */
  sessionCreated(s: SessionState): ServerEvent {
    return this.ev('session.created', { session: gaSessionObject(s), id: s.id, created: Math.floor(Date.now() / 1000) });
  }

  sessionUpdated(s: SessionState, legacy: boolean): ServerEvent {
    return legacy ? this.ev('transcription_session.updated', { session: legacySessionObject(s) }) : this.ev('session.updated', { session: gaSessionObject(s) });
  }

  speechStarted(item: string, audioStartMs: number): ServerEvent {
    return this.ev('input_audio_buffer.speech_started', { audio_start_ms: audioStartMs, item_id: item });
  }

  speechStopped(item: string, audioEndMs: number): ServerEvent {
    return this.ev('input_audio_buffer.speech_stopped', { audio_end_ms: audioEndMs, item_id: item });
  }

  committed(item: string, previous: string | null): ServerEvent {
    return this.ev('input_audio_buffer.committed', { item_id: item, previous_item_id: previous });
  }

  cleared(): ServerEvent {
    return this.ev('input_audio_buffer.cleared');
  }

  delta(item: string, delta: string): ServerEvent {
    return this.ev('conversation.item.input_audio_transcription.delta', { item_id: item, content_index: 0, delta });
  }

  completed(item: string, transcript: string, seconds: number): ServerEvent {
    return this.ev('conversation.item.input_audio_transcription.completed', {
      item_id: item,
      content_index: 0,
      transcript,
      usage: { type: 'duration', seconds: Math.round(seconds * 1000) / 1000 },
    });
  }

  failed(item: string, code: string, message: string): ServerEvent {
    return this.ev('conversation.item.input_audio_transcription.failed', {
      item_id: item,
      content_index: 0,
      error: { type: 'server_error', code, message, param: null },
    });
  }

  /** vLLM: text as it is decoded. */
  vllmDelta(delta: string): ServerEvent {
    return this.ev('transcription.delta', { delta });
  }

  /** vLLM: the end of the audio's transcription. */
  vllmDone(text: string, seconds: number): ServerEvent {
    return this.ev('transcription.done', { text, usage: { type: 'duration', seconds: Math.round(seconds * 1000) / 1000 } });
  }

  /** An `error` event in the dialect's shape: OpenAI's `{error: {type, code, message, param, event_id}}`, vLLM's `{error: message, code}`. */
  error(err: Pick<ProtocolError, 'code' | 'message' | 'param' | 'eventId' | 'type'>, dialect: Dialect): ServerEvent {
    if (dialect === 'vllm') return this.ev('error', { error: err.message, code: err.code });
    return this.ev('error', { error: { type: err.type, code: err.code, message: err.message, param: err.param, event_id: err.eventId } });
  }
}
