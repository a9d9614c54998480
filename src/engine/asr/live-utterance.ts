/**
 * Partial transcripts of a whole utterance, however long, at a bounded cost per update.
 *
 * A LiveTranscript keeps the finished 8 s windows cached, but the text it has written follows
 * all the audio in the official prompt, so every update prefills that text again: it grows by
 * about 4 tokens per second of speech, and so does the update's cost. This splits a long
 * utterance into pieces, as the file pipeline splits long recordings into segments. Once the
 * piece being decoded holds PIECE_WINDOWS finished windows, each update looks for a pause in
 * the audio that arrived since the update before: the quietest 100 ms there. Where that is
 * quiet (a fifth of the piece's mean level or less), or once CUT_SEARCH_SECONDS have passed
 * without a pause, the update decodes the piece up to that point, its whole output becomes the
 * piece's text, and a new piece begins there with its own prompt. The cut never falls before
 * audio the previous update decoded, so the text fixed from it holds no word from after the
 * cut, and the update is an ordinary one. Each piece's prompt then holds at most PIECE_WINDOWS
 * windows of cached audio tokens, one open window and the text of about 20 s of speech.
 *
 * The transcript is the closed pieces' texts and the open piece's, joined as segment texts are
 * (a space between them unless both are written without spaces). The utterance's exact
 * transcript is made elsewhere (the file pipeline over all of its samples); pieces only bound
 * the partials.
 */
import { quietestPoint } from '../../audio/segment.ts';
import { settledText } from '../text/partial-text.ts';
import { joinSegmentTexts } from '../text/segment-text.ts';
import type { AsrModel } from './asr-model.ts';
import { LiveTranscript, ROLLBACK_TOKENS, type LiveTranscriptOptions, type LiveUpdate, type LiveUpdateOptions } from './live-transcript.ts';

/** Finished attention windows a piece holds before it may be cut. */
export const PIECE_WINDOWS = 2;
/** Audio after those windows within which a pause is waited for; past it the piece is cut at the quietest 100 ms of the new audio. */
export const CUT_SEARCH_SECONDS = 4;
/** A 100 ms stretch at most this fraction of the piece's mean level is a pause. */
const PAUSE_LEVEL = 0.2;
/** Length of the stretch whose summed |x| is compared when looking for the quietest point. */
const QUIET_WINDOW_SECONDS = 0.1;

export interface LiveUtteranceUpdate extends LiveUpdate {
  /** The transcript of the utterance so far: closed pieces and the open one. */
  text: string;
  /**
   * The part of `text` this update holds fixed: the closed pieces, then the open piece's output
   * less its last ROLLBACK_TOKENS ids, less what the parser's collapse could still change.
   */
  settled: string;
  /** Samples of the utterance this update covered (fewer than passed when it closed a piece at a pause). */
  covered: number;
  /** Where this update closed a piece (utterance sample), if it did. */
  cutAt?: number;
}

export class LiveUtterance {
  private piece: LiveTranscript;
  /** First sample of the open piece, in the utterance. */
  private pieceStart = 0;
  /** Samples of the open piece its last update decoded. */
  private pieceCovered = 0;
  private readonly closed: { text: string; language: string }[] = [];
  private readonly cutPoints: number[] = [];
  private readonly sampleRate: number;

  constructor(
    private readonly model: AsrModel,
    private readonly opts: LiveTranscriptOptions = {},
  ) {
    this.piece = new LiveTranscript(model, opts);
    this.sampleRate = model.features.sampleRate;
  }

  /** Utterance samples where each closed piece ended, in order. */
  get cuts(): number[] {
    return this.cutPoints.slice();
  }

  /**
   * The transcript of `samples` (the utterance so far, 16 kHz mono; each call passes the
   * previous samples and more), decoded in the shared batch.
   */
  async update(samples: Float32Array, opts: LiveUpdateOptions): Promise<LiveUtteranceUpdate> {
    const piece = samples.subarray(this.pieceStart);
    const cut = this.cutFor(piece);
    const r = await this.piece.update(cut === undefined ? piece : piece.subarray(0, cut), opts);
    const language = this.opts.language ?? '';
    const covered = this.pieceStart + (cut ?? piece.length);
    if (cut === undefined) {
      this.pieceCovered = piece.length;
      const tok = this.model.tokenizer;
      const fixed = r.ids.slice(0, Math.max(0, r.ids.length - ROLLBACK_TOKENS));
      const settled = settledText(tok.decode(fixed, { skipSpecialTokens: true }), this.opts.language);
      return {
        ...r,
        text: this.joined({ text: r.text, language: r.language }),
        settled: this.joined({ text: settled, language: r.language || language }),
        covered,
      };
    }
    // The piece ends here: its last decode is its text, and the next piece starts at the cut.
    this.closed.push({ text: r.text, language: r.language });
    this.cutPoints.push(covered);
    this.piece.release();
    this.piece = new LiveTranscript(this.model, this.opts);
    this.pieceStart = covered;
    this.pieceCovered = 0;
    const text = this.joined();
    return { ...r, text, settled: text, covered, cutAt: covered };
  }

  /**
   * The transcript of the whole utterance that must begin with `text` (what was already sent),
   * as LiveTranscript.completeFrom. When `text` holds the closed pieces' text, only the open
   * piece is decoded again, forced to begin with the rest, so this costs a piece's decode
   * however long the utterance.
   */
  async completeFrom(samples: Float32Array, text: string, language: string, opts: LiveUpdateOptions): Promise<LiveUpdate> {
    const closed = this.joined();
    if (this.closed.length === 0 || !text.startsWith(closed)) return this.piece.completeFrom(samples, text, language, opts);
    const piece = samples.subarray(Math.min(this.pieceStart, samples.length));
    const rest = text.slice(closed.length).trimStart();
    if (piece.length === 0) return { ids: [], text: closed, language, prefilled: 0, decoded: 0, drafted: 0, cachedAudioTokens: 0 };
    const r = await this.piece.completeFrom(piece, rest, language, opts);
    return { ...r, text: this.joined({ text: r.text, language: r.language }) };
  }

  /** Frees the open piece's cached row. */
  release(): void {
    this.piece.release();
  }

  /**
   * Where the open piece is cut (a sample of the piece), or undefined while it is not: at a
   * pause in the audio new since the last update, once the piece holds PIECE_WINDOWS windows;
   * at that audio's quietest point once CUT_SEARCH_SECONDS more have passed without one. The
   * cut comes after the cached windows and after the audio the last update decoded.
   */
  private cutFor(piece: Float32Array): number | undefined {
    const windows = this.piece.windowSamples * PIECE_WINDOWS;
    const win = Math.round(QUIET_WINDOW_SECONDS * this.sampleRate);
    const from = Math.max(windows, this.piece.finishedSamples, this.pieceCovered);
    if (piece.length < windows || piece.length - from < win) return undefined;
    const at = quietestPoint(piece, from, piece.length, win);
    const around = Math.max(0, Math.min(at - (win >> 1), piece.length - win));
    const pause = meanAbs(piece, around, around + win) <= PAUSE_LEVEL * meanAbs(piece, 0, piece.length);
    return pause || piece.length >= windows + CUT_SEARCH_SECONDS * this.sampleRate ? at : undefined;
  }

  private joined(open?: { text: string; language: string }): string {
    return joinSegmentTexts(open ? [...this.closed, open] : this.closed);
  }
}

function meanAbs(x: Float32Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += Math.abs(x[i]);
  return to > from ? sum / (to - from) : 0;
}
