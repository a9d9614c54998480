/**
 * `GET /metrics`: the service's measurements in the Prometheus text format (prom-client).
 *
 * - HTTP: requests by route, method and status; response time by route.
 * - Work: audio seconds transcribed, processing seconds per request (upload decode, queue wait
 *   and inference), the real-time factor (processing / audio seconds), decode time per upload,
 *   queue depth and time spent waiting in it, jobs running, uploads decoding.
 * - Engine: rows per decoding step of the shared batch, steps and tokens decoded, tokens per
 *   second (the engine worker reports its steps about once a second while it decodes).
 * - State: model state and load time, live sessions open, whether the server is shutting down,
 *   and prom-client's process metrics (memory, CPU, event loop lag, garbage collection).
 *
 * Each app has its own registry, so several apps in one process (tests) do not collide.
 * The route needs the API key when one is set (Prometheus sends it with `authorization` in its
 * scrape config); `/health` and `/ready` stay open for probes that carry no key.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PipelineStats, Transcriber } from '../pipeline/types.ts';
import type { ServerConfig } from './config.ts';
import { bearerAuth, hooks } from './hooks.ts';
import type { Lifecycle } from './lifecycle.ts';
import type { RequestLog } from './request-log.ts';
import { bearerSecurity } from './schemas.ts';

const PREFIX = 'qwen3_asr_';
/** A tokens-per-second reading older than this is stale: the batch has been idle. */
const STALE_RATE_MS = 3000;

export interface MetricsOptions {
  transcriber: Transcriber;
  lifecycle: Lifecycle;
  modelName: string;
  version: string;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly responseSeconds: Histogram<'route'>;
  private readonly audioSeconds: Counter;
  private readonly processingSeconds: Histogram;
  private readonly realTimeFactor: Histogram;
  private readonly decodeSeconds: Histogram;
  private readonly queueWait: Histogram;
  private readonly stepRows: Histogram;
  private readonly steps: Counter;
  private readonly tokens: Counter;
  private tokensPerSecond = 0;
  private rateAt = 0;
  private readonly unsubscribe: () => void;

