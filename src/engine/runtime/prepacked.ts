/**
 * ONNX Runtime's prepacked weights, kept with a cached graph so that creating its session maps
 * them from the file instead of writing them into fresh memory.
 *
 * Creating a session repacks every W8A8 weight matrix into the layout of the CPU's integer
 * kernel (its "PrePack" step), into memory allocated for it. On the virtual machines this
 * runs on, the first touch of fresh memory is slow: for the 1.7B int8 decoder (1.75 GB of
 * packed weights) 1–2 s of kernel time a load. Mapped from the cache instead, a cached 1.7B
 * int8 load took 3.1–5.0 s against 5.4–7.3 s (AMD EPYC Zen 5 VM, 2 vCPUs), and its process
 * held 0.2 GB after the load instead of 1.9–2.2 GB. The price: the mapped weights sit in 4 kB
 * pages where the session's own memory has 2 MB ones, and transcription on that VM ran about
 * 7% slower (docs/benchmarks.md, "Cached loads"), so the mapping is off unless
 * QWEN3_ASR_PREPACKED_WEIGHTS (SessionOptions.prepacked) turns it on.
 *
 * ONNX Runtime can write the packed forms out (`session.save_external_prepacked_constant_
 * initializers` with an optimised model file), and whenever a model's initializer carries
 * `prepacked_N` entries in its external data (`<key>|<offset>;<length>;<checksum>` in the same
 * file as the initializer's own bytes), it maps those blobs and uses them instead of its own
 * copy. It still packs every matrix at session creation, because the key is the operator and a
 * hash of the packed bytes: a blob is used only where this CPU's kernel packs that weight to the
 * same bytes, so a blob packed on another CPU (or by another ONNX Runtime) is never used, only
 * not found, and the session packs into memory as before. A blob cannot change what a session
 * computes.
 *
 * How a cache entry gets them (attachPrepacked): a session is created from the entry's model
 * with ONNX Runtime's optimised model written to a temporary folder beside it; the blobs in
 * that copy are appended to the entry's weight file, and the entry's model gets the matching
 * `prepacked_N` entries. The graph stays the one the engine built (ONNX Runtime optimises it
 * at every load, as before): only weights are added, never the optimised graph, whose
 * layout choices are specific to the CPU it was made on. The weight file only grows, so a
 * process that read the model before the change reads the same bytes at the same offsets.
 * `prepacked.json` records which machines (ONNX Runtime version and CPU flags) the entry was
 * packed for; an entry is packed for at most MAX_PACKINGS machines.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { thisCpu } from './cpu-flags.ts';
import { protoFields as fields, ProtoWriter } from './protobuf.ts';

/** An entry takes blobs for at most this many machines: each set is as large as the weights it packs. */
export const MAX_PACKINGS = 2;
/** Blobs start at page boundaries, so ONNX Runtime can map each one. */
const ALIGN = 4096;
/**
 * Blobs are written in pieces of this size, smaller than a 2 MB huge page: a larger write
 * lets Linux keep the file in 2 MB page-cache folios, which ONNX Runtime's mappings then map
 * as huge pages, and W8A8 products over weights mapped that way ran slower: a 275-token
 * prompt of the 1.7B decoder took 12–17% longer than with the weights in the session's own
 * memory, against 0–7% longer with 4 kB mappings (AMD EPYC Zen 5 VM, 2 vCPUs).
 */
const WRITE_PIECE = 1 << 20;
const STATE_FILE = 'prepacked.json';
const LOCK_FILE = 'prepack.lock';
/** A lock file still without a process id after this long was left by a packer that died. */
const STALE_EMPTY_LOCK_MS = 60_000;
const TEMP_PREFIX = 'prepack-';

interface PrepackState {
  /** The machines (prepackTag) the entry was packed for (or packing was tried for). */
  tags: string[];
}

/** This machine as far as packed layouts go: the ONNX Runtime version and the CPU's flags. */
export function prepackTag(): string {
  const flags = [...thisCpu().flags].sort().join(' ');
  return createHash('sha256').update(`${ort.env.versions.node ?? ort.env.versions.common}\0${process.arch}\0${flags}`).digest('hex').slice(0, 16);
}

function readState(dir: string): PrepackState | undefined {
  try {
    const state = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8'));
    return Array.isArray(state?.tags) ? { tags: state.tags.filter((t: unknown) => typeof t === 'string') } : undefined;
  } catch {
    return undefined;
  }
}

/** The entry's model as the engine built it, without `prepacked_N` entries (written when they are added). */
export function unpackedModel(dir: string, name: string): string {
  return join(dir, `${name}.unpacked.onnx`);
}

