/**
 * Runs the Qwen3 decoder graph: embedding lookup on the host, a host-owned KV cache, and
 * batched forward passes (prefill chunks and single-token steps).
 *
 * Up to two compiled graphs: the step graph for passes of a few rows (one token per
 * sequence, small batches) and the batch graph for passes of many rows (prompts, steps of
 * large batches), when the precisions chosen for the two differ (precision.ts precisionsFor).
 *
 * Batches are left-padded so every row's newest token sits at the same index; padded
 * positions are masked out of attention and each row's positions count from its own first
 * real token (spec §6.2).
 */
import ort from 'onnxruntime-node';
import { type TextDecoderConfig } from '../checkpoint/config.ts';
import { buildDecoderGraph, DECODER_GRAPH_SOURCE, type DecoderGraphOptions } from '../graphs/decoder-graph.ts';
import { type SafetensorsStore, toFloat32 } from '../checkpoint/safetensors.ts';
import { builtBy, createSession, type SessionOptions } from '../runtime/session.ts';
import { type LinearOptions } from '../graphs/layers.ts';
import { int8Offset } from '../runtime/int8-kernel.ts';
import { defaultInt8Kernel } from './precision.ts';
import { int8View, KvCache, quantizeVectorsInt8, type KvCacheFormat } from '../runtime/kv-cache.ts';

const NEG = -1e30;

export interface DecoderLoadOptions extends DecoderGraphOptions {
  /**
   * Projections and head for passes of many rows; when either differs from `linear` / `head`,
   * a second graph (the batch graph) is built for them.
   */
  batchLinear?: LinearOptions;
  batchHead?: LinearOptions;
  /** With two graphs: steps of at most this many rows run on the step graph (precision.ts stepGraphRowsFor). */
  stepGraphRows: number;
}

export class TextDecoder {
  /** Per session, its outputs without `logits` (what a generation step fetches). */
  private readonly fetchesWithoutLogits = new Map<ort.InferenceSession, readonly string[]>();

  private constructor(
    readonly cfg: TextDecoderConfig,
    private readonly session: ort.InferenceSession,
    private readonly batchSession: ort.InferenceSession | undefined,
    /** Embedding table, raw checkpoint dtype (bf16 stays 2 bytes a value in memory). */
    private readonly embedRaw: Uint8Array,
    private readonly embedDtype: 'BF16' | 'F16' | 'F32',
    readonly vocabRows: number,
    /** Logits per row: the output head's rows (vocabulary, or the aligner's timestamp classes). */
    readonly headRows: number,
    readonly kvCache: KvCacheFormat,
    /** The int8 cache's offset for the graph's integer kernel (KvCache.zeroPoint). */
    private readonly kvZeroPoint: 0 | 128,
    /** Steps of at most this many rows run on the step graph (when there is a batch graph). */
    readonly stepGraphRows: number,
  ) {}

  /** Whether steps of small batches have a graph of their own (QUANT=int4). */
  get twoGraphs(): boolean {
    return this.batchSession !== undefined;
  }

