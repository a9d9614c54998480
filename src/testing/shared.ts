/**
 * Where the test data lives: `../shared` beside the repository (golden checkpoints, real
 * audio), or QWEN3_ASR_SHARED when set. Test data never goes into git.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFeatureConfig, type FeatureConfig } from '../audio/features.ts';
import { loadModelConfig } from '../engine/checkpoint/config.ts';
import { type Int8Kernel } from '../engine/runtime/int8-kernel.ts';
import { defaultInt8Kernel } from '../engine/thinker/precision.ts';
import { readSetting } from '../settings/settings.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED_DIR = resolve(readSetting('testShared') ?? join(REPO_ROOT, '..', 'shared'));
export const GOLDEN_DIR = join(SHARED_DIR, 'golden');
export const AUDIO_DIR = join(SHARED_DIR, 'audio');

export function goldenPath(...parts: string[]): string {
  return join(GOLDEN_DIR, ...parts);
}

/** A checkpoint folder's feature configuration, as the engine loads it (num_mel_bins from its config.json). */
export function checkpointFeatureConfig(dir: string): FeatureConfig {
  return loadFeatureConfig(dir, loadModelConfig(dir).audio.numMelBins);
}

export function readJson<T = any>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** A folder of golden outputs in the layout of golden/README.md: checkpoint/, cases/, index.json. */
export interface GoldenSet {
  /** Folder name (`tiny-a`): what golden cases of the other kind refer to (`tiny-a:de_7s__context`). */
  name: string;
  dir: string;
  index: any;
  path(...parts: string[]): string;
}

/**
 * Every golden set of one kind: the folders of `../shared/golden`, then those of each folder in
 * QWEN3_ASR_GOLDEN_EXTRA (path-list separated; a folder may be a set itself or hold sets), so
 * goldens of other shapes generated with the reference scripts beside golden/README.md (their
 * held-out configs, say) run through the same conformance tests. A set is an aligner's when its
 * index names `classify_num`. The sets named in `required` must be among them: missing test
 * data fails loudly instead of running no tests.
 */
export function goldenSets(kind: 'asr' | 'aligner', required: string[]): GoldenSet[] {
  const roots = [GOLDEN_DIR, ...(readSetting('goldenExtra') ?? '').split(delimiter).filter(Boolean).map((d) => resolve(d))];
  const found = new Map<string, GoldenSet>();
  const consider = (dir: string) => {
    const indexFile = join(dir, 'index.json');
    if (!existsSync(indexFile) || !existsSync(join(dir, 'checkpoint', 'config.json'))) return false;
    const index = readJson(indexFile);
    const isAligner = index.model?.classify_num !== undefined;
    if (isAligner === (kind === 'aligner')) {
      const name = basename(dir);
      if (found.has(name)) throw new Error(`two golden sets named ${name}: ${found.get(name)!.dir} and ${dir}`);
      found.set(name, { name, dir, index, path: (...parts) => join(dir, ...parts) });
    }
    return true;
  };
  for (const root of roots) {
    if (consider(root)) continue;
    if (!existsSync(root)) throw new Error(`golden folder ${root} does not exist`);
    for (const entry of readdirSync(root, { withFileTypes: true })) if (entry.isDirectory()) consider(join(root, entry.name));
  }
  for (const name of required) if (!found.has(name)) throw new Error(`golden set ${name} not found under ${roots.join(', ')}`);
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Deterministic standard-normal samples (LCG + Box–Muller): reproducible test data. */
export function seededGaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uni = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uni())) * Math.cos(2 * Math.PI * uni());
}

/** ‖a − b‖ / ‖b‖. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    e += (a[i] - b[i]) ** 2;
    d += b[i] ** 2;
  }
  return Math.sqrt(e / d);
}

/** Rounds half to even, as QuantizeLinear does. */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/**
 * The integer kernels whose products must be exact on this machine: its own (the one models
 * load with) and u8u8, exact on every CPU (src/engine/runtime/int8-kernel.ts).
 */
export function exactInt8Kernels(): Int8Kernel[] {
  return [...new Set<Int8Kernel>([defaultInt8Kernel(), 'u8u8'])];
}
