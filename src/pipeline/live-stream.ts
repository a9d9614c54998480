/**
 * One live transcription in the engine thread: audio arrives in pieces, utterances are found
 * by voice activity detection (or committed by the caller), partial text is decoded as audio
 * comes (engine/asr/live-utterance.ts: a cost per update that does not grow with the
 * utterance) and each utterance ends in one exact decode of all of it.
 *
 * Timeline: audio is counted in 16 kHz samples from the session's first byte. The current
 * utterance is [uttStart, end of audio); under VAD, audio before speech is kept only as far
 * back as the prefix padding reaches.
 *
 * Partial text: each update's output less its last ROLLBACK_TOKENS ids is what the next update
 * is forced to begin with; that text, after the closed pieces of a long utterance, is the
 * update's settled text (LiveUtteranceUpdate.settled). The part of it both this and the
 * previous update agree on, up to a word boundary, becomes the delta. Deltas are never
 * retracted. The completed transcript is the file pipeline's decode of the utterance's samples
 * (runTranscription), so it equals what the HTTP API returns for a file holding the same
 * samples.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeAudio } from '../audio/decode.ts';
import { Resampler } from '../audio/resample.ts';
import { convertSamples, encodeWav, type WavFormat } from '../audio/wav.ts';
import type { AsrModel } from '../engine/asr/asr-model.ts';
import { ROLLBACK_TOKENS } from '../engine/asr/live-transcript.ts';
import { LiveUtterance } from '../engine/asr/live-utterance.ts';
import type { SileroStream } from '../engine/vad/silero-vad.ts';
import { MIN_AUDIO_SECONDS, tokenBudget } from './run-transcription.ts';
import { PipelineError, type LiveAudioFormat, type LiveEvent, type LiveLimits, type LiveOptions } from './types.ts';

const SR = 16000;
/** Samples per VAD window (Silero: 32 ms). */
const VAD_WINDOW = 512;
/** Silence kept after the last speech of an utterance, so its last word is not clipped. */
const TAIL_PADDING_MS = 200;
/** Speech ends below the threshold less this (Silero's hysteresis). */
const VAD_HYSTERESIS = 0.15;
/** Utterances of one session waiting for their final decode; more commits are refused (bounded work per caller). */
const MAX_PENDING_FINALS = 4;

export interface LiveStreamDeps {
  asr: AsrModel;
  /** A VAD stream (loads the model on first use). */
  vadStream: () => Promise<SileroStream>;
  limits: LiveLimits;
  /** The exact decode of a finished utterance (the file pipeline). */
  transcribe: (samples: Float32Array, opts: { language?: string; context?: string; signal: AbortSignal }) => Promise<{ text: string; language: string }>;
  emit: (event: LiveEvent) => void;
  log: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** Benchmarks on random weights: each update decodes exactly this many tokens (a speech rate in tokens). */
  forceUpdateTokens?: (utteranceSeconds: number, sinceLastUpdate: number) => number;
}

interface Utterance {
  number: number;
  /** First sample (16 kHz, session time). */
  start: number;
  transcript: LiveUtterance;
  /** Text sent as deltas so far. */
  sent: string;
  /** The previous update's candidate text (what its fixed ids say). */
  candidate: string;
  /** Session samples the last update covered. */
  updatedTo: number;
  speaking: boolean;
}

export class LiveStream {
  private options: LiveOptions;
  private next: LiveOptions;
  private readonly ctrl = new AbortController();
  private resampler: Resampler | undefined;
  /** 16 kHz audio kept, from session sample `kept0` on. */
  private audio = new Float32Array(SR * 4);
  private audioLen = 0;
  private kept0 = 0;
  /** Source-rate samples of the kept audio (for the final decode of non-16 kHz input), from source sample `raw0`. */
  private raw: Float32Array = new Float32Array(0);
  private rawLen = 0;
  private raw0 = 0;
  private total = 0;
  private rawTotal = 0;
  private utterance: Utterance | undefined;
  private count = 0;
  private vad: SileroStream | undefined;
  private vadPending: Promise<void> = Promise.resolve();
  /** Session sample where the current run of non-speech began (VAD), or -1 while speech goes on. */
  private silenceFrom = -1;
  private updating = false;
  private pendingFinals = 0;
  private closed = false;

