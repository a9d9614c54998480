/**
 * The pieces of greedy decoding (spec §7.6): argmax with ties to the lowest id, and prompts
 * prefilled in groups of similar length in passes of bounded rows. The decoding loop itself,
 * shared by every caller, is scheduler.ts.
 */
import { KvCache as KvCacheClass, type KvCache } from '../runtime/kv-cache.ts';
import type { TextDecoder } from './text-decoder.ts';

export interface GenerationOutput {
  ids: number[];
  /** A stop id, the token budget, or the repetition guard (scheduler.ts). */
  stopReason: 'eos' | 'max_new_tokens' | 'repetition';
  /** Logits of the first generated position (kept for conformance checks when asked). */
  firstLogits?: Float32Array;
  /** Logits of every step (tests of the generation-step graph), when asked. */
  stepLogits?: Float32Array[];
}

export function argmax(logits: Float32Array, offset: number, length: number): number {
  let best = 0;
  let bestVal = -Infinity;
  for (let i = 0; i < length; i++) {
    const v = logits[offset + i];
    if (v > bestVal) {
      bestVal = v;
      best = i;
    }
  }
  return best;
}

/**
 * Positions [c0, c0 + S) of a left-padded batch as one [B, S, H] block: row b's prompt starts
 * at pads[b]; padded positions stay zero (they are masked out of attention).
 */
export function leftPaddedChunk(prompts: Float32Array[], pads: number[], c0: number, S: number, H: number): Float32Array {
  const out = new Float32Array(prompts.length * S * H);
  prompts.forEach((p, b) => {
    for (let i = 0; i < S; i++) {
      const t = c0 + i - pads[b];
      if (t >= 0) out.set(p.subarray(t * H, (t + 1) * H), (b * S + i) * H);
    }
  });
  return out;
}

/**
 * Rows (batch × positions) per prefill pass. Bounds the activations and attention scores a
 * pass holds, and costs no speed: 16 prompts of 275 positions prefill at 303–314 tokens/s in
 * passes of 512–1024 rows against 297 in one 4400-row pass (on an Intel Xeon VM with AMX,
 * 2 vCPUs), and memory stays bounded whatever the batch.
 */
export const PREFILL_ROWS = 512;

/**
 * Padding a prompt may add to a prefill group rather than start a group of its own: about
 * what a pass costs beyond its rows (the 0.6B batch graph runs thousands of nodes whatever the
 * row count).
 */
const GROUP_PADDING_ROWS = 32;

/** Prompt positions per prefill pass for a batch of `batch` sequences. */
export function prefillPositions(batch: number): number {
  return Math.max(16, Math.floor(PREFILL_ROWS / Math.max(1, batch)));
}

/**
 * Which prompts are prefilled together: indices grouped by similar length, longest first.
 * A group is a left-padded batch, so every padded position costs a full row of work: the
 * three segments of a 60 s recording (334, 283 and 205 positions) prefilled as one batch run
 * 1,002 rows for 822 real ones; in groups, three passes of their own lengths, they prefill in
 * 2.19 s against 2.39 s (0.6B int8, medians of 14 alternating runs, on an AMD EPYC Zen 4 VM,
 * 2 vCPUs). A prompt
 * joins the current group when it is at most GROUP_PADDING_ROWS or 1/16 shorter than the
 * group's longest, so prompts of equal length (the same audio, a bench's copies) still share
 * passes.
 */
export function prefillGroups(lengths: number[]): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const groups: number[][] = [];
  for (const i of order) {
    const group = groups[groups.length - 1];
    const longest = group ? lengths[group[0]] : 0;
    if (group && longest - lengths[i] <= Math.max(GROUP_PADDING_ROWS, longest / 16)) group.push(i);
    else groups.push([i]);
  }
  return groups;
}

export interface PrefillOptions {
  /** Prompt positions per pass (default: prefillPositions(group size)). */
  chunk?: number;
  /** Positions of prompt i whose logits are wanted, ascending. */
  wanted: (i: number) => number[];
  /** Receives the logits of prompt i at `position`: logits[offset .. offset + headRows). */
  onLogits: (i: number, position: number, logits: Float32Array, offset: number) => void;
  /** Called before every pass (throws to abort). */
  check?: () => void;
  /**
   * Positions to make room for in each group's cache beyond its prompts (the tokens to be
   * generated from it), so the cache grows in place (KvCache.reserve).
   */
  extraPositions?: number;
}

