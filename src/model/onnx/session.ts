/**
 * Turns a graph built in TypeScript into an ONNX Runtime session, with an on-disk cache.
 *
 * onnxruntime-node cannot take external weight data from buffers, so the model and its
 * weight file are always written to disk and the session is created from that path. Where
 * those files go:
 * - cached (the default): `$QWEN3_ASR_CACHE_DIR` (default `~/.cache/qwen3-asr`), in a folder
 *   named by a hash of everything the files depend on (the checkpoint's config and weight
 *   files, the precision, and the source of the graph-building code itself). The next load
 *   of the same model skips building and quantising — the slow part of a load (tens of
 *   seconds for the 1.7B model) — and only creates the session. Each entry also records its
 *   "slot" (graph name, checkpoint folder and build parameters, but not the file dates or the
 *   code): a new build replaces the entries of its slot, so updating the checkpoint or this
 *   package does not leave gigabytes of superseded graphs behind.
 * - `QWEN3_ASR_CACHE=0`: a private temporary folder, removed right after the session is
 *   created (ONNX Runtime has read or mapped the weights by then; on Linux a mapped file
 *   outlives its directory entry).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { intraOpThreads } from './cpu-threads.ts';
import { ExternalDataFile, GraphBuilder } from './graph.ts';
import type { Scratch } from './scratch.ts';
import type { Device } from '../../pipeline/types.ts';

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; 0: one per physical core (cpu-threads.ts). */
  threads: number;
  /** Overrides the cache folder; `false` disables caching. */
  cacheDir?: string | false;
  /** The checkpoint the graphs are built from (folder and weight files): the cache key's source. */
  cacheSource?: { dir: string; files: string[] };
  /** Buffers shared by the graphs built in one load (scratch.ts); the caller releases them after. */
  scratch?: Scratch;
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

export function defaultCacheDir(): string | false {
  if (/^(0|false|no|off)$/i.test(process.env.QWEN3_ASR_CACHE ?? '')) return false;
  return process.env.QWEN3_ASR_CACHE_DIR || join(homedir(), '.cache', 'qwen3-asr');
}

/** Source files whose content decides the graphs' bytes: a change to any of them invalidates the cache. */
const GRAPH_SOURCES = ['graph.ts', 'protobuf.ts', 'layers.ts', 'int8-kernel.ts', '../quantize.ts', '../encoder-graph.ts', '../decoder-graph.ts'];
let graphSourceHash: string | undefined;

function sourceHash(): string {
  if (!graphSourceHash) {
    const h = createHash('sha256');
    const here = dirname(fileURLToPath(import.meta.url));
    for (const f of GRAPH_SOURCES) h.update(readFileSync(join(here, f)));
    graphSourceHash = h.digest('hex');
  }
  return graphSourceHash;
}

/**
 * A cache key for a graph built from a checkpoint folder: config.json's content, every
 * weight file's name, size and modification time, the build parameters, and the builder's
 * source.
 */
export function checkpointCacheKey(checkpointDir: string, files: string[], params: unknown): string {
  const h = createHash('sha256');
  h.update(sourceHash());
  h.update(JSON.stringify(params));
  h.update(readFileSync(join(checkpointDir, 'config.json')));
  // Absolute paths: the same checkpoint named relative to another working directory is the same build.
  for (const f of [...new Set(files.map((file) => resolve(file)))].sort()) {
    const st = statSync(f);
    h.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
  }
  return h.digest('hex').slice(0, 24);
}

/** What a cache entry is a build of: the same graph of the same checkpoint folder with the same parameters. */
function cacheSlot(checkpointDir: string, params: unknown): string {
  return createHash('sha256').update(JSON.stringify({ dir: resolve(checkpointDir), params })).digest('hex');
}

/**
 * Removes the other complete entries of graph `name` that were built for `slot`, and the
 * partial builds of `name` whose process is gone (killed while building).
 */
function pruneSlot(cacheRoot: string, name: string, keep: string, slot: string): void {
  for (const entry of readdirSync(cacheRoot)) {
    if (entry === keep || !entry.startsWith(`${name}-`)) continue;
    const partial = /\.partial-(\d+)-\d+$/.exec(entry);
    if (partial) {
      if (!processAlive(Number(partial[1]))) rmSync(join(cacheRoot, entry), { recursive: true, force: true });
      continue;
    }
    try {
      if (readFileSync(join(cacheRoot, entry, 'slot'), 'utf8') === slot) rmSync(join(cacheRoot, entry), { recursive: true, force: true });
    } catch {
      // No slot file (another graph, or an entry being written): not ours to remove.
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
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
  if (process.env.QWEN3_ASR_ORT_PROFILE) {
    options.enableProfiling = true;
    options.profileFilePrefix = `${process.env.QWEN3_ASR_ORT_PROFILE}-${name}`;
  }
  return options;
}

async function openSession(name: string, modelPath: string, opts: SessionOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(modelPath, sessionOptions(name, opts));
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
    keyParams !== undefined && opts.cacheSource ? checkpointCacheKey(opts.cacheSource.dir, opts.cacheSource.files, { name, keyParams, derivedParams }) : undefined;
  if (cacheKey && cacheRoot && opts.cacheSource) {
    const entry = `${name}-${cacheKey}`;
    const dir = join(cacheRoot, entry);
    const slot = cacheSlot(opts.cacheSource.dir, { name, keyParams });
    const done = join(dir, 'complete');
    if (existsSync(done)) {
      try {
        return await openSession(name, join(dir, `${name}.onnx`), opts);
      } catch (err) {
        if (err instanceof DeviceError) throw err;
        rmSync(dir, { recursive: true, force: true }); // damaged cache entry: rebuild below
      }
    }
    const tmp = `${dir}.partial-${process.pid}-${Date.now()}`;
    mkdirSync(tmp, { recursive: true });
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
    return openSession(name, join(dir, `${name}.onnx`), opts);
  }
  const dir = join(tmpdir(), `qwen3-asr-${name}-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  try {
    return await openSession(name, writeModel(dir, name, build, opts.scratch), opts);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