  constructor(
    options: LiveOptions,
    private readonly deps: LiveStreamDeps,
  ) {
    this.options = options;
    this.next = options;
    this.setFormat(options.format);
  }

  /** Audio samples (16 kHz) of the current utterance so far. */
  get utteranceSeconds(): number {
    return this.utterance ? (this.total - this.utterance.start) / SR : 0;
  }

  configure(options: Partial<LiveOptions>): void {
    this.next = { ...this.next, ...options };
    if (options.format) {
      this.options = { ...this.options, format: options.format };
      this.setFormat(options.format);
    }
    // Turn detection changes at once (a client switching to manual commits expects them to work next).
    if (options.turnDetection !== undefined) this.options = { ...this.options, turnDetection: options.turnDetection };
    if (!this.utterance) this.options = { ...this.next };
  }

  private setFormat(format: LiveAudioFormat): void {
    const rate = sourceRate(format);
    this.resampler = rate === SR ? undefined : new Resampler(rate, SR);
  }

  /** Converts and keeps a piece of audio, runs VAD over it, and starts what it makes due. */
  async append(bytes: Uint8Array): Promise<void> {
    if (this.closed) return;
    const format = this.options.format;
    const wav: WavFormat =
      format.type === 'pcm16'
        ? { encoding: 'pcm', channels: 1, sampleRate: format.rate, bitsPerSample: 16, bytesPerSample: 2, formatTag: 1 }
        : { encoding: format.type === 'pcmu' ? 'ulaw' : 'alaw', channels: 1, sampleRate: 8000, bitsPerSample: 8, bytesPerSample: 1, formatTag: format.type === 'pcmu' ? 7 : 6 };
    if (bytes.length % wav.bytesPerSample !== 0) throw new PipelineError('bad_request', `PCM16 audio must be a whole number of 2-byte samples; got ${bytes.length} bytes.`);
    const source = convertSamples(bytes, wav);
    const samples = this.resampler ? this.resampler.push(source) : source;
    this.keepRaw(source);
    this.keep(samples);
    const from = this.total;
    this.total += samples.length;
    this.rawTotal += source.length;

    if (this.options.turnDetection) {
      // VAD runs in order over the stream, one piece after another.
      this.vadPending = this.vadPending.then(() => this.detect(samples)).catch((err) => this.deps.log('error', `live VAD failed: ${(err as Error).message}`));
      await this.vadPending;
    } else if (!this.utterance && samples.length > 0) {
      this.startUtterance(from, false);
    }
    this.maybeCut();
    this.maybeUpdate();
  }

  /** Ends the current utterance at the audio so far; resolves with its number. */
  async commit(): Promise<number> {
    await this.vadPending;
    const u = this.utterance;
    if (!u || this.total - u.start < MIN_AUDIO_SECONDS * SR) {
      const have = u ? ((this.total - u.start) / SR).toFixed(3) : '0';
      throw new PipelineError('bad_request', `Nothing to commit: the buffer holds ${have} s of uncommitted audio (at least ${MIN_AUDIO_SECONDS} s is needed).`);
    }
    return this.finish(u, this.total);
  }

  /** Drops audio not yet committed. */
  clear(): void {
    this.utterance?.transcript.release();
    this.utterance = undefined;
    this.silenceFrom = -1;
    this.dropBefore(this.total);
  }

  /** Resolves when no VAD run of this stream is under way (before the VAD model is released). */
  vadIdle(): Promise<void> {
    return this.vadPending;
  }

