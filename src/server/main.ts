/**
 * `npm start`: reads the configuration from the environment (src/settings/settings.ts has every
 * variable), starts loading the model in the background, and listens at once: /health says
 * "loading" until the model is ready, "unhealthy" (503) if loading failed.
 */
import { runtimeSummary } from '../pipeline/engine-info.ts';
import { createTranscriber } from '../pipeline/transcriber.ts';
import { buildApp } from './app.ts';
import { parseSettings, SettingError, type Settings } from '../settings/settings.ts';
import { serverConfig, toTranscriberConfig } from './config.ts';

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
    if (closing) return;
    closing = true;
    app.log.info(`${signal}: closing (in-flight requests finish first)`);
    await app.close().catch((err) => app.log.error({ err }, 'error while closing the server'));
    await transcriber.close().catch((err) => app.log.error({ err }, 'error while closing the transcriber'));
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

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
    () => app.log.info(`model ready: ${config.modelName}`),
    (err: Error) => app.log.error(`model failed to load: ${err.message}; /health reports unhealthy`),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