/**
 * Runs prompts through the decoder in the groups of prefillGroups, each group a left-padded
 * batch in passes of at most `chunk` positions. Returns, per prompt, the cache row holding it
 * (KvCache.stack joins them into one batch).
 */
export async function prefillPrompts(
  decoder: TextDecoder,
  prompts: { embeds: Float32Array; length: number }[],
  opts: PrefillOptions,
): Promise<{ cache: KvCache; row: number }[]> {
  const H = decoder.cfg.hiddenSize;
  const V = decoder.headRows;
  const rows: { cache: KvCache; row: number }[] = new Array(prompts.length);
  for (const group of prefillGroups(prompts.map((p) => p.length))) {
    const Lmax = prompts[group[0]].length;
    const pads = group.map((i) => Lmax - prompts[i].length);
    const cache = decoder.newCache(group.length, pads);
    cache.reserve(Lmax + (opts.extraPositions ?? 0));
    const wanted = group.map((i) => opts.wanted(i));
    const chunk = Math.max(1, opts.chunk ?? prefillPositions(group.length));
    for (let c0 = 0; c0 < Lmax; c0 += chunk) {
      opts.check?.();
      const S = Math.min(chunk, Lmax - c0);
      const embeds = leftPaddedChunk(group.map((i) => prompts[i].embeds), pads, c0, S, H);
      const logitRows: number[] = [];
      const owners: [number, number][] = [];
      group.forEach((i, b) => {
        for (const t of wanted[b]) {
          const slot = t + pads[b];
          if (slot >= c0 && slot < c0 + S) {
            logitRows.push(b * S + slot - c0);
            owners.push([i, t]);
          }
        }
      });
      const { logits } = await decoder.forward(cache, embeds, S, logitRows.length ? logitRows : [0]);
      owners.forEach(([i, t], r) => opts.onLogits(i, t, logits!, r * V));
    }
    group.forEach((i, b) => (rows[i] = { cache, row: b }));
  }
  return rows;
}

/**
 * Prompts that continue from a cached row (PreparedPrompt.prefix): each is prefilled on its
 * own copy of that row, in passes of at most `chunk` positions, and hands over the logits of
 * its last `wanted(i)` positions (the last one's first, then the earlier ones in order, by
 * position). Returns, per prompt, the cache holding it (row 0).
 */
export async function prefillContinuations(
  decoder: TextDecoder,
  prompts: { embeds: Float32Array; length: number; prefix: { cache: KvCache; row: number } }[],
  opts: { chunk?: number; wanted?: (i: number) => number; onLogits: (i: number, position: number, logits: Float32Array, offset: number) => void; check?: () => void },
): Promise<{ cache: KvCache; row: number }[]> {
  const H = decoder.cfg.hiddenSize;
  const V = decoder.headRows;
  const out: { cache: KvCache; row: number }[] = [];
  for (const [i, p] of prompts.entries()) {
    const cache = KvCacheClass.stack([p.prefix], p.length);
    const chunk = Math.max(1, opts.chunk ?? prefillPositions(1));
    const from = p.length - Math.max(1, opts.wanted?.(i) ?? 1);
    for (let c0 = 0; c0 < p.length; c0 += chunk) {
      opts.check?.();
      const S = Math.min(chunk, p.length - c0);
      const rows: number[] = [];
      for (let t = Math.max(from, c0); t < c0 + S; t++) rows.push(t - c0);
      const { logits } = await decoder.forward(cache, p.embeds.subarray(c0 * H, (c0 + S) * H), S, rows.length ? rows : [0]);
      rows.forEach((r, k) => opts.onLogits(i, c0 + r, logits!, k * V));
    }
    out.push({ cache, row: 0 });
  }
  return out;
}

export class AbortError extends Error {
  constructor() {
    super('aborted');
    this.name = 'AbortError';
  }
}
