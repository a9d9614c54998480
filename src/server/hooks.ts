/**
 * Request guards shared by both APIs: optional Bearer authentication, and the model check
 * that refuses a transcription before its upload is read.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Transcriber } from '../pipeline/types.ts';
import { HttpError, RETRY_AFTER_SECONDS, type ApiStyle } from './errors.ts';

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * `Authorization: Bearer <API_KEY>` check; undefined when no key is configured (open server).
 * Keys are compared as SHA-256 digests with timingSafeEqual so that neither the key's length
 * nor its prefix leaks through response timing.
 */
export function bearerAuth(apiKey: string | undefined, style: ApiStyle): onRequestAsyncHookHandler | undefined {
  if (!apiKey) return undefined;
  const expected = sha256(apiKey);
  const challenge = { 'www-authenticate': 'Bearer' };
  return async function checkApiKey(request: FastifyRequest, _reply: FastifyReply) {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) {
      throw new HttpError(
        401,
        style === 'openai'
          ? "You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY)."
          : 'Not authenticated: send the API key as "Authorization: Bearer YOUR_KEY".',
        { code: 'invalid_api_key', headers: challenge },
      );
    }
    if (!timingSafeEqual(sha256(match[1]), expected)) {
      throw new HttpError(401, style === 'openai' ? 'Incorrect API key provided.' : 'Invalid API key.', { code: 'invalid_api_key', headers: challenge });
    }
  };
}

/**
 * Refuses a transcription while the model is not usable, before the upload is read: a client
 * should not send 500 MB to learn the model failed. A full queue is not checked here: uploads
 * are decoded and checked before they wait (pipeline/decode-pool.ts), so that a bad one gets
 * its 400 whatever the queue holds, and the transcriber refuses a good one with 503 when the
 * queue is still full once it is decoded. `_maxQueue` stays for the routes' calls.
 */
export function requireTranscriber(transcriber: Transcriber, _maxQueue: number, style: ApiStyle): onRequestAsyncHookHandler {
  const retry = { 'retry-after': String(RETRY_AFTER_SECONDS) };
  return async function checkTranscriber() {
    if (transcriber.state === 'loading') {
      // The original's exact text for this case.
      throw new HttpError(503, style === 'original' ? 'Model not loaded yet' : 'The model is still loading; retry shortly.', {
        code: 'model_not_ready',
        headers: retry,
      });
    }
    if (transcriber.state === 'failed') {
      throw new HttpError(503, `The model failed to load: ${transcriber.loadError ?? 'unknown error'}`, { code: 'model_not_ready' });
    }
  };
}

/** Hooks that are configured off (undefined) are dropped, so a route can list them unconditionally. */
export function hooks<T>(...list: (T | undefined)[]): T[] {
  return list.filter((h): h is T => h !== undefined);
}
