/**
 * `/v1/realtime` without the engine: the protocol's parsing and validation, the event shapes
 * of both dialects, the connection's state machine against a scripted live session, and the
 * route (authentication, limits, shutdown) on a real Fastify server with a scripted
 * transcriber. src/server/realtime-engine.test.ts runs the same endpoint on the real engine.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { FastifyInstance } from 'fastify';
import { PipelineError, type LiveEvent, type LiveOptions, type LiveSession, type Transcriber } from '../pipeline/types.ts';
import { listenUrl, testServerConfig } from '../testing/http.ts';
import { buildApp } from './app.ts';
import type { ServerConfig } from './config.ts';
import { CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN_LATER, RealtimeConnection } from './realtime/connection.ts';
import { EventBuilder, gaSessionObject, legacySessionObject, type ServerEvent } from './realtime/events.ts';
import { DEFAULT_TURN_DETECTION, MAX_APPEND_BYTES, parseClientEvent, ProtocolError, type ClientEvent } from './realtime/protocol.ts';

const b64 = (bytes: number) => Buffer.alloc(bytes, 1).toString('base64');
const json = (v: unknown) => JSON.stringify(v);

function parseError(text: string): ProtocolError {
  try {
    parseClientEvent(text);
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `a ProtocolError, got ${err}`);
    return err;
  }
  assert.fail(`expected ${text.slice(0, 80)} to be refused`);
}

describe('parsing client events', () => {
  test('GA session.update: format, transcription, turn detection', () => {
    const e = parseClientEvent(
      json({
        type: 'session.update',
        event_id: 'c1',
        session: {
          type: 'transcription',
          audio: {
            input: {
              format: { type: 'audio/pcm', rate: 16000 },
              noise_reduction: { type: 'near_field' },
              transcription: { model: 'gpt-4o-transcribe', language: 'en', prompt: 'Kennedy' },
              turn_detection: { type: 'server_vad', threshold: 0.7, prefix_padding_ms: 200, silence_duration_ms: 800 },
            },
          },
          include: ['item.input_audio_transcription.logprobs'],
        },
      }),
    );
    assert.deepEqual(e, {
      type: 'session.update',
      dialect: 'openai',
      legacy: false,
      eventId: 'c1',
      patch: {
        format: { type: 'pcm16', rate: 16000 },
        model: 'gpt-4o-transcribe',
        language: 'en',
        languageParam: 'session.audio.input.transcription.language',
        prompt: 'Kennedy',
        turnDetection: { type: 'server_vad', threshold: 0.7, prefix_padding_ms: 200, silence_duration_ms: 800 },
      },
    });
  });

  test('GA formats: audio/pcm defaults to 24 kHz; pcmu and pcma; turn_detection null; semantic_vad runs as server_vad', () => {
    const patch = (input: unknown) => (parseClientEvent(json({ type: 'session.update', session: { type: 'transcription', audio: { input } } })) as Extract<ClientEvent, { dialect: 'openai' }>).patch;
    assert.deepEqual(patch({ format: { type: 'audio/pcm' } }).format, { type: 'pcm16', rate: 24000 });
    assert.deepEqual(patch({ format: { type: 'audio/pcmu' } }).format, { type: 'pcmu' });
    assert.deepEqual(patch({ format: { type: 'audio/pcma' } }).format, { type: 'pcma' });
    assert.equal(patch({ turn_detection: null }).turnDetection, null);
    assert.deepEqual(patch({ turn_detection: { type: 'semantic_vad', eagerness: 'high' } }).turnDetection, DEFAULT_TURN_DETECTION);
    assert.deepEqual(patch({ turn_detection: { type: 'server_vad' } }).turnDetection, DEFAULT_TURN_DETECTION);
    assert.deepEqual(patch({}), {});
  });

  test('the beta transcription_session.update', () => {
    const e = parseClientEvent(
      json({
        type: 'transcription_session.update',
        session: { input_audio_format: 'g711_ulaw', input_audio_transcription: { model: 'whisper-1', language: 'de' }, turn_detection: null, input_audio_noise_reduction: null },
      }),
    );
    assert.deepEqual(e, {
      type: 'session.update',
      dialect: 'openai',
      legacy: true,
      eventId: undefined,
      patch: { format: { type: 'pcmu' }, model: 'whisper-1', language: 'de', languageParam: 'session.input_audio_transcription.language', turnDetection: null },
    });
    const pcm = parseClientEvent(json({ type: 'transcription_session.update', session: { input_audio_format: 'pcm16' } }));
    assert.deepEqual((pcm as Extract<ClientEvent, { dialect: 'openai' }>).patch.format, { type: 'pcm16', rate: 24000 });
  });

  test("vLLM's session.update is told apart by its top-level model", () => {
    const e = parseClientEvent(json({ type: 'session.update', model: 'Qwen/Qwen3-ASR-1.7B' }));
    assert.deepEqual(e, {
      type: 'session.update',
      dialect: 'vllm',
      eventId: undefined,
      model: 'Qwen/Qwen3-ASR-1.7B',
      patch: { format: { type: 'pcm16', rate: 16000 }, turnDetection: null, model: 'Qwen/Qwen3-ASR-1.7B' },
    });
    assert.deepEqual(parseClientEvent(json({ type: 'input_audio_buffer.commit', final: true })), { type: 'input_audio_buffer.commit', eventId: undefined, final: true });
    assert.equal(parseError(json({ type: 'session.update' })).code, 'missing_required_parameter');
  });

  test('appends decode base64; commit and clear', () => {
    const e = parseClientEvent(json({ type: 'input_audio_buffer.append', event_id: 'a', audio: Buffer.from([1, 2, 3, 4]).toString('base64') }));
    assert.deepEqual(e, { type: 'input_audio_buffer.append', eventId: 'a', audio: Buffer.from([1, 2, 3, 4]) });
    assert.deepEqual(parseClientEvent(json({ type: 'input_audio_buffer.commit' })), { type: 'input_audio_buffer.commit', eventId: undefined, final: false });
    assert.deepEqual(parseClientEvent(json({ type: 'input_audio_buffer.clear' })), { type: 'input_audio_buffer.clear', eventId: undefined });
  });

  test('malformed input: each a ProtocolError with a code, the param at fault and the client event_id', () => {
    const cases: [string, string, string | null][] = [
      ['{"type": "session.update", ', 'invalid_json', null],
      ['[1, 2]', 'invalid_event', null],
      [json({ type: 42 }), 'invalid_event', 'type'],
      [json({ type: 'input_audio_buffer.appendx', event_id: 'e1' }), 'invalid_event_type', 'type'],
      [json({ type: 'response.create', event_id: 'e1' }), 'unsupported_event', 'type'],
      [json({ type: 'input_audio_buffer.append', event_id: 'e1', audio: 'AAA*AAAA' }), 'invalid_base64', 'audio'],
      [json({ type: 'input_audio_buffer.append', event_id: 'e1', audio: 'AAAAA' }), 'invalid_base64', 'audio'],
      [json({ type: 'input_audio_buffer.append', event_id: 'e1' }), 'missing_required_parameter', 'audio'],
      [json({ type: 'input_audio_buffer.commit', event_id: 'e1', final: 'yes' }), 'invalid_type', 'final'],
      [json({ type: 'session.update', event_id: 'e1', session: { type: 'realtime' } }), 'invalid_value', 'session.type'],
      [json({ type: 'session.update', event_id: 'e1', session: { audio: { input: { format: { type: 'audio/pcm', rate: 44100 } } } } }), 'invalid_value', 'session.audio.input.format.rate'],
      [json({ type: 'session.update', event_id: 'e1', session: { audio: { input: { format: { type: 'audio/mp3' } } } } }), 'invalid_value', 'session.audio.input.format.type'],
      [json({ type: 'session.update', event_id: 'e1', session: { audio: { input: { turn_detection: { type: 'server_vad', threshold: 2 } } } } }), 'invalid_value', 'session.audio.input.turn_detection.threshold'],
      [json({ type: 'session.update', event_id: 'e1', session: { audio: { input: { turn_detection: { type: 'push_to_talk' } } } } }), 'invalid_value', 'session.audio.input.turn_detection.type'],
      [json({ type: 'session.update', event_id: 'e1', session: { audio: { input: { transcription: null } } } }), 'invalid_value', 'session.audio.input.transcription'],
      [json({ type: 'session.update', event_id: 'e1', session: { audio: { output: {} } } }), 'invalid_value', 'session.audio.output'],
      [json({ type: 'session.update', event_id: 'e1', session: { include: ['x'] } }), 'invalid_value', 'session.include'],
      [json({ type: 'transcription_session.update', event_id: 'e1', session: { input_audio_format: 'pcm24' } }), 'invalid_value', 'session.input_audio_format'],
    ];
    for (const [text, code, param] of cases) {
      const err = parseError(text);
      assert.equal(err.code, code, text);
      assert.equal(err.param, param, text);
      assert.equal(err.eventId, text.includes('"e1"') ? 'e1' : null, text);
      assert.equal(err.type, 'invalid_request_error');
      assert.ok(err.message.length > 10, text);
    }
  });

  test('an append over 15 MiB is refused before it is decoded; 15 MiB is accepted', () => {
    const over = parseError(json({ type: 'input_audio_buffer.append', audio: b64(MAX_APPEND_BYTES + 3) }));
    assert.equal(over.code, 'audio_too_large');
    assert.match(over.message, /at most 15 MiB/);
    const at = parseClientEvent(json({ type: 'input_audio_buffer.append', audio: b64(MAX_APPEND_BYTES) }));
    assert.equal((at as Extract<ClientEvent, { type: 'input_audio_buffer.append' }>).audio.length, MAX_APPEND_BYTES);
  });
});

describe('server events', () => {
  const state = {
    id: 'sess_x',
    format: { type: 'pcm16' as const, rate: 24000 },
    model: 'qwen3-asr',
    language: 'en',
    prompt: 'p',
    turnDetection: { ...DEFAULT_TURN_DETECTION },
  };

  test('event ids are unique, item ids stable per utterance', () => {
    const a = new EventBuilder();
    const b = new EventBuilder();
    const ids = new Set<string>();
    for (let i = 0; i < 500; i++) ids.add(a.cleared().event_id).add(b.cleared().event_id);
    assert.equal(ids.size, 1000);
    assert.equal(a.ids.item(3), a.ids.item(3));
    assert.notEqual(a.ids.item(3), a.ids.item(4));
    assert.notEqual(a.ids.item(3), b.ids.item(3));
    assert.match(a.ids.item(1), /^item_/);
  });

  test('session objects: GA and beta shapes', () => {
    assert.deepEqual(gaSessionObject(state), {
      type: 'transcription',
      object: 'realtime.transcription_session',
      id: 'sess_x',
      audio: {
        input: {
          format: { type: 'audio/pcm', rate: 24000 },
          noise_reduction: null,
          transcription: { model: 'qwen3-asr', language: 'en', prompt: 'p' },
          turn_detection: DEFAULT_TURN_DETECTION,
        },
      },
      include: [],
    });
    const legacy = legacySessionObject({ ...state, format: { type: 'pcma' }, turnDetection: null, language: '' });
    assert.equal(legacy.input_audio_format, 'g711_alaw');
    assert.equal(legacy.turn_detection, null);
    assert.deepEqual(legacy.input_audio_transcription, { model: 'qwen3-asr', language: null, prompt: 'p' });
    const created = new EventBuilder().sessionCreated(state);
    assert.equal(created.type, 'session.created');
    assert.equal(created.id, 'sess_x');
    assert.equal(typeof created.created, 'number');
  });

  test("errors: OpenAI's envelope, vLLM's flat shape", () => {
    const events = new EventBuilder();
    const err = new ProtocolError('invalid_value', 'bad', 'audio', 'client-7');
    const openai = events.error(err, 'openai');
    assert.deepEqual({ ...openai, event_id: undefined }, {
      type: 'error',
      event_id: undefined,
      error: { type: 'invalid_request_error', code: 'invalid_value', message: 'bad', param: 'audio', event_id: 'client-7' },
    });
    assert.match(openai.event_id, /^event_/);
    const vllm = events.error(err, 'vllm');
    assert.deepEqual({ ...vllm, event_id: undefined }, { type: 'error', event_id: undefined, error: 'bad', code: 'invalid_value' });
  });

  test('transcription events', () => {
    const events = new EventBuilder();
    assert.deepEqual({ ...events.completed('item_1', 'hi', 1.23456), event_id: 0 }, {
      type: 'conversation.item.input_audio_transcription.completed',
      event_id: 0,
      item_id: 'item_1',
      content_index: 0,
      transcript: 'hi',
      usage: { type: 'duration', seconds: 1.235 },
    });
    assert.deepEqual({ ...events.committed('item_2', 'item_1'), event_id: 0 }, { type: 'input_audio_buffer.committed', event_id: 0, item_id: 'item_2', previous_item_id: 'item_1' });
    assert.deepEqual({ ...events.vllmDone('a b', 2), event_id: 0 }, { type: 'transcription.done', event_id: 0, text: 'a b', usage: { type: 'duration', seconds: 2 } });
  });
});

// ---------------------------------------------------------------------------------------
// A scripted live session: what the connection asks of the pipeline, and events on demand.

class FakeLive implements LiveSession {
  appended: Buffer[] = [];
  configured: Partial<LiveOptions>[] = [];
  closed = false;
  cleared = 0;
  private count = 0;
  private open = false;
  constructor(
    readonly options: LiveOptions,
    readonly emit: (e: LiveEvent) => void,
  ) {}
  configure(o: Partial<LiveOptions>) {
    this.configured.push(o);
  }
  append(audio: Uint8Array) {
    if (this.options.format.type === 'pcm16' && audio.length % 2 !== 0) throw new PipelineError('bad_request', 'odd PCM length');
    this.appended.push(Buffer.from(audio));
    if (!this.open) {
      this.open = true;
      this.count++;
    }
  }
  /** Ends the current utterance: committed now, then the scripted events. */
  async commit(): Promise<number> {
    if (!this.open) throw new PipelineError('bad_request', 'Nothing to commit');
    this.open = false;
    this.emit({ type: 'committed', utterance: this.count });
    return this.count;
  }
  /** The longest-utterance limit: the pipeline commits the current utterance by itself. */
  cut() {
    this.open = false;
    this.emit({ type: 'committed', utterance: this.count });
  }
  clear() {
    this.cleared++;
    this.open = false;
  }
  close() {
    this.closed = true;
  }
  get current() {
    return this.count;
  }
}

