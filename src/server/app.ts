/**
 * Builds the HTTP service from a configuration and a Transcriber. Nothing here loads a model
 * or listens: main.ts wires the real transcriber and starts listening; tests do the same with
 * their own configuration.
 *
 * Layout (each API an encapsulated plugin with its own error style):
 *   /                 original API (GET /, GET /health, POST /transcribe), `{"detail"}` errors
 *   /v1/...           OpenAI audio API, `{"error": {...}}` errors
 *   /docs, /redoc, /openapi.json   documentation
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions, type HTTPMethods } from 'fastify';
import type { Transcriber } from '../pipeline/types.ts';
import type { ServerConfig } from './config.ts';
import { errorHandler, HttpError, sendHttpError } from './errors.ts';
import { registerCors } from './cors.ts';
import { Lifecycle } from './lifecycle.ts';
import { Metrics, operationsRoutes } from './metrics.ts';
import { requestLog } from './request-log.ts';
import docsRoutes from './routes/docs.ts';
import openAiRoutes from './routes/openai.ts';
import originalRoutes from './routes/original.ts';
import { registerRealtime } from './routes/realtime.ts';
import pageRoutes from './routes/page.ts';
import { openApiFileSchemas, uploadedFileKeyword } from './upload.ts';

export interface BuildAppOptions {
  config: ServerConfig;
  transcriber: Transcriber;
  /** Overrides the logger built from config.logLevel (tests pass false). */
  logger?: FastifyServerOptions['logger'];
}

const PACKAGE_VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/** A request id from a proxy is kept when it is short and harmless, else one is made. */
const REQUEST_ID = /^[\w.:-]{1,100}$/;

const METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export function buildApp({ config, transcriber, logger }: BuildAppOptions): FastifyInstance {
  const app = Fastify({
    // TLS_CERT_FILE / TLS_KEY_FILE: HTTPS and wss:// (the official realtime client speaks only wss).
    ...(config.tls ? { https: { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) } } : {}),
    logger: logger ?? { level: config.logLevel },
    // One line per request is written below instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    ajv: { plugins: [uploadedFileKeyword] },
  });

  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'qwen3-asr',
        version: PACKAGE_VERSION,
        description:
          'Self-hosted speech-to-text with Qwen3-ASR. Two APIs on one model queue: the original service\'s `/transcribe` ' +
          'and OpenAI\'s `/v1/audio/transcriptions` (works with the official SDKs).',
      },
      tags: [
        { name: 'original', description: 'The original Qwen3-ASR service API (FastAPI-style errors).' },
        { name: 'openai', description: 'OpenAI-compatible audio API (OpenAI error envelope).' },
        { name: 'operations', description: 'Readiness and Prometheus metrics.' },
      ],
      components: config.apiKey ? { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'The server\'s API_KEY.' } } } : {},
    },
    // The file fields' `uploadedFile` keyword is shown to OpenAPI readers as a binary string.
    transform: ({ schema, url }) => ({ schema: openApiFileSchemas(schema), url }),
  });

  // Shutdown (main.ts drains it; routes subscribe with app.lifecycle.onShutdown) and metrics.
  const lifecycle = new Lifecycle();
  app.decorate('lifecycle', lifecycle);
  const metrics = new Metrics({ transcriber, lifecycle, modelName: config.modelName, version: PACKAGE_VERSION });
  app.addHook('onClose', async () => metrics.close());

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    const started = performance.now();
    // 'close' is the one event every response ends with: finished, failed, or abandoned by the client.
    reply.raw.once('close', () => {
      const info = requestLog(request);
      // An upgraded WebSocket (/v1/realtime) never finishes a response: it was switched (101).
      const status = reply.raw.writableFinished ? reply.statusCode : request.ws ? 101 : 499;
      metrics.observeResponse(request, status, (performance.now() - started) / 1000, info);
      const fields = {
        method: request.method,
        url: request.url,
        status,
        bytes: info.bytes,
        audio_seconds: info.audioSeconds === undefined ? undefined : Math.round(info.audioSeconds * 100) / 100,
        language: info.language,
        processing_s: info.processingSeconds === undefined ? undefined : Math.round(info.processingSeconds * 1000) / 1000,
        response_ms: Math.round(performance.now() - started),
      };
      request.log[status >= 500 && status !== 501 && status !== 503 ? 'warn' : 'info'](fields, `${request.method} ${request.url} ${status}`);
    });
    lifecycle.admit(request, reply);
  });

  // FastAPI answers an unknown path with 404 and a known path with the wrong method with 405.
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = METHODS.filter((method) => app.hasRoute({ method, url: path }));
    if (allowed.length > 0) {
      return sendHttpError(reply, new HttpError(405, 'Method Not Allowed', { headers: { allow: allowed.join(', ') } }), 'original');
    }
    return sendHttpError(reply, new HttpError(404, 'Not Found'), 'original');
  });
  app.setErrorHandler(errorHandler('original', (issue) => new HttpError(400, issue.message)));

  const createdAt = Math.floor(Date.now() / 1000);
  // CORS_ORIGINS: headers on every answer, preflights answered before authentication (cors.ts).
  registerCors(app, config.corsOrigins);
  // Before the other routes: the WebSocket plugin must see them all (GET /v1/realtime).
  registerRealtime(app, { config, transcriber });
  // Live sessions hear of a shutdown as it starts, and finish their committed utterances within the grace.
  lifecycle.onShutdown((deadline) => app.closeRealtimeSessions(Math.max(0, deadline - Date.now())));
  app.register(originalRoutes, { config, transcriber, version: PACKAGE_VERSION });
  app.register(openAiRoutes, { prefix: '/v1', config, transcriber, createdAt });
  app.register(docsRoutes);
  operationsRoutes(app, { config, transcriber, lifecycle, metrics });
  app.register(pageRoutes, { config, transcriber });
  return app;
}
