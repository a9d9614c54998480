/**
 * Downloads a model repository snapshot from the Hugging Face Hub into the Hugging Face cache
 * layout, the way `huggingface_hub.snapshot_download` does, so that a cache filled by this
 * service and one filled by the Python tools are interchangeable:
 *
 *   <cache>/models--Qwen--Qwen3-ASR-1.7B/
 *     blobs/<etag>                      file contents, named by the LFS sha256 or the git blob id
 *     blobs/<etag>.incomplete           a download in progress (resumed with a Range request)
 *     snapshots/<commit>/<file>         relative symlinks to ../../blobs/<etag>
 *     refs/main                         the commit hash the branch pointed to
 *
 * Hub HTTP API used:
 *   GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true
 *       -> { sha, siblings: [{ rfilename, blobId?, size?, lfs?: { sha256, size } }] }
 *   GET {endpoint}/{repo}/resolve/{commit}/{file}
 *       -> 200 with the bytes (small git files, ETag = git blob id), or a 302 to a CDN for LFS
 *          files (X-Linked-Etag = sha256, X-Linked-Size); both carry X-Repo-Commit.
 *
 * Only the files a checkpoint needs are fetched (configs, safetensors weights, tokenizer files):
 * hub repos often also hold READMEs, images, or the same weights in other formats.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, copyFileSync, unlinkSync, writeFileSync, lstatSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { readSetting, type Env } from '../../settings/settings.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export class HubError extends Error {
  /** HTTP status when the hub answered with an error, undefined for network failures. */
  readonly status?: number;
  /** True when the hub could not be reached at all (DNS, refused, reset, timeout). */
  readonly network: boolean;
  constructor(message: string, opts: { status?: number; network?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'HubError';
    this.status = opts.status;
    this.network = opts.network ?? false;
  }
}

