/**
 * One error type for the whole server, and its two renderings:
 *
 * - the OpenAI routes answer `{"error": {"message", "type", "param", "code"}}` (what the
 *   official SDKs parse into `APIError`);
 * - the original routes answer FastAPI's `{"detail": "..."}`, and for request validation
 *   FastAPI's 422 list `{"detail": [{"type", "loc", "msg", "input"}]}`, because clients of the
 *   original service were written against those shapes (api-contract §1.6, §5.4).
 *
 * Everything that can go wrong (our own checks, schema validation, multipart parsing, the
 * pipeline, audio decoding) is first turned into an HttpError, so the status code is decided
 * in one place and each API only chooses how to print it.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { PipelineError } from '../pipeline/types.ts';

export type ApiStyle = 'openai' | 'original';

/** FastAPI's validation item (pydantic v2 shape). */
export interface FastApiIssue {
  type: string;
  loc: (string | number)[];
  msg: string;
  input: unknown;
}

export interface HttpErrorOptions {
  /** OpenAI `param`: the request field at fault. */
  param?: string | null;
  /** OpenAI `code`: a machine-readable reason (`unsupported_value`, `invalid_api_key`, ...). */
  code?: string | null;
  /** OpenAI `type`; defaults to invalid_request_error for 4xx and server_error for 5xx. */
  type?: string;
  headers?: Record<string, string>;
  /** Original API only: a FastAPI 422 list replacing the plain message as `detail`. */
  issues?: FastApiIssue[];
}

export class HttpError extends Error {
  readonly param: string | null;
  readonly code: string | null;
  readonly type: string;
  readonly headers: Record<string, string>;
  readonly issues?: FastApiIssue[];

  constructor(
    readonly statusCode: number,
    message: string,
    opts: HttpErrorOptions = {},
  ) {
    super(message);
    this.name = 'HttpError';
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
    this.type = opts.type ?? (statusCode >= 500 ? 'server_error' : 'invalid_request_error');
    this.headers = opts.headers ?? {};
    this.issues = opts.issues;
  }
}

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function openAiErrorBody(err: HttpError): OpenAiErrorBody {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } };
}

export function detailErrorBody(err: HttpError): { detail: string | FastApiIssue[] } {
  return { detail: err.issues ?? err.message };
}

// ---------------------------------------------------------------------------------------
// Schema validation errors

/** One failed schema rule, in terms a person reading the error can act on. */
export interface ValidationIssue {
  /** Top-level body field ('' when the body as a whole is wrong). */
  field: string;
  kind: 'missing' | 'not_file' | 'type' | 'enum' | 'range' | 'length' | 'other';
  /** The value that failed (undefined when missing). */
  input: unknown;
  message: string;
}

interface AjvIssue {
  instancePath: string;
  keyword: string;
  params: Record<string, any>;
  message?: string;
}

function pointerGet(root: unknown, pointer: string): unknown {
  let node: any = root;
  for (const raw of pointer.split('/').slice(1)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = node[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node;
}

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 60 ? value.slice(0, 57) + '...' : value}'`;
  if (Array.isArray(value)) return `a list (${value.length} values)`;
  return JSON.stringify(value) ?? String(value);
}