  close(): void {
    this.closed = true;
    this.ctrl.abort();
    this.utterance?.transcript.release();
    this.utterance = undefined;
    this.audio = new Float32Array(0);
    this.raw = new Float32Array(0);
    this.audioLen = this.rawLen = 0;
  }

  // --- audio kept --------------------------------------------------------------------------

  private keep(samples: Float32Array): void {
    if (this.audioLen + samples.length > this.audio.length) {
      const grown = new Float32Array(Math.max(this.audio.length * 2, this.audioLen + samples.length));
      grown.set(this.audio.subarray(0, this.audioLen));
      this.audio = grown;
    }
    this.audio.set(samples, this.audioLen);
    this.audioLen += samples.length;
  }

  private keepRaw(source: Float32Array): void {
    if (!this.resampler) return;
    if (this.rawLen + source.length > this.raw.length) {
      const grown = new Float32Array(Math.max(this.raw.length * 2, this.rawLen + source.length, 1024));
      grown.set(this.raw.subarray(0, this.rawLen));
      this.raw = grown;
    }
    this.raw.set(source, this.rawLen);
    this.rawLen += source.length;
  }

  /** Forgets audio before session sample `at` (it belongs to no utterance any more). */
  private dropBefore(at: number): void {
    const n = Math.min(this.audioLen, Math.max(0, at - this.kept0));
    if (n > 0) {
      this.audio.copyWithin(0, n, this.audioLen);
      this.audioLen -= n;
      this.kept0 += n;
    }
    if (this.resampler) {
      const rawAt = Math.floor((at * sourceRate(this.options.format)) / SR);
      const m = Math.min(this.rawLen, Math.max(0, rawAt - this.raw0));
      if (m > 0) {
        this.raw.copyWithin(0, m, this.rawLen);
        this.rawLen -= m;
        this.raw0 += m;
      }
    }
  }

  private samples(from: number, to: number): Float32Array {
    return this.audio.slice(Math.max(0, from - this.kept0), Math.max(0, to - this.kept0));
  }

  // --- utterances --------------------------------------------------------------------------

  private startUtterance(at: number, speaking: boolean): void {
    this.options = { ...this.next };
    const number = ++this.count;
    const language = this.options.language;
    this.utterance = {
      number,
      start: at,
      transcript: new LiveUtterance(this.deps.asr, { language, context: this.options.context, owner: this }),
      sent: '',
      candidate: '',
      updatedTo: at,
      speaking,
    };
    this.dropBefore(at);
  }

  /** Server VAD over a new piece of audio (its windows continue the VAD stream's count). */
  private async detect(samples: Float32Array): Promise<void> {
    const td = this.options.turnDetection;
    if (!td) return;
    this.vad ??= await this.deps.vadStream();
    const first = this.vad.windows;
    const probs = await this.vad.push(samples);
    for (let i = 0; i < probs.length; i++) {
      const w0 = (first + i) * VAD_WINDOW;
      const p = probs[i];
      const u = this.utterance;
      if (!u || !u.speaking) {
        if (p >= td.threshold) {
          const start = Math.max(this.kept0, w0 - Math.round((td.prefixPaddingMs * SR) / 1000));
          if (u) this.utterance!.speaking = true;
          else this.startUtterance(start, true);
          this.silenceFrom = -1;
          this.deps.emit({ type: 'speech_started', utterance: this.utterance!.number, audioStartMs: Math.round((start * 1000) / SR) });
        } else if (!u) {
          // Keep only what prefix padding may reach back to.
          this.dropBefore(w0 + VAD_WINDOW - Math.round((td.prefixPaddingMs * SR) / 1000) - VAD_WINDOW);
        }
        continue;
      }
      if (p >= td.threshold - VAD_HYSTERESIS) {
        this.silenceFrom = -1;
        continue;
      }
      if (this.silenceFrom < 0) this.silenceFrom = w0;
      if (w0 + VAD_WINDOW - this.silenceFrom >= (td.silenceDurationMs * SR) / 1000) {
        const end = Math.min(this.total, this.silenceFrom + Math.round((TAIL_PADDING_MS * SR) / 1000));
        this.deps.emit({ type: 'speech_stopped', utterance: u.number, audioEndMs: Math.round((end * 1000) / SR) });
        this.silenceFrom = -1;
        void this.finish(u, end).catch(() => undefined);
      }
    }
  }

