/**
 * Turns what the user gave as a checkpoint (MODEL_NAME, --checkpoint, FORCED_ALIGNER) into a folder
 * holding config.json, the safetensors weights and the tokenizer files.
 *
 * Two forms are accepted, as in the original Python service (`from_pretrained(MODEL_NAME)`):
 *  - a folder: `/models/asr`, `./asr`, `~/asr`, or any path that exists;
 *  - a Hugging Face repo id, `Qwen/Qwen3-ASR-1.7B`, looked up in the Hugging Face cache
 *    (`$HF_HOME/hub/models--Qwen--Qwen3-ASR-1.7B/snapshots/<commit>/`, commit from `refs/main`)
 *    and downloaded into it when missing and downloads are allowed.
 *
 * When online, a repo id is checked against the hub (one small API request; files already cached
 * are not fetched again), and the cached snapshot is used when the hub cannot be reached, like
 * huggingface_hub does. With HF_HUB_OFFLINE=1 no request is made at all.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import {
  downloadSnapshot,
  expandHome,
  HubError,
  hubCacheDir,
  hubEndpoint,
  isCommitHash,
  isRepoId,
  offlineFromEnv,
  readCachedRef,
  repoCacheDir,
  type HubDownloadOptions,
} from './hub-download.ts';

export interface ResolveOptions {
  /** HF_HOME (the cache is `<hfHome>/hub`). Default: HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface. */
  hfHome?: string;
  /** Allow downloading a repo id that is not (completely) cached. Default true. */
  download?: boolean;
  /** Hub base URL. Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Never contact the hub. Default: HF_HUB_OFFLINE. */
  offline?: boolean;
  /** Access token for private or gated repos. Default: HF_TOKEN. */
  token?: string;
  /** Branch, tag or commit hash of a repo id. Default `main`. */
  revision?: string;
  log?: (msg: string) => void;
  /** Download progress of a repo id (downloadSnapshot's onProgress). */
  onDownload?: HubDownloadOptions['onProgress'];
  signal?: AbortSignal;
}

export class CheckpointError extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'CheckpointError';
  }
}

/**
 * What keeps `dir` from being a usable checkpoint folder, or undefined when config.json and every
 * weight file are present (shards are taken from model.safetensors.index.json). Dangling symlinks
 * of a half-downloaded cache snapshot count as missing.
 */
export function checkpointProblem(dir: string): string | undefined {
  if (!existsSync(join(dir, 'config.json'))) return 'config.json is missing';
  const indexFile = join(dir, 'model.safetensors.index.json');
  if (existsSync(indexFile)) {
    let weightMap: unknown;
    try {
      weightMap = JSON.parse(readFileSync(indexFile, 'utf8')).weight_map;
    } catch (err) {
      return `model.safetensors.index.json is not valid JSON (${(err as Error).message})`;
    }
    if (!weightMap || typeof weightMap !== 'object') return 'model.safetensors.index.json has no "weight_map"';
    for (const shard of new Set(Object.values(weightMap as Record<string, string>))) {
      if (typeof shard !== 'string' || !existsSync(join(dir, shard))) return `weight shard ${String(shard)} (listed in model.safetensors.index.json) is missing`;
    }
    return undefined;
  }
  if (!existsSync(join(dir, 'model.safetensors'))) return 'neither model.safetensors nor model.safetensors.index.json is present';
  return undefined;
}

/** Written as a path rather than a repo id: absolute, `./`, `../`, `~`, `.`/`..`, or with backslashes. */
function looksLikePath(s: string): boolean {
  return isAbsolute(s) || s === '.' || s === '..' || s.startsWith('./') || s.startsWith('../') || s === '~' || s.startsWith('~/') || s.includes('\\');
}

function resolveFolder(given: string, path: string): string {
  if (!existsSync(path)) {
    const hint = isRepoId(given) ? '' : looksLikePath(given) ? '' : ' (and it is not a Hugging Face repo id of the form owner/name either)';
    throw new CheckpointError(`checkpoint folder ${path} does not exist${hint}; pass a folder holding config.json and model.safetensors, or a repo id such as Qwen/Qwen3-ASR-1.7B`);
  }
  if (!statSync(path).isDirectory()) {
    throw new CheckpointError(`checkpoint ${path} is a file; pass the folder holding config.json and the weights`);
  }
  const problem = checkpointProblem(path);
  if (problem) throw new CheckpointError(`${path} is not a complete checkpoint folder: ${problem}`);
  return path;
}

