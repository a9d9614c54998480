/**
 * Turns a graph built in TypeScript into an ONNX Runtime session, with an on-disk cache.
 *
 * onnxruntime-node cannot take external weight data from buffers, so the model and its
 * weight file are always written to disk and the session is created from that path. Where
 * those files go:
 * - cached (the default): `$QWEN3_ASR_CACHE_DIR` (default `~/.cache/qwen3-asr`), in a folder
 *   named by a hash of everything the files depend on (graph-cache.ts). The next load of the
 *   same model skips building and quantising (the slow part of a load) and only creates the
 *   session.
 * - `QWEN3_ASR_CACHE=0`: a private temporary folder, removed right after the session is
 *   created (ONNX Runtime has read or mapped the weights by then; on Linux a mapped file
 *   outlives its directory entry).
 *
 * On the CPU, a cache entry used on a machine for the first time also gets ONNX Runtime's
 * prepacked weights saved into it (prepacked.ts), so later inference sessions map them from the file
 * instead of packing them into fresh memory — when QWEN3_ASR_PREPACKED_WEIGHTS (or
 * SessionOptions.prepacked) turns the mapping on.
 */
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { intraOpThreads } from './cpu-threads.ts';
import { ExternalDataFile, GraphBuilder } from './onnx-graph.ts';
import { cacheSlot, checkpointCacheKey, pruneSlot, type CacheSource } from './graph-cache.ts';
import { attachPrepacked, lockForPacking, packedFor, packingFolder, savingOptions, unpackedModel, wantsPacking } from './prepacked.ts';
import type { Scratch } from './scratch.ts';
import type { Device } from '../types.ts';
import { readSetting } from '../../settings/settings.ts';

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; 0: one per physical core (cpu-threads.ts). */
  threads: number;
  /** Overrides the cache folder; `false` disables caching. */
  cacheDir?: string | false;
  /** What the graphs are built from (checkpoint files and builder code): the cache key's source. */
  cacheSource?: CacheSource;
  /** Buffers shared by the graphs built in one load (scratch.ts); the caller releases them after. */
  scratch?: Scratch;
  /** Told how each session was made and how long that took (load timings). */
  log?: (msg: string) => void;
  /**
   * Whether sessions from the cache map ONNX Runtime's prepacked weights from it (default:
   * QWEN3_ASR_PREPACKED_WEIGHTS, off, as a long-running server would rather keep its speed;
   * prepacked.ts). The trade, on an AMD EPYC Zen 5 VM, 2 vCPUs: a cached 1.7B int8
   * decoder's session made 1–3 s sooner and 1.9 GB less heap, against transcription about 7%
   * slower, as the mapped weights sit in 4 kB pages where the session's own memory has 2 MB
   * ones (docs/benchmarks.md).
   */
  prepacked?: boolean;
}

/** `session` with the graph-building modules whose source joins the cache key (graph-cache.ts). */
export function builtBy(session: SessionOptions, ...code: string[]): SessionOptions {
  return session.cacheSource ? { ...session, cacheSource: { ...session.cacheSource, code } } : session;
}

export class DeviceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceError';
  }
}

export function executionProviders(device: Device): ort.InferenceSession.ExecutionProviderConfig[] {
  if (device === 'cpu') return ['cpu'];
  const m = /^cuda(?::(\d+))?$/.exec(device);
  if (!m) throw new DeviceError(`unknown device ${JSON.stringify(device)}: use cpu, cuda or cuda:N`);
  return [{ name: 'cuda', deviceId: m[1] ? Number(m[1]) : 0 }, 'cpu'];
}

/** QWEN3_ASR_CACHE_DIR, or false when QWEN3_ASR_CACHE turns the cache off. */
export function defaultCacheDir(): string | false {
  return readSetting('cache') && readSetting('cacheDir');
}

export function sessionOptions(name: string, opts: SessionOptions): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: executionProviders(opts.device),
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    // Flush denormals to zero. Masked attention scores (-1e30 and the like) come out of the
    // softmax's exponential as denormals, and x86 arithmetic on denormals takes microcode
    // assists: a 512-position prefill pass spent 2 ns per softmax element with them and 0.3
    // without. Values below 1.2e-38 have no measurable effect on any output.
    extra: { session: { set_denormal_as_zero: '1' } },
  };
  options.intraOpNumThreads = intraOpThreads(opts.threads);
  // Developer aid: QWEN3_ASR_ORT_PROFILE=prefix writes ONNX Runtime's per-op profile JSON.
  const profile = readSetting('ortProfile');
  if (profile) {
    options.enableProfiling = true;
    options.profileFilePrefix = `${profile}-${name}`;
  }
  return options;
}

async function openSession(name: string, modelPath: string, opts: SessionOptions, saving?: ReturnType<typeof savingOptions>): Promise<ort.InferenceSession> {
  const options = sessionOptions(name, opts);
  if (saving) {
    options.optimizedModelFilePath = saving.optimizedModelFilePath;
    options.extra = { ...options.extra, session: { ...(options.extra as { session?: object })?.session, ...saving.session } };
  }
  try {
    return await ort.InferenceSession.create(modelPath, options);
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (opts.device !== 'cpu' && /cuda|shared library|provider/i.test(msg)) {
      throw new DeviceError(
        `DEVICE=${opts.device}: ONNX Runtime's CUDA execution provider could not be loaded (${msg.split('\n')[0]}). ` +
          'Install it with `npm run install:cuda` (downloads the CUDA 12 provider libraries for onnxruntime-node; needs an NVIDIA driver with CUDA 12), or use DEVICE=cpu.',
      );
    }
    throw err;
  }
}

