/**
 * `npm start`: reads the configuration from the environment (src/settings/settings.ts has every
 * variable), starts loading the model in the background, and listens at once: /health says
 * "loading" and /ready answers 503 until the model is ready. A model that fails to load ends
 * the process (exit code 1, the reason on stderr and in the log), so that a supervisor restarts
 * it or shows the failure, instead of a server answering 503 forever.
 *
 * SIGTERM or SIGINT: /ready fails and new requests get 503 with Retry-After at once; requests
 * in flight (uploading, decoding, queued, running) get SHUTDOWN_GRACE_SECONDS to finish, then
 * what is left is cancelled (503); the engine worker is released and the process exits 0. A
 * second signal ends the grace at once. (`npm start` execs node, so the signal npm forwards
 * reaches this process and not a shell between them.)
 */
import { runtimeSummary } from '../pipeline/engine-info.ts';
import { createTranscriber } from '../pipeline/transcriber.ts';
import { buildApp } from './app.ts';
import { parseSettings, SettingError, type Settings } from '../settings/settings.ts';
import { serverConfig, toTranscriberConfig } from './config.ts';
import type { FastifyInstance } from 'fastify';

/** After the grace, how long cancelled requests get to send their 503 (and remove their uploads). */
const CANCEL_FLUSH_MS = 2000;
/** How long closing the listener may wait for connections still open before they are cut. */
const CLOSE_MS = 2000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Exits once the log lines written so far are out (the logger writes asynchronously). */
function exit(app: FastifyInstance, code: number): void {
  const logger = app.log as unknown as { flush?: (cb: () => void) => void };
  if (!logger.flush) process.exit(code);
  const timer = setTimeout(() => process.exit(code), 1000);
  logger.flush(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}

/** Stops listening and closes the connections; ones still busy after CLOSE_MS are cut. */
async function closeServer(app: FastifyInstance): Promise<void> {
  const closed = app.close().then(
    () => true,
    (err) => {
      app.log.error({ err }, 'error while closing the server');
      return true;
    },
  );
  if (!(await Promise.race([closed, sleep(CLOSE_MS).then(() => false)]))) {
    app.server.closeAllConnections();
    // The cut responses' close handlers remove their uploads.
    await app.lifecycle.whenIdle(CANCEL_FLUSH_MS);
  }
}

/** Every setting, checked before anything starts: an invalid one ends the process naming it. */
function readSettings(): Settings {
  try {
    return parseSettings();
  } catch (err) {
    if (err instanceof SettingError) {
      console.error(`qwen3-asr: invalid configuration: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const settings = readSettings();
  const config = serverConfig(settings);

  // The transcriber logs through the server's logger; its first messages arrive from the
  // worker thread after the app (and so the logger) exists.
  let forward: ((level: 'info' | 'warn' | 'error', msg: string) => void) | undefined;
  const transcriber = createTranscriber(toTranscriberConfig(config, (level, msg) => forward?.(level, msg)));
  const app = buildApp({ config, transcriber });
  const engineLog = app.log.child({ component: 'engine' });
  forward = (level, msg) => engineLog[level](msg);

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) {
      app.log.warn(`${signal} again: cancelling the running work now`);
      app.lifecycle.hurryUp();
      return;
    }
    closing = true;
    app.log.info(`${signal}: shutting down; running and queued work has ${config.shutdownGraceMs / 1000} s to finish (SHUTDOWN_GRACE_SECONDS)`);
    const drained = await app.lifecycle.drain(config.shutdownGraceMs);
    if (!drained) app.log.warn(`${app.lifecycle.requestsInFlight} requests still running at the end of the grace: cancelling them`);
    // Cancels what is left (its requests get 503) and releases the engine worker.
    await transcriber.close().catch((err) => app.log.error({ err }, 'error while closing the transcriber'));
    await app.lifecycle.whenIdle(CANCEL_FLUSH_MS);
    await closeServer(app);
    // The closed responses issued their uploads' removal as they closed: let it complete.
    await sleep(100);
    app.log.info('shut down');
    exit(app, 0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    app.log.error({ err }, `cannot listen on ${config.host}:${config.port}`);
    await transcriber.close().catch(() => undefined);
    process.exit(1);
  }

  const runtime = runtimeSummary(config.threads);
  app.log.info(
    {
      model: config.modelName,
      device: config.device,
      quant: config.quant,
      threads: runtime.threads,
      huge_pages: runtime.hugePages,
      forced_aligner: config.forcedAligner ?? 'off',
      max_upload_mb: Math.round((config.maxUploadBytes / 1024 / 1024) * 100) / 100,
      max_queue: config.maxQueue,
      auth: config.apiKey ? 'bearer' : 'off',
    },
    'configuration',
  );
  if (settings.given.has('dtype') && config.dtype !== 'float32') {
    app.log.info(`DTYPE=${config.dtype} is accepted for compatibility; the engine computes in float32 (use QUANT=int8/int4 for smaller weights)`);
  }
  transcriber.whenReady().then(
    () => app.log.info({ load_s: transcriber.loadSeconds === undefined ? undefined : Math.round(transcriber.loadSeconds * 10) / 10 }, `model ready: ${config.modelName}`),
    async (err: Error) => {
      if (closing) return;
      closing = true;
      app.log.fatal(`model failed to load: ${err.message}; exiting`);
      console.error(`qwen3-asr: the model ${config.modelName} failed to load: ${err.message}`);
      await closeServer(app);
      await transcriber.close().catch(() => undefined);
      exit(app, 1);
    },
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
