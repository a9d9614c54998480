/**
 * The web page for people: `GET /` answers a browser with it (content negotiation in
 * original.ts, which keeps the JSON for API clients), and this plugin serves its files from
 * src/server/page/ under /ui/ plus /ui/config.json, what the page needs to know about the
 * server before the user has entered an API key. Plain HTML, CSS and JS modules: no build
 * step, nothing loaded from elsewhere.
 *
 * The page and its files never need the API key (a browser cannot send a header when it
 * navigates); what they reveal is no more than /health does. The page sends the key itself,
 * from the field where the user enters it, with each API request.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { publicModelId } from '../../pipeline/engine-info.ts';
import { QWEN_LANGUAGES, toIsoCode } from '../../pipeline/languages.ts';
import type { Transcriber } from '../../pipeline/types.ts';
import type { ServerConfig } from '../config.ts';

export interface PageRoutesOptions {
  config: ServerConfig;
  transcriber: Transcriber;
}

const PAGE_DIR = new URL('../page/', import.meta.url);

/** The files under /ui/ and their types; nothing else in the folder is served. */
const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'live.js': 'text/javascript; charset=utf-8',
  'pcm-worklet.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml',
};

// Read once: the files are small, and a running server keeps serving the page it started with.
const INDEX_HTML = readFileSync(new URL('index.html', PAGE_DIR));
const ASSET_BODIES = new Map(Object.keys(ASSETS).map((name) => [name, readFileSync(new URL(name, PAGE_DIR))]));

/**
 * Everything the page loads comes from this server; the microphone's audio goes to this
 * server's WebSocket ('self' covers ws: and wss: of the same host), and the audio player plays
 * the chosen file through a blob: URL.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The quality factors of the media ranges in an Accept header, by exact type. */
function acceptQualities(accept: string): Map<string, { q: number; index: number }> {
  const out = new Map<string, { q: number; index: number }>();
  accept.split(',').forEach((part, index) => {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (!type) return;
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (Number.isFinite(q) && !out.has(type)) out.set(type, { q, index });
  });
  return out;
}

/**
 * Whether a request for `/` wants the page: it names text/html (browsers do), and does not
 * prefer JSON (a higher q, or JSON listed first at the same q). Wildcards alone (`*\/*`, what
 * curl and most HTTP libraries send) keep the JSON the original service answered.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const qualities = acceptQualities(accept);
  const html = qualities.get('text/html') ?? qualities.get('application/xhtml+xml');
  if (!html || html.q <= 0) return false;
  const json = qualities.get('application/json');
  if (!json || json.q <= 0) return true;
  return html.q > json.q || (html.q === json.q && html.index < json.index);
}

/**
 * Runs a guard (the API key check) only for requests that do not get the page, and tells
 * caches that the answer depends on Accept.
 */
export function unlessPage(hook: onRequestAsyncHookHandler | undefined): onRequestAsyncHookHandler {
  return async function guardUnlessPage(request, reply) {
    reply.header('vary', 'Accept');
    if (hook && !prefersHtml(request.headers.accept)) await hook.call(this, request, reply);
  };
}

/** Answers with the page. */
export function sendPage(reply: FastifyReply): FastifyReply {
  return reply
    .header('vary', 'Accept')
    .header('cache-control', 'no-cache')
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .type('text/html; charset=utf-8')
    .send(INDEX_HTML);
}

export default async function pageRoutes(app: FastifyInstance, opts: PageRoutesOptions): Promise<void> {
  const { config, transcriber } = opts;
  const hidden = { schema: { hide: true } };

  app.get('/ui/config.json', hidden, async (_request: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-cache');
    return {
      model: publicModelId(config.modelName),
      // The checkpoint's list is known once it has loaded; until then the names every Qwen3-ASR model accepts.
      languages: (transcriber.languages.length ? transcriber.languages : QWEN_LANGUAGES).map((name) => ({ name, code: toIsoCode(name) ?? name })),
      aligner_languages: transcriber.alignerLanguages ?? null,
      api_key_required: Boolean(config.apiKey),
      realtime: config.realtime.maxSessions > 0,
      max_upload_bytes: config.maxUploadBytes,
    };
  });

  app.get('/ui/:file', hidden, async (request: FastifyRequest, reply: FastifyReply) => {
    const name = (request.params as { file: string }).file;
    const body = ASSET_BODIES.get(name);
    if (!body) return reply.callNotFound();
    return reply
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .type(ASSETS[name])
      .send(body);
  });
}