/** Whether an entry should be packed for this machine: not yet, and it has room for another set. */
export function wantsPacking(dir: string, tag = prepackTag()): boolean {
  const tags = readState(dir)?.tags ?? [];
  return !tags.includes(tag) && tags.length < MAX_PACKINGS;
}

/** Whether the entry's weight file holds blobs packed on this machine. */
export function packedFor(dir: string, tag = prepackTag()): boolean {
  return readState(dir)?.tags.includes(tag) ?? false;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the entry's packing lock (one writer of its weight file at a time), or returns
 * undefined when a live process holds it. A lock left by a process that is gone is taken
 * over, and its temporary folders removed.
 */
export function lockForPacking(dir: string): { release(): void } | undefined {
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      for (const e of readdirSync(dir)) if (e.startsWith(TEMP_PREFIX)) rmSync(join(dir, e), { recursive: true, force: true });
      return { release: () => rmSync(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
      let owner = NaN;
      let age = 0;
      try {
        owner = Number(readFileSync(file, 'utf8'));
        age = Date.now() - statSync(file).mtimeMs;
      } catch {
        continue; // removed meanwhile: try again
      }
      // No process id yet: just created by a packer that has not written it (or died doing so).
      if (!(Number.isInteger(owner) && owner > 0) && age < STALE_EMPTY_LOCK_MS) return undefined;
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) return undefined;
      rmSync(file, { force: true });
    }
  }
  return undefined;
}