/**
 * The cached snapshot folder of `repoId` at `revision` and whether it is complete, without any
 * network access. `commit` is undefined when the revision was never cached.
 */
export function findCachedSnapshot(repoId: string, opts: { hfHome?: string; revision?: string } = {}): { repoDir: string; commit?: string; dir?: string; problem?: string } {
  const repoDir = repoCacheDir(hubCacheDir(opts.hfHome), repoId);
  const revision = opts.revision || 'main';
  const commit = readCachedRef(repoDir, revision);
  if (!commit) return { repoDir };
  const dir = join(repoDir, 'snapshots', commit);
  if (!existsSync(dir)) return { repoDir, commit, problem: `snapshot folder ${dir} is missing` };
  return { repoDir, commit, dir, problem: checkpointProblem(dir) };
}

/**
 * Resolves a checkpoint folder or a Hugging Face repo id to an absolute checkpoint folder,
 * downloading a repo into the Hugging Face cache when it is not there and downloads are allowed.
 */
export async function resolveCheckpoint(nameOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  const given = (nameOrPath ?? '').trim();
  if (!given) throw new CheckpointError('no checkpoint given; pass a checkpoint folder or a Hugging Face repo id such as Qwen/Qwen3-ASR-1.7B');
  const asPath = resolve(expandHome(given));

  // An existing path always wins, so a local folder named like `Qwen/Qwen3-ASR-1.7B` is used as is.
  if (existsSync(asPath) || looksLikePath(given) || !isRepoId(given)) return resolveFolder(given, asPath);

  const repoId = given;
  const revision = opts.revision || 'main';
  const offline = opts.offline ?? offlineFromEnv();
  const download = opts.download ?? true;
  const log = opts.log ?? (() => {});
  const cached = findCachedSnapshot(repoId, { hfHome: opts.hfHome, revision });
  const cachedOk = cached.dir !== undefined && cached.problem === undefined;
  const at = `${repoId}${revision === 'main' ? '' : `@${revision}`}`;

  if (offline || !download) {
    if (cachedOk) return cached.dir!;
    const why = offline ? 'HF_HUB_OFFLINE is set' : 'downloads are disabled';
    const fix = offline
      ? 'set HF_HUB_OFFLINE=0 to download it, or pass a checkpoint folder'
      : 'allow downloads, download it with `huggingface-cli download` into this cache, or pass a checkpoint folder';
    const state = !cached.commit
      ? `is not in the Hugging Face cache at ${cached.repoDir}${isCommitHash(revision) ? '' : ` (no refs/${revision})`}`
      : `is only partly in the Hugging Face cache at ${cached.dir ?? cached.repoDir}: ${cached.problem}`;
    throw new CheckpointError(`${at} ${state}, and ${why}; ${fix}`);
  }

  let dir: string;
  try {
    dir = await downloadSnapshot(repoId, {
      hfHome: opts.hfHome,
      endpoint: opts.endpoint,
      token: opts.token,
      revision,
      log,
      onProgress: opts.onDownload,
      signal: opts.signal,
    });
  } catch (err) {
    // Like huggingface_hub: a hub that cannot be reached (or is failing) is no reason not to start
    // from a complete cached copy. Missing repos and refused tokens are still errors.
    const transient = err instanceof HubError && (err.network || (err.status !== undefined && err.status >= 500));
    if (transient && cachedOk) {
      log(`${err.message}; using the cached snapshot ${cached.dir}`);
      return cached.dir!;
    }
    if (err instanceof HubError) {
      throw new CheckpointError(`cannot get checkpoint ${at} from ${hubEndpoint(opts.endpoint)}: ${err.message}`, { cause: err });
    }
    throw err;
  }
  const problem = checkpointProblem(dir);
  if (problem) throw new CheckpointError(`${at} was downloaded to ${dir}, but it is not a usable checkpoint: ${problem}`);
  return dir;
}
