/**
 * The original service's API (tehtommeh/qwen3-asr-1.7b-api): `GET /`, `GET /health`,
 * `POST /transcribe`, with its response shapes and FastAPI-style errors (api-contract §1, §5.2).
 *
 * Deliberate differences (decisions §5.7): client mistakes get 4xx instead of the original's
 * 500 (keeping its message text), ISO codes work as language hints, `/health` answers while
 * the model loads (the original only opened its socket once loaded).
 */
import { basename } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { publicModelId } from '../../pipeline/engine-info.ts';
import { QWEN_LANGUAGES, resolveLanguage } from '../../pipeline/languages.ts';
import type { Transcriber } from '../../pipeline/types.ts';
import type { ServerConfig } from '../config.ts';
import { errorHandler, fastApiIssue, HttpError, type ValidationIssue } from '../errors.ts';
import { bearerAuth, hooks, requireTranscriber } from '../hooks.ts';
import { transcribeUpload } from '../jobs.ts';
import { originalTranscription } from '../../formats/response-formats.ts';
import { bearerSecurity, errorResponses } from '../schemas.ts';
import { readMultipartBody, setupUploads, type UploadedFile } from '../upload.ts';
import { prefersHtml, sendPage, unlessPage } from './page.ts';

export interface OriginalRoutesOptions {
  config: ServerConfig;
  transcriber: Transcriber;
  version: string;
}

/** The original's message when timestamps are asked for without an aligner (qwen_asr's text). */
const NO_ALIGNER_MESSAGE =
  'return_time_stamps=True requires `forced_aligner` to be provided at initialization. This server has no forced aligner configured (set FORCED_ALIGNER).';

