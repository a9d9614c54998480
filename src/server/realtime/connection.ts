/**
 * One `/v1/realtime` connection: client events in, a pipeline live session in the middle,
 * server events out. Transport-free (the route gives it `send` and `close`), so the whole
 * protocol runs in tests against a scripted live session.
 *
 * Decisions:
 * - The session is configured by the client's first `session.update` (or
 *   `transcription_session.update`); audio or a commit before that is answered with an
 *   `error` (`session_not_configured`) and the socket stays open. Fields the update leaves
 *   out take the defaults echoed in `session.created` (audio/pcm at 24 kHz, server_vad 0.5 /
 *   300 ms / 500 ms). The pipeline's live session opens with that first update, so an idle
 *   socket holds no engine rows.
 * - Every client mistake (malformed JSON, unknown event, bad base64, oversized append, wrong
 *   format, empty commit) is one `error` event; the socket stays open.
 * - Each utterance's deltas are followed, where the final transcript extends them, by one
 *   more delta with the rest, so the deltas of an utterance add up to its transcript.
 * - vLLM's dialect: one "generation" runs from the first `commit` to `commit {final: true}`;
 *   its deltas go out as `transcription.delta` once a commit has started it, and the final
 *   commit's utterance ends it with `transcription.done` (the utterances' transcripts joined,
 *   when the longest-utterance limit cut the audio into several).
 */
import { QWEN_LANGUAGES, resolveLanguage } from '../../pipeline/languages.ts';
import { joinSegmentTexts, PipelineError, type LiveEvent, type LiveOptions, type LiveSession, type Transcriber } from '../../pipeline/types.ts';
import { EventBuilder, randomId, type ServerEvent, type SessionState } from './events.ts';
import { DEFAULT_TURN_DETECTION, parseClientEvent, ProtocolError, type ClientEvent, type Dialect, type SessionPatch, type TurnDetection } from './protocol.ts';

/** WebSocket close codes used here (RFC 6455 §7.4.1). */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_TRY_AGAIN_LATER = 1013;

export interface ConnectionDeps {
  transcriber: Pick<Transcriber, 'openLive' | 'languages'>;
  /** Model name echoed in session objects until the client names one. */
  modelId: string;
  send(event: ServerEvent): void;
  close(code: number, reason: string): void;
  log?(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void;
}

/** vLLM's generation: the utterances since the last `transcription.done`. */
interface Generation {
  started: boolean;
  /** Utterance numbers seen in this generation, in order. */
  utterances: number[];
  /** The final commit was sent. */
  finalRequested?: boolean;
  /** The utterance whose completion ends the generation (set once the final commit is taken). */
  last?: number;
  /** Text sent as transcription.delta so far. */
  sent: string;
  seconds: number;
}

export class RealtimeConnection {
  readonly events = new EventBuilder();
  private readonly state: SessionState;
  private dialect: Dialect | undefined;
  private live: LiveSession | undefined;
  private closed = false;
  private shuttingDown = false;
  /** Committed utterances whose final decode is under way. */
  private readonly pending = new Set<number>();
  private onIdle: (() => void) | undefined;
  private lastCommittedItem: string | null = null;
  /** Per utterance: text sent as deltas, and the latest partial text (vLLM). */
  private readonly sentText = new Map<number, string>();
  private readonly completedText = new Map<number, { text: string; language: string }>();
  private gen: Generation = { started: false, utterances: [], sent: '', seconds: 0 };
  private utterancesDone = 0;
  private readonly openedAt = Date.now();

  constructor(private readonly deps: ConnectionDeps) {
    this.state = {
      id: randomId('sess'),
      format: { type: 'pcm16', rate: 24000 },
      model: deps.modelId,
      language: '',
      prompt: '',
      turnDetection: { ...DEFAULT_TURN_DETECTION },
    };
  }

  get sessionId(): string {
    return this.state.id;
  }

  /** The live session is open (the client has configured it). */
  get configured(): boolean {
    return this.live !== undefined;
  }

  /** Greets the client: `session.created` with the defaults a `session.update` starts from. */
  start(): void {
    this.send(this.events.sessionCreated(this.state));
  }

  /** One WebSocket message. */
  handleMessage(data: string | Buffer, isBinary = false): void {
    if (this.closed) return;
    try {
      if (isBinary) throw new ProtocolError('invalid_event', 'Messages are JSON text; send audio base64-encoded in input_audio_buffer.append.');
      this.handle(parseClientEvent(typeof data === 'string' ? data : data.toString('utf8')));
    } catch (err) {
      this.sendError(toProtocolError(err));
    }
  }

