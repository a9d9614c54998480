/**
 * The engine thread's side of live sessions: one LiveStream per open session, fed by the
 * messages of live-protocol.ts. The Silero VAD model is loaded when a session first uses
 * server turn detection, whatever the file pipeline's VAD setting.
 */
import type { AsrModel } from '../engine/asr/asr-model.ts';
import { SileroVad } from '../engine/vad/silero-vad.ts';
import { LiveStream } from './live-stream.ts';
import type { FromLiveWorker, ToLiveWorker } from './live-protocol.ts';
import type { LiveLimits, TranscriptionResult } from './types.ts';

export interface LiveWorkerContext {
  asr: () => AsrModel | undefined;
  /** The loaded VAD model, if the pipeline loaded one. */
  vad: () => SileroVad | undefined;
  limits: () => LiveLimits;
  transcribe: (samples: Float32Array, opts: { language?: string; context?: string; signal: AbortSignal }) => Promise<TranscriptionResult>;
  send: (msg: FromLiveWorker) => void;
  log: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

const streams = new Map<number, LiveStream>();
let ownVad: Promise<SileroVad> | undefined;

function errorPayload(err: unknown): { code: string; message: string } {
  const e = err as Error & { code?: string };
  return { code: e?.code ?? 'internal', message: e?.message ?? String(err) };
}

export function handleLiveMessage(msg: ToLiveWorker, ctx: LiveWorkerContext): void {
  const stream = streams.get(msg.id);
  switch (msg.type) {
    case 'live.open': {
      const asr = ctx.asr();
      if (!asr) {
        ctx.send({ type: 'live.error', id: msg.id, error: { code: 'model_not_ready', message: 'The model is not loaded yet.' } });
        return;
      }
      streams.set(
        msg.id,
        new LiveStream(msg.options, {
          asr,
          vadStream: async () => {
            const loaded = ctx.vad();
            if (loaded) return loaded.stream();
            ownVad ??= SileroVad.load();
            return (await ownVad).stream();
          },
          limits: ctx.limits(),
          transcribe: async (samples, opts) => {
            const r = await ctx.transcribe(samples, opts);
            return { text: r.text, language: r.language };
          },
          emit: (event) => ctx.send({ type: 'live.event', id: msg.id, event }),
          log: ctx.log,
        }),
      );
      return;
    }
    case 'live.configure':
      stream?.configure(msg.options);
      return;
    case 'live.append':
      stream?.append(msg.audio).catch((err) => ctx.send({ type: 'live.error', id: msg.id, error: errorPayload(err) }));
      return;
    case 'live.commit':
      if (!stream) {
        ctx.send({ type: 'live.reply', id: msg.id, request: msg.request, error: { code: 'bad_request', message: 'The live session is closed.' } });
        return;
      }
      stream.commit().then(
        (utterance) => ctx.send({ type: 'live.reply', id: msg.id, request: msg.request, utterance }),
        (err) => ctx.send({ type: 'live.reply', id: msg.id, request: msg.request, error: errorPayload(err) }),
      );
      return;
    case 'live.clear':
      stream?.clear();
      return;
    case 'live.close':
      stream?.close();
      streams.delete(msg.id);
      return;
  }
}

/** Live streams open in this thread (tests of cleanup). */
export function liveStreamCount(): number {
  return streams.size;
}

/** Closes every stream (the worker is closing). */
export async function closeLiveStreams(): Promise<void> {
  const all = [...streams.values()];
  streams.clear();
  for (const s of all) s.close();
  await Promise.all(all.map((s) => s.vadIdle()));
  if (ownVad) await (await ownVad.catch(() => undefined))?.release();
  ownVad = undefined;
}