/** Translates Ajv's first error (Fastify stops at the first one) into a ValidationIssue. */
export function describeValidation(error: { validation?: AjvIssue[] }, body: unknown): ValidationIssue {
  const first = error.validation?.[0];
  if (!first) return { field: '', kind: 'other', input: body, message: 'The request body is invalid.' };
  const pathParts = first.instancePath.split('/').slice(1);
  if (first.keyword === 'required') {
    const field = pathParts[0] ?? String(first.params.missingProperty);
    return { field, kind: 'missing', input: undefined, message: `Missing required parameter: '${field}'.` };
  }
  const field = pathParts[0] ?? '';
  const input = pointerGet(body, first.instancePath);
  const where = pathParts.length > 1 ? `'${field}' item ${pathParts.slice(1).join('.')}` : `'${field}'`;
  switch (first.keyword) {
    case 'uploadedFile':
      return { field, kind: 'not_file', input, message: `'${field}' must be an uploaded file (a multipart file part with a filename), not a text field.` };
    case 'type': {
      const expected = String(first.params.type);
      const single = Array.isArray(input) && expected !== 'array' ? ' (it was sent more than once)' : '';
      return { field, kind: 'type', input, message: `Invalid value for ${where}: expected ${expected === 'boolean' ? 'a boolean (true/false)' : `a ${expected}`}, got ${show(input)}${single}.` };
    }
    case 'enum':
      return {
        field,
        kind: 'enum',
        input,
        message: `Unsupported value for ${where}: ${show(input)}. Supported values: ${(first.params.allowedValues as unknown[]).map((v) => String(v)).join(', ')}.`,
      };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { field, kind: 'range', input, message: `Invalid value for ${where}: ${show(input)} ${first.message ?? 'is out of range'}.` };
    case 'maxLength':
    case 'minLength':
    case 'maxItems':
      return { field, kind: 'length', input, message: `Invalid value for ${where}: ${first.message ?? 'wrong length'}.` };
    default:
      return { field, kind: 'other', input, message: `Invalid value for ${where}: ${show(input)} ${first.message ?? 'is invalid'}.` };
  }
}

/** The FastAPI (pydantic v2) item the original service would have produced for this issue. */
export function fastApiIssue(issue: ValidationIssue, schemaType?: string): FastApiIssue {
  const loc = issue.field ? ['body', issue.field] : ['body'];
  switch (issue.kind) {
    case 'missing':
      return { type: 'missing', loc, msg: 'Field required', input: null };
    case 'not_file':
      return { type: 'value_error', loc, msg: "Value error, Expected UploadFile, received: <class 'str'>", input: issue.input };
    case 'type':
      if (schemaType === 'boolean') return { type: 'bool_parsing', loc, msg: 'Input should be a valid boolean, unable to interpret input', input: issue.input };
      return { type: `${schemaType ?? 'value'}_type`, loc, msg: issue.message, input: issue.input };
    default:
      return { type: 'value_error', loc, msg: issue.message, input: issue.input };
  }
}

// ---------------------------------------------------------------------------------------
// Pipeline and decoding errors

/** Duck-typed so that a decode error crossing a worker boundary (re-created by name) is still recognised. */
function audioDecodeCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && (err as Error).name === 'AudioDecodeError') {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? code : 'undecodable';
  }
  return undefined;
}

export const UNDECODABLE_MESSAGE = 'The audio file could not be decoded or its format is not supported.';

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * The official OpenAI SDKs retry 408, 409, 429 and 5xx unless the answer says otherwise; this
 * header tells them that the same request would fail the same way (a decode that timed out,
 * an endpoint that does not exist here).
 */
export const NO_RETRY = Object.freeze({ 'x-should-retry': 'false' });

const TOO_LONG_MESSAGE = 'The audio is longer than this server accepts (MAX_AUDIO_SECONDS).';

/**
 * Maps errors thrown by the transcriber (PipelineError, AudioDecodeError) to HTTP.
 * Returns undefined for anything else (a genuine server fault).
 */
