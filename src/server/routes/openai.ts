/**
 * OpenAI's audio API, mounted under /v1 (api-contract §3, §5.3): what the official SDKs send
 * and parse, including streaming. Errors use OpenAI's envelope.
 *
 * - `model` is accepted and ignored: this server runs one model (GET /v1/models names it).
 * - `prompt` becomes Qwen's context (the system turn): names and terms to expect.
 * - `temperature` is checked (0–1) and ignored: decoding is greedy.
 * - `stream=true` works with json and text (server-sent events: text as it is decoded, in
 *   order); with srt, vtt or verbose_json it is refused (decision §5.7.3).
 * - word timestamps (verbose_json + `timestamp_granularities[]=word`) need the forced aligner;
 *   srt and vtt use it whenever one is configured and covers the language: cues then follow
 *   the words' times, else each segment's time is shared out by text length.
 * - `chunking_strategy` and `include[]` are validated and accepted; segmentation is the
 *   server's own and no log-probabilities are returned.
 */
import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { modelOwner, publicModelId } from '../../pipeline/engine-info.ts';
import { QWEN_LANGUAGES, resolveLanguage } from '../../pipeline/languages.ts';
import { PipelineError, type TranscribeOptions, type Transcriber, type TranscriptionResult } from '../../pipeline/types.ts';
import type { ServerConfig } from '../config.ts';
import { errorHandler, HttpError, NO_RETRY, openAiErrorBody, sendHttpError, toHttpError, type ValidationIssue } from '../errors.ts';
import { bearerAuth, requireTranscriber } from '../hooks.ts';
import { transcribeUpload } from '../jobs.ts';
import {
  DeltaBuilder,
  openAiJson,
  RESPONSE_FORMATS,
  sseEvent,
  subtitles,
  TIMESTAMP_GRANULARITIES,
  verboseJson,
  type ResponseFormat,
  type TimestampGranularity,
} from '../../formats/response-formats.ts';
import { bearerSecurity, errorResponses, openAiErrorSchema, plainText } from '../schemas.ts';
import { readMultipartBody, setupUploads, type UploadedFile } from '../upload.ts';

export interface OpenAiRoutesOptions {
  config: ServerConfig;
  transcriber: Transcriber;
  /** Unix seconds reported as the model's `created`. */
  createdAt: number;
}

const MAX_PROMPT_CHARS = 4000;

const transcriptionBodySchema = {
  type: 'object',
  required: ['file'],
  properties: {
    file: { uploadedFile: true, description: 'The audio (or video) file, in any format ffmpeg can read.' },
    model: { type: 'string', description: 'Accepted and ignored: this server runs one model (see GET /v1/models).' },
    language: {
      type: 'string',
      description: 'ISO 639 code ("en"), BCP-47 tag ("en-US") or language name ("english"). Empty or "auto" detects it; unknown values get 400.',
    },
    prompt: { type: 'string', maxLength: MAX_PROMPT_CHARS, description: "Context for the model (names, terms); becomes Qwen's system prompt." },
    response_format: { type: 'string', enum: RESPONSE_FORMATS, default: 'json' },
    temperature: { type: 'number', minimum: 0, maximum: 1, description: 'Accepted (0–1) and ignored: decoding is greedy.' },
    timestamp_granularities: {
      type: 'array',
      items: { type: 'string', enum: TIMESTAMP_GRANULARITIES },
      description:
        'With verbose_json: "segment" (default) and/or "word" (needs the forced aligner). The SDKs send `timestamp_granularities[]`; ' +
        'the bare key, repeated values and comma-separated lists work too.',
    },
    stream: { type: 'boolean', default: false, description: 'Server-sent events (json and text formats only).' },
    chunking_strategy: {
      description: '"auto" or a server_vad object (accepted; segmentation is the server\'s own).',
      anyOf: [
        { type: 'string', enum: ['auto'] },
        {
          type: 'object',
          required: ['type'],
          properties: {
            type: { type: 'string', enum: ['server_vad'] },
            prefix_padding_ms: { type: 'integer', minimum: 0 },
            silence_duration_ms: { type: 'integer', minimum: 0 },
            threshold: { type: 'number', minimum: 0, maximum: 1 },
          },
        },
      ],
    },
    include: { type: 'array', items: { type: 'string', enum: ['logprobs'] }, description: 'Accepted; no log-probabilities are returned.' },
  },
} as const;

interface TranscriptionBody {
  file: UploadedFile;
  model?: string;
  language?: string;
  prompt?: string;
  response_format: ResponseFormat;
  temperature?: number;
  timestamp_granularities?: TimestampGranularity[];
  stream: boolean;
}