const infoSchema = {
  summary: 'API information',
  tags: ['original'],
  response: {
    200: {
      type: 'object',
      required: ['name', 'version', 'model', 'description', 'endpoints'],
      properties: {
        name: { type: 'string' },
        version: { type: 'string' },
        model: { type: 'string', description: 'MODEL_NAME: a repo id as it is, a folder by its name only' },
        description: { type: 'string' },
        endpoints: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
    ...errorResponses('original', [401]),
  },
};

const healthSchema = {
  summary: 'Health check',
  description:
    '200 with status "loading" while the model loads (the server listens before the model is ready), then "healthy". ' +
    '503 with status "unhealthy" and the error when loading failed. Never needs the API key.',
  tags: ['original'],
  response: {
    ...Object.fromEntries(
      [200, 503].map((code) => [
        code,
        {
          type: 'object',
          required: ['status', 'model_loaded', 'model_name', 'device'],
          properties: {
            status: { type: 'string', enum: ['loading', 'healthy', 'unhealthy'] },
            model_loaded: { type: 'boolean' },
            model_name: { type: 'string', description: 'MODEL_NAME: a repo id as it is, a folder by its name only (no local paths).' },
            device: { type: 'string' },
            queue_length: { type: 'integer', description: 'Transcriptions waiting for a place beside the running ones.' },
            error: { type: 'string', description: 'Why loading failed (status "unhealthy" only).' },
          },
        },
      ]),
    ),
  },
};

const transcribeBodySchema = {
  type: 'object',
  required: ['file'],
  properties: {
    file: { uploadedFile: true, description: 'The audio (or video) file, in any format ffmpeg can read.' },
    language: {
      type: 'string',
      description:
        'Language to transcribe in: a Qwen name ("English"), an ISO 639 code ("en") or a BCP-47 tag ("en-US"). ' +
        'Empty or "auto" detects it. Unknown values are refused with 400.',
    },
    return_time_stamps: {
      type: 'boolean',
      default: false,
      description: 'Word timestamps from the forced aligner (needs FORCED_ALIGNER). Accepts 1/0, true/false, yes/no, on/off.',
    },
  },
} as const;

interface TranscribeBody {
  file: UploadedFile;
  language?: string;
  return_time_stamps: boolean;
}

const transcribeSchema = {
  summary: 'Transcribe an audio file',
  description: "The original service's endpoint: multipart upload, JSON answer with the Qwen language name(s).",
  tags: ['original'],
  consumes: ['multipart/form-data'],
  body: transcribeBodySchema,
  response: {
    200: {
      type: 'object',
      required: ['text', 'language', 'timestamps', 'metadata'],
      properties: {
        text: { type: 'string' },
        language: { type: 'string', description: 'Qwen name(s) of the detected language, comma-joined across segments; "" when silent.' },
        timestamps: {
          type: 'array',
          nullable: true,
          description: 'Word (or CJK character) timestamps in seconds; null unless return_time_stamps was true.',
          items: {
            type: 'object',
            required: ['text', 'start', 'end'],
            properties: { text: { type: 'string' }, start: { type: 'number' }, end: { type: 'number' } },
          },
        },
        metadata: {
          type: 'object',
          required: ['model', 'processing_time', 'device'],
          properties: {
            model: { type: 'string' },
            processing_time: { type: 'string', description: 'Seconds with two decimals and an "s", e.g. "2.45s".' },
            device: { type: 'string' },
            truncated: { type: 'boolean', description: 'A segment reached its token budget before a stop token (its text may be cut short).' },
            repetition_stopped: { type: 'boolean', description: 'A segment looped and was stopped by the repetition guard (its text is the collapsed loop).' },
          },
        },
      },
    },
    ...errorResponses('original', [400, 401, 408, 413, 422, 500, 503]),
  },
};

/** FastAPI answers validation problems with 422 and a list; the type of the item depends on the field's declared type. */
function originalValidationError(issue: ValidationIssue): HttpError {
  const declared = (transcribeBodySchema.properties as Record<string, { type?: string }>)[issue.field]?.type;
  return new HttpError(422, issue.message, { param: issue.field || null, issues: [fastApiIssue(issue, declared)] });
}

export default async function originalRoutes(app: FastifyInstance, opts: OriginalRoutesOptions): Promise<void> {
  const { config, transcriber } = opts;
  await setupUploads(app);
  app.setErrorHandler(errorHandler('original', originalValidationError));
  const auth = bearerAuth(config.apiKey, 'original');
  const security = config.apiKey ? { security: bearerSecurity } : {};

  const modelTitle = basename(config.modelName);
  // MODEL_NAME may be a folder on this machine: clients see its name, never where it lives.
  const modelId = publicModelId(config.modelName);
  // Browsers get the web page (routes/page.ts), without the key; API clients get this JSON.
  app.get('/', { schema: { ...infoSchema, ...security }, onRequest: unlessPage(auth) }, async (request, reply) => prefersHtml(request.headers.accept) ? sendPage(reply) : ({
    name: `${modelTitle} API`,
    version: opts.version,
    model: modelId,
    description: `Automatic Speech Recognition API powered by ${modelTitle}. Supports ${transcriber.languages.length || QWEN_LANGUAGES.length} languages and 22 Chinese dialects.`,
    endpoints: {
      '/': 'API information',
      '/health': 'Health check',
      '/transcribe': 'Transcribe audio files (POST)',
      '/v1/audio/transcriptions': 'OpenAI-compatible transcription (POST)',
      '/v1/audio/translations': 'OpenAI translation (POST; not supported, answers 501)',
      '/v1/models': 'OpenAI-compatible model list',
      '/docs': 'Swagger UI',
      '/redoc': 'ReDoc',
      '/openapi.json': 'OpenAPI document',
    },
  }));

  app.get('/health', { schema: healthSchema }, async (_request, reply) => {
    const state = transcriber.state;
    const body = {
      status: state === 'ready' ? 'healthy' : state === 'loading' ? 'loading' : 'unhealthy',
      model_loaded: state === 'ready',
      model_name: modelId,
      device: transcriber.device,
      queue_length: transcriber.queueLength,
      ...(state === 'failed' ? { error: hideLocalPaths(transcriber.loadError ?? 'unknown error', config.modelName, modelId) } : {}),
    };
    return reply.code(state === 'failed' ? 503 : 200).send(body);
  });

  app.post(
    '/transcribe',
    {
      schema: { ...transcribeSchema, ...security },
      onRequest: hooks(auth, requireTranscriber(transcriber, config.maxQueue, 'original')),
      preValidation: readMultipartBody({ dir: config.uploadDir, maxBytes: config.maxUploadBytes }),
    },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const body = request.body as TranscribeBody;
      const language = resolveLanguage(body.language ?? '', transcriber.languages.length ? transcriber.languages : QWEN_LANGUAGES);
      if (!language.ok) throw new HttpError(400, language.message, { param: 'language' });
      if (body.return_time_stamps) {
        if (!transcriber.alignerLanguages) throw new HttpError(400, NO_ALIGNER_MESSAGE, { param: 'return_time_stamps' });
        if (language.name) {
          const aligned = resolveLanguage(language.name, transcriber.alignerLanguages);
          if (!aligned.ok) {
            throw new HttpError(400, `Timestamps are not available for ${language.name}: the forced aligner supports ${transcriber.alignerLanguages.join(', ')}.`, {
              param: 'return_time_stamps',
            });
          }
        }
      }
      const started = performance.now();
      const result = await transcribeUpload(request, reply, transcriber, body.file, {
        language: language.name || undefined,
        timestamps: body.return_time_stamps,
      });
      return originalTranscription(result, {
        model: modelId,
        device: transcriber.device,
        processingSeconds: (performance.now() - started) / 1000,
        timestamps: body.return_time_stamps,
      });
    },
  );
}

/**
 * /health answers anyone, so a load error shown there keeps no local paths: the model folder
 * becomes its public id, any other absolute path its last part ("…/config.json" → "config.json").
 */
export function hideLocalPaths(message: string, modelName: string, modelId: string): string {
  const named = modelName && modelName !== modelId ? message.split(modelName).join(modelId) : message;
  return named.replace(/(^|[\s'"`(\[=,])(\/[^\s'"`()[\],]*)/g, (_, before: string, path: string) => before + (basename(path) || path));
}
