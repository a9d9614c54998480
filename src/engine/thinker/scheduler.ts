/**
 * Continuous batching of greedy decoding across callers, as LLM serving engines schedule it:
 * jobs wait in a queue; between decoding steps the waiting ones are admitted (their prompts
 * made — audio encoded — and prefilled, their cache rows joined to the running batch); every
 * step decodes one token for each running row; a row leaves when it stops, reaches its
 * budget, loops, or its caller cancels. So eight callers with one short clip each share one
 * batch instead of paying one sequence's cost each in turn, and a job arriving mid-batch joins
 * at the next step.
 *
 * Fairness: free rows go to the owners (requests) with the fewest rows running, in arrival
 * order among equals, so one long recording's many segments cannot hold every row while a
 * short request waits: the short one gets the first row that frees.
 *
 * Greedy decoding of a row does not depend on its batch: joining copies each row's cache
 * values exactly (KvCache.stack), padded positions are masked out, and each row's positions
 * count from its own first token, so a job decodes the ids it decodes alone.
 */
import { KvCache } from '../runtime/kv-cache.ts';
import { AbortError, argmax, prefillContinuations, prefillGroups, prefillPrompts, type GenerationOutput } from './generate.ts';
import type { TextDecoder } from './text-decoder.ts';

/** A prompt ready to prefill: embeddings [length, H] and the most tokens it may generate. */
export interface PreparedPrompt {
  embeds: Float32Array;
  length: number;
  maxNewTokens: number;
  /**
   * Positions already in a cache that come before `embeds` (a live utterance's prompt head
   * and finished audio windows): the prompt continues from a copy of that row, so only the
   * positions that changed are prefilled. The row's cache is read, never changed.
   */
  prefix?: { cache: KvCache; row: number };
  /**
   * With a prefix: the prompt's last `draft.length` positions are ids the job expects to
   * generate next (a live update's rolled-back tokens). They are checked against the logits of
   * the positions before them, as greedy decoding would pick, in the prefill pass: the ones
   * that match are taken as generated and the rest leave the cache, so the output is what
   * decoding them step by step gives, in fewer steps.
   */
  draft?: number[];
}

export interface DecodeJobOptions {
  /** Whose job it is (one request's segments share an owner): rows are shared out fairly between owners. */
  owner: unknown;
  /** Cancels the job: a waiting job leaves the queue, a running row leaves at the next step. */
  signal?: AbortSignal;
  /** Decodes until the token budget, whatever the stop ids and loops (benchmarks on random weights). */
  ignoreStopTokens?: boolean;
  /** Called after every step the job takes part in, with its ids so far. */
  onTokens?: (ids: readonly number[]) => void;
  keepFirstLogits?: boolean;
  keepStepLogits?: boolean;
  /**
   * Where the repetition guard starts looking in the job's ids (−1: not yet), so a loop is
   * judged in the part of the output it would collapse (the ASR text after its header).
   */
  guardFrom?: (ids: readonly number[]) => number;
}

export interface SchedulerOptions<P> {
  /** Makes the prompts of the jobs being admitted, together (one encoder batch). */
  prepare: (payloads: P[]) => Promise<PreparedPrompt[]>;
  stopIds: ReadonlySet<number>;
  /** The most rows decoded together. */
  maxRows: number;
  /** Prompt positions per prefill pass (default: generate.ts prefillPositions of the group). */
  prefillChunk?: number;
  /**
   * A row whose newest ids are one unit of 1..REPETITION_MAX_UNIT ids repeated more than this
   * many times stops there (0: never). See repetitionPeriod.
   */
  repetitionThreshold?: number;
  /**
   * Called each time the running rows receive a token (after the prompts' pass for their
   * first, after each step for the rest), with the number of rows that did: metrics, and
   * benchmarks timing steps.
   */
  onStep?: (rows: number) => void;
}

/** What a job's output says beyond generate.ts's: how many ids were really decoded, and whether a loop ended it. */
export interface ScheduledOutput extends GenerationOutput {
  /** Ids decoded by the model; fewer than ids.length when a loop was continued without decoding. */
  decoded: number;
  /** Of those, drafted ids the prefill pass confirmed (PreparedPrompt.draft): no step of their own. */
  drafted?: number;
}

/** The longest unit, in ids, the repetition guard looks for. */
export const REPETITION_MAX_UNIT = 20;

