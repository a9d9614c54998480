/**
 * Runs the audio encoder on log-mel features (spec §5): per-second conv chunks, token
 * packing, 8-second attention windows, and several items in one batch.
 *
 * Items never share an attention window, so the windows of all items of a batch run together,
 * packed into rows (packWindows) with a block-diagonal mask.
 */
import ort from 'onnxruntime-node';
import { convOutLength, type AudioEncoderConfig } from '../checkpoint/config.ts';
import { buildConvStemGraph, buildEncoderTransformerGraph, ENCODER_GRAPH_SOURCE, sinusoidPositions } from '../graphs/encoder-graph.ts';
import { type SafetensorsStore } from '../checkpoint/safetensors.ts';
import { builtBy, createSession, type SessionOptions } from '../runtime/session.ts';
import { type LinearOptions } from '../graphs/layers.ts';
import { defaultInt8Kernel } from './precision.ts';

/** Log-mel features of one item, [mels, frames] row-major. */
export interface MelFeatures {
  data: Float32Array;
  frames: number;
  /**
   * The features are a window of a longer input (a live utterance's open window), so a lone
   * short chunk runs at full width as it does inside the whole input.
   */
  partOfLonger?: boolean;
}

/** Layout of one item through the encoder (also what the conformance tests check). */
export interface EncoderPlan {
  /** Mel frames per conv chunk. */
  chunkLengths: number[];
  /** Attention window boundaries in audio tokens (cu_seqlens). */
  windowBounds: number[];
  audioTokens: number;
}

const NEG = -1e30;
/**
 * Conv chunks (1 s each) per run: bounds the conv activations, ~50 MB a chunk for the real
 * widths in the W8A8 form (among them the second convolution's patches, [800 pixels, 4320] in
 * fp32 and int8). Smaller runs cost less memory and no speed (their activations stay closer
 * to the cache): a 60 s recording through the 0.6B encoder alone peaks at about 600 MB RSS
 * with 4 chunks a run, and every further chunk a run adds its activations to the peak.
 */
const CONV_BATCH = 4;
/** Attention windows per run: bounds scores and FFN activations. */
const WINDOW_BATCH = 16;

export function planEncoder(frames: number, cfg: AudioEncoderConfig): EncoderPlan {
  if (frames <= 0) throw new Error('audio encoder: no mel frames (audio shorter than one 10 ms frame)');
  const chunk = 2 * cfg.nWindow;
  const chunkLengths: number[] = [];
  for (let s = 0; s < frames; s += chunk) chunkLengths.push(Math.min(chunk, frames - s));
  const tokensPerChunk = chunkLengths.map(convOutLength);
  const audioTokens = tokensPerChunk.reduce((a, b) => a + b, 0);
  // Window = valid tokens of the longest chunk × chunks per attention window (13 × 8 = 104).
  const window = Math.max(...tokensPerChunk) * Math.floor(cfg.nWindowInfer / chunk);
  const windowBounds = [0];
  while (windowBounds[windowBounds.length - 1] < audioTokens) {
    windowBounds.push(Math.min(windowBounds[windowBounds.length - 1] + window, audioTokens));
  }
  return { chunkLengths, windowBounds, audioTokens };
}

/**
 * Rows of the encoder transformer's batch: attention windows (given by length) packed
 * first-fit, longest first, into rows as long as the longest window. Windows never attend
 * to each other (the mask is block-diagonal) and the transformer has no positions of its own
 * (they are added after the conv stem), so a row of several windows computes each exactly as
 * alone, while the short last window of every item does not pad a row of its own: the three
 * segments of a 60 s recording (319, 268 and 190 tokens) run in 8 rows of 104 for 777 tokens
 * instead of 9.
 */
export function packWindows(lengths: number[]): number[][] {
  const width = Math.max(0, ...lengths);
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const rows: number[][] = [];
  const free: number[] = [];
  for (const w of order) {
    const r = free.findIndex((f) => f >= lengths[w]);
    if (r >= 0) {
      rows[r].push(w);
      free[r] -= lengths[w];
    } else {
      rows.push([w]);
      free.push(width - lengths[w]);
    }
  }
  return rows;
}

export class AudioEncoder {
  private positions = new Map<number, Float32Array>();

  private constructor(
    private readonly cfg: AudioEncoderConfig,
    private readonly conv: ort.InferenceSession,
    private readonly transformer: ort.InferenceSession,
  ) {}

  static async load(store: SafetensorsStore, cfg: AudioEncoderConfig, linear: LinearOptions, session: SessionOptions): Promise<AudioEncoder> {
    // The conv stem's form follows the encoder's precision (a derived choice: switching QUANT
    // rebuilds this small graph in about a second rather than keeping one entry per form).
    // The integer kernel is this CPU's (int8-kernel.ts), derived too: the cache key holds it,
    // and an entry built for the other kernel is replaced, not kept beside the new one.
    const { int8Kernel = defaultInt8Kernel(), ...chosen } = linear;
    const built = { ...chosen, int8Kernel };
    session = builtBy(session, ENCODER_GRAPH_SOURCE);
    const conv = await createSession('audio_conv', (g) => buildConvStemGraph(g, store, cfg, built), session, {}, { precision: chosen.precision, int8Kernel });
    const transformer = await createSession('audio_encoder', (g) => buildEncoderTransformerGraph(g, store, cfg, built), session, { linear: chosen }, { int8Kernel });
    return new AudioEncoder(cfg, conv, transformer);
  }

