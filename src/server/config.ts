/**
 * The server's configuration: the settings (src/settings/settings.ts, where every variable is
 * read, checked and documented) in the shape the app and the pipeline take.
 */
import { parseSettings, SettingError, type Dtype, type Env, type LogLevel, type Settings } from '../settings/settings.ts';
import type { Device, Quantization, TranscriberConfig, VadSettings } from '../pipeline/types.ts';

export type { Dtype, LogLevel };

export interface ServerConfig {
  host: string;
  port: number;
  /** MODEL_NAME as given; `/`, `/health` and the responses' metadata show its public id (a folder by its name only). */
  modelName: string;
  device: Device;
  /** Accepted for compatibility with the original; the engine computes in float32. */
  dtype: Dtype;
  quant: Quantization;
  threads: number;
  /** -1 (no limit) is already mapped to the largest safe integer. */
  maxBatchSize: number;
  maxNewTokens?: number;
  /** Longest segment long audio is cut into (seconds). */
  segmentSeconds: number;
  /** Voice activity detection; undefined: off. */
  vad?: VadSettings;
  /** Empty/undefined: no aligner, word timestamps are refused with a 400. */
  forcedAligner?: string;
  hfHome?: string;
  hfEndpoint?: string;
  hfOffline: boolean;
  hfToken?: string;
  maxUploadBytes: number;
  maxQueue: number;
  apiKey?: string;
  logLevel: LogLevel;
  uploadDir: string;
  /** Longest decoded audio accepted, in seconds. */
  maxAudioSeconds: number;
  /** Uploads decoded at once, before they wait for inference. */
  decodeConcurrency: number;
  decodeTimeoutMs: number;
  /** Time limit of one running transcription; 0: none. */
  jobTimeoutMs: number;
  /** Origins allowed by CORS (`*` for any); empty: CORS off. */
  corsOrigins: string[];
  /** PEM files: both set, the server speaks HTTPS (and wss://). */
  tls?: { certFile: string; keyFile: string };
  shutdownGraceMs: number;
  realtime: {
    /** Sockets open at once; 0: the endpoint is off. */
    maxSessions: number;
    updateSeconds: number;
    maxUtteranceSeconds: number;
  };
}

/** The server's share of the settings. */
export function serverConfig(s: Settings): ServerConfig {
  return {
    host: s.host,
    port: s.port,
    modelName: s.modelName,
    device: s.device,
    dtype: s.dtype,
    quant: s.quant,
    threads: s.threads,
    maxBatchSize: s.maxBatchSize,
    maxNewTokens: s.maxNewTokens,
    segmentSeconds: s.segmentSeconds,
    vad: s.vad === 'on' ? { threshold: s.vadThreshold, minSilenceMs: s.vadMinSilenceMs } : undefined,
    forcedAligner: s.forcedAligner,
    hfHome: s.hfHome,
    hfEndpoint: s.hfEndpoint,
    hfOffline: s.hfOffline,
    hfToken: s.hfToken,
    maxUploadBytes: Math.floor(s.maxUploadMb * 1024 * 1024),
    maxQueue: s.maxQueue,
    apiKey: s.apiKey,
    logLevel: s.logLevel,
    uploadDir: s.uploadDir,
    maxAudioSeconds: s.maxAudioSeconds,
    decodeConcurrency: s.decodeConcurrency,
    decodeTimeoutMs: Math.round(s.decodeTimeoutSeconds * 1000),
    jobTimeoutMs: s.jobTimeoutSeconds * 1000,
    corsOrigins: (s.corsOrigins ?? '').split(',').map((o) => o.trim()).filter(Boolean),
    tls: tlsFiles(s),
    shutdownGraceMs: Math.round(s.shutdownGraceSeconds * 1000),
    realtime: { maxSessions: s.realtimeMaxSessions, updateSeconds: s.realtimeUpdateSeconds, maxUtteranceSeconds: s.realtimeMaxUtteranceSeconds },
  };
}

/** Both TLS files or neither: one alone is a configuration error naming the missing one. */
function tlsFiles(s: Settings): ServerConfig['tls'] {
  if (!s.tlsCertFile && !s.tlsKeyFile) return undefined;
  if (!s.tlsCertFile) throw new SettingError('TLS_CERT_FILE', 'TLS_CERT_FILE', 'must be set when TLS_KEY_FILE is');
  if (!s.tlsKeyFile) throw new SettingError('TLS_KEY_FILE', 'TLS_KEY_FILE', 'must be set when TLS_CERT_FILE is');
  return { certFile: s.tlsCertFile, keyFile: s.tlsKeyFile };
}

/** Reads and checks every setting (default: this process's environment); throws SettingError on the first invalid one. */
export function readServerConfig(env?: Env): ServerConfig {
  return serverConfig(parseSettings(env));
}

/** The pipeline's share of the configuration. */
export function toTranscriberConfig(config: ServerConfig, log?: TranscriberConfig['log']): TranscriberConfig {
  return {
    model: config.modelName,
    aligner: config.forcedAligner,
    device: config.device,
    quant: config.quant,
    threads: config.threads,
    maxBatchSize: config.maxBatchSize,
    maxNewTokens: config.maxNewTokens,
    segmentSeconds: config.segmentSeconds,
    vad: config.vad,
    maxQueue: config.maxQueue,
    maxAudioSeconds: config.maxAudioSeconds,
    decodeConcurrency: config.decodeConcurrency,
    decodeTimeoutMs: config.decodeTimeoutMs,
    jobTimeoutMs: config.jobTimeoutMs,
    scratchDir: config.uploadDir,
    hfHome: config.hfHome,
    hfEndpoint: config.hfEndpoint,
    hfOffline: config.hfOffline,
    hfToken: config.hfToken,
    live: config.realtime,
    log,
  };
}