/**
 * The period p (1..maxUnit) of the newest ids when one unit of p ids repeats more than
 * `threshold` times at their end, counting from index `from`, else 0. The official output parser
 * (`detect_and_fix_repetitions`) collapses a pattern repeated `threshold` times; a greedy
 * decoder caught in such a loop (QwenLM/Qwen3-ASR#129) otherwise runs to its token budget.
 */
export function repetitionPeriod(ids: readonly number[], threshold: number, maxUnit = REPETITION_MAX_UNIT, from = 0): number {
  if (threshold <= 0 || from < 0) return 0;
  const n = ids.length;
  for (let p = 1; p <= maxUnit; p++) {
    const span = (threshold + 1) * p;
    if (span > n - from) break;
    let periodic = true;
    for (let i = n - span; i < n - p; i++) {
      if (ids[i] !== ids[i + p]) {
        periodic = false;
        break;
      }
    }
    if (periodic) return p;
  }
  return 0;
}

interface Job<P> {
  seq: number;
  payload: P;
  opts: DecodeJobOptions;
  resolve: (out: ScheduledOutput) => void;
  reject: (err: Error) => void;
}

interface Row<P> {
  job: Job<P>;
  out: ScheduledOutput;
  maxNewTokens: number;
  stopIds: ReadonlySet<number>;
  /** The id to record at the next step: from the prompt's logits, then from each step. */
  pending: number;
  /** The logits `pending` came from, when the job keeps them. */
  pendingLogits?: Float32Array;
}

export class DecodeScheduler<P> {
  private readonly waiting: Job<P>[] = [];
  private running: Row<P>[] = [];
  private cache: KvCache | undefined;
  private seq = 0;
  private looping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private rowLimit: number;

  constructor(
    private readonly decoder: TextDecoder,
    private readonly opts: SchedulerOptions<P>,
  ) {
    this.rowLimit = opts.maxRows;
    this.maxRows = opts.maxRows;
  }

  /** The most rows decoded together; a change applies to admissions from then on. */
  get maxRows(): number {
    return this.rowLimit;
  }