  /** Past the longest utterance: cut at the quietest 100 ms of its last third and complete the first part. */
  private maybeCut(): void {
    const u = this.utterance;
    const max = this.deps.limits.maxUtteranceSeconds * SR;
    if (!u || this.total - u.start < max) return;
    const from = u.start + Math.floor((2 * max) / 3);
    const to = u.start + max;
    const hop = SR / 10;
    let best = to;
    let bestEnergy = Infinity;
    for (let at = from; at + hop <= to; at += hop / 2) {
      const piece = this.samples(at, at + hop);
      let e = 0;
      for (const v of piece) e += v * v;
      if (e < bestEnergy) {
        bestEnergy = e;
        best = at + hop / 2;
      }
    }
    const speaking = u.speaking;
    if (speaking) this.deps.emit({ type: 'speech_stopped', utterance: u.number, audioEndMs: Math.round((best * 1000) / SR) });
    void this.finish(u, best).catch(() => undefined);
    if (this.total > best) {
      this.startUtterance(best, speaking);
      if (speaking) this.deps.emit({ type: 'speech_started', utterance: this.utterance!.number, audioStartMs: Math.round((best * 1000) / SR) });
    }
  }

  /** Ends utterance `u` at session sample `end`: committed now, completed after its exact decode. */
  private async finish(u: Utterance, end: number): Promise<number> {
    if (this.pendingFinals >= MAX_PENDING_FINALS) {
      if (this.utterance === u) this.utterance = undefined;
      this.deps.emit({ type: 'failed', utterance: u.number, code: 'too_many_pending', message: `${MAX_PENDING_FINALS} utterances are already waiting for their transcript; this one is dropped.` });
      return u.number;
    }
    const samples = this.samples(u.start, end);
    const exact = this.exactSamples(u.start, end, samples);
    if (this.utterance === u) {
      this.utterance = undefined;
      this.dropBefore(end);
    }
    u.transcript.release();
    this.deps.emit({ type: 'committed', utterance: u.number });
    this.pendingFinals++;
    const { language, context } = this.options;
    void (async () => {
      try {
        const audio = await exact;
        const result = await this.deps.transcribe(audio, { language, context, signal: this.ctrl.signal });
        let text = result.text;
        if (!text.startsWith(u.sent)) {
          // The exact decode does not extend the deltas sent: decode again, forced to begin
          // with them, so the completed transcript always does.
          const forced = await u.transcript.completeFrom(audio, u.sent, result.language, { maxNewTokens: tokenBudget(audio.length / SR), signal: this.ctrl.signal });
          text = forced.text.startsWith(u.sent) ? forced.text : u.sent;
          this.deps.log('info', `live utterance ${u.number}: the exact transcript did not extend the ${u.sent.length} characters sent; completed from them`);
        }
        if (this.closed) return;
        this.deps.emit({ type: 'completed', utterance: u.number, text, language: result.language, seconds: samples.length / SR });
      } catch (err) {
        if (this.closed) return;
        const e = err as PipelineError;
        this.deps.emit({ type: 'failed', utterance: u.number, code: e.code ?? 'internal', message: e.message });
      } finally {
        this.pendingFinals--;
      }
    })();
    return u.number;
  }