  constructor(opts: MetricsOptions) {
    const { transcriber, lifecycle } = opts;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const self = this;

    this.requests = new Counter({ name: `${PREFIX}http_requests_total`, help: 'HTTP requests by route, method and status (499: the client left first).', labelNames: ['route', 'method', 'status'], registers });
    this.responseSeconds = new Histogram({
      name: `${PREFIX}http_response_seconds`,
      help: 'Time from request to response closed, by route.',
      labelNames: ['route'],
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900],
      registers,
    });
    this.audioSeconds = new Counter({ name: `${PREFIX}audio_seconds_total`, help: 'Seconds of audio transcribed (successful transcriptions).', registers });
    this.processingSeconds = new Histogram({
      name: `${PREFIX}processing_seconds`,
      help: 'Seconds one transcription took in the pipeline: decoding the upload, waiting in the queue, inference.',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
    this.realTimeFactor = new Histogram({
      name: `${PREFIX}real_time_factor`,
      help: 'Processing seconds per audio second of each transcription (below 1: faster than real time).',
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
      registers,
    });
    this.decodeSeconds = new Histogram({
      name: `${PREFIX}audio_decode_seconds`,
      help: 'Seconds decoding one upload to samples took (before it waits in the queue).',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.queueWait = new Histogram({
      name: `${PREFIX}queue_wait_seconds`,
      help: 'Seconds a job waited in the queue for a place in the engine.',
      buckets: [0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
      registers,
    });
    this.stepRows = new Histogram({
      name: `${PREFIX}decode_step_rows`,
      help: 'Rows (segments) decoded together in one step of the shared batch.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    });
    this.steps = new Counter({ name: `${PREFIX}decode_steps_total`, help: 'Decoding steps of the shared batch.', registers });
    this.tokens = new Counter({ name: `${PREFIX}decoded_tokens_total`, help: 'Tokens decoded (one per row per step).', registers });
    new Gauge({
      name: `${PREFIX}decoded_tokens_per_second`,
      help: 'Tokens decoded per second over the engine\'s last report (about a second); 0 when idle.',
      registers,
      collect() {
        this.set(Date.now() - self.rateAt > STALE_RATE_MS ? 0 : self.tokensPerSecond);
      },
    });
    new Gauge({
      name: `${PREFIX}queue_depth`,
      help: 'Jobs waiting for a place in the engine.',
      registers,
      collect() {
        this.set(transcriber.queueLength);
      },
    });
    new Gauge({
      name: `${PREFIX}active_jobs`,
      help: 'Jobs in the engine, their segments decoding in one shared batch.',
      registers,
      collect() {
        this.set(transcriber.activeJobs);
      },
    });
    new Gauge({
      name: `${PREFIX}decoding_uploads`,
      help: 'Uploads being decoded (running) and waiting for a decoder (waiting).',
      labelNames: ['state'],
      registers,
      collect() {
        const d = transcriber.decoding ?? { running: 0, waiting: 0 };
        this.set({ state: 'running' }, d.running);
        this.set({ state: 'waiting' }, d.waiting);
      },
    });
    new Gauge({
      name: `${PREFIX}realtime_sessions`,
      help: 'Live transcription sessions open.',
      registers,
      collect() {
        this.set(transcriber.liveSessions);
      },
    });
    new Gauge({
      name: `${PREFIX}model_state`,
      help: 'The model\'s state: 1 for the current one of loading, ready, failed.',
      labelNames: ['state'],
      registers,
      collect() {
        for (const state of ['loading', 'ready', 'failed'] as const) this.set({ state }, transcriber.state === state ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}model_load_seconds`,
      help: 'Seconds the model took to load (0 until it is loaded).',
      registers,
      collect() {
        if (transcriber.loadSeconds !== undefined) this.set(transcriber.loadSeconds);
      },
    });
    new Gauge({
      name: `${PREFIX}shutting_down`,
      help: '1 from SIGTERM/SIGINT on, while running work finishes.',
      registers,
      collect() {
        this.set(lifecycle.draining ? 1 : 0);
      },
    });
    new Gauge({ name: `${PREFIX}info`, help: 'The service\'s version and model (always 1).', labelNames: ['version', 'model', 'device'], registers }).set(
      { version: opts.version, model: opts.modelName, device: transcriber.device },
      1,
    );

    this.unsubscribe = transcriber.onStats?.((s) => this.onStats(s)) ?? (() => undefined);
  }

  private onStats(s: PipelineStats): void {
    switch (s.type) {
      case 'decoded':
        this.decodeSeconds.observe(s.seconds);
        break;
      case 'started':
        this.queueWait.observe(s.waitedSeconds);
        break;
      case 'steps':
        this.steps.inc(s.steps);
        this.tokens.inc(s.tokens);
        for (const [rows, count] of s.rows) for (let i = 0; i < count; i++) this.stepRows.observe(rows);
        if (s.seconds > 0) {
          this.tokensPerSecond = s.tokens / s.seconds;
          this.rateAt = Date.now();
        }
        break;
    }
  }

  /** One finished response (app.ts calls this when it closes). */
  observeResponse(request: FastifyRequest, status: number, seconds: number, log: RequestLog): void {
    // The route's pattern, never the raw URL: unknown paths must not make new series.
    const route = request.routeOptions?.url ?? 'unmatched';
    this.requests.inc({ route, method: request.method, status: String(status) });
    this.responseSeconds.observe({ route }, seconds);
    if (log.processingSeconds === undefined || log.audioSeconds === undefined || status >= 400) return;
    this.audioSeconds.inc(log.audioSeconds);
    this.processingSeconds.observe(log.processingSeconds);
    if (log.audioSeconds > 0) this.realTimeFactor.observe(log.processingSeconds / log.audioSeconds);
  }

  /** Stops listening to the transcriber. */
  close(): void {
    this.unsubscribe();
  }
}

/** `GET /metrics` (needs the API key when one is set) and `GET /ready` (open, for probes). */
export function operationsRoutes(app: FastifyInstance, opts: { config: ServerConfig; transcriber: Transcriber; lifecycle: Lifecycle; metrics: Metrics }): void {
  const { config, transcriber, lifecycle, metrics } = opts;
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        description: 'The service\'s metrics in the Prometheus text format. Needs the API key when one is set.',
        tags: ['operations'],
        ...(config.apiKey ? { security: bearerSecurity } : {}),
      },
      onRequest: hooks(bearerAuth(config.apiKey, 'original')),
    },
    async (_request, reply: FastifyReply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
  app.get(
    '/ready',
    {
      schema: {
        summary: 'Readiness',
        description: '200 when the model is loaded and the server is not shutting down, else 503: for load balancers and the image\'s HEALTHCHECK. Never needs the API key.',
        tags: ['operations'],
        response: {
          ...Object.fromEntries(
            [200, 503].map((code) => [
              code,
              { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ready', 'loading', 'failed', 'shutting_down'] } } },
            ]),
          ),
        },
      },
    },
    async (_request, reply) => {
      const status = lifecycle.draining ? 'shutting_down' : transcriber.state;
      return reply.code(status === 'ready' ? 200 : 503).send({ status });
    },
  );
}
