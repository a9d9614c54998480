/**
 * What the one log line per request reports beyond method, URL and status: filled in by the
 * upload reader (bytes) and the transcription routes (audio seconds, language, processing
 * time), printed by app.ts when the response closes.
 */
import type { FastifyRequest } from 'fastify';

export interface RequestLog {
  /** Bytes of the uploaded audio file. */
  bytes?: number;
  audioSeconds?: number;
  /** Language used or detected (Qwen name), '' when none. */
  language?: string;
  /** Seconds spent in the transcriber (queue wait + decode + inference). */
  processingSeconds?: number;
}

const logs = new WeakMap<FastifyRequest, RequestLog>();

export function requestLog(request: FastifyRequest): RequestLog {
  let log = logs.get(request);
  if (!log) {
    log = {};
    logs.set(request, log);
  }
  return log;
}