  static async load(store: SafetensorsStore, cfg: TextDecoderConfig, opts: DecoderLoadOptions, session: SessionOptions): Promise<TextDecoder> {
    const embName = 'thinker.model.embed_tokens.weight';
    const info = store.info(embName);
    if (info.shape.length !== 2 || info.shape[1] !== cfg.hiddenSize || info.shape[0] < cfg.vocabSize) {
      throw new Error(`${info.file}: tensor ${embName} has shape ${JSON.stringify(info.shape)}, expected [${cfg.vocabSize}, ${cfg.hiddenSize}] from config.json`);
    }
    if (info.dtype !== 'BF16' && info.dtype !== 'F16' && info.dtype !== 'F32') throw new Error(`${info.file}: tensor ${embName} has unsupported dtype ${info.dtype}`);
    // Cache keys: what the caller chose (precisions, head) names the entry; what the code
    // derives — the graph's form, this CPU's integer kernel (int8-kernel.ts) — is in the key
    // but not the name, so an entry built otherwise is replaced rather than kept beside it.
    const int8Kernel = opts.int8Kernel ?? defaultInt8Kernel();
    const chosen = { linear: opts.linear, head: opts.head, headRows: opts.headRows, headWeight: opts.headWeight, kvCache: opts.kvCache };
    const chosenBatch = { ...chosen, linear: opts.batchLinear ?? opts.linear, head: opts.batchHead ?? opts.head };
    const twoGraphs = chosenBatch.linear.precision !== chosen.linear.precision || chosenBatch.head.precision !== chosen.head.precision;
    // One integer kernel for every product of the graphs.
    const built = (c: typeof chosen): DecoderGraphOptions => ({ ...c, linear: { ...c.linear, int8Kernel }, head: { ...c.head, int8Kernel }, int8Kernel });
    // With two graphs the step graph only runs steps (one position per row) of at most
    // stepGraphRows rows, and takes the form made for them.
    const derived = { singlePosition: twoGraphs, int8Kernel };
    session = builtBy(session, DECODER_GRAPH_SOURCE);
    const sess = await createSession('text_decoder', (g) => buildDecoderGraph(g, store, cfg, { ...built(chosen), singlePosition: twoGraphs }), session, chosen, derived);
    let batch: ort.InferenceSession | undefined;
    if (twoGraphs) {
      batch = await createSession('text_decoder_batch', (g) => buildDecoderGraph(g, store, cfg, built(chosenBatch)), session, chosenBatch, { int8Kernel });
    }
    const kvCache = opts.kvCache ?? 'fp32';
    // The table stays in the buffer it was read into: a copy of the 1.7B model's 622 MB would
    // cost 2.7 s of page faults (on an AMD EPYC Zen 5 VM, 2 vCPUs) and double the table's
    // memory until the read buffer is collected.
    const embRaw = store.readRaw(embName);
    return new TextDecoder(cfg, sess, batch, new Uint8Array(embRaw.buffer, embRaw.byteOffset, embRaw.byteLength), info.dtype, info.shape[0], opts.headRows, kvCache, kvCache === 'int8' ? int8Offset(int8Kernel) : 0, opts.stepGraphRows);
  }

  /** Writes the embedding of `id` into out[offset .. offset + H). */
  embed(id: number, out: Float32Array, offset: number): void {
    const H = this.cfg.hiddenSize;
    if (!(id >= 0 && id < this.vocabRows)) throw new Error(`token id ${id} is outside the embedding table (${this.vocabRows} rows)`);
    const bytes = this.embedDtype === 'F32' ? 4 : 2;
    const row = this.embedRaw.subarray(id * H * bytes, (id + 1) * H * bytes);
    out.set(toFloat32(row, this.embedDtype), offset);
  }

  newCache(batch: number, padStart: number[]): KvCache {
    return new KvCache(this.cfg.layers, batch, this.cfg.kvHeads, this.cfg.headDim, padStart, this.kvCache, this.kvZeroPoint);
  }