function fakeTranscriber(over: Partial<Transcriber> = {}) {
  const sessions: FakeLive[] = [];
  const t = {
    state: 'ready',
    languages: ['English', 'German', 'Chinese'],
    modelName: 'Qwen/Qwen3-ASR-0.6B',
    device: 'cpu',
    queueLength: 0,
    activeJobs: 0,
    get liveSessions() {
      return sessions.filter((s) => !s.closed).length;
    },
    whenReady: async () => undefined,
    openLive(options: LiveOptions, onEvent: (e: LiveEvent) => void) {
      const s = new FakeLive(options, onEvent);
      sessions.push(s);
      return s;
    },
    close: async () => undefined,
    ...over,
  } as unknown as Transcriber;
  return { transcriber: t, sessions };
}

function connection(over: Partial<Transcriber> = {}) {
  const { transcriber, sessions } = fakeTranscriber(over);
  const sent: ServerEvent[] = [];
  const closes: [number, string][] = [];
  const conn = new RealtimeConnection({ transcriber, modelId: 'qwen3-asr', send: (e) => sent.push(e), close: (c, r) => closes.push([c, r]) });
  const send = (v: unknown) => conn.handleMessage(typeof v === 'string' ? v : json(v));
  const take = () => sent.splice(0);
  return { conn, sent, closes, sessions, send, take };
}

