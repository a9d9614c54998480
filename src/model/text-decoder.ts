/**
 * Runs the Qwen3 decoder graph: embedding lookup on the host, a host-owned KV cache, and
 * batched forward passes (prefill chunks and single-token steps).
 *
 * Up to two compiled graphs: the step graph for passes of a few rows (one token per
 * sequence, small batches) and the batch graph for passes of many rows (prompts, steps of
 * large batches), when the precisions chosen for the two differ (thinker.ts precisionsFor).
 *
 * Batches are left-padded so every row's newest token sits at the same index; padded
 * positions are masked out of attention and each row's positions count from its own first
 * real token (spec §6.2).
 */
import ort from 'onnxruntime-node';
import { type TextDecoderConfig } from './config.ts';
import { buildDecoderGraph, type DecoderGraphOptions } from './decoder-graph.ts';
import { type SafetensorsStore, toFloat32 } from './safetensors.ts';
import { createSession, type SessionOptions } from './onnx/session.ts';
import { type LinearOptions } from './onnx/layers.ts';

const NEG = -1e30;
/** The cache grows in steps of this many positions (attention over unused slack is masked). */
const CACHE_STEP = 64;

/** Per-layer keys and values of a batch, [B, kvH, cap, hd] each; positions < len are filled. */
export class KvCache {
  keys: Float32Array[];
  values: Float32Array[];
  cap = 0;
  len = 0;

  constructor(
    readonly layers: number,
    public batch: number,
    readonly kvHeads: number,
    readonly headDim: number,
    /** Left-padding positions of each row (masked forever). */
    public padStart: number[],
  ) {
    this.keys = Array.from({ length: layers }, () => new Float32Array(0));
    this.values = Array.from({ length: layers }, () => new Float32Array(0));
  }

  /** Real tokens of row b so far (its next position id). */
  position(b: number): number {
    return this.len - this.padStart[b];
  }

  private reallocate(cap: number, rows: number[]): void {
    const { kvHeads: kvH, headDim: hd } = this;
    const copy = Math.min(this.len, cap) * hd;
    for (let l = 0; l < this.layers; l++) {
      for (const arr of [this.keys, this.values]) {
        const old = arr[l];
        const next = new Float32Array(rows.length * kvH * cap * hd);
        rows.forEach((b, nb) => {
          for (let h = 0; h < kvH; h++) {
            const src = (b * kvH + h) * this.cap * hd;
            next.set(old.subarray(src, src + copy), (nb * kvH + h) * cap * hd);
          }
        });
        arr[l] = next;
      }
    }
    this.cap = cap;
  }

  /** Appends S new positions per row from the graph outputs [B, kvH, S, hd]. */
  append(newKeys: Float32Array[], newValues: Float32Array[], S: number): void {
    if (this.len + S > this.cap) {
      this.reallocate(Math.ceil((this.len + S) / CACHE_STEP) * CACHE_STEP, Array.from({ length: this.batch }, (_, b) => b));
    }
    const { kvHeads: kvH, headDim: hd } = this;
    for (let l = 0; l < this.layers; l++) {
      for (const [arr, src] of [[this.keys[l], newKeys[l]], [this.values[l], newValues[l]]] as const) {
        for (let bh = 0; bh < this.batch * kvH; bh++) {
          arr.set(src.subarray(bh * S * hd, (bh + 1) * S * hd), (bh * this.cap + this.len) * hd);
        }
      }
    }
    this.len += S;
  }

  /** Keeps only the given rows (finished rows leave the batch). */
  keepRows(rows: number[]): void {
    this.reallocate(this.cap, rows);
    this.padStart = rows.map((b) => this.padStart[b]);
    this.batch = rows.length;
  }
}

export interface DecoderLoadOptions extends DecoderGraphOptions {
  /**
   * Projections and head for passes of many rows; when either differs from `linear` / `head`,
   * a second graph (the batch graph) is built for them.
   */
  batchLinear?: LinearOptions;
  batchHead?: LinearOptions;
}

/**
 * Passes with at least this many rows (batch × positions) use the batch graph. Measured
 * on a 2048×6144 int8 weight streamed from memory (µs per product, 1 / 4 / 8 / 16 rows):
 * MatMulNBits 742 / 985 / 1325 / 2063, W8A8 (MatMulIntegerToFloat) 635 / ~700 / 677 / ~760 —
 * the int8 matrix units make W8A8 nearly flat in the row count. Below 4 rows the two are
 * within this VM's run-to-run noise, and MatMulNBits is the only one with int4 weights.
 */
const BATCH_GRAPH_MIN_ROWS = 4;

export class TextDecoder {
  private constructor(
    readonly cfg: TextDecoderConfig,
    private readonly session: ort.InferenceSession,
    private readonly batchSession: ort.InferenceSession | undefined,
    /** Embedding table, raw checkpoint dtype (bf16 stays 2 bytes a value in memory). */
    private readonly embedRaw: Uint8Array,
    private readonly embedDtype: 'BF16' | 'F16' | 'F32',
    readonly vocabRows: number,
  ) {}