  /** The socket closed (client gone or server closing): frees the live session's rows and buffers. */
  handleClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.live?.close();
    this.live = undefined;
    this.onIdle?.();
    this.deps.log?.(
      'info',
      { session: this.state.id, dialect: this.dialect ?? 'none', utterances: this.utterancesDone, open_s: Math.round((Date.now() - this.openedAt) / 100) / 10 },
      'realtime session closed',
    );
  }

  /**
   * Server shutdown: tells the client at once (`error` with code `server_shutting_down`),
   * stops taking audio, lets committed utterances finish for up to `graceMs`, then closes
   * with 1001 (going away).
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.closed) return;
    if (!this.shuttingDown) {
      this.shuttingDown = true;
      this.sendError(
        new ProtocolError(
          'server_shutting_down',
          'The server is shutting down: utterances already committed are finished, new audio is not accepted, then the connection closes.',
          null,
          null,
          'server_error',
        ),
      );
    }
    if (this.pending.size > 0 && graceMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, graceMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.onIdle = done;
      });
    }
    if (!this.closed) this.deps.close(CLOSE_GOING_AWAY, 'server shutting down');
    this.handleClose();
  }

  private handle(event: ClientEvent): void {
    if (event.type === 'session.update') return this.update(event);
    const fail = (code: string, message: string, param: string | null = null) => new ProtocolError(code, message, param, event.eventId ?? null);
    if (this.shuttingDown) return; // announced once; audio from now on is dropped
    if (event.type === 'input_audio_buffer.clear') {
      this.live?.clear();
      this.resetGeneration();
      this.send(this.events.cleared());
      return;
    }
    const live = this.live;
    if (!live) {
      throw fail(
        'session_not_configured',
        'Configure the session first: send session.update with {"session": {"type": "transcription", ...}} (or vLLM\'s {"model": ...}) before audio or commits.',
      );
    }
    if (event.type === 'input_audio_buffer.append') {
      if (event.audio.length === 0) return;
      try {
        live.append(event.audio);
      } catch (err) {
        if (isPipelineError(err, 'bad_request')) throw fail('invalid_audio', `The appended audio does not fit the session's format: ${(err as Error).message}`, 'audio');
        throw err;
      }
      return;
    }
    // input_audio_buffer.commit
    if (this.dialect === 'vllm') return this.vllmCommit(event.final, live, fail);
    live.commit().catch((err) => this.sendError(commitError(err, fail)));
  }

  private update(event: Extract<ClientEvent, { type: 'session.update' }>): void {
    const fail = (code: string, message: string, param: string | null = null) => new ProtocolError(code, message, param, event.eventId ?? null);
    if (this.dialect && this.dialect !== event.dialect) {
      throw fail('invalid_value', `This connection speaks ${this.dialect === 'vllm' ? "vLLM's dialect" : "OpenAI's Realtime API"}; a session.update in the other shape cannot switch it.`, 'session');
    }
    const patch = event.patch;
    let languageName: string | undefined;
    if (patch.language !== undefined) {
      const supported = this.deps.transcriber.languages.length > 0 ? this.deps.transcriber.languages : QWEN_LANGUAGES;
      const resolved = resolveLanguage(patch.language, supported);
      if (!resolved.ok) throw fail('unsupported_language', resolved.message, patch.languageParam ?? 'language');
      languageName = resolved.name;
    }
    const next: SessionState = {
      ...this.state,
      format: patch.format ?? this.state.format,
      model: patch.model ?? this.state.model,
      language: patch.language ?? this.state.language,
      prompt: patch.prompt ?? this.state.prompt,
      turnDetection: patch.turnDetection !== undefined ? patch.turnDetection : this.state.turnDetection,
    };
    // Set before the live session opens: its events are shaped by the dialect.
    const previousDialect = this.dialect;
    this.dialect = event.dialect;
    try {
      if (!this.live) {
        const options: LiveOptions = {
          format: next.format,
          language: languageName || this.resolvedLanguage(next.language),
          context: next.prompt || undefined,
          turnDetection: liveTurnDetection(next.turnDetection),
        };
        this.live = this.deps.transcriber.openLive(options, (e) => this.onLiveEvent(e));
      } else {
        this.live.configure(liveOptionsPatch(patch, languageName));
      }
    } catch (err) {
      this.dialect = previousDialect;
      if (isPipelineError(err, 'bad_request')) throw fail('invalid_value', (err as Error).message, 'session');
      if (isPipelineError(err, 'queue_full')) throw fail('session_limit_reached', `No live session is free: ${(err as Error).message}`);
      if (isPipelineError(err, 'model_not_ready')) throw fail('model_not_ready', (err as Error).message);
      throw err;
    }
    Object.assign(this.state, next);
    if (event.dialect === 'openai') this.send(this.events.sessionUpdated(this.state, event.legacy));
  }

  private resolvedLanguage(hint: string): string | undefined {
    if (!hint) return undefined;
    const r = resolveLanguage(hint, this.deps.transcriber.languages.length > 0 ? this.deps.transcriber.languages : QWEN_LANGUAGES);
    return r.ok && r.name ? r.name : undefined;
  }

  private vllmCommit(final: boolean, live: LiveSession, fail: Fail): void {
    if (!this.gen.started) {
      this.gen.started = true;
      this.sendVllmDelta();
    }
    if (!final || this.gen.finalRequested) return;
    this.gen.finalRequested = true;
    const gen = this.gen;
    live.commit().then(
      (n) => {
        if (this.closed || this.gen !== gen) return;
        gen.last = n;
        if (!gen.utterances.includes(n)) gen.utterances.push(n);
        this.maybeFinishGeneration();
      },
      (err) => {
        if (this.closed || this.gen !== gen) return;
        if (!isPipelineError(err, 'bad_request')) {
          gen.finalRequested = false;
          return this.sendError(commitError(err, fail));
        }
        // Nothing since the last cut: the generation ends with the utterances it has.
        const open = gen.utterances.filter((u) => !this.completedText.has(u));
        if (open.length > 0) gen.last = open[open.length - 1];
        else this.finishGeneration();
      },
    );
  }

  /** The final commit's utterance and every one before it are transcribed: transcription.done. */
  private maybeFinishGeneration(): void {
    const last = this.gen.last;
    if (last !== undefined && this.gen.utterances.every((u) => u > last || this.completedText.has(u))) this.finishGeneration();
  }

