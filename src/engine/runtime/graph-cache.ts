/**
 * The on-disk cache of built graphs: where entries live, what their keys hash, and how a new
 * build replaces the entries it supersedes.
 *
 * An entry is named by a hash of everything its files depend on: the checkpoint's config and
 * weight files, the build parameters, and the source code that builds the graph. That code is
 * found, not listed: the import closure of the modules that build the graph (each graph module
 * names itself), so a change to any file the builder reaches (quantisers, checkpoint readers,
 * the protobuf writer) invalidates the cache, and a new file joins the key without anyone
 * remembering to add it.
 *
 * Each entry also records its "slot" (graph name, checkpoint folder and build parameters, but
 * not the file dates or the code): a new build replaces the entries of its slot, so updating
 * the checkpoint or this package does not leave gigabytes of superseded graphs behind.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Relative `.ts` specifiers of static imports and re-exports: statements that start a line,
 * so an import written inside a string or a comment is not followed. (The engine loads no
 * graph-building code dynamically.)
 */
const IMPORT = /^(?:import|export)\b[^;'"]*?(?:\bfrom\s*)?(['"])(\.{1,2}\/[^'"]+\.ts)\1/gm;

function toPath(fileOrUrl: string): string {
  return fileOrUrl.startsWith('file:') ? fileURLToPath(fileOrUrl) : resolve(fileOrUrl);
}

/** Every source file reachable from `entries` through relative imports, sorted. */
export function importClosure(entries: readonly string[]): string[] {
  const seen = new Set<string>();
  const queue = entries.map(toPath);
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) queue.push(resolve(dirname(file), m[2]));
  }
  return [...seen].sort();
}

const closureHashes = new Map<string, string>();

/** A hash of the content of every file in the import closure of `entries` (memoised per process). */
export function sourceHash(entries: readonly string[]): string {
  const key = JSON.stringify(entries);
  let hash = closureHashes.get(key);
  if (!hash) {
    const h = createHash('sha256');
    for (const file of importClosure(entries)) h.update(`${file.slice(file.lastIndexOf('/src/') + 1)}\0`).update(readFileSync(file));
    hash = h.digest('hex');
    closureHashes.set(key, hash);
  }
  return hash;
}

/** What a cache entry is built from. */
export interface CacheSource {
  /** The checkpoint folder (its config.json is hashed). */
  dir: string;
  /** The checkpoint's weight files (name, size and modification time are hashed). */
  files: string[];
  /** Modules (file URLs or paths) that build the graph: their import closure's source is hashed. */
  code: readonly string[];
}

/**
 * A cache key for a graph built from a checkpoint folder: config.json's content, every
 * weight file's name, size and modification time, the build parameters, and the builder's
 * source.
 */
export function checkpointCacheKey(source: CacheSource, params: unknown): string {
  const h = createHash('sha256');
  h.update(sourceHash(source.code));
  h.update(JSON.stringify(params));
  h.update(readFileSync(join(source.dir, 'config.json')));
  // Absolute paths: the same checkpoint named relative to another working directory is the same build.
  for (const f of [...new Set(source.files.map((file) => resolve(file)))].sort()) {
    const st = statSync(f);
    h.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
  }
  return h.digest('hex').slice(0, 24);
}

/** What a cache entry is a build of: the same graph of the same checkpoint folder with the same parameters. */
export function cacheSlot(checkpointDir: string, params: unknown): string {
  return createHash('sha256').update(JSON.stringify({ dir: resolve(checkpointDir), params })).digest('hex');
}

/**
 * Removes the other complete entries of graph `name` that were built for `slot`, and the
 * partial builds of `name` whose process is gone (killed while building).
 */
export function pruneSlot(cacheRoot: string, name: string, keep: string, slot: string): void {
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