/** The hub base URL: the given one, else HF_ENDPOINT, else https://huggingface.co (no trailing slash). */
export function hubEndpoint(endpoint?: string, env?: Env): string {
  return (endpoint || readSetting('hfEndpoint', env) || DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

/** `owner/name`: letters, digits, `-`, `_`, `.`; no `--` or `..` (they break the cache folder naming). */
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function isRepoId(s: string): boolean {
  return REPO_ID.test(s) && !s.includes('--') && !s.includes('..') && s.length <= 96;
}

/** A full 40-hex git commit hash (as opposed to a branch or tag name). */
export function isCommitHash(revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision);
}

/** HF_HUB_OFFLINE (1/true/yes/on, any case, as huggingface_hub reads it). */
export function offlineFromEnv(env?: Env): boolean {
  return readSetting('hfOffline', env);
}

/** `~` and `~/x` expanded to the home folder. */
export function expandHome(p: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return p;
}

/**
 * The hub cache folder (the one holding `models--*`). An explicit `hfHome` wins; then, as in
 * huggingface_hub, HF_HUB_CACHE, the legacy HUGGINGFACE_HUB_CACHE, `$HF_HOME/hub`, and
 * `$XDG_CACHE_HOME/huggingface/hub` (default `~/.cache/huggingface/hub`).
 */
export function hubCacheDir(hfHome?: string, env?: Env): string {
  if (hfHome) return resolve(expandHome(hfHome), 'hub');
  const direct = readSetting('hfHubCache', env) || readSetting('huggingfaceHubCache', env);
  if (direct) return resolve(expandHome(direct));
  const home = readSetting('hfHome', env);
  if (home) return resolve(expandHome(home), 'hub');
  const xdgSetting = readSetting('xdgCacheHome', env);
  const xdg = xdgSetting ? expandHome(xdgSetting) : join(homedir(), '.cache');
  return resolve(xdg, 'huggingface', 'hub');
}

/** `<cache>/models--owner--name`. */
export function repoCacheDir(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.split('/').join('--')}`);
}

/**
 * Files a checkpoint needs: configs and tokenizer/processor files (`*.json`, `*.txt` such as
 * merges.txt, `*.dict` word lists, `*.jinja` chat templates, sentencepiece/tiktoken models) and
 * safetensors weights. Everything else (README, images, `.bin`/`.pt`/`.onnx`/`.gguf` copies of the
 * weights) is skipped.
 */
export function isCheckpointFile(rfilename: string): boolean {
  const base = rfilename.split('/').pop() ?? '';
  if (base.startsWith('.')) return false;
  return /\.(json|safetensors|txt|dict|jinja|model|tiktoken)$/i.test(base);
}

export interface HubDownloadOptions {
  /** HF_HOME; the cache is `<hfHome>/hub`. Default: from the environment (see hubCacheDir). */
  hfHome?: string;
  /** Hub base URL. Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Access token (default: HF_TOKEN), sent as `Authorization: Bearer` to the hub (never to a CDN on another host). */
  token?: string;
  /** Branch, tag or commit hash. Default `main`. */
  revision?: string;
  /** Which repo files to fetch. Default: isCheckpointFile. */
  allowFile?: (rfilename: string) => boolean;
  log?: (msg: string) => void;
  signal?: AbortSignal;
  /** How often an interrupted file transfer is resumed before giving up. Default 4. */
  retries?: number;
  /** Wait before the n-th retry is n times this. Default 1000 ms. */
  retryDelayMs?: number;
  /** Minimum time between two progress lines of one file. Default 5000 ms. */
  progressIntervalMs?: number;
  /**
   * Called as the files arrive: as a transfer starts (at 0, or where a resumed one goes on),
   * at most every `onProgressIntervalMs` (default 100 ms) while it runs, and as each file is in
   * place (a cached file only then).
   */
  onProgress?: (progress: DownloadProgress) => void;
  onProgressIntervalMs?: number;
  /** Time limit of the repository listing request. Default 30 s. */
  metadataTimeoutMs?: number;
}

/** How far a snapshot download is (HubDownloadOptions.onProgress). */
export interface DownloadProgress {
  repo: string;
  /** The file being fetched, its place among the files fetched (from 1), and how many they are. */
  file: string;
  fileIndex: number;
  files: number;
  /** Bytes of this file on disk so far (a resumed part counts), and its size where the hub says. */
  fileBytes: number;
  fileSize?: number;
  /** Bytes of all the files so far (files already cached count whole), and of all of them. */
  bytes: number;
  totalBytes: number;
}

interface Sibling {
  rfilename: string;
  size?: number;
  blobId?: string;
  lfs?: { sha256?: string; size?: number };
}

interface RevisionInfo {
  sha: string;
  siblings: Sibling[];
}

/** What one file is expected to be, as far as the hub told us before the transfer. */
interface FileExpectation {
  rfilename: string;
  /** LFS sha256 (also the blob name for LFS files). */
  sha256?: string;
  /** git blob id of a non-LFS file (also its blob name and ETag). */
  gitBlobId?: string;
  size?: number;
}

function normalizeEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  return etag.trim().replace(/^W\//, '').replace(/^"+|"+$/g, '') || undefined;
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code && cause.message) return cause.message.includes(cause.code) ? cause.message : `${cause.code}: ${cause.message}`;
  if (cause?.message) return cause.message;
  if (cause?.code) return cause.code;
  return (err as Error)?.message ?? String(err);
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || (err as Error)?.name === 'AbortError';
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** Rejects repo file names that would escape the snapshot folder (a hostile or broken endpoint). */
function safeRelativePath(rfilename: string): string {
  const norm = normalize(rfilename);
  if (!rfilename || isAbsolute(rfilename) || norm.startsWith('..') || norm.split(sep).includes('..') || rfilename.includes('\\')) {
    throw new HubError(`the hub listed an unsafe file name ${JSON.stringify(rfilename)}; refusing to write it`);
  }
  return norm;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolvePromise();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Git's object id of a file: sha1("blob <size>\0" + content). */
function gitBlobHasher(size: number): Hash {
  return createHash('sha1').update(`blob ${size}\0`);
}

class Downloader {
  private readonly endpoint: string;
  private readonly token?: string;
  private readonly log: (msg: string) => void;
  private readonly signal?: AbortSignal;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly progressIntervalMs: number;
  private readonly metadataTimeoutMs: number;

  constructor(private readonly repoId: string, opts: HubDownloadOptions) {
    this.endpoint = hubEndpoint(opts.endpoint);
    this.token = opts.token ?? readSetting('hfToken');
    this.log = opts.log ?? (() => {});
    this.signal = opts.signal;
    this.retries = opts.retries ?? 4;
    this.retryDelayMs = opts.retryDelayMs ?? 1000;
    this.progressIntervalMs = opts.progressIntervalMs ?? 5000;
    this.metadataTimeoutMs = opts.metadataTimeoutMs ?? 30_000;
  }

  private headersFor(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { 'user-agent': 'qwen3-asr (node)', 'accept-encoding': 'identity', ...extra };
    // The token is for the hub only: LFS redirects go to a CDN on another host, which must not see it.
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  /** fetch with network failures turned into HubErrors that name the URL and suggest a fix. */
  private async request(
    url: string,
    init: { method?: string; headers?: Record<string, string>; redirect?: RequestRedirect; timeoutMs?: number } = {},
  ): Promise<Response> {
    // A time limit only for small metadata requests: a hung hub must not stall a service start,
    // while a multi-gigabyte transfer legitimately takes long (stalls there surface as broken reads).
    const timeout = init.timeoutMs ? AbortSignal.timeout(init.timeoutMs) : undefined;
    const signal = timeout && this.signal ? AbortSignal.any([this.signal, timeout]) : timeout ?? this.signal;
    try {
      return await fetch(url, {
        method: init.method ?? 'GET',
        headers: this.headersFor(url, init.headers),
        redirect: init.redirect ?? 'manual',
        signal,
      });
    } catch (err) {
      if (this.signal?.aborted) throw this.signal.reason;
      if (timeout?.aborted) {
        throw new HubError(`${new URL(url).origin} did not answer ${url} within ${init.timeoutMs! / 1000} s; check the network connection and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the local cache`, {
          network: true,
          cause: err,
        });
      }
      if (isAbort(err, this.signal)) throw err;
      throw new HubError(
        `cannot reach ${new URL(url).origin} (${describeFetchError(err)}) while fetching ${url}; check the network ` +
          `connection and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the local cache`,
        { network: true, cause: err },
      );
    }
  }

  /** Turns a hub error response into a message that says what was asked and what to do. */
  private async httpError(res: Response, what: string): Promise<HubError> {
    let detail = res.headers.get('x-error-message') ?? '';
    if (!detail) {
      try {
        const text = (await res.text()).slice(0, 500);
        try {
          const body = JSON.parse(text);
          detail = typeof body?.error === 'string' ? body.error : text;
        } catch {
          detail = text;
        }
      } catch {
        /* body unreadable: the status says enough */
      }
    }
    const code = res.headers.get('x-error-code') ?? '';
    const suffix = detail ? ` (hub says: ${detail.trim()})` : '';
    const repo = `${this.repoId} on ${this.endpoint}`;
    let msg: string;
    if (res.status === 401) {
      msg = this.token
        ? `${what}: the hub rejected the access token (HTTP 401) for ${repo}; check HF_TOKEN, and that the repository exists`
        : `${what}: repository ${repo} was not found, or it is private or gated and needs a token (HTTP 401); check the name, or set HF_TOKEN`;
    } else if (res.status === 403) {
      msg = `${what}: access to ${repo} is forbidden (HTTP 403${code ? `, ${code}` : ''}); for a gated model, accept its terms on the hub website with the account whose HF_TOKEN is used`;
    } else if (res.status === 404) {
      if (code === 'RevisionNotFound') msg = `${what}: revision not found in ${repo} (HTTP 404); check the revision name`;
      else if (code === 'EntryNotFound') msg = `${what}: file not found in ${repo} (HTTP 404)`;
      else msg = `${what}: repository ${repo} was not found (HTTP 404); check the repo id (owner/name) and HF_ENDPOINT`;
    } else if (res.status === 429) {
      msg = `${what}: the hub is rate-limiting requests (HTTP 429); wait a moment and try again, or set HF_TOKEN`;
    } else {
      msg = `${what}: the hub answered HTTP ${res.status} ${res.statusText}`.trimEnd();
    }
    return new HubError(msg + suffix, { status: res.status });
  }

  async revisionInfo(revision: string): Promise<RevisionInfo> {
    const url = `${this.endpoint}/api/models/${this.repoId}/revision/${encodeURIComponent(revision)}?blobs=true`;
    const res = await this.request(url, { redirect: 'follow', timeoutMs: this.metadataTimeoutMs });
    if (!res.ok) throw await this.httpError(res, `listing ${this.repoId}@${revision}`);
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      if (this.signal?.aborted) throw this.signal.reason;
      throw new HubError(`listing ${this.repoId}@${revision}: ${url} did not return JSON (${(err as Error).message}); is HF_ENDPOINT a Hugging Face hub?`);
    }
    const info = body as { sha?: unknown; siblings?: unknown };
    if (typeof info?.sha !== 'string' || !isCommitHash(info.sha) || !Array.isArray(info.siblings)) {
      throw new HubError(`listing ${this.repoId}@${revision}: ${url} returned JSON without a commit "sha" and a "siblings" list`);
    }
    const siblings: Sibling[] = [];
    for (const s of info.siblings as Sibling[]) {
      if (!s || typeof s.rfilename !== 'string') throw new HubError(`listing ${this.repoId}@${revision}: a sibling has no rfilename`);
      siblings.push(s);
    }
    return { sha: info.sha, siblings };
  }

  /**
   * Downloads one file into `blobs/` (resuming `<blob>.incomplete`), verifies it, and returns the blob
   * name. Files whose blob is already complete are not requested again.
   */
  async fetchBlob(repoDir: string, commit: string, expect: FileExpectation, onBytes?: (received: number) => void): Promise<string> {
    const blobsDir = join(repoDir, 'blobs');
    mkdirSync(blobsDir, { recursive: true });
    const known = expect.sha256 ?? expect.gitBlobId;
    if (known && existsSync(join(blobsDir, known))) {
      const have = statSync(join(blobsDir, known)).size;
      if (expect.size === undefined || have === expect.size) return known;
      // A blob of the wrong size was left by something else: replace it.
      unlinkSync(join(blobsDir, known));
    }
    const url = `${this.endpoint}/${this.repoId}/resolve/${commit}/${expect.rfilename.split('/').map(encodeURIComponent).join('/')}`;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transfer(url, blobsDir, commit, expect, onBytes);
      } catch (err) {
        const retriable = err instanceof TransferInterrupted || (err instanceof HubError && (err.network || (err.status !== undefined && (err.status >= 500 || err.status === 429))));
        if (!retriable || attempt >= this.retries || this.signal?.aborted) {
          if (err instanceof TransferInterrupted) {
            throw new HubError(`${err.message}; ${attempt > 0 ? `gave up after ${attempt} retries; ` : ''}run again to resume the download`, { network: true, cause: err.cause });
          }
          throw err;
        }
        const wait = this.retryDelayMs * (attempt + 1);
        this.log(`${expect.rfilename}: ${(err as Error).message}; resuming${wait ? ` in ${(wait / 1000).toFixed(1)} s` : ''} (retry ${attempt + 1}/${this.retries})`);
        await sleep(wait, this.signal);
      }
    }
  }

  private async transfer(url: string, blobsDir: string, commit: string, expect: FileExpectation, onBytes?: (received: number) => void): Promise<string> {
    const what = `downloading ${expect.rfilename} of ${this.repoId}`;
    let etag = expect.sha256 ?? expect.gitBlobId;
    let incomplete = etag ? join(blobsDir, `${etag}.incomplete`) : undefined;
    let resumeFrom = incomplete && existsSync(incomplete) ? statSync(incomplete).size : 0;
    let expectedSize = expect.size;

    // Follow redirects by hand: the hub's own response carries the file metadata headers, and
    // the token must be dropped when the redirect leaves the hub's origin.
    let current = url;
    let res: Response | undefined;
    for (let hop = 0; hop < 10; hop++) {
      const headers: Record<string, string> = {};
      if (resumeFrom > 0) headers.range = `bytes=${resumeFrom}-`;
      res = await this.request(current, { headers });
      if (new URL(current).origin === new URL(this.endpoint).origin) {
        const headerCommit = res.headers.get('x-repo-commit');
        if (headerCommit && headerCommit !== commit) {
          await res.body?.cancel();
          throw new HubError(`${what}: the hub served commit ${headerCommit} while ${commit} was asked for`);
        }
        const headerEtag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
        if (!etag && headerEtag) {
          etag = headerEtag;
          if (existsSync(join(blobsDir, etag))) {
            await res.body?.cancel();
            return etag;
          }
          incomplete = join(blobsDir, `${etag}.incomplete`);
          // Only resumable if the Range header can still go on the next hop.
          resumeFrom = res.status >= 300 && res.status < 400 && existsSync(incomplete) ? statSync(incomplete).size : 0;
        }
        const linkedSize = Number(res.headers.get('x-linked-size') ?? NaN);
        if (expectedSize === undefined && Number.isFinite(linkedSize)) expectedSize = linkedSize;
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel();
        current = new URL(res.headers.get('location')!, current).toString();
        continue;
      }
      break;
    }
    if (!res || (res.status >= 300 && res.status < 400)) throw new HubError(`${what}: too many redirects from ${url}`);
    if (res.status === 416 && incomplete) {
      // The partial file is no prefix of what the server has (or already complete but unverified): start over.
      await res.body?.cancel();
      rmSync(incomplete, { force: true });
      throw new TransferInterrupted(`${what}: the server refused to resume from byte ${resumeFrom}`);
    }
    if (!res.ok) throw await this.httpError(res, what);
    if (!etag) {
      await res.body?.cancel();
      throw new HubError(`${what}: the hub gave neither an ETag nor a file hash for ${url}, so the file cannot be stored in the cache`);
    }
    incomplete = join(blobsDir, `${etag}.incomplete`);

    let start = 0;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== resumeFrom) {
        await res.body?.cancel();
        rmSync(incomplete, { force: true });
        throw new TransferInterrupted(`${what}: the server answered a resume request with range ${res.headers.get('content-range') ?? '(none)'}`);
      }
      start = resumeFrom;
      if (expectedSize === undefined && m[3] !== '*') expectedSize = Number(m[3]);
    } else if (expectedSize === undefined) {
      const len = Number(res.headers.get('content-length') ?? NaN);
      if (Number.isFinite(len)) expectedSize = len;
    }

    // Hash as we go; on resume, hash the part already on disk first.
    const hasher = expect.sha256 ? createHash('sha256') : expect.gitBlobId && expectedSize !== undefined ? gitBlobHasher(expectedSize) : undefined;
    if (start > 0) {
      if (hasher) for await (const chunk of createReadStream(incomplete, { end: start - 1 })) hasher.update(chunk as Buffer);
      this.log(`${expect.rfilename}: resuming at ${formatBytes(start)}${expectedSize ? ` of ${formatBytes(expectedSize)}` : ''}`);
    } else {
      this.log(`${expect.rfilename}: downloading${expectedSize !== undefined ? ` ${formatBytes(expectedSize)}` : ''}`);
    }

    const file = await open(incomplete, start > 0 ? 'a' : 'w');
    let received = start;
    onBytes?.(received);
    const t0 = Date.now();
    let lastLog = t0;
    try {
      if (res.body) {
        try {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            await file.write(chunk);
            hasher?.update(chunk);
            received += chunk.byteLength;
            onBytes?.(received);
            const now = Date.now();
            if (now - lastLog >= this.progressIntervalMs) {
              lastLog = now;
              const rate = (received - start) / 1e6 / ((now - t0) / 1000);
              const pct = expectedSize ? ` ${((100 * received) / expectedSize).toFixed(1)}%,` : '';
              this.log(`${expect.rfilename}:${pct} ${formatBytes(received)}${expectedSize ? ` of ${formatBytes(expectedSize)}` : ''}, ${rate.toFixed(1)} MB/s`);
            }
          }
        } catch (err) {
          if (isAbort(err, this.signal)) throw this.signal?.reason ?? err;
          throw new TransferInterrupted(`${what}: the connection broke after ${formatBytes(received)} (${describeFetchError(err)})`, err);
        }
      }
    } finally {
      await file.close();
    }

    if (expectedSize !== undefined && received < expectedSize) {
      throw new TransferInterrupted(`${what}: the transfer ended after ${formatBytes(received)} of ${formatBytes(expectedSize)}`);
    }
    if (expectedSize !== undefined && received > expectedSize) {
      rmSync(incomplete, { force: true });
      throw new HubError(`${what}: received ${received} bytes but the hub announced ${expectedSize}; the partial file was deleted, run again`);
    }
    if (hasher) {
      const digest = hasher.digest('hex');
      const want = expect.sha256 ?? expect.gitBlobId!;
      if (digest !== want) {
        rmSync(incomplete, { force: true });
        throw new HubError(
          `${what}: the downloaded file is corrupt (${expect.sha256 ? 'sha256' : 'git blob id'} ${digest}, expected ${want}); ` +
            `it was deleted, run again to download it afresh`,
        );
      }
    }
    const seconds = (Date.now() - t0) / 1000;
    const blob = join(blobsDir, etag);
    renameSync(incomplete, blob);
    if (received - start > 1e6) {
      this.log(`${expect.rfilename}: done, ${formatBytes(received - start)} in ${seconds.toFixed(1)} s (${((received - start) / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)} MB/s)`);
    }
    return etag;
  }
}

/** A transfer that stopped part-way; the `.incomplete` file stays so the next attempt resumes. */
class TransferInterrupted extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TransferInterrupted';
  }
}

/** Points `snapshots/<commit>/<file>` at its blob with a relative symlink (a copy where symlinks are not allowed). */
function linkIntoSnapshot(repoDir: string, commit: string, rfilename: string, blob: string): void {
  const pointer = join(repoDir, 'snapshots', commit, safeRelativePath(rfilename));
  const target = join(repoDir, 'blobs', blob);
  mkdirSync(dirname(pointer), { recursive: true });
  try {
    lstatSync(pointer);
    unlinkSync(pointer);
  } catch {
    /* nothing there yet */
  }
  try {
    symlinkSync(relative(dirname(pointer), target), pointer);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    copyFileSync(target, pointer);
  }
}

/** Branch and tag names become paths under `refs/`: refuse anything that could leave that folder. */
export function checkRevision(revision: string): void {
  if (!revision || isAbsolute(revision) || revision.split('/').some((p) => p === '' || p === '.' || p === '..') || revision.includes('\\')) {
    throw new HubError(`invalid revision ${JSON.stringify(revision)}; expected a branch or tag name (e.g. main) or a commit hash`);
  }
}

/** The commit a cached ref (`refs/<revision>`) points to, if any. */
export function readCachedRef(repoDir: string, revision: string): string | undefined {
  if (isCommitHash(revision)) return revision;
  checkRevision(revision);
  const refFile = join(repoDir, 'refs', revision);
  if (!existsSync(refFile)) return undefined;
  const commit = readFileSync(refFile, 'utf8').trim();
  return isCommitHash(commit) ? commit : undefined;
}

/**
 * Downloads the checkpoint files of `repoId` at `revision` into the Hugging Face cache and returns
 * the absolute snapshot folder. Files already in the cache are not downloaded again; a partial
 * download left by an earlier run is resumed. `refs/<revision>` is written only once every file of
 * the snapshot is in place, so an offline lookup never finds a half-downloaded snapshot.
 */
export async function downloadSnapshot(repoId: string, opts: HubDownloadOptions = {}): Promise<string> {
  if (!isRepoId(repoId)) {
    throw new HubError(`${JSON.stringify(repoId)} is not a Hugging Face repo id; expected owner/name, e.g. Qwen/Qwen3-ASR-1.7B`);
  }
  const revision = opts.revision || 'main';
  checkRevision(revision);
  const log = opts.log ?? (() => {});
  const cacheDir = hubCacheDir(opts.hfHome);
  const repoDir = repoCacheDir(cacheDir, repoId);
  const downloader = new Downloader(repoId, opts);

  const info = await downloader.revisionInfo(revision);
  const allow = opts.allowFile ?? isCheckpointFile;
  const wanted = info.siblings.filter((s) => allow(s.rfilename));
  if (wanted.length === 0) {
    throw new HubError(`${repoId}@${revision} on ${hubEndpoint(opts.endpoint)} holds no checkpoint files (config.json, *.safetensors); is it the right repository?`);
  }
  for (const s of wanted) safeRelativePath(s.rfilename);
  const sizeOf = (s: Sibling) => s.lfs?.size ?? s.size;
  const total = wanted.reduce((sum, s) => sum + (sizeOf(s) ?? 0), 0);
  log(`${repoId}@${revision} is commit ${info.sha}: ${wanted.length} files, ${formatBytes(total)}; cache ${repoDir}`);

  let before = 0;
  let lastReport = 0;
  const everyMs = opts.onProgressIntervalMs ?? 100;
  for (const [k, s] of wanted.entries()) {
    const expect: FileExpectation = s.lfs?.sha256
      ? { rfilename: s.rfilename, sha256: s.lfs.sha256.toLowerCase(), size: s.lfs.size ?? s.size }
      : { rfilename: s.rfilename, gitBlobId: typeof s.blobId === 'string' && /^[0-9a-f]{40}$/.test(s.blobId) ? s.blobId : undefined, size: s.size };
    let started = false;
    const report = (fileBytes: number, edge: boolean) => {
      if (!opts.onProgress) return;
      const now = Date.now();
      if (started && !edge && now - lastReport < everyMs) return;
      started = true;
      lastReport = now;
      opts.onProgress({ repo: repoId, file: s.rfilename, fileIndex: k + 1, files: wanted.length, fileBytes, fileSize: sizeOf(s), bytes: before + fileBytes, totalBytes: total });
    };
    const blob = await downloader.fetchBlob(repoDir, info.sha, expect, opts.onProgress ? (received) => report(received, false) : undefined);
    linkIntoSnapshot(repoDir, info.sha, s.rfilename, blob);
    const size = sizeOf(s) ?? statSync(join(repoDir, 'blobs', blob)).size;
    report(size, true);
    before += size;
  }

  if (!isCommitHash(revision)) {
    const refFile = join(repoDir, 'refs', revision);
    mkdirSync(dirname(refFile), { recursive: true });
    writeFileSync(refFile, info.sha);
  }
  return join(repoDir, 'snapshots', info.sha);
}
