/**
 * A live session as its caller holds it (the server's realtime socket, the CLI's `listen`):
 * a proxy that checks what it can at once (language names, audio formats) and forwards audio
 * to its stream in the engine thread (live-worker.ts), whose events come back through
 * `deliver`.
 */
import { QWEN_LANGUAGES, resolveLanguage } from './languages.ts';
import type { FromLiveWorker, ToLiveWorker } from './live-protocol.ts';
import { PipelineError, type LiveAudioFormat, type LiveEvent, type LiveOptions, type LiveSession } from './types.ts';

/** Rates a PCM16 stream may have: what telephony, speech codecs and browsers produce. */
const PCM_RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

export function checkLiveFormat(format: LiveAudioFormat): LiveAudioFormat {
  if (format.type === 'pcmu' || format.type === 'pcma') return { type: format.type };
  if (format.type === 'pcm16') {
    if (!PCM_RATES.includes(format.rate)) throw new PipelineError('bad_request', `Unsupported PCM16 rate ${format.rate} Hz; use one of ${PCM_RATES.join(', ')}.`);
    return { type: 'pcm16', rate: format.rate };
  }
  throw new PipelineError('bad_request', `Unsupported audio format ${JSON.stringify((format as { type?: unknown }).type)}; use pcm16, pcmu or pcma.`);
}

export class LiveSessionProxy implements LiveSession {
  private closed = false;
  private request = 0;
  private format: LiveAudioFormat;
  private readonly replies = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();

  constructor(
    readonly id: number,
    options: LiveOptions,
    private readonly post: (msg: ToLiveWorker, transfer?: ArrayBuffer[]) => void,
    private readonly onEvent: (event: LiveEvent) => void,
    private readonly languages: () => readonly string[],
    private readonly onClose: () => void,
  ) {
    const checked = this.checked(options) as LiveOptions;
    this.format = checked.format;
    this.post({ type: 'live.open', id, options: checked });
  }

  /** Options with the language resolved to the checkpoint's name and the format checked; throws PipelineError('bad_request'). */
  private checked(options: Partial<LiveOptions>): Partial<LiveOptions> {
    const out: Partial<LiveOptions> = { ...options };
    if (options.format) out.format = checkLiveFormat(options.format);
    if (options.language !== undefined) {
      if (options.language === '') out.language = undefined;
      else {
        const supported = this.languages();
        const r = resolveLanguage(options.language, supported.length ? supported : QWEN_LANGUAGES);
        if (!r.ok) throw new PipelineError('bad_request', r.message);
        out.language = r.name;
      }
    }
    if (options.turnDetection) {
      const t = options.turnDetection;
      if (!(t.threshold > 0 && t.threshold < 1)) throw new PipelineError('bad_request', `turn_detection.threshold must be between 0 and 1 (exclusive); got ${t.threshold}.`);
      if (!(t.silenceDurationMs >= 100 && t.silenceDurationMs <= 10000)) throw new PipelineError('bad_request', `turn_detection.silence_duration_ms must be between 100 and 10000; got ${t.silenceDurationMs}.`);
      if (!(t.prefixPaddingMs >= 0 && t.prefixPaddingMs <= 5000)) throw new PipelineError('bad_request', `turn_detection.prefix_padding_ms must be between 0 and 5000; got ${t.prefixPaddingMs}.`);
    }
    return out;
  }

  configure(options: Partial<LiveOptions>): void {
    this.ensureOpen();
    const checked = this.checked(options);
    if (checked.format) this.format = checked.format;
    this.post({ type: 'live.configure', id: this.id, options: checked });
  }

  append(audio: Uint8Array): void {
    this.ensureOpen();
    if (this.format.type === 'pcm16' && audio.length % 2 !== 0) throw new PipelineError('bad_request', `PCM16 audio must be a whole number of 2-byte samples; got ${audio.length} bytes.`);
    if (audio.length === 0) return;
    // A copy of its own bytes (a Buffer's slice() shares its memory, and the copy's buffer is
    // transferred to the engine thread).
    const copy = new Uint8Array(audio);
    this.post({ type: 'live.append', id: this.id, audio: copy }, [copy.buffer as ArrayBuffer]);
  }

  commit(): Promise<number> {
    if (this.closed) return Promise.reject(new PipelineError('bad_request', 'The live session is closed.'));
    const request = ++this.request;
    return new Promise((resolve, reject) => {
      this.replies.set(request, { resolve, reject });
      this.post({ type: 'live.commit', id: this.id, request });
    });
  }

  clear(): void {
    this.ensureOpen();
    this.post({ type: 'live.clear', id: this.id });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.post({ type: 'live.close', id: this.id });
    for (const r of this.replies.values()) r.reject(new PipelineError('aborted', 'The live session was closed.'));
    this.replies.clear();
    this.onClose();
  }

  private ensureOpen(): void {
    if (this.closed) throw new PipelineError('bad_request', 'The live session is closed.');
  }

  /** A message from the engine thread for this live session. */
  deliver(msg: FromLiveWorker): void {
    if (this.closed) return;
    if (msg.type === 'live.event') this.onEvent(msg.event);
    else if (msg.type === 'live.reply') {
      const r = this.replies.get(msg.request);
      this.replies.delete(msg.request);
      if (!r) return;
      if (msg.error) r.reject(new PipelineError(msg.error.code as never, msg.error.message));
      else r.resolve(msg.utterance!);
    } else {
      this.onEvent({ type: 'error', code: msg.error.code, message: msg.error.message });
    }
  }
}
