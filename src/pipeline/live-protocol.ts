/**
 * Messages between a live session's proxy (live-session.ts, the caller's thread) and its
 * stream in the engine thread (live-stream.ts). `id` is the session's; `request` numbers the
 * calls that answer (commit).
 */
import type { LiveEvent, LiveOptions } from './types.ts';

export interface LiveErrorPayload {
  code: string;
  message: string;
}

export type ToLiveWorker =
  | { type: 'live.open'; id: number; options: LiveOptions }
  | { type: 'live.configure'; id: number; options: Partial<LiveOptions> }
  | { type: 'live.append'; id: number; audio: Uint8Array }
  | { type: 'live.commit'; id: number; request: number }
  | { type: 'live.clear'; id: number }
  | { type: 'live.close'; id: number };

export type FromLiveWorker =
  | { type: 'live.event'; id: number; event: LiveEvent }
  | { type: 'live.reply'; id: number; request: number; utterance?: number; error?: LiveErrorPayload }
  /** A piece of audio the stream could not take (its session gets the error). */
  | { type: 'live.error'; id: number; error: LiveErrorPayload };