const usageSchema = {
  type: 'object',
  required: ['type', 'seconds'],
  properties: { type: { type: 'string', enum: ['duration'] }, seconds: { type: 'number' } },
} as const;

const jsonResponseSchema = {
  type: 'object',
  title: 'Transcription (json)',
  required: ['text'],
  properties: { text: { type: 'string' }, usage: usageSchema },
} as const;

const verboseResponseSchema = {
  type: 'object',
  title: 'Transcription (verbose_json)',
  required: ['task', 'language', 'duration', 'text'],
  properties: {
    task: { type: 'string', enum: ['transcribe'] },
    language: { type: 'string', description: 'Lowercase English name ("english"); "" when none was detected.' },
    duration: { type: 'number' },
    text: { type: 'string' },
    segments: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'seek', 'start', 'end', 'text', 'tokens', 'temperature', 'avg_logprob', 'compression_ratio', 'no_speech_prob'],
        properties: {
          id: { type: 'integer' },
          seek: { type: 'integer', description: 'Segment start in 10 ms frames.' },
          start: { type: 'number' },
          end: { type: 'number' },
          text: { type: 'string' },
          tokens: { type: 'array', items: { type: 'integer' } },
          temperature: { type: 'number', description: '0: greedy decoding.' },
          avg_logprob: { type: 'number', description: '0: not computed by this engine.' },
          compression_ratio: { type: 'number', description: 'UTF-8 length / zlib length of the text (repetition signal).' },
          no_speech_prob: { type: 'number', description: '1 when the segment produced no text, else 0.' },
          truncated: { type: 'boolean', description: 'The segment reached its token budget before a stop token.' },
          repetition_stopped: { type: 'boolean', description: 'The segment looped and was stopped by the repetition guard.' },
        },
      },
    },
    words: {
      type: 'array',
      items: {
        type: 'object',
        required: ['word', 'start', 'end'],
        properties: { word: { type: 'string' }, start: { type: 'number' }, end: { type: 'number' } },
      },
    },
    usage: usageSchema,
  },
} as const;

const transcriptionSchema = {
  summary: 'Transcribe audio (OpenAI-compatible)',
  description:
    'Multipart upload as the OpenAI SDKs send it. `response_format` json (default), text, srt, vtt or verbose_json. ' +
    'With `stream=true` (json or text) the answer is `text/event-stream`: `transcript.text.delta` events as text is decoded, in order, then `transcript.text.done`.',
  tags: ['openai'],
  consumes: ['multipart/form-data'],
  body: transcriptionBodySchema,
  response: {
    200: {
      description: 'The transcript in the requested format.',
      content: {
        // verbose_json first: a json answer lacks its required fields and falls through to the plain shape.
        'application/json': { schema: { anyOf: [verboseResponseSchema, jsonResponseSchema] } },
        'text/plain': { schema: { ...plainText, description: 'response_format text or srt.' } },
        'text/vtt': { schema: { ...plainText, description: 'response_format vtt.' } },
        'text/event-stream': { schema: { ...plainText, description: 'stream=true: `event:` + `data:` lines per event.' } },
      },
    },
    ...errorResponses('openai', [400, 401, 408, 413, 500, 503]),
  },
};

function openAiValidationError(issue: ValidationIssue, request: FastifyRequest): HttpError {
  const code = issue.kind === 'missing' ? 'missing_required_parameter' : issue.kind === 'enum' ? 'unsupported_value' : 'invalid_value';
  const hint =
    issue.kind === 'missing' && issue.field === 'file' && !request.isMultipart()
      ? ` Send the request as multipart/form-data with the audio in a 'file' part (got ${request.headers['content-type'] ? `'${request.headers['content-type']}'` : 'no content type'}).`
      : '';
  return new HttpError(400, issue.message + hint, { param: issue.field || null, code });
}

/**
 * `chunking_strategy` may arrive as "auto", as bracket fields (already an object), or as a
 * JSON string; turn the JSON string into the object the schema checks.
 */
async function normaliseChunkingStrategy(request: FastifyRequest): Promise<void> {
  const body = request.body as Record<string, unknown> | undefined;
  const value = body?.chunking_strategy;
  if (typeof value !== 'string' || !value.trim().startsWith('{')) return;
  try {
    body!.chunking_strategy = JSON.parse(value);
  } catch {
    throw new HttpError(400, `Invalid value for 'chunking_strategy': not valid JSON (${JSON.stringify(value.slice(0, 60))}).`, {
      param: 'chunking_strategy',
      code: 'invalid_value',
    });
  }
}