const GA_UPDATE = { type: 'session.update', session: { type: 'transcription', audio: { input: { format: { type: 'audio/pcm', rate: 24000 }, turn_detection: null } } } };
const tick = () => new Promise((r) => setImmediate(r));

describe('a connection (scripted live session)', () => {
  test('session.created first; audio before session.update is an error, then the session works', async () => {
    const c = connection();
    c.conn.start();
    const [created] = c.take();
    assert.equal(created.type, 'session.created');
    assert.deepEqual((created.session as any).audio.input.format, { type: 'audio/pcm', rate: 24000 });

    c.send({ type: 'input_audio_buffer.append', event_id: 'early', audio: b64(4) });
    const [err] = c.take();
    assert.equal(err.type, 'error');
    assert.equal((err.error as any).code, 'session_not_configured');
    assert.equal((err.error as any).event_id, 'early');
    assert.equal(c.sessions.length, 0, 'no live session before the update');

    c.send(GA_UPDATE);
    const [updated] = c.take();
    assert.equal(updated.type, 'session.updated');
    assert.deepEqual(c.sessions[0].options, { format: { type: 'pcm16', rate: 24000 }, language: undefined, context: undefined, turnDetection: null });
    c.send({ type: 'input_audio_buffer.append', audio: b64(4) });
    assert.deepEqual(c.take(), []);
    assert.equal(c.sessions[0].appended.length, 1);
  });

  test('a later update configures the live session with the fields given; the language is resolved; unknown ones are refused', () => {
    const c = connection();
    c.send(GA_UPDATE);
    c.take();
    c.send({ type: 'session.update', session: { type: 'transcription', audio: { input: { transcription: { language: 'de', prompt: 'Namen' } } } } });
    const [updated] = c.take();
    assert.equal(updated.type, 'session.updated');
    assert.deepEqual((updated.session as any).audio.input.transcription, { model: 'qwen3-asr', language: 'de', prompt: 'Namen' });
    assert.deepEqual(c.sessions[0].configured, [{ language: 'German', context: 'Namen' }]);

    c.send({ type: 'session.update', event_id: 'x', session: { type: 'transcription', audio: { input: { transcription: { language: 'klingon' } } } } });
    const [err] = c.take();
    assert.equal((err.error as any).code, 'unsupported_language');
    assert.equal((err.error as any).param, 'session.audio.input.transcription.language');
    assert.equal(c.sessions[0].configured.length, 1, 'nothing applied');

    c.send({ type: 'transcription_session.update', session: { input_audio_format: 'g711_alaw' } });
    const [legacy] = c.take();
    assert.equal(legacy.type, 'transcription_session.updated');
    assert.equal((legacy.session as any).input_audio_format, 'g711_alaw');
  });

  test('pipeline events become OpenAI events linked by item ids; the last delta completes the transcript', async () => {
    const c = connection();
    c.send({ type: 'session.update', session: { type: 'transcription' } });
    c.take();
    const live = c.sessions[0];
    assert.deepEqual(live.options.turnDetection, { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 });
    live.emit({ type: 'speech_started', utterance: 1, audioStartMs: 120 });
    live.emit({ type: 'delta', utterance: 1, text: 'hello' });
    live.emit({ type: 'speech_stopped', utterance: 1, audioEndMs: 900 });
    live.emit({ type: 'committed', utterance: 1 });
    live.emit({ type: 'speech_started', utterance: 2, audioStartMs: 1000 });
    live.emit({ type: 'completed', utterance: 1, text: 'hello world', language: 'English', seconds: 0.78 });
    live.emit({ type: 'committed', utterance: 2 });
    live.emit({ type: 'completed', utterance: 2, text: 'again', language: 'English', seconds: 0.5 });
    const events = c.take();
    const item1 = events[0].item_id;
    const item2 = events[4].item_id;
    assert.notEqual(item1, item2);
    assert.deepEqual(
      events.map((e) => [e.type, e.item_id, e.audio_start_ms ?? e.audio_end_ms ?? e.delta ?? e.transcript ?? e.previous_item_id]),
      [
        ['input_audio_buffer.speech_started', item1, 120],
        ['conversation.item.input_audio_transcription.delta', item1, 'hello'],
        ['input_audio_buffer.speech_stopped', item1, 900],
        ['input_audio_buffer.committed', item1, null],
        ['input_audio_buffer.speech_started', item2, 1000],
        ['conversation.item.input_audio_transcription.delta', item1, ' world'],
        ['conversation.item.input_audio_transcription.completed', item1, 'hello world'],
        ['input_audio_buffer.committed', item2, item1],
        ['conversation.item.input_audio_transcription.delta', item2, 'again'],
        ['conversation.item.input_audio_transcription.completed', item2, 'again'],
      ],
    );
    assert.deepEqual(events[6].usage, { type: 'duration', seconds: 0.78 });
    assert.equal(new Set(events.map((e) => e.event_id)).size, events.length);
  });

  test('client mistakes are error events and the connection goes on', async () => {
    const c = connection();
    c.send(GA_UPDATE);
    c.take();
    c.send('not json');
    c.conn.handleMessage(Buffer.from([1, 2, 3]), true);
    c.send({ type: 'input_audio_buffer.append', event_id: 'odd', audio: b64(3) });
    c.send({ type: 'input_audio_buffer.commit', event_id: 'empty' });
    await tick();
    const errors = c.take();
    assert.deepEqual(
      errors.map((e) => [e.type, (e.error as any).code, (e.error as any).event_id]),
      [
        ['error', 'invalid_json', null],
        ['error', 'invalid_event', null],
        ['error', 'invalid_audio', 'odd'],
        ['error', 'input_audio_buffer_commit_empty', 'empty'],
      ],
    );
    c.send({ type: 'input_audio_buffer.append', audio: b64(4) });
    c.send({ type: 'input_audio_buffer.commit' });
    await tick();
    assert.deepEqual(c.take().map((e) => e.type), ['input_audio_buffer.committed']);
    c.send({ type: 'input_audio_buffer.clear' });
    assert.deepEqual(c.take().map((e) => e.type), ['input_audio_buffer.cleared']);
    assert.equal(c.sessions[0].cleared, 1);
    c.send({ type: 'session.update', model: 'x' });
    assert.equal((c.take()[0].error as any).code, 'invalid_value', 'no switch of dialect');
  });

  test('closing the socket closes the live session; later pipeline events are dropped', () => {
    const c = connection();
    c.send(GA_UPDATE);
    c.take();
    c.conn.handleClose();
    assert.equal(c.sessions[0].closed, true);
    c.sessions[0].emit({ type: 'delta', utterance: 1, text: 'late' });
    assert.deepEqual(c.take(), []);
  });

  test('shutdown: a server_shutting_down error at once, committed utterances finish, then close 1001', async () => {
    const c = connection();
    c.send(GA_UPDATE);
    c.send({ type: 'input_audio_buffer.append', audio: b64(4) });
    c.send({ type: 'input_audio_buffer.commit' });
    await tick();
    c.take();
    const done = c.conn.shutdown(10_000);
    const [err] = c.take();
    assert.equal((err.error as any).code, 'server_shutting_down');
    assert.equal((err.error as any).type, 'server_error');
    c.send({ type: 'input_audio_buffer.append', audio: b64(4) });
    assert.deepEqual(c.take(), [], 'audio after the notice is dropped');
    assert.deepEqual(c.closes, []);
    c.sessions[0].emit({ type: 'completed', utterance: 1, text: 'last words', language: 'English', seconds: 1 });
    await done;
    assert.deepEqual(c.take().map((e) => e.type), ['conversation.item.input_audio_transcription.delta', 'conversation.item.input_audio_transcription.completed']);
    assert.deepEqual(c.closes, [[CLOSE_GOING_AWAY, 'server shutting down']]);
    assert.equal(c.sessions[0].closed, true);
  });

  test('shutdown gives up waiting after the grace time', async () => {
    const c = connection();
    c.send(GA_UPDATE);
    c.send({ type: 'input_audio_buffer.append', audio: b64(4) });
    c.send({ type: 'input_audio_buffer.commit' });
    await tick();
    await c.conn.shutdown(50);
    assert.deepEqual(c.closes, [[CLOSE_GOING_AWAY, 'server shutting down']]);
  });

  test('openLive refusals are error events', () => {
    const c = connection({
      openLive: () => {
        throw new PipelineError('queue_full', 'all 2 live sessions are in use');
      },
    });
    c.send(GA_UPDATE);
    const [err] = c.take();
    assert.equal((err.error as any).code, 'session_limit_reached');
    c.send({ type: 'input_audio_buffer.append', audio: b64(2) });
    assert.equal((c.take()[0].error as any).code, 'session_not_configured');
  });
});