  /**
   * One forward pass of S new positions for every row of the cache's batch. `embeds` is
   * [B, S, H]; `logitRows` are indices into the flattened [B·S] positions. Returns, for those
   * rows, logits [R, headRows] (unless `logits` is false: a generation step only needs
   * `nextIds`, and then the logits are neither copied out of the session nor scanned) and
   * each row's argmax, and appends the new keys/values to the cache.
   */
  async forward(cache: KvCache, embeds: Float32Array, S: number, logitRows: number[], opts: { logits?: boolean } = {}): Promise<{ logits?: Float32Array; nextIds: number[] }> {
    const B = cache.batch;
    const L = this.cfg.layers;
    const P = cache.cap;
    // Steps of small batches go to the step graph (when there are two; it takes one position
    // per row and no new-position mask), everything else to the batch graph.
    const step = !this.twoGraphs || (S === 1 && B <= this.stepGraphRows);
    const session = step ? this.session : this.batchSession!;
    const singlePosition = step && this.twoGraphs;
    // Masks per row of the graph's grouped query layout: row g·S + i is position i (g < grp).
    const grp = this.cfg.heads / this.cfg.kvHeads;
    const rows = grp * S;
    const positions = new BigInt64Array(B * S);
    const pastMask = new Float32Array(B * rows * P);
    const newMask = singlePosition ? undefined : new Float32Array(B * rows * S);
    for (let b = 0; b < B; b++) {
      const pad = cache.padStart[b];
      for (let i = 0; i < S; i++) {
        const abs = cache.len + i; // absolute slot of this query
        positions[b * S + i] = BigInt(Math.max(0, abs - pad));
        const pm = (b * rows + i) * P;
        for (let j = 0; j < P; j++) if (j < pad || j >= cache.len) pastMask[pm + j] = NEG;
        const nm = (b * rows + i) * S;
        if (newMask) for (let j = 0; j < S; j++) if (j > i || cache.len + j < pad) newMask[nm + j] = NEG;
      }
      for (let g = 1; g < grp; g++) {
        pastMask.copyWithin((b * rows + g * S) * P, b * rows * P, (b * rows + S) * P);
        newMask?.copyWithin((b * rows + g * S) * S, b * rows * S, (b * rows + S) * S);
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, S, this.cfg.hiddenSize]),
      position_ids: new ort.Tensor('int64', positions, [B, S]),
      past_mask: new ort.Tensor('float32', pastMask, [B, 1, rows, P]),
      logit_rows: new ort.Tensor('int64', BigInt64Array.from(logitRows.map(BigInt)), [logitRows.length]),
    };
    if (newMask) feeds.new_mask = new ort.Tensor('float32', newMask, [B, 1, rows, S]);
    for (let l = 0; l < L; l++) cache.feeds(l, feeds);
    const wantLogits = opts.logits !== false;
    let fetches = session.outputNames;
    if (!wantLogits) {
      fetches = this.fetchesWithoutLogits.get(session) ?? session.outputNames.filter((n) => n !== 'logits');
      this.fetchesWithoutLogits.set(session, fetches);
    }
    const out = await session.run(feeds, fetches);
    const layer = (name: string) => Array.from({ length: L }, (_, l) => out[`${name}.${l}`].data);
    if (cache.format === 'fp32') {
      cache.append({ format: 'fp32', keys: layer('new_key') as Float32Array[], values: layer('new_value') as Float32Array[] }, S);
    } else if (singlePosition) {
      // fp32 [B, kvH, 1, hd]: quantised here, one vector per head (the int8 key layout
      // [B, kvH, hd, 1] is the same bytes when S = 1).
      const keys = (layer('new_key') as Float32Array[]).map((x) => quantizeVectorsInt8(x, this.cfg.headDim, cache.zeroPoint));
      const values = (layer('new_value') as Float32Array[]).map((x) => quantizeVectorsInt8(x, this.cfg.headDim, cache.zeroPoint));
      cache.append({ format: 'int8', keys: keys.map((k) => k.q), values: values.map((v) => v.q), keyScales: keys.map((k) => k.scales), valueScales: values.map((v) => v.scales) }, S);
    } else {
      cache.append(
        {
          format: 'int8',
          keys: layer('new_key').map(int8View),
          values: layer('new_value').map(int8View),
          keyScales: layer('new_key_scale') as Float32Array[],
          valueScales: layer('new_value_scale') as Float32Array[],
        },
        S,
      );
    }
    return { logits: wantLogits ? (out.logits.data as Float32Array) : undefined, nextIds: Array.from(out.next_ids.data as BigInt64Array, Number) };
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.batchSession?.release();
  }
}