/** How long a stream may stay silent before a keep-alive comment. */
export const SSE_KEEPALIVE_MS = 10_000;

export default async function openAiRoutes(app: FastifyInstance, opts: OpenAiRoutesOptions): Promise<void> {
  const { config, transcriber } = opts;
  await setupUploads(app);
  app.setErrorHandler(errorHandler('openai', openAiValidationError));
  app.setNotFoundHandler((request, reply) => {
    sendHttpError(reply, new HttpError(404, `Invalid URL (${request.method} ${request.url})`), 'openai');
  });
  const auth = bearerAuth(config.apiKey, 'openai');
  if (auth) app.addHook('onRequest', auth);
  const security = config.apiKey ? { security: bearerSecurity } : {};

  const id = publicModelId(config.modelName);
  const model = { id, object: 'model', created: opts.createdAt, owned_by: modelOwner(id) };
  const modelSchema = {
    type: 'object',
    required: ['id', 'object', 'created', 'owned_by'],
    properties: { id: { type: 'string' }, object: { type: 'string', enum: ['model'] }, created: { type: 'integer' }, owned_by: { type: 'string' } },
  };

  app.get(
    '/models',
    {
      schema: {
        summary: 'List models (OpenAI-compatible)',
        tags: ['openai'],
        ...security,
        response: {
          200: { type: 'object', required: ['object', 'data'], properties: { object: { type: 'string', enum: ['list'] }, data: { type: 'array', items: modelSchema } } },
          ...errorResponses('openai', [401]),
        },
      },
    },
    async () => ({ object: 'list', data: [model] }),
  );

  app.get(
    '/models/*',
    {
      schema: {
        summary: 'Retrieve a model (OpenAI-compatible)',
        tags: ['openai'],
        ...security,
        params: { type: 'object', properties: { '*': { type: 'string', description: 'Model id (may contain "/").' } } },
        response: { 200: modelSchema, ...errorResponses('openai', [401, 404]) },
      },
    },
    async (request) => {
      // Fastify has already percent-decoded the wildcard ("Qwen%2FQwen3-ASR-1.7B" works too).
      const wanted = (request.params as { '*': string })['*'];
      if (wanted !== model.id && wanted !== config.modelName) {
        throw new HttpError(404, `The model '${wanted}' does not exist. This server runs '${model.id}'.`, { param: 'model', code: 'model_not_found' });
      }
      return model;
    },
  );

  app.post(
    '/audio/translations',
    {
      schema: {
        summary: 'Translate audio (not supported)',
        description: 'Qwen3-ASR transcribes; it does not translate. Always 501.',
        tags: ['openai'],
        ...security,
        response: { 501: openAiErrorSchema, ...errorResponses('openai', [401]) },
      },
    },
    async () => {
      // Without x-should-retry: false the SDKs send the same request again (twice by default).
      throw new HttpError(501, 'Translation is not supported: Qwen3-ASR transcribes speech in its own language. Use /v1/audio/transcriptions.', {
        code: 'unsupported',
        headers: { ...NO_RETRY },
      });
    },
  );

  app.post(
    '/audio/transcriptions',
    {
      schema: { ...transcriptionSchema, ...security },
      onRequest: requireTranscriber(transcriber, config.maxQueue, 'openai'),
      preValidation: [readMultipartBody({ dir: config.uploadDir, maxBytes: config.maxUploadBytes }), normaliseChunkingStrategy],
    },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const body = request.body as TranscriptionBody;
      const format = body.response_format;
      if (body.stream && format !== 'json' && format !== 'text') {
        throw new HttpError(400, `stream=true works with response_format json or text, not '${format}'.`, { param: 'stream', code: 'unsupported_value' });
      }
      const language = resolveLanguage(body.language ?? '', transcriber.languages.length ? transcriber.languages : QWEN_LANGUAGES);
      if (!language.ok) throw new HttpError(400, language.message, { param: 'language', code: 'unsupported_value' });

      const granularities = body.timestamp_granularities ?? [];
      const words = format === 'verbose_json' && granularities.includes('word');
      if (words) checkAligner(transcriber, language.name);
      // Subtitles take word times when they can, and do without them when they cannot.
      const subtitleWords = (format === 'srt' || format === 'vtt') && alignerCovers(transcriber, language.name);

      const options: Omit<TranscribeOptions, 'signal'> = {
        language: language.name || undefined,
        context: body.prompt,
        timestamps: words || subtitleWords,
      };
      if (body.stream) return streamTranscription(request, reply, transcriber, body.file, options);

      const result = subtitleWords
        ? await transcribeForSubtitles(request, reply, transcriber, body.file, options)
        : await transcribeUpload(request, reply, transcriber, body.file, options);
      switch (format) {
        case 'json':
          return openAiJson(result);
        case 'verbose_json':
          return verboseJson(result, { granularities, requestedLanguage: language.name });
        case 'text':
          return reply.type('text/plain; charset=utf-8').send(result.text);
        case 'srt':
          return reply.type('text/plain; charset=utf-8').send(subtitles(result, 'srt'));
        case 'vtt':
          return reply.type('text/vtt; charset=utf-8').send(subtitles(result, 'vtt'));
      }
    },
  );
}