describe("vLLM's dialect (scripted live session)", () => {
  test('16 kHz without VAD; deltas once a commit starts decoding; the final commit ends in transcription.done', async () => {
    const c = connection();
    c.conn.start();
    c.take();
    c.send({ type: 'session.update', model: 'Qwen/Qwen3-ASR-0.6B', language: 'en' });
    assert.deepEqual(c.take(), [], 'vLLM answers a session.update with nothing');
    const live = c.sessions[0];
    assert.deepEqual(live.options, { format: { type: 'pcm16', rate: 16000 }, language: 'English', context: undefined, turnDetection: null });
    c.send({ type: 'input_audio_buffer.append', audio: b64(3200) });
    live.emit({ type: 'delta', utterance: 1, text: 'and so' });
    assert.deepEqual(c.take(), [], 'no deltas before a commit starts the generation');
    c.send({ type: 'input_audio_buffer.commit' });
    live.emit({ type: 'delta', utterance: 1, text: ' my' });
    // The longest-utterance limit cuts the audio: a second utterance in the same generation.
    live.cut();
    live.emit({ type: 'completed', utterance: 1, text: 'and so my fellow', language: 'English', seconds: 30 });
    c.send({ type: 'input_audio_buffer.append', audio: b64(3200) });
    live.emit({ type: 'delta', utterance: 2, text: 'Americans' });
    c.send({ type: 'input_audio_buffer.commit', final: true });
    await tick();
    live.emit({ type: 'completed', utterance: 2, text: 'Americans, ask not', language: 'English', seconds: 2 });
    const events = c.take();
    const deltas = events.filter((e) => e.type === 'transcription.delta').map((e) => e.delta as string);
    const done = events.at(-1)!;
    assert.equal(done.type, 'transcription.done');
    assert.equal(done.text, 'and so my fellow Americans, ask not');
    assert.deepEqual(done.usage, { type: 'duration', seconds: 32 });
    assert.equal(deltas.join(''), done.text);
    assert.deepEqual(deltas, ['and so', ' my', ' fellow', ' Americans', ', ask not']);

    // A next generation starts clean.
    c.send({ type: 'input_audio_buffer.append', audio: b64(3200) });
    c.send({ type: 'input_audio_buffer.commit', final: true });
    await tick();
    live.emit({ type: 'completed', utterance: 3, text: 'next', language: 'English', seconds: 1 });
    assert.deepEqual(
      c.take().map((e) => [e.type, e.delta ?? e.text]),
      [
        ['transcription.delta', 'next'],
        ['transcription.done', 'next'],
      ],
    );
  });

  test("errors in vLLM's shape; a final commit of nothing ends with an empty transcription.done", async () => {
    const c = connection();
    c.send({ type: 'session.update', model: 'm' });
    c.send({ type: 'input_audio_buffer.append', audio: 'AA*A' });
    const [err] = c.take();
    assert.deepEqual([err.type, err.error, err.code], ['error', '"audio" is not valid base64 (standard alphabet, padded to a multiple of 4 characters).', 'invalid_base64']);
    c.send({ type: 'input_audio_buffer.commit', final: true });
    await tick();
    assert.deepEqual(c.take().map((e) => [e.type, e.text]), [['transcription.done', '']]);
    c.sessions[0].emit({ type: 'failed', utterance: 5, code: 'internal', message: 'boom' });
    assert.deepEqual(c.take().map((e) => [e.type, e.error, e.code]), [['error', 'boom', 'internal']]);
  });
});

