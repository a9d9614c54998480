/**
 * Live transcription over WebSocket: `GET /v1/realtime` (OpenAI's Realtime API in
 * transcription mode, and vLLM's dialect; src/server/realtime/ has the protocol).
 *
 * - Any query is accepted (`?intent=transcription`, or `?model=…` as the official client
 *   sends it): every connection is a transcription session of this server's model.
 * - With API_KEY set the upgrade needs `Authorization: Bearer <key>` or, from browsers that
 *   cannot set headers, the subprotocol `openai-insecure-api-key.<key>`; a missing or wrong
 *   key is refused with 401 before any session exists. The handshake answers with a
 *   subprotocol the client offered (`realtime` when offered), never with the key when
 *   another one is there.
 * - REALTIME_MAX_SESSIONS=0: the endpoint answers 404 saying so. When that many sockets are
 *   open, or the model is not loaded, a new socket gets one `error` event and is closed with
 *   1013 (try again later): a browser cannot read an HTTP status from a refused upgrade.
 * - Shutdown: `app.close()` (through the WebSocket plugin's preClose) and
 *   `app.closeRealtimeSessions()` send every session an `error` with code
 *   `server_shutting_down`, let committed utterances finish within SHUTDOWN_GRACE_SECONDS,
 *   and close with 1001.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { WebSocket } from 'ws';
import { publicModelId } from '../../pipeline/engine-info.ts';
import type { Transcriber } from '../../pipeline/types.ts';
import type { ServerConfig } from '../config.ts';
import { errorHandler, HttpError, sendHttpError } from '../errors.ts';
import { bearerAuth, hooks } from '../hooks.ts';
import { CLOSE_GOING_AWAY, CLOSE_TRY_AGAIN_LATER, RealtimeConnection } from '../realtime/connection.ts';
import { EventBuilder } from '../realtime/events.ts';
import { MAX_MESSAGE_BYTES, ProtocolError } from '../realtime/protocol.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Ends every live transcription session: an `error` event with code `server_shutting_down`,
     * committed utterances finish (up to `graceMs`, default SHUTDOWN_GRACE_SECONDS), then
     * close 1001. `app.close()` calls it too.
     */
    closeRealtimeSessions(graceMs?: number): Promise<void>;
  }
}

export interface RealtimeOptions {
  config: ServerConfig;
  transcriber: Transcriber;
}

/** The subprotocol prefix browsers carry the API key in (OpenAI's convention). */
export const KEY_PROTOCOL = 'openai-insecure-api-key.';

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** The open connections of one app. */
class Sessions {
  private readonly open = new Map<WebSocket, RealtimeConnection>();
  private closing = false;

  constructor(
    private readonly config: ServerConfig,
    private readonly transcriber: Transcriber,
  ) {}

  get size(): number {
    return this.open.size;
  }

  accept(socket: WebSocket, request: FastifyRequest): void {
    const log = request.log;
    const send = (event: object) => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(event));
    };
    const refuse = (code: string, message: string) => {
      send(new EventBuilder().error(new ProtocolError(code, message, null, null, 'server_error'), 'openai'));
      socket.close(CLOSE_TRY_AGAIN_LATER, code);
    };
    if (this.closing) return refuse('server_shutting_down', 'The server is shutting down.');
    if (this.open.size >= this.config.realtime.maxSessions) {
      return refuse('session_limit_reached', `The server is busy: ${this.open.size} live transcription sessions are open (REALTIME_MAX_SESSIONS). Retry later.`);
    }
    if (this.transcriber.state !== 'ready') {
      return refuse(
        'model_not_ready',
        this.transcriber.state === 'loading' ? 'The model is still loading; retry shortly.' : `The model failed to load: ${this.transcriber.loadError ?? 'unknown error'}`,
      );
    }
    const connection = new RealtimeConnection({
      transcriber: this.transcriber,
      modelId: publicModelId(this.config.modelName),
      send,
      close: (code, reason) => socket.close(code, reason),
      log: (level, fields, msg) => log[level](fields, msg),
    });
    this.open.set(socket, connection);
    socket.on('message', (data, isBinary) => connection.handleMessage(Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]), isBinary));
    socket.on('close', () => {
      this.open.delete(socket);
      connection.handleClose();
    });
    log.info({ session: connection.sessionId }, 'realtime session opened');
    connection.start();
  }

  /** Refuses new sockets, then ends every open one (see closeRealtimeSessions). */
  async closeAll(graceMs: number): Promise<void> {
    this.closing = true;
    await Promise.all([...this.open.values()].map((c) => c.shutdown(graceMs)));
  }
}