/** A forced aligner is configured and supports the requested language (any, when none is forced). */
function alignerCovers(transcriber: Transcriber, language: string): boolean {
  if (!transcriber.alignerLanguages) return false;
  return !language || resolveLanguage(language, transcriber.alignerLanguages).ok;
}

/**
 * Subtitles with word times. When the detected language turns out to be one the aligner does
 * not support, the pipeline stops at the first aligned batch; the file is then transcribed
 * again without word times, so the client still gets its subtitles (cues timed by text length).
 */
async function transcribeForSubtitles(
  request: FastifyRequest,
  reply: FastifyReply,
  transcriber: Transcriber,
  file: UploadedFile,
  options: Omit<TranscribeOptions, 'signal'>,
): Promise<TranscriptionResult> {
  try {
    return await transcribeUpload(request, reply, transcriber, file, options);
  } catch (err) {
    if (!(err instanceof PipelineError && err.code === 'aligner_language_unsupported')) throw err;
    request.log.info({ reason: err.message }, 'subtitles without word times');
    return transcribeUpload(request, reply, transcriber, file, { ...options, timestamps: false });
  }
}

function checkAligner(transcriber: Transcriber, language: string): void {
  const param = 'timestamp_granularities';
  if (!transcriber.alignerLanguages) {
    throw new HttpError(400, 'Word timestamps need the forced aligner, and this server has none configured (set FORCED_ALIGNER). Use timestamp_granularities[]=segment.', {
      param,
      code: 'unsupported_value',
    });
  }
  if (language && !resolveLanguage(language, transcriber.alignerLanguages).ok) {
    throw new HttpError(400, `Word timestamps are not available for ${language}: the forced aligner supports ${transcriber.alignerLanguages.join(', ')}.`, {
      param,
      code: 'unsupported_value',
    });
  }
}

/**
 * stream=true: server-sent events. Text is sent as it is decoded: the settled text of the
 * earliest unfinished segment as its tokens come (engine/text/partial-text.ts), each
 * finished segment's rest, then the whole text. The response starts with the first delta, or
 * with a keep-alive comment once nothing has been ready for SSE_KEEPALIVE_MS: until then a
 * failure (undecodable audio, full queue) still gets its proper status code; after that it is
 * an `error` event, which the SDKs raise as APIError.
 */
async function streamTranscription(
  request: FastifyRequest,
  reply: FastifyReply,
  transcriber: Transcriber,
  file: UploadedFile,
  options: Omit<TranscribeOptions, 'signal'>,
): Promise<FastifyReply> {
  const events = new PassThrough();
  events.on('error', () => undefined); // a client that left; the job's abort handles the rest
  const deltas = new DeltaBuilder();
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    reply.code(200).header('cache-control', 'no-cache').header('x-accel-buffering', 'no').type('text/event-stream; charset=utf-8').send(events);
  };
  const send = (chunk: string) => {
    start();
    if (!events.destroyed && !events.writableEnded) events.write(chunk);
    keepAlive.refresh();
  };
  const write = (type: string, data: object) => send(sseEvent(type, { type, ...data }));
  // A comment line every so often keeps proxies and clients from timing out on a long wait.
  const keepAlive = setInterval(() => send(': keep-alive\n\n'), SSE_KEEPALIVE_MS);
  try {
    const result = await transcribeUpload(request, reply, transcriber, file, {
      ...options,
      onPartial: (index, text, language) => {
        const delta = deltas.partial(index, text, language);
        if (delta) write('transcript.text.delta', { delta });
      },
      onSegment: (segment) => {
        const delta = deltas.push(segment);
        if (delta) write('transcript.text.delta', { delta });
      },
    });
    write('transcript.text.done', { text: result.text });
  } catch (err) {
    if (!started) throw err;
    const http = toHttpError(err);
    if (http.statusCode >= 500) request.log.error({ err }, 'transcription failed during streaming');
    write('error', openAiErrorBody(http));
  } finally {
    clearInterval(keepAlive);
  }
  events.end();
  return reply;
}