// ---------------------------------------------------------------------------------------
// The route on a real server, with the scripted transcriber.

const API_KEY = 'rt-key-1234';

function makeConfig(over: Partial<ServerConfig> = {}): ServerConfig {
  return testServerConfig('/tmp', {
    modelName: 'Qwen/Qwen3-ASR-0.6B',
    segmentSeconds: 120,
    apiKey: API_KEY,
    decodeTimeoutMs: 120_000,
    shutdownGraceMs: 5_000,
    realtime: { maxSessions: 2, updateSeconds: 1, maxUtteranceSeconds: 30 },
    ...over,
  });
}

const apps: FastifyInstance[] = [];
after(async () => {
  for (const app of apps) await app.close().catch(() => undefined);
});

async function serve(config = makeConfig(), over: Partial<Transcriber> = {}) {
  const fake = fakeTranscriber(over);
  const app = buildApp({ config, transcriber: fake.transcriber, logger: false });
  const http = await listenUrl(app);
  apps.push(app);
  return { app, ...fake, url: `${http.replace(/^http/, 'ws')}/v1/realtime`, http };
}

/** A client that queues every event it receives. */
class Client {
  readonly ws: WebSocket;
  readonly events: any[] = [];
  private waiters: (() => void)[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  status?: number;

  constructor(url: string, opts: { protocols?: string[]; headers?: Record<string, string> } = {}) {
    this.ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers });
    this.ws.on('message', (data) => {
      this.events.push(JSON.parse(String(data)));
      for (const w of this.waiters.splice(0)) w();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        this.status = res.statusCode;
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => undefined);
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  send(v: unknown) {
    this.ws.send(typeof v === 'string' ? v : json(v));
  }

  /** The next event (in order) of this type, waiting up to 10 s. */
  async next(type?: string): Promise<any> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const i = this.events.findIndex((e) => !type || e.type === type);
      if (i >= 0) return this.events.splice(0, i + 1).at(-1);
      if (Date.now() > deadline) assert.fail(`no ${type ?? 'event'} within 10 s; got ${json(this.events.map((e) => e.type))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
}

describe('GET /v1/realtime', () => {
  test('authentication: bearer header, the browser subprotocol; wrong or missing keys are refused with 401', async () => {
    const s = await serve();
    const bearer = new Client(`${s.url}?intent=transcription`, { headers: { authorization: `Bearer ${API_KEY}` } });
    await bearer.opened;
    assert.equal((await bearer.next()).type, 'session.created');

    const browser = new Client(`${s.url}?model=gpt-4o-transcribe`, { protocols: ['realtime', `openai-insecure-api-key.${API_KEY}`] });
    await browser.opened;
    assert.equal(browser.ws.protocol, 'realtime', 'the handshake answers with realtime, not the key');
    assert.equal((await browser.next()).type, 'session.created');

    for (const opts of [{ headers: { authorization: 'Bearer nope' } }, { protocols: ['realtime', 'openai-insecure-api-key.nope'] }, {}]) {
      const refused = new Client(s.url, opts);
      const err = await refused.opened.then(
        () => assert.fail('connected without the key'),
        (e) => e,
      );
      assert.equal(err.status, 401, json(opts));
      assert.equal(JSON.parse(err.body).error.code, 'invalid_api_key');
    }
    bearer.ws.close();
    browser.ws.close();
    await Promise.all([bearer.closed, browser.closed]);
  });

  test('a plain GET is told to upgrade; REALTIME_MAX_SESSIONS=0 turns the endpoint off', async () => {
    const s = await serve();
    const plain = await fetch(`${s.http}/v1/realtime`, { headers: { authorization: `Bearer ${API_KEY}` } });
    assert.equal(plain.status, 426);
    assert.equal((await plain.json()).error.code, 'upgrade_required');

    const off = await serve(makeConfig({ realtime: { maxSessions: 0, updateSeconds: 1, maxUtteranceSeconds: 30 } }));
    const client = new Client(off.url, { headers: { authorization: `Bearer ${API_KEY}` } });
    const err = await client.opened.then(
      () => assert.fail('connected to a disabled endpoint'),
      (e) => e,
    );
    assert.equal(err.status, 404);
    assert.match(JSON.parse(err.body).error.message, /REALTIME_MAX_SESSIONS=0/);
  });

  test('past REALTIME_MAX_SESSIONS a socket gets an error event and close 1013; a freed place is usable again', async () => {
    const s = await serve(makeConfig({ apiKey: undefined, realtime: { maxSessions: 2, updateSeconds: 1, maxUtteranceSeconds: 30 } }));
    const a = new Client(s.url);
    const b = new Client(s.url);
    await Promise.all([a.opened, b.opened]);
    await a.next('session.created');
    await b.next('session.created');
    const c = new Client(s.url);
    const err = await c.next('error');
    assert.equal(err.error.code, 'session_limit_reached');
    assert.equal((await c.closed).code, CLOSE_TRY_AGAIN_LATER);
    a.ws.close();
    await a.closed;
    await new Promise((r) => setTimeout(r, 50));
    const d = new Client(s.url);
    assert.equal((await d.next()).type, 'session.created');
    b.ws.close();
    d.ws.close();
    await Promise.all([b.closed, d.closed]);
  });

  test('a model still loading: an error event and close 1013', async () => {
    const s = await serve(makeConfig({ apiKey: undefined }), { state: 'loading' } as Partial<Transcriber>);
    const c = new Client(s.url);
    assert.equal((await c.next('error')).error.code, 'model_not_ready');
    assert.equal((await c.closed).code, CLOSE_TRY_AGAIN_LATER);
  });

  test('an oversized append is an error event, the socket keeps working; a disconnect closes the live session', async () => {
    const s = await serve(makeConfig({ apiKey: undefined }));
    const c = new Client(s.url);
    await c.next('session.created');
    c.send(GA_UPDATE);
    await c.next('session.updated');
    c.send({ type: 'input_audio_buffer.append', event_id: 'big', audio: b64(MAX_APPEND_BYTES + 2) });
    const err = await c.next('error');
    assert.equal(err.error.code, 'audio_too_large');
    assert.equal(err.error.event_id, 'big');
    c.send({ type: 'input_audio_buffer.append', audio: b64(4800) });
    c.send({ type: 'input_audio_buffer.commit' });
    await c.next('input_audio_buffer.committed');
    assert.equal(s.transcriber.liveSessions, 1);
    c.ws.terminate();
    await c.closed;
    for (let i = 0; i < 100 && s.transcriber.liveSessions > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.transcriber.liveSessions, 0);
  });

  test('app.close(): sessions get server_shutting_down and close 1001', async () => {
    const s = await serve(makeConfig({ apiKey: undefined }));
    const c = new Client(s.url);
    await c.next('session.created');
    c.send(GA_UPDATE);
    await c.next('session.updated');
    const closing = s.app.close();
    const err = await c.next('error');
    assert.equal(err.error.code, 'server_shutting_down');
    assert.equal((await c.closed).code, CLOSE_GOING_AWAY);
    await closing;
    assert.equal(s.sessions[0].closed, true);
  });
});