/** A temporary folder in the entry for ONNX Runtime's optimised copy (removed by attachPrepacked, or by the next lock holder). */
export function packingFolder(dir: string): string {
  const tmp = join(dir, `${TEMP_PREFIX}${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { recursive: true });
  return tmp;
}

/**
 * Session options that make ONNX Runtime write its optimised model, with the prepacked
 * weights in its external data file, to `folder`.
 */
export function savingOptions(folder: string, name: string): { optimizedModelFilePath: string; session: Record<string, string> } {
  return {
    optimizedModelFilePath: join(folder, `${name}.onnx`),
    session: {
      optimized_model_external_initializers_file_name: `${name}.data`,
      optimized_model_external_initializers_min_size_in_bytes: '1024',
      save_external_prepacked_constant_initializers: '1',
    },
  };
}

// --- ONNX protobuf, as far as initializers' external data goes (onnx/onnx.proto field numbers) ---

const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_NAME = 8;
const TENSOR_EXTERNAL_DATA = 13;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

const utf8 = new TextDecoder();
const text = (b: Uint8Array, [s, e]: [number, number]) => utf8.decode(b.subarray(s, e));

/** An initializer's name and its external data entries (key, value), in order. */
interface InitializerData {
  name: string;
  entries: [string, string][];
}

function initializerData(b: Uint8Array, [s, e]: [number, number]): InitializerData {
  let name = '';
  const entries: [string, string][] = [];
  for (const t of fields(b, s, e)) {
    if (t.field === TENSOR_NAME && t.body) name = text(b, t.body);
    if (t.field === TENSOR_EXTERNAL_DATA && t.body) {
      let key = '';
      let value = '';
      for (const kv of fields(b, t.body[0], t.body[1])) {
        if (kv.field === ENTRY_KEY && kv.body) key = text(b, kv.body);
        if (kv.field === ENTRY_VALUE && kv.body) value = text(b, kv.body);
      }
      entries.push([key, value]);
    }
  }
  return { name, entries };
}

/** The graph initializers of a model, with their external data entries. */
export function modelInitializers(model: Uint8Array): InitializerData[] {
  const out: InitializerData[] = [];
  for (const m of fields(model, 0, model.byteLength)) {
    if (m.field !== MODEL_GRAPH || !m.body) continue;
    for (const g of fields(model, m.body[0], m.body[1])) if (g.field === GRAPH_INITIALIZER && g.body) out.push(initializerData(model, g.body));
  }
  return out;
}

/**
 * The model with `added` external data entries appended to the named initializers; every
 * other byte as it was.
 */
export function withExternalData(model: Uint8Array, added: ReadonlyMap<string, [string, string][]>): Uint8Array {
  const out = new ProtoWriter();
  for (const m of fields(model, 0, model.byteLength)) {
    if (m.field !== MODEL_GRAPH || !m.body) {
      out.raw(model.subarray(m.start, m.end));
      continue;
    }
    out.message(MODEL_GRAPH, (graph) => {
      for (const g of fields(model, m.body![0], m.body![1])) {
        const extra = g.field === GRAPH_INITIALIZER && g.body ? added.get(initializerData(model, g.body).name) : undefined;
        if (!extra || !g.body) {
          graph.raw(model.subarray(g.start, g.end));
          continue;
        }
        const body = model.subarray(g.body[0], g.body[1]);
        graph.message(GRAPH_INITIALIZER, (tensor) => {
          tensor.raw(body);
          for (const [k, v] of extra) tensor.message(TENSOR_EXTERNAL_DATA, (e) => e.string(ENTRY_KEY, k).string(ENTRY_VALUE, v));
        });
      }
    });
  }
  return out.finish();
}

/** The `prepacked_N` entries of an initializer: key and blobs (offset, length). */
function prepackedEntries(init: InitializerData): { key: string; blobs: [number, number][] }[] {
  return init.entries
    .filter(([k]) => /^prepacked_\d+$/.test(k))
    .map(([, v]) => {
      const [key, ...blobs] = v.split('|');
      return {
        key,
        blobs: blobs.map((b) => {
          const [offset, length] = b.split(';').map(Number);
          if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0)) throw new Error(`prepacked entry ${JSON.stringify(v)}: bad blob`);
          return [offset, length] as [number, number];
        }),
      };
    });
}

/**
 * Appends the prepacked blobs of ONNX Runtime's optimised copy in `folder` (savingOptions) to
 * the entry's weight file `${name}.weights` and names them in `${name}.onnx`, then records the
 * machine in prepacked.json and removes `folder`. The caller holds the packing lock. Blobs of
 * initializers the entry's model does not keep in that weight file are left out (ONNX Runtime
 * then packs those into memory). Returns the bytes appended.
 */
export function attachPrepacked(dir: string, name: string, folder: string, tag = prepackTag()): number {
  try {
    const modelPath = join(dir, `${name}.onnx`);
    const weightsPath = join(dir, `${name}.weights`);
    const model = readFileSync(modelPath);
    const ours = new Map(modelInitializers(model).map((i) => [i.name, i]));
    const saved = readFileSync(join(folder, `${name}.onnx`));
    const added = new Map<string, [string, string][]>();
    let appended = 0;
    const chunk = Buffer.allocUnsafe(WRITE_PIECE);
    const src = existsSync(join(folder, `${name}.data`)) ? openSync(join(folder, `${name}.data`), 'r') : undefined;
    const dst = openSync(weightsPath, 'r+');
    try {
      let end = fstatSync(dst).size;
      for (const init of modelInitializers(saved)) {
        const packed = prepackedEntries(init);
        const own = ours.get(init.name);
        if (packed.length === 0 || !src || !own?.entries.some(([k, v]) => k === 'location' && v === `${name}.weights`)) continue;
        let n = own.entries.filter(([k]) => /^prepacked_\d+$/.test(k)).length;
        const entries: [string, string][] = [];
        for (const { key, blobs } of packed) {
          const placed: string[] = [];
          for (const [offset, length] of blobs) {
            end = Math.ceil(end / ALIGN) * ALIGN;
            copyRange(src, offset, dst, end, length, chunk);
            placed.push(`${end};${length};0`);
            end += length;
            appended += length;
          }
          entries.push([`prepacked_${n++}`, [key, ...placed].join('|')]);
        }
        added.set(init.name, entries);
      }
    } finally {
      closeSync(dst);
      if (src !== undefined) closeSync(src);
    }
    // The model last, by rename: a reader sees the old model (whose offsets the appended
    // bytes left alone) or the new one, never a part of either. The model as built stays
    // beside it, for sessions that are not to use the blobs (SessionOptions.prepacked).
    if (added.size > 0) {
      const plain = unpackedModel(dir, name);
      if (!existsSync(plain)) {
        writeFileSync(join(folder, 'unpacked'), model);
        renameSync(join(folder, 'unpacked'), plain);
      }
      const tmp = join(folder, `${name}.onnx.new`);
      writeFileSync(tmp, withExternalData(model, added));
      renameSync(tmp, modelPath);
    }
    return appended;
  } finally {
    rmSync(folder, { recursive: true, force: true });
    // Recorded even when attaching failed (a full disk, say): the next load does not try again.
    try {
      const tags = readState(dir)?.tags ?? [];
      writeFileSync(join(dir, STATE_FILE), JSON.stringify({ tags: [...tags.filter((t) => t !== tag), tag] }));
    } catch {
      // The entry is as good without the record; the next load tries again.
    }
  }
}

function copyRange(src: number, from: number, dst: number, to: number, length: number, chunk: Buffer): void {
  for (let done = 0; done < length; ) {
    const want = Math.min(chunk.byteLength, length - done);
    const n = readSync(src, chunk, 0, want, from + done);
    if (n <= 0) throw new Error('prepacked blob beyond the end of ONNX Runtime\'s data file');
    for (let w = 0; w < n; ) w += writeSync(dst, chunk, w, n - w, to + done + w);
    done += n;
  }
}