/** Answers the handshake with `realtime` when offered, else the first protocol that is not the key. */
function chooseProtocol(protocols: Set<string>): string | false {
  if (protocols.has('realtime')) return 'realtime';
  const list = [...protocols];
  return list.find((p) => !p.startsWith(KEY_PROTOCOL)) ?? list[0] ?? false;
}

/** Bearer header, else the browser's key subprotocol; undefined when the server has no key. */
function realtimeAuth(apiKey: string | undefined): onRequestAsyncHookHandler | undefined {
  const bearer = bearerAuth(apiKey, 'openai');
  if (!bearer || !apiKey) return undefined;
  const expected = sha256(apiKey);
  return async function checkRealtimeKey(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    const header = request.headers['sec-websocket-protocol'];
    const offered = typeof header === 'string' ? header.split(',').map((p) => p.trim()) : [];
    const fromProtocol = offered.find((p) => p.startsWith(KEY_PROTOCOL));
    if (fromProtocol !== undefined && request.headers.authorization === undefined) {
      if (!timingSafeEqual(sha256(fromProtocol.slice(KEY_PROTOCOL.length)), expected)) {
        throw new HttpError(401, 'Incorrect API key provided.', { code: 'invalid_api_key', headers: { 'www-authenticate': 'Bearer' } });
      }
      return;
    }
    return bearer.call(this, request, reply);
  };
}

async function realtimeRoutes(app: FastifyInstance, opts: RealtimeOptions & { sessions: Sessions }): Promise<void> {
  const { config, sessions } = opts;
  app.setErrorHandler(errorHandler('openai', (issue) => new HttpError(400, issue.message)));
  const off: onRequestAsyncHookHandler | undefined =
    config.realtime.maxSessions > 0
      ? undefined
      : async () => {
          throw new HttpError(404, 'Live transcription is off on this server (REALTIME_MAX_SESSIONS=0).', { code: 'realtime_disabled' });
        };
  app.route({
    method: 'GET',
    url: '/realtime',
    schema: { hide: true },
    onRequest: hooks(off, realtimeAuth(config.apiKey)),
    handler: async (_request, reply) =>
      sendHttpError(
        reply,
        new HttpError(426, 'This endpoint speaks WebSocket: connect with an upgrade (wss://…/v1/realtime?intent=transcription).', {
          code: 'upgrade_required',
          headers: { upgrade: 'websocket', connection: 'Upgrade' },
        }),
        'openai',
      ),
    wsHandler: (socket, request) => sessions.accept(socket, request),
  });
}

/**
 * Registers WebSocket support and `GET /v1/realtime`, and decorates the app with
 * `closeRealtimeSessions`. Call it before the other routes: the WebSocket plugin must see
 * every route to refuse upgrades on the plain HTTP ones.
 */
export function registerRealtime(app: FastifyInstance, opts: RealtimeOptions): void {
  const sessions = new Sessions(opts.config, opts.transcriber);
  const closeAll = (graceMs = opts.config.shutdownGraceMs) => sessions.closeAll(graceMs);
  app.decorate('closeRealtimeSessions', closeAll);
  app.register(websocket, {
    options: { maxPayload: MAX_MESSAGE_BYTES, handleProtocols: chooseProtocol },
    // Sessions first (their closing event, committed utterances finished), then any other socket.
    preClose: async function (this: FastifyInstance) {
      await closeAll();
      for (const client of this.websocketServer.clients) client.close(CLOSE_GOING_AWAY, 'server shutting down');
      this.websocketServer.close();
    },
    // A client that vanishes mid-message is routine for a live socket, not a server fault.
    errorHandler: function (error, socket, request) {
      request.log.info({ err: error.message }, 'realtime socket error');
      socket.terminate();
    },
  });
  app.register(realtimeRoutes, { prefix: '/v1', ...opts, sessions });
}