  /**
   * The utterance's samples as the file pipeline would decode a WAV of its source audio: the
   * same resampler (ffmpeg's soxr when ffmpeg is there), so `completed` equals the HTTP API's
   * transcript of that file. 16 kHz input is used as it is.
   */
  private async exactSamples(start: number, end: number, samples: Float32Array): Promise<Float32Array> {
    if (!this.resampler) return samples;
    const rate = sourceRate(this.options.format);
    const a = Math.max(0, Math.floor((start * rate) / SR) - this.raw0);
    const b = Math.min(this.rawLen, Math.ceil((end * rate) / SR) - this.raw0);
    const source = this.raw.slice(a, Math.max(a, b));
    const dir = mkdtempSync(join(tmpdir(), 'qwen3-asr-live-'));
    try {
      const file = join(dir, 'utterance.wav');
      writeFileSync(file, encodeWav(source, rate, 'pcm16'));
      return (await decodeAudio(file)).samples;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // --- partial updates ---------------------------------------------------------------------

  private maybeUpdate(): void {
    const u = this.utterance;
    if (!u || this.updating || this.closed) return;
    if (this.options.turnDetection && !u.speaking) return;
    const due = u.updatedTo + this.deps.limits.updateSeconds * SR;
    if (this.total < due || this.total - u.start < MIN_AUDIO_SECONDS * SR) return;
    this.updating = true;
    const to = this.total;
    const samples = this.samples(u.start, to);
    const seconds = samples.length / SR;
    const since = (to - u.updatedTo) / SR;
    const budget = this.deps.forceUpdateTokens?.(seconds, since) ?? (u.updatedTo === u.start ? tokenBudget(seconds) : ROLLBACK_TOKENS + tokenBudget(since + 1));
    u.updatedTo = to;
    u.transcript
      .update(samples, { maxNewTokens: budget, signal: this.ctrl.signal, ignoreStopTokens: this.deps.forceUpdateTokens !== undefined })
      .then((r) => {
        if (this.closed || this.utterance !== u) return;
        // An update that closed a piece covered the audio up to its cut: the rest is due next.
        if (r.cutAt !== undefined) u.updatedTo = u.start + r.covered;
        this.settle(u, r.settled);
      })
      .catch((err) => {
        if (!this.closed && (err as Error).name !== 'AbortError') this.deps.log('warn', `live update failed: ${(err as Error).message}`);
      })
      .finally(() => {
        this.updating = false;
        this.maybeUpdate();
      });
  }

  /** Sends the text this update and the previous one agree will stay (stableDelta). */
  private settle(u: Utterance, candidate: string): void {
    const { delta, sent } = stableDelta(u.sent, u.candidate, candidate);
    u.candidate = candidate;
    if (delta) {
      u.sent = sent;
      this.deps.emit({ type: 'delta', utterance: u.number, text: delta });
    }
  }
}

/**
 * The delta an update adds: of its candidate text (what its fixed ids say, settled) and the
 * previous update's, the common part up to the last word boundary, beyond what was sent. Text
 * that is not a continuation of what was sent is held back (a delta is never retracted).
 */
export function stableDelta(sent: string, previous: string, candidate: string): { delta: string; sent: string } {
  // Up to the last word boundary: the word after it may still grow.
  let agreed = commonPrefix(candidate, previous);
  agreed = agreed.slice(0, lastWordEnd(agreed));
  if (agreed.length > sent.length && agreed.startsWith(sent)) return { delta: agreed.slice(sent.length), sent: agreed };
  return { delta: '', sent };
}

/** Characters of scripts written without spaces (Chinese, Japanese) and their punctuation: each ends a word. */
const UNSPACED = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\u3000-\u303f\uff00-\uffef]/u;

/**
 * Where the last complete word of `text` ends: before the white space ahead of its last word,
 * or after its last character of a script written without spaces (a character cannot grow, so
 * Chinese and Japanese text is sent character by character); 0 when there is none.
 */
export function lastWordEnd(text: string): number {
  const space = text.search(/\s\S*$/);
  let end = Math.max(0, space);
  let at = 0;
  for (const ch of text) {
    at += ch.length;
    if (at > end && UNSPACED.test(ch)) end = at;
  }
  return end;
}

function sourceRate(format: LiveAudioFormat): number {
  return format.type === 'pcm16' ? format.rate : 8000;
}

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}