  static async load(store: SafetensorsStore, cfg: TextDecoderConfig, opts: DecoderLoadOptions, session: SessionOptions): Promise<TextDecoder> {
    const embName = 'thinker.model.embed_tokens.weight';
    const info = store.info(embName);
    if (info.shape.length !== 2 || info.shape[1] !== cfg.hiddenSize || info.shape[0] < cfg.vocabSize) {
      throw new Error(`${info.file}: tensor ${embName} has shape ${JSON.stringify(info.shape)}, expected [${cfg.vocabSize}, ${cfg.hiddenSize}] from config.json`);
    }
    if (info.dtype !== 'BF16' && info.dtype !== 'F16' && info.dtype !== 'F32') throw new Error(`${info.file}: tensor ${embName} has unsupported dtype ${info.dtype}`);
    const graph = { linear: opts.linear, head: opts.head, headRows: opts.headRows, headWeight: opts.headWeight };
    const sess = await createSession('text_decoder', (g) => buildDecoderGraph(g, store, cfg, graph), session, graph);
    let batch: ort.InferenceSession | undefined;
    const batchLinear = opts.batchLinear ?? opts.linear;
    const batchHead = opts.batchHead ?? opts.head;
    if (batchLinear.precision !== opts.linear.precision || batchHead.precision !== opts.head.precision) {
      const bgraph = { ...graph, linear: batchLinear, head: batchHead };
      batch = await createSession('text_decoder_batch', (g) => buildDecoderGraph(g, store, cfg, bgraph), session, bgraph);
    }
    return new TextDecoder(cfg, sess, batch, new Uint8Array(store.readRaw(embName)), info.dtype, info.shape[0]);
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
    return new KvCache(this.cfg.layers, batch, this.cfg.kvHeads, this.cfg.headDim, padStart);
  }

  /**
   * One forward pass of S new positions for every row of the cache's batch. `embeds` is
   * [B, S, H]; `logitRows` are indices into the flattened [B·S] positions. Returns
   * logits [R, headRows] and appends the new keys/values to the cache.
   */
  async forward(cache: KvCache, embeds: Float32Array, S: number, logitRows: number[]): Promise<Float32Array> {
    const B = cache.batch;
    const { kvHeads: kvH, headDim: hd, layers: L } = this.cfg;
    const P = cache.cap;
    const positions = new BigInt64Array(B * S);
    const pastMask = new Float32Array(B * S * P);
    const newMask = new Float32Array(B * S * S);
    for (let b = 0; b < B; b++) {
      const pad = cache.padStart[b];
      for (let i = 0; i < S; i++) {
        const abs = cache.len + i; // absolute slot of this query
        positions[b * S + i] = BigInt(Math.max(0, abs - pad));
        const pm = (b * S + i) * P;
        for (let j = 0; j < P; j++) if (j < pad || j >= cache.len) pastMask[pm + j] = NEG;
        const nm = (b * S + i) * S;
        for (let j = 0; j < S; j++) if (j > i || cache.len + j < pad) newMask[nm + j] = NEG;
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, S, this.cfg.hiddenSize]),
      position_ids: new ort.Tensor('int64', positions, [B, S]),
      past_mask: new ort.Tensor('float32', pastMask, [B, 1, 1, S, P]),
      new_mask: new ort.Tensor('float32', newMask, [B, 1, 1, S, S]),
      logit_rows: new ort.Tensor('int64', BigInt64Array.from(logitRows.map(BigInt)), [logitRows.length]),
    };
    for (let l = 0; l < L; l++) {
      feeds[`past_key.${l}`] = new ort.Tensor('float32', cache.keys[l], [B, kvH, P, hd]);
      feeds[`past_value.${l}`] = new ort.Tensor('float32', cache.values[l], [B, kvH, P, hd]);
    }
    const session = this.batchSession && B * S >= BATCH_GRAPH_MIN_ROWS ? this.batchSession : this.session;
    const out = await session.run(feeds);
    const newK: Float32Array[] = [];
    const newV: Float32Array[] = [];
    for (let l = 0; l < L; l++) {
      newK.push(out[`new_key.${l}`].data as Float32Array);
      newV.push(out[`new_value.${l}`].data as Float32Array);
    }
    cache.append(newK, newV, S);
    return out.logits.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.batchSession?.release();
  }
}

/**
 * Token embeddings of a prompt with the `<|audio_pad|>` rows replaced, in order, by the
 * audio encoder's output (spec §6.1). The number of pads must equal the audio tokens.
 */
export function embedPrompt(decoder: TextDecoder, ids: number[], audioTokenId: number, audio: Float32Array): Float32Array {
  const H = decoder.cfg.hiddenSize;
  const out = new Float32Array(ids.length * H);
  let used = 0;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === audioTokenId) {
      if ((used + 1) * H > audio.length) break;
      out.set(audio.subarray(used * H, (used + 1) * H), i * H);
      used++;
    } else decoder.embed(ids[i], out, i * H);
  }
  const pads = ids.filter((id) => id === audioTokenId).length;
  if (pads * H !== audio.length) throw new Error(`prompt has ${pads} audio positions for ${audio.length / H} audio tokens`);
  return out;
}