  private onLiveEvent(e: LiveEvent): void {
    if (this.closed) return;
    if (e.type === 'error') {
      // Input the pipeline found wrong after append returned (bad_request), or an engine fault.
      const type = e.code === 'bad_request' ? 'invalid_request_error' : 'server_error';
      this.sendError(new ProtocolError(e.code === 'bad_request' ? 'invalid_audio' : e.code, e.message, null, null, type));
      return;
    }
    if (this.dialect === 'vllm') return this.onVllmEvent(e);
    const item = this.events.ids.item(e.utterance);
    switch (e.type) {
      case 'speech_started':
        this.send(this.events.speechStarted(item, e.audioStartMs));
        return;
      case 'speech_stopped':
        this.send(this.events.speechStopped(item, e.audioEndMs));
        return;
      case 'committed':
        this.pending.add(e.utterance);
        this.send(this.events.committed(item, this.lastCommittedItem));
        this.lastCommittedItem = item;
        return;
      case 'delta':
        if (!e.text) return;
        this.sentText.set(e.utterance, (this.sentText.get(e.utterance) ?? '') + e.text);
        this.send(this.events.delta(item, e.text));
        return;
      case 'completed': {
        const sent = this.sentText.get(e.utterance) ?? '';
        if (e.text.length > sent.length && e.text.startsWith(sent)) this.send(this.events.delta(item, e.text.slice(sent.length)));
        this.send(this.events.completed(item, e.text, e.seconds));
        this.settle(e.utterance);
        return;
      }
      case 'failed':
        this.send(this.events.failed(item, e.code, e.message));
        this.settle(e.utterance);
        return;
    }
  }

  private onVllmEvent(e: Exclude<LiveEvent, { type: 'error' }>): void {
    if (!this.gen.utterances.includes(e.utterance) && e.type !== 'failed') this.gen.utterances.push(e.utterance);
    switch (e.type) {
      case 'committed':
        this.pending.add(e.utterance);
        return;
      case 'delta':
        this.sentText.set(e.utterance, (this.sentText.get(e.utterance) ?? '') + e.text);
        if (this.gen.started) this.sendVllmDelta();
        return;
      case 'completed':
        this.completedText.set(e.utterance, { text: e.text, language: e.language });
        this.gen.seconds += e.seconds;
        if (this.gen.started) this.sendVllmDelta();
        this.settle(e.utterance);
        this.maybeFinishGeneration();
        return;
      case 'failed':
        this.send(this.events.error({ code: e.code, message: e.message, param: null, eventId: null, type: 'server_error' }, 'vllm'));
        this.settle(e.utterance);
        this.gen.utterances = this.gen.utterances.filter((u) => u !== e.utterance);
        if (this.gen.last === e.utterance) this.finishGeneration();
        else this.maybeFinishGeneration();
        return;
      default:
        return; // vLLM's dialect has no VAD events
    }
  }

