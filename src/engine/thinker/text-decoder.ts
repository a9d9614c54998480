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
import { closeSync, openSync, readSync } from 'node:fs';
import ort from 'onnxruntime-node';
import { type TextDecoderConfig } from '../checkpoint/config.ts';
import { buildDecoderGraph, DECODER_GRAPH_SOURCE, type DecoderGraphOptions } from '../graphs/decoder-graph.ts';
import { type SafetensorsStore, type TensorInfo, toFloat32 } from '../checkpoint/safetensors.ts';
import { builtBy, createSession, type SessionOptions } from '../runtime/session.ts';
import { type LinearOptions } from '../graphs/layers.ts';
import { int8Offset } from '../runtime/int8-kernel.ts';
import { defaultInt8Kernel } from './precision.ts';
import { int8View, KvCache, quantizeVectorsInt8, type KvCacheFormat } from '../runtime/kv-cache.ts';

const NEG = -1e30;
const EMBEDDING = 'thinker.model.embed_tokens.weight';

/**
 * The embedding table, read from the checkpoint file a row at a time as tokens are embedded
 * (a prompt's few hundred rows, then one per sequence a step: microseconds each from the page
 * cache). Reading the whole table at load instead (622 MB for the 1.7B model, bf16) cost more
 * than a second of CPU, nearly all of it first touches of fresh memory, which are slow on
 * virtual machines, and kept the table resident though a transcription uses a few thousand of
 * its 151,936 rows. The file stays open while the model is loaded, so a checkpoint replaced on
 * disk meanwhile is still read as it was.
 */
class EmbeddingRows {
  private fd: number | undefined;
  private readonly row: Uint8Array;

  constructor(
    private readonly info: TensorInfo & { dtype: 'BF16' | 'F16' | 'F32' },
    private readonly hidden: number,
  ) {
    this.row = new Uint8Array(hidden * (info.dtype === 'F32' ? 4 : 2));
    this.fd = openSync(info.file, 'r');
  }

  get rows(): number {
    return this.info.shape[0];
  }

  /** Writes row `id` as float32 into out[offset .. offset + hidden). */
  read(id: number, out: Float32Array, offset: number): void {
    if (this.fd === undefined) throw new Error('text decoder: embedding after release');
    const bytes = this.row.byteLength;
    for (let done = 0; done < bytes; ) {
      const n = readSync(this.fd, this.row, done, bytes - done, this.info.offset + id * bytes + done);
      if (n <= 0) throw new Error(`${this.info.file}: unexpected end of file reading row ${id} of tensor ${EMBEDDING}`);
      done += n;
    }
    toFloat32(this.row, this.info.dtype, EMBEDDING, out.subarray(offset, offset + this.hidden));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

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
    /** Embedding table, read from the checkpoint as rows are needed. */
    private readonly embedding: EmbeddingRows,
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

  /** Rows of the embedding table. */
  get vocabRows(): number {
    return this.embedding.rows;
  }

  /** The embedding table's tensor, checked against the config. */
  private static embeddingInfo(store: SafetensorsStore, cfg: TextDecoderConfig): TensorInfo & { dtype: 'BF16' | 'F16' | 'F32' } {
    const info = store.info(EMBEDDING);
    if (info.shape.length !== 2 || info.shape[1] !== cfg.hiddenSize || info.shape[0] < cfg.vocabSize) {
      throw new Error(`${info.file}: tensor ${EMBEDDING} has shape ${JSON.stringify(info.shape)}, expected [${cfg.vocabSize}, ${cfg.hiddenSize}] from config.json`);
    }
    if (info.dtype !== 'BF16' && info.dtype !== 'F16' && info.dtype !== 'F32') throw new Error(`${info.file}: tensor ${EMBEDDING} has unsupported dtype ${info.dtype}`);
    return info as TensorInfo & { dtype: 'BF16' | 'F16' | 'F32' };
  }

  static async load(store: SafetensorsStore, cfg: TextDecoderConfig, opts: DecoderLoadOptions, session: SessionOptions): Promise<TextDecoder> {
    const info = TextDecoder.embeddingInfo(store, cfg);
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
    let embedding: EmbeddingRows;
    try {
      embedding = new EmbeddingRows(info, cfg.hiddenSize);
    } catch (err) {
      await sess.release();
      await batch?.release();
      throw err;
    }
    return new TextDecoder(cfg, sess, batch, embedding, opts.headRows, kvCache, kvCache === 'int8' ? int8Offset(int8Kernel) : 0, opts.stepGraphRows);
  }

  /** Writes the embedding of `id` into out[offset .. offset + H). */
  embed(id: number, out: Float32Array, offset: number): void {
    if (!(id >= 0 && id < this.vocabRows)) throw new Error(`token id ${id} is outside the embedding table (${this.vocabRows} rows)`);
    this.embedding.read(id, out, offset);
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
    this.embedding.close();
  }
}