  /** Encodes several items; returns [audioTokens, outputDim] per item. */
  async encode(items: MelFeatures[]): Promise<Float32Array[]> {
    const D = this.cfg.dModel;
    const mels = this.cfg.numMelBins;
    const chunk = 2 * this.cfg.nWindow;
    const plans = items.map((it) => planEncoder(it.frames, this.cfg));

    // 1. Conv stem. A chunk runs at width 100, the tail zero-padded to it, except a lone
    //    chunk shorter than 100 frames, which runs at its own length (official behaviour).
    interface ChunkJob { item: number; index: number; start: number; len: number; width: number }
    const jobs: ChunkJob[] = [];
    plans.forEach((plan, item) => {
      let start = 0;
      plan.chunkLengths.forEach((len, index) => {
        jobs.push({ item, index, start, len, width: plan.chunkLengths.length === 1 && !items[item].partOfLonger ? len : chunk });
        start += len;
      });
    });
    const packed = plans.map((p) => new Float32Array(p.audioTokens * D));
    const tokenOffset = plans.map((p) => p.chunkLengths.map(() => 0));
    plans.forEach((p, item) => {
      let acc = 0;
      p.chunkLengths.forEach((len, i) => {
        tokenOffset[item][i] = acc;
        acc += convOutLength(len);
      });
    });
    const byWidth = new Map<number, ChunkJob[]>();
    for (const j of jobs) byWidth.set(j.width, [...(byWidth.get(j.width) ?? []), j]);
    for (const [width, list] of byWidth) {
      const tOut = convOutLength(width);
      const pos = this.positionsFor(tOut);
      for (let s = 0; s < list.length; s += CONV_BATCH) {
        const batch = list.slice(s, s + CONV_BATCH);
        const input = new Float32Array(batch.length * mels * width);
        batch.forEach((job, b) => {
          const src = items[job.item];
          for (let m = 0; m < mels; m++) {
            const from = m * src.frames + job.start;
            input.set(src.data.subarray(from, from + job.len), (b * mels + m) * width);
          }
        });
        const out = await this.conv.run({
          chunks: new ort.Tensor('float32', input, [batch.length, 1, mels, width]),
          positions: new ort.Tensor('float32', pos, [tOut, D]),
        });
        const emb = out.embeds.data as Float32Array;
        batch.forEach((job, b) => {
          const valid = convOutLength(job.len);
          const dst = tokenOffset[job.item][job.index] * D;
          packed[job.item].set(emb.subarray(b * tOut * D, (b * tOut + valid) * D), dst);
        });
      }
    }

    // 2. Transformer over attention windows, windows of all items packed into rows.
    interface WindowJob { item: number; from: number; to: number }
    const windows: WindowJob[] = [];
    plans.forEach((p, item) => {
      for (let w = 0; w + 1 < p.windowBounds.length; w++) windows.push({ item, from: p.windowBounds[w], to: p.windowBounds[w + 1] });
    });
    const O = this.cfg.outputDim;
    const results = plans.map((p) => new Float32Array(p.audioTokens * O));
    const rows = packWindows(windows.map((w) => w.to - w.from));
    for (let s = 0; s < rows.length; s += WINDOW_BATCH) {
      const batch = rows.slice(s, s + WINDOW_BATCH);
      const fill = batch.map((row) => row.reduce((n, w) => n + windows[w].to - windows[w].from, 0));
      const len = Math.max(...fill);
      const hidden = new Float32Array(batch.length * len * D);
      // Block-diagonal: a position attends only to its own window; padding only to padding.
      const mask = new Float32Array(batch.length * len * len).fill(NEG);
      batch.forEach((row, b) => {
        let at = 0;
        const block = (from: number, to: number) => {
          for (let i = from; i < to; i++) mask.fill(0, (b * len + i) * len + from, (b * len + i) * len + to);
        };
        for (const w of row) {
          const { item, from, to } = windows[w];
          hidden.set(packed[item].subarray(from * D, to * D), (b * len + at) * D);
          block(at, at + to - from);
          at += to - from;
        }
        block(at, len);
      });
      const out = await this.transformer.run({
        hidden: new ort.Tensor('float32', hidden, [batch.length, len, D]),
        mask: new ort.Tensor('float32', mask, [batch.length, 1, len, len]),
      });
      const y = out.audio_embeds.data as Float32Array;
      batch.forEach((row, b) => {
        let at = 0;
        for (const w of row) {
          const { item, from, to } = windows[w];
          results[item].set(y.subarray((b * len + at) * O, (b * len + at + to - from) * O), from * O);
          at += to - from;
        }
      });
    }
    return results;
  }

  private positionsFor(length: number): Float32Array {
    let p = this.positions.get(length);
    if (!p) {
      p = sinusoidPositions(length, this.cfg.dModel);
      this.positions.set(length, p);
    }
    return p;
  }

  async release(): Promise<void> {
    await this.conv.release();
    await this.transformer.release();
  }
}