export function fromPipelineError(err: unknown): HttpError | undefined {
  const decode = audioDecodeCode(err);
  if (decode !== undefined) {
    const detail = (err as Error).message;
    if (decode === 'empty') return new HttpError(400, `The audio file is empty. ${detail}`.trim(), { param: 'file', code: 'empty_file' });
    if (decode === 'too_long') return new HttpError(413, `${TOO_LONG_MESSAGE} ${detail}`.trim(), { param: 'file', code: 'audio_too_long' });
    return new HttpError(400, `${UNDECODABLE_MESSAGE} ${detail}`.trim(), { param: 'file', code: 'invalid_value' });
  }
  if (!(err instanceof PipelineError) && !(err instanceof Error && err.name === 'PipelineError')) return undefined;
  const code = (err as PipelineError).code;
  const message = err.message;
  switch (code) {
    case 'audio_empty':
      return new HttpError(400, message || 'The audio file is empty.', { param: 'file', code: 'empty_file' });
    case 'audio_too_short':
      return new HttpError(400, message, { param: 'file', code: 'audio_too_short' });
    case 'audio_undecodable':
      return new HttpError(400, `${UNDECODABLE_MESSAGE} ${message}`.trim(), { param: 'file', code: 'invalid_value' });
    case 'audio_too_long':
      return new HttpError(413, message || TOO_LONG_MESSAGE, { param: 'file', code: 'audio_too_long' });
    case 'decode_timeout':
      // The same file would time out again: the SDKs are told not to retry.
      return new HttpError(408, message || 'Decoding the audio took too long (DECODE_TIMEOUT_SECONDS); the file was not transcribed.', {
        param: 'file',
        code: 'decode_timeout',
        headers: { ...NO_RETRY },
      });
    case 'bad_request':
      return new HttpError(400, message || 'Bad request', { code: 'invalid_value' });
    case 'job_timeout':
      return new HttpError(503, message || 'The transcription took too long (JOB_TIMEOUT_SECONDS) and was stopped. Retry later.', {
        code: 'job_timeout',
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      });
    case 'shutting_down':
      return new HttpError(503, message || 'The server is shutting down. Retry in a moment.', {
        code: 'shutting_down',
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      });
    case 'aligner_unavailable':
    case 'aligner_language_unsupported':
      return new HttpError(400, message, { param: 'timestamp_granularities', code: 'unsupported_value' });
    case 'queue_full':
      return new HttpError(503, message || 'The server is busy: too many transcriptions are queued. Retry later.', {
        code: 'overloaded',
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      });
    case 'model_not_ready':
      return new HttpError(503, message || 'Model not loaded yet', { code: 'model_not_ready', headers: { 'retry-after': String(RETRY_AFTER_SECONDS) } });
    case 'aborted':
      // Nobody is listening any more; the status only shows in the log.
      return new HttpError(499, message || 'The client closed the request.', { code: 'aborted' });
    default:
      return new HttpError(500, message, { code: 'internal_error' });
  }
}

// ---------------------------------------------------------------------------------------
// Everything else Fastify or the multipart parser can throw

/** Turns any error into an HttpError (validation issues are rendered by the caller's style). */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  const mapped = fromPipelineError(error);
  if (mapped) return mapped;
  const err = error as FastifyError & { validation?: AjvIssue[] };
  const status = typeof err?.statusCode === 'number' ? err.statusCode : 500;
  switch (err?.code) {
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
    case 'FST_FILES_LIMIT':
      return new HttpError(413, `The multipart body has too many parts (${err.message}).`, { code: 'too_many_parts' });
    case 'FST_PROTO_VIOLATION':
    case 'FST_INVALID_JSON_FIELD_ERROR':
      return new HttpError(400, err.message, { code: 'invalid_value' });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpError(400, err.message, { code: 'invalid_value' });
  }
  if (status >= 400 && status < 500) return new HttpError(status, err.message || 'Bad request');
  return new HttpError(500, err?.message || 'Internal server error', { code: 'internal_error' });
}

/** Sends an HttpError in the style of the API the request belongs to. */
export function sendHttpError(reply: FastifyReply, err: HttpError, style: ApiStyle): FastifyReply {
  reply.code(err.statusCode).headers(err.headers);
  return reply.send(style === 'openai' ? openAiErrorBody(err) : detailErrorBody(err));
}

/**
 * A Fastify error handler for one API family. 5xx are logged with their stack; 4xx are the
 * client's business and are only counted by the request log line.
 */
export function errorHandler(style: ApiStyle, validationToHttp: (issue: ValidationIssue, request: FastifyRequest) => HttpError) {
  return function handle(this: unknown, error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    const http = error.validation ? validationToHttp(describeValidation(error, request.body), request) : toHttpError(error);
    // 501 (translations) and 503 (loading, busy) are answers, not faults.
    if (http.statusCode >= 500 && http.statusCode !== 501 && http.statusCode !== 503) request.log.error({ err: error }, 'request failed');
    if (reply.raw.headersSent || reply.raw.destroyed) return;
    return sendHttpError(reply, http, style);
  };
}