  /** The generation's text so far: finished utterances' transcripts, then the partial one's. */
  private generationText(upTo = Infinity): string {
    return joinSegmentTexts(
      this.gen.utterances.filter((u) => u <= upTo).map((u) => this.completedText.get(u) ?? { text: this.sentText.get(u) ?? '', language: '' }),
    );
  }

  /** Sends what the generation's text gained since the last delta, when it only grew. */
  private sendVllmDelta(): void {
    const text = this.generationText(this.gen.last);
    if (text.length > this.gen.sent.length && text.startsWith(this.gen.sent)) {
      this.send(this.events.vllmDelta(text.slice(this.gen.sent.length)));
      this.gen.sent = text;
    }
  }

  private finishGeneration(): void {
    const text = this.generationText(this.gen.last);
    this.sendVllmDelta();
    this.send(this.events.vllmDone(text, this.gen.seconds));
    const done = new Set(this.gen.utterances.filter((u) => this.gen.last === undefined || u <= this.gen.last));
    for (const u of done) {
      this.completedText.delete(u);
      this.sentText.delete(u);
    }
    // Audio that arrived after the final commit belongs to the next generation.
    this.gen = { started: false, utterances: this.gen.utterances.filter((u) => !done.has(u)), sent: '', seconds: 0 };
  }

  private resetGeneration(): void {
    if (this.dialect !== 'vllm') return;
    // Cleared audio is abandoned without events; finished utterances stay in the generation.
    this.gen.utterances = this.gen.utterances.filter((u) => this.completedText.has(u) || this.pending.has(u));
  }

  private settle(utterance: number): void {
    this.pending.delete(utterance);
    this.utterancesDone++;
    if (this.dialect !== 'vllm') this.sentText.delete(utterance);
    if (this.pending.size === 0) this.onIdle?.();
  }

  private send(event: ServerEvent): void {
    if (!this.closed) this.deps.send(event);
  }

  private sendError(err: ProtocolError): void {
    if (err.type === 'server_error' && err.code === 'server_error') this.deps.log?.('error', { session: this.state.id, err: err.message }, 'realtime event failed');
    this.send(this.events.error(err, this.dialect ?? 'openai'));
  }
}

function isPipelineError(err: unknown, code: string): boolean {
  return (err instanceof PipelineError || (err instanceof Error && err.name === 'PipelineError')) && (err as PipelineError).code === code;
}

type Fail = (code: string, message: string, param?: string | null) => ProtocolError;

function commitError(err: unknown, fail: Fail): ProtocolError {
  if (isPipelineError(err, 'bad_request')) return fail('input_audio_buffer_commit_empty', `Error committing input audio buffer: ${(err as Error).message}`);
  if (err instanceof ProtocolError) return err;
  return fail('server_error', `The commit failed: ${(err as Error)?.message ?? String(err)}`);
}

function toProtocolError(err: unknown): ProtocolError {
  if (err instanceof ProtocolError) return err;
  return new ProtocolError('server_error', `The server failed to handle the event: ${(err as Error)?.message ?? String(err)}`, null, null, 'server_error');
}

function liveTurnDetection(td: TurnDetection | null): LiveOptions['turnDetection'] {
  return td && { threshold: td.threshold, prefixPaddingMs: td.prefix_padding_ms, silenceDurationMs: td.silence_duration_ms };
}

/** The fields of a session update the live session changes, and only those. */
function liveOptionsPatch(patch: SessionPatch, languageName: string | undefined): Partial<LiveOptions> {
  const out: Partial<LiveOptions> = {};
  if (patch.format) out.format = patch.format;
  // "" asks the pipeline to detect the language again.
  if (patch.language !== undefined) out.language = languageName ?? '';
  if (patch.prompt !== undefined) out.context = patch.prompt || undefined;
  if (patch.turnDetection !== undefined) out.turnDetection = liveTurnDetection(patch.turnDetection);
  return out;
}
