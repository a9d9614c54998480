/**
 * Cross-origin requests (CORS_ORIGINS), so that a web page on another origin can call the API
 * from a browser: `[]` leaves CORS off (no headers; browsers keep refusing such calls), `['*']`
 * allows any origin, anything else is the exact list of origins allowed.
 *
 * - Preflights (OPTIONS) are answered before authentication: a browser never sends the
 *   Authorization header with them. The headers a preflight asks for are allowed as asked,
 *   which covers Authorization and the `x-stainless-*` headers of the OpenAI SDKs.
 * - No credentials mode: the API authenticates with a Bearer token, never with cookies.
 * - `x-request-id` and `retry-after` are exposed, so that a page can report a request and
 *   wait before retrying a 503.
 */
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';

/** How long a browser may cache a preflight answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

export function registerCors(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return;
  app.register(cors, {
    origin: origins.includes('*') ? '*' : [...origins],
    methods: ['GET', 'HEAD', 'POST'],
    exposedHeaders: ['x-request-id', 'retry-after'],
    credentials: false,
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
    strictPreflight: false,
  });
}