function writeModel(dir: string, name: string, build: (g: GraphBuilder) => void, scratch?: Scratch): string {
  const ext = new ExternalDataFile(join(dir, `${name}.weights`));
  const g = new GraphBuilder(name, ext, scratch);
  try {
    build(g);
  } finally {
    ext.close();
  }
  const modelPath = join(dir, `${name}.onnx`);
  writeFileSync(modelPath, g.toBytes());
  return modelPath;
}

/**
 * Creates the session for graph `name`. With a `cacheKey` and caching on, a complete cached
 * build is reused; otherwise the graph is built (into the cache, or a temporary folder).
 */
export async function createSession(
  name: string,
  build: (g: GraphBuilder) => void,
  opts: SessionOptions,
  /**
   * What the caller chose for this graph (precision, options): together with the checkpoint
   * folder, what a cache entry is a build of. Enables caching with opts.cacheSource.
   */
  keyParams?: unknown,
  /**
   * Choices the code derives from those (they change the build, so they are part of the key,
   * but not of what the entry is a build of): a version that adds or changes one replaces the
   * older entry instead of leaving it beside the new one.
   */
  derivedParams?: unknown,
): Promise<ort.InferenceSession> {
  const cacheRoot = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
  const cacheKey =
    keyParams !== undefined && opts.cacheSource ? checkpointCacheKey(opts.cacheSource, { name, keyParams, derivedParams }) : undefined;
  if (cacheKey && cacheRoot && opts.cacheSource) {
    const entry = `${name}-${cacheKey}`;
    const dir = join(cacheRoot, entry);
    const slot = cacheSlot(opts.cacheSource.dir, { name, keyParams });
    const done = join(dir, 'complete');
    if (existsSync(done)) {
      try {
        return await openCached(name, dir, opts, 'cached graph');
      } catch (err) {
        if (err instanceof DeviceError) throw err;
        rmSync(dir, { recursive: true, force: true }); // damaged cache entry: rebuild below
      }
    }
    const tmp = `${dir}.partial-${process.pid}-${Date.now()}`;
    mkdirSync(tmp, { recursive: true });
    const started = performance.now();
    try {
      writeModel(tmp, name, build, opts.scratch);
      writeFileSync(join(tmp, 'slot'), slot);
      writeFileSync(join(tmp, 'complete'), new Date().toISOString());
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    pruneSlot(cacheRoot, name, entry, slot);
    return openCached(name, dir, opts, `graph built in ${seconds(started)} s`);
  }
  // A folder of its own: engines in worker threads of one process share its pid and may build
  // the same graph in the same millisecond.
  const dir = mkdtempSync(join(tmpdir(), `qwen3-asr-${name}-`));
  try {
    const started = performance.now();
    const modelPath = writeModel(dir, name, build, opts.scratch);
    const built = seconds(started);
    const opening = performance.now();
    const session = await openSession(name, modelPath, opts);
    opts.log?.(`${name}: session in ${seconds(opening)} s (graph built in ${built} s, no cache)`);
    return session;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const seconds = (since: number) => ((performance.now() - since) / 1000).toFixed(1);

/**
 * The session of a complete cache entry. On the CPU, when the entry is used on this machine
 * for the first time, ONNX Runtime's prepacked weights are saved into it too (prepacked.ts);
 * packing is an optimisation, so a failure there leaves the entry as it was and the session
 * in use.
 */
async function openCached(name: string, dir: string, opts: SessionOptions, how: string): Promise<ort.InferenceSession> {
  const started = performance.now();
  // Blobs are packed for ONNX Runtime's CPU kernels: other devices get the model as built.
  if (!(opts.prepacked ?? readSetting('prepackedWeights')) || opts.device !== 'cpu') {
    const plain = unpackedModel(dir, name);
    const session = await openSession(name, existsSync(plain) ? plain : join(dir, `${name}.onnx`), opts);
    opts.log?.(`${name}: session in ${seconds(started)} s (${how}${opts.device === 'cpu' ? ', weights packed into memory' : ''})`);
    return session;
  }
  const modelPath = join(dir, `${name}.onnx`);
  const lock = wantsPacking(dir) ? lockForPacking(dir) : undefined;
  if (!lock) {
    const session = await openSession(name, modelPath, opts);
    opts.log?.(`${name}: session in ${seconds(started)} s (${how}${packedFor(dir) ? ', prepacked weights mapped' : ''})`);
    return session;
  }
  try {
    const folder = packingFolder(dir);
    let session: ort.InferenceSession;
    try {
      session = await openSession(name, modelPath, opts, savingOptions(folder, name));
    } catch (err) {
      rmSync(folder, { recursive: true, force: true });
      throw err;
    }
    const opened = seconds(started);
    try {
      const bytes = attachPrepacked(dir, name, folder);
      opts.log?.(`${name}: session in ${opened} s (${how}), prepacked weights saved to the cache in ${seconds(started)} s (${(bytes / 1e9).toFixed(2)} GB, ${gb(join(dir, `${name}.weights`))} GB in all)`);
    } catch (err) {
      opts.log?.(`${name}: session in ${opened} s (${how}); saving its prepacked weights failed: ${(err as Error).message}`);
    }
    return session;
  } finally {
    lock.release();
  }
}

function gb(file: string): string {
  try {
    return (statSync(file).size / 1e9).toFixed(2);
  } catch {
    return '?';
  }
}