  set maxRows(rows: number) {
    if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`maxRows must be a positive integer, got ${rows}`);
    this.rowLimit = rows;
  }

  /** Resolves when no pass is running (the loop ends once no job waits or runs): before the decoder's sessions are released. */
  whenIdle(): Promise<void> {
    return this.looping ? this.loopDone : Promise.resolve();
  }

  /** Jobs waiting to be admitted. */
  get waitingJobs(): number {
    return this.waiting.length;
  }

  /** Rows in the running batch. */
  get runningRows(): number {
    return this.running.length;
  }

  /** Queues a job; resolves with its ids when its row stops. */
  submit(payload: P, opts: DecodeJobOptions): Promise<ScheduledOutput> {
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) {
        reject(new AbortError());
        return;
      }
      this.waiting.push({ seq: this.seq++, payload, opts, resolve, reject });
      if (!this.looping) {
        this.looping = true;
        this.loopDone = this.loop().finally(() => (this.looping = false));
      }
    });
  }

  private async loop(): Promise<void> {
    // Yield once so jobs submitted in the same tick are admitted together.
    await Promise.resolve();
    while (this.waiting.length > 0 || this.running.length > 0) {
      try {
        this.dropCancelledWaiting();
        await this.admit();
        this.record();
        if (this.running.length > 0) await this.step();
      } catch (err) {
        // A failed pass fails the rows it ran; the queue goes on.
        for (const row of this.running) row.job.reject(err as Error);
        this.running = [];
        this.cache = undefined;
      }
    }
    this.cache = undefined;
  }

  private dropCancelledWaiting(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i].opts.signal?.aborted) this.waiting.splice(i, 1)[0].reject(new AbortError());
    }
  }

  /**
   * The waiting jobs to admit into `free` rows: each pick goes to the owner with the fewest
   * rows (running or picked), the earliest job among equals.
   */
  private pick(free: number): Job<P>[] {
    const rowsOf = new Map<unknown, number>();
    for (const row of this.running) rowsOf.set(row.job.opts.owner, (rowsOf.get(row.job.opts.owner) ?? 0) + 1);
    const picked: Job<P>[] = [];
    while (picked.length < free && this.waiting.length > 0) {
      let best = 0;
      for (let i = 1; i < this.waiting.length; i++) {
        const a = rowsOf.get(this.waiting[i].opts.owner) ?? 0;
        const b = rowsOf.get(this.waiting[best].opts.owner) ?? 0;
        if (a < b || (a === b && this.waiting[i].seq < this.waiting[best].seq)) best = i;
      }
      const [job] = this.waiting.splice(best, 1);
      rowsOf.set(job.opts.owner, (rowsOf.get(job.opts.owner) ?? 0) + 1);
      picked.push(job);
    }
    return picked;
  }

  /** Prepares and prefills the jobs that fit, and joins their rows to the running batch. */
  private async admit(): Promise<void> {
    const jobs = this.pick(this.rowLimit - this.running.length);
    if (jobs.length === 0) return;
    let prompts: PreparedPrompt[];
    try {
      prompts = await this.opts.prepare(jobs.map((j) => j.payload));
    } catch (err) {
      for (const job of jobs) job.reject(err as Error);
      return;
    }
    const V = this.decoder.headRows;
    const first = new Float32Array(jobs.length * V);
    // Room for every token the rows may still generate, so the cache grows in place.
    const reserve = Math.max(...prompts.map((p) => p.maxNewTokens), ...this.running.map((r) => r.maxNewTokens - r.out.ids.length));
    const alone = this.running.length === 0;
    const fresh = prompts.flatMap((p, i) => (p.prefix ? [] : [i]));
    const continued = prompts.flatMap((p, i) => (p.prefix ? [i] : []));
    // Prompts prefilled as one group whose cache becomes the batch's get the room there;
    // otherwise the rows are stacked into a new cache, which gets it.
    const oneGroup = alone && continued.length === 0 && prefillGroups(prompts.map((p) => p.length)).length === 1;
    const parts: { cache: KvCache; row: number }[] = new Array(prompts.length);
    const accepted: number[][] = prompts.map(() => []);
    try {
      // A job cancelled while its prompt is prefilled fails the whole admission: the next
      // loop admits the others again.
      const check = () => {
        if (jobs.some((j) => j.opts.signal?.aborted)) throw new AbortError();
      };
      const freshParts = await prefillPrompts(
        this.decoder,
        fresh.map((i) => prompts[i]),
        {
          chunk: this.opts.prefillChunk,
          wanted: (k) => [prompts[fresh[k]].length - 1],
          onLogits: (k, _, out, offset) => first.set(out.subarray(offset, offset + V), fresh[k] * V),
          check,
          extraPositions: oneGroup ? reserve : 0,
        },
      );
      freshParts.forEach((part, k) => (parts[fresh[k]] = part));
      const drafts = continued.map((i) => prompts[i].draft ?? []);
      const draftLogits = drafts.map((d) => new Float32Array((d.length + 1) * V));
      const continuedParts = await prefillContinuations(
        this.decoder,
        continued.map((i) => prompts[i] as PreparedPrompt & { prefix: NonNullable<PreparedPrompt['prefix']> }),
        {
          chunk: this.opts.prefillChunk,
          wanted: (k) => drafts[k].length + 1,
          onLogits: (k, position, out, offset) => {
            const slot = position - (prompts[continued[k]].length - drafts[k].length - 1);
            draftLogits[k].set(out.subarray(offset, offset + V), slot * V);
          },
          check,
        },
      );
      continuedParts.forEach((part, k) => {
        const i = continued[k];
        // Drafted ids greedy decoding confirms, up to the first it would not pick.
        const d = drafts[k];
        let kept = 0;
        while (kept < d.length && kept + 1 < prompts[i].maxNewTokens && argmax(draftLogits[k], kept * V, V) === d[kept]) kept++;
        accepted[i] = d.slice(0, kept);
        part.cache.len -= d.length - kept;
        first.set(draftLogits[k].subarray(kept * V, (kept + 1) * V), i * V);
        parts[i] = part;
      });
    } catch (err) {
      if (!(err instanceof AbortError)) {
        for (const job of jobs) job.reject(err as Error);
        return;
      }
      for (const job of jobs) {
        if (job.opts.signal?.aborted) job.reject(new AbortError());
        else this.waiting.push(job);
      }
      this.waiting.sort((a, b) => a.seq - b.seq);
      return;
    }
    const rows: Row<P>[] = jobs.map((job, i) => ({
      job,
      out: { ids: [...accepted[i]], stopReason: 'max_new_tokens', decoded: accepted[i].length, drafted: accepted[i].length },
      maxNewTokens: prompts[i].maxNewTokens,
      stopIds: job.opts.ignoreStopTokens ? new Set<number>() : this.opts.stopIds,
      pending: argmax(first, i * V, V),
      pendingLogits: job.opts.keepFirstLogits || job.opts.keepStepLogits ? first.slice(i * V, (i + 1) * V) : undefined,
    }));
    for (const [i, row] of rows.entries()) if (row.job.opts.keepFirstLogits) row.out.firstLogits = rows[i].pendingLogits;
    const inOrder = parts.every((p, i) => p.cache === parts[0].cache && p.row === i);
    if (alone && inOrder) this.cache = parts[0].cache;
    else this.cache = KvCache.stack([...this.running.map((_, row) => ({ cache: this.cache!, row })), ...parts], reserve);
    this.running.push(...rows);
  }

  /**
   * Records each row's pending id and lets the rows that are done leave: a stop id, the
   * budget, a loop (continued to the budget without decoding), or a cancelled caller.
   */
  private record(): void {
    const keep: number[] = [];
    const threshold = this.opts.repetitionThreshold ?? 0;
    const recorded = this.running.length;
    this.running.forEach((row, r) => {
      const { job, out } = row;
      if (job.opts.signal?.aborted) {
        job.reject(new AbortError());
        return;
      }
      out.ids.push(row.pending);
      out.decoded++;
      if (job.opts.keepStepLogits && row.pendingLogits) (out.stepLogits ??= []).push(row.pendingLogits);
      job.opts.onTokens?.(out.ids);
      if (row.stopIds.has(row.pending)) {
        out.stopReason = 'eos';
        job.resolve(out);
        return;
      }
      if (out.ids.length >= row.maxNewTokens) {
        job.resolve(out);
        return;
      }
      // Jobs that decode to their budget whatever they write (benchmarks) are never cut short.
      const period = job.opts.ignoreStopTokens ? 0 : repetitionPeriod(out.ids, threshold, REPETITION_MAX_UNIT, job.opts.guardFrom?.(out.ids) ?? 0);
      if (period > 0) {
        // Greedy decoding caught in a loop would repeat the unit to the budget: the ids it
        // would give, without the steps. The parser then sees the official output.
        for (let i = out.ids.length; i < row.maxNewTokens; i++) out.ids.push(out.ids[i - period]);
        out.stopReason = 'repetition';
        job.resolve(out);
        return;
      }
      keep.push(r);
    });
    if (keep.length < this.running.length) {
      if (keep.length === 0) this.cache = undefined;
      else this.cache!.keepRows(keep);
      this.running = keep.map((r) => this.running[r]);
    }
    if (recorded > 0) this.opts.onStep?.(recorded);
  }

  /** One token for every running row. */
  private async step(): Promise<void> {
    const H = this.decoder.cfg.hiddenSize;
    const V = this.decoder.headRows;
    const rows = this.running;
    const embeds = new Float32Array(rows.length * H);
    rows.forEach((row, r) => this.decoder.embed(row.pending, embeds, r * H));
    const keepLogits = rows.some((row) => row.job.opts.keepStepLogits);
    const { logits, nextIds } = await this.decoder.forward(
      this.cache!,
      embeds,
      1,
      rows.map((_, r) => r),
      { logits: keepLogits },
    );
    rows.forEach((row, r) => {
      row.pending = nextIds[r];
      row.pendingLogits = row.job.opts.keepStepLogits ? logits!.slice(r * V, (r + 1) * V) : undefined;
    });
  }
}

export interface DecodeBatchOptions extends Omit<SchedulerOptions<PreparedPrompt>, 'prepare' | 'maxRows'> {
  signal?: AbortSignal;
  ignoreStopTokens?: boolean;
  keepFirstLogits?: boolean;
  keepStepLogits?: boolean;
}

/**
 * Decodes prompts together as a batch of their own, every row admitted at once: what a
 * benchmark or a test of a batch runs.
 */
export function decodeBatch(decoder: TextDecoder, prompts: PreparedPrompt[], opts: DecodeBatchOptions): Promise<ScheduledOutput[]> {
  if (prompts.length === 0) return Promise.resolve([]);
  const { signal, ignoreStopTokens, keepFirstLogits, keepStepLogits, ...rest } = opts;
  const scheduler = new DecodeScheduler<PreparedPrompt>(decoder, { ...rest, prepare: async (p) => p, maxRows: prompts.length });
  return Promise.all(prompts.map((p) => scheduler.submit(p, { owner: scheduler, signal, ignoreStopTokens, keepFirstLogits, keepStepLogits })));
}
