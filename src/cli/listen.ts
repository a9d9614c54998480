/**
 * `qwen3-asr listen [FILE|-]`: live transcription from the command line.
 *
 *   qwen3-asr listen talk.mp3 --url ws://127.0.0.1:8000      a running server (/v1/realtime)
 *   qwen3-asr listen talk.mp3 --fast                          the engine in this process
 *   arecord -f S16_LE -r 16000 -c 1 | qwen3-asr listen -      a microphone (raw PCM16 on stdin)
 *
 * - A FILE is decoded by the pipeline (its decode pool: any format, 16 kHz mono) and sent as
 *   16 kHz PCM16 at real-time pace (`--fast`: as fast as it is taken). `-` reads raw 16-bit
 *   little-endian mono PCM from stdin at `--rate` (16000 or 24000) as it arrives: a live
 *   source paces itself.
 * - With `--url` the audio goes to a server over OpenAI's Realtime protocol (ws://, wss://, or
 *   http(s):// of the server; `--api-key`, default $API_KEY); without it, to a live session of
 *   an engine loaded here with the usual model flags.
 * - Utterances are found by server VAD (`--vad off`: none, the whole input is one utterance,
 *   cut only at REALTIME_MAX_UTTERANCE_SECONDS). On a terminal the current utterance's partial
 *   text is redrawn in place and each finished one gets its own line; otherwise only finished
 *   utterances are printed, one a line. At the end of the input (or on Ctrl-C) the last
 *   utterance is committed and its transcript awaited.
 */
import { open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { checkReadableFile } from '../pipeline/audio-file.ts';
import { DecodePool } from '../pipeline/decode-pool.ts';
import { resolveLanguage } from '../pipeline/languages.ts';
import { createTranscriber } from '../pipeline/transcriber.ts';
import { PipelineError, type LiveEvent, type LiveSession, type Transcriber } from '../pipeline/types.ts';
import { cliSettings, parseSettings, SettingError, type Env } from '../settings/settings.ts';

export const LISTEN_USAGE = `Usage:
  qwen3-asr listen FILE [options]      a file (any format), paced in real time
  qwen3-asr listen - [options]         raw 16-bit mono PCM from stdin, e.g.
      arecord -f S16_LE -r 16000 -c 1 | qwen3-asr listen -
      ffmpeg -loglevel error -f pulse -i default -ac 1 -ar 16000 -f s16le - | qwen3-asr listen -

Options:
  --url URL              a running server (ws://host:port, wss://…, http(s)://…); default: the engine in this process
  --api-key KEY          the server's API key (default: $API_KEY)
  --fast                 send a file as fast as it is taken, not in real time
  --rate N               stdin's sample rate: 16000 (default) or 24000
  --language L           language hint (Qwen name, ISO code or BCP-47 tag); default: detect
  --context TEXT         context for the system prompt (names, terms)
  --vad on|off           server VAD finds the utterances (default: $VAD or on); off: one utterance until the end
  -h, --help             this help
Without --url the model flags of \`qwen3-asr --help\` apply (--model, --quant, --threads, …).
`;

const RATES = [16000, 24000];
/** Audio per message/append: 100 ms. */
const CHUNK_SECONDS = 0.1;
/** Unsent bytes on the socket above which sending waits (a slow link must not buffer without bound). */
const MAX_BUFFERED = 1 << 20;

class UsageError extends Error {}

export interface ListenIo {
  stdout: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  stderr: { write(text: string): unknown };
  stdin?: AsyncIterable<Buffer | string>;
}

// ---------------------------------------------------------------------------------------
// Output

/** Partials redrawn in place on a terminal; finished utterances one a line. */
export class TranscriptPrinter {
  private readonly partials = new Map<string, string>();
  private current: string | undefined;
  private drawn = false;

  constructor(private readonly out: ListenIo['stdout']) {}

  private get tty(): boolean {
    return this.out.isTTY === true;
  }

  delta(key: string, text: string): void {
    this.partials.set(key, (this.partials.get(key) ?? '') + text);
    this.current = key;
    this.redraw();
  }

  completed(key: string, text: string): void {
    this.partials.delete(key);
    if (this.current === key) this.current = undefined;
    if (this.tty) this.out.write(`\r\x1b[K`);
    const line = text.trim();
    if (line) this.out.write(`${line}\n`);
    this.drawn = false;
    this.redraw();
  }

  /** Drops an utterance's partial (failed, cleared). */
  drop(key: string): void {
    this.partials.delete(key);
    if (this.current === key) this.current = undefined;
    this.redraw();
  }

  /** Leaves the terminal on a clean line. */
  end(): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }

  private redraw(): void {
    if (!this.tty) return;
    const text = (this.current && this.partials.get(this.current)?.trim()) || '';
    if (!text && !this.drawn) return;
    // One row only: `\r` returns to the start of the last row of a wrapped line.
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const shown = text.length > width ? `…${text.slice(text.length - width + 1)}` : text;
    this.out.write(`\r\x1b[K\x1b[2m${shown}\x1b[0m`);
    this.drawn = shown.length > 0;
  }
}

// ---------------------------------------------------------------------------------------
// Audio sources: PCM16 pieces

/** A decoded file as 16 kHz PCM16 pieces of CHUNK_SECONDS, paced in real time unless `fast`. */
async function* filePcm(path: string, fast: boolean, stop: AbortSignal): AsyncGenerator<Buffer> {
  const pool = new DecodePool({ concurrency: 1, timeoutMs: 600_000, dir: tmpdir() });
  let samplesFile: string | undefined;
  try {
    samplesFile = (await pool.decode(path, stop)).path;
    const handle = await open(samplesFile, 'r');
    try {
      const floats = Math.round(16000 * CHUNK_SECONDS);
      const raw = Buffer.alloc(floats * 4);
      const started = performance.now();
      let sent = 0;
      for (;;) {
        if (stop.aborted) return;
        const { bytesRead } = await handle.read(raw, 0, raw.length, null);
        if (bytesRead === 0) return;
        const n = bytesRead >> 2;
        const pcm = Buffer.alloc(n * 2);
        for (let i = 0; i < n; i++) pcm.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(raw.readFloatLE(i * 4) * 32768))), i * 2);
        if (!fast) {
          const due = started + (sent / 16000) * 1000;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait, stop);
        }
        sent += n;
        yield pcm;
      }
    } finally {
      await handle.close();
    }
  } finally {
    if (samplesFile) await rm(samplesFile, { force: true }).catch(() => undefined);
    await pool.close();
  }
}

/** Raw PCM16 from stdin as it arrives, in whole samples. */
async function* stdinPcm(stdin: AsyncIterable<Buffer | string>, stop: AbortSignal): AsyncGenerator<Buffer> {
  let carry: Buffer | undefined;
  const iterator = stdin[Symbol.asyncIterator]();
  const stopped = new Promise<IteratorResult<Buffer | string>>((resolve) => stop.addEventListener('abort', () => resolve({ done: true, value: undefined }), { once: true }));
  for (;;) {
    const next = await Promise.race([iterator.next(), stopped]);
    if (next.done || stop.aborted) return;
    let piece = typeof next.value === 'string' ? Buffer.from(next.value, 'binary') : next.value;
    if (carry) piece = Buffer.concat([carry, piece]);
    const whole = piece.length & ~1;
    carry = whole < piece.length ? piece.subarray(whole) : undefined;
    if (whole > 0) yield piece.subarray(0, whole);
  }
}

function sleep(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      stop.removeEventListener('abort', done);
      resolve();
    }
    stop.addEventListener('abort', done, { once: true });
  });
}

// ---------------------------------------------------------------------------------------
// Targets: where the audio goes and where the transcript comes from

interface SessionSettings {
  rate: number;
  language?: string;
  context?: string;
  vad: boolean;
}

interface Target {
  append(pcm: Buffer): Promise<void>;
  /** Commits what is left and resolves once every utterance is transcribed. */
  finish(): Promise<void>;
  close(): void;
}

/** Utterances committed and not yet transcribed; resolves `idle()` when none is left. */
class Pending {
  private readonly open = new Set<string>();
  private waiters: (() => void)[] = [];
  add(key: string) {
    this.open.add(key);
  }
  done(key: string) {
    this.open.delete(key);
    if (this.open.size === 0) for (const w of this.waiters.splice(0)) w();
  }
  idle(): Promise<void> {
    return this.open.size === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

/** `ws://host:port/v1/realtime?intent=transcription` from what the user gave. */
export function realtimeUrl(given: string): URL {
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw new UsageError(`--url must be a URL such as ws://127.0.0.1:8000, got ${JSON.stringify(given)}`);
  }
  const schemes: Record<string, string> = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' };
  if (!schemes[url.protocol]) throw new UsageError(`--url must be ws://, wss://, http:// or https://, got ${url.protocol}`);
  url.protocol = schemes[url.protocol];
  const path = url.pathname.replace(/\/+$/, '');
  if (!path.endsWith('/realtime')) url.pathname = path.endsWith('/v1') ? `${path}/realtime` : `${path}/v1/realtime`;
  if (!url.search) url.searchParams.set('intent', 'transcription');
  return url;
}

/** A server over OpenAI's Realtime protocol. */
async function serverTarget(url: URL, apiKey: string | undefined, s: SessionSettings, printer: TranscriptPrinter, io: ListenIo): Promise<Target> {
  const ws = new WebSocket(url, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, maxPayload: 64 << 20 });
  const pending = new Pending();
  let fatal: ((err: Error) => void) | undefined;
  let probed: (() => void) | undefined;
  const failure = new Promise<never>((_, reject) => (fatal = reject));
  failure.catch(() => undefined);

  const configured = new Promise<void>((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        let message = body;
        try {
          message = JSON.parse(body).error?.message ?? body;
        } catch {
          // not JSON: the body as it is
        }
        reject(new Error(`the server refused the connection (HTTP ${res.statusCode}): ${message}`));
      });
    });
    ws.on('error', (err) => {
      reject(new Error(`cannot connect to ${url.origin}: ${err.message}`));
      fatal?.(err);
    });
    ws.on('close', (code, reason) => {
      const err = new Error(`the server closed the connection (${code}${reason.length ? `: ${reason}` : ''})`);
      reject(err);
      fatal?.(err);
    });
    ws.on('message', (data) => {
      let e: any;
      try {
        e = JSON.parse(String(data));
      } catch {
        return;
      }
      switch (e.type) {
        case 'session.created':
          ws.send(
            JSON.stringify({
              type: 'session.update',
              event_id: 'configure',
              session: {
                type: 'transcription',
                audio: {
                  input: {
                    format: { type: 'audio/pcm', rate: s.rate },
                    transcription: { ...(s.language ? { language: s.language } : {}), ...(s.context ? { prompt: s.context } : {}) },
                    turn_detection: s.vad ? { type: 'server_vad' } : null,
                  },
                },
              },
            }),
          );
          return;
        case 'session.updated':
          resolve();
          return;
        case 'input_audio_buffer.committed':
          pending.add(e.item_id);
          return;
        case 'conversation.item.input_audio_transcription.delta':
          printer.delta(e.item_id, e.delta ?? '');
          return;
        case 'conversation.item.input_audio_transcription.completed':
          printer.completed(e.item_id, e.transcript ?? '');
          pending.done(e.item_id);
          return;
        case 'conversation.item.input_audio_transcription.failed':
          printer.drop(e.item_id);
          io.stderr.write(`qwen3-asr: an utterance failed: ${e.error?.message ?? 'unknown error'}\n`);
          pending.done(e.item_id);
          return;
        case 'error': {
          const err = e.error ?? {};
          if (err.event_id === 'configure') return reject(new Error(`the server refused the session: ${err.message}`));
          if (err.event_id === 'end-probe') return probed?.();
          if (err.event_id === 'final-commit' && err.code === 'input_audio_buffer_commit_empty') return;
          if (err.code === 'server_shutting_down' || err.code === 'session_limit_reached' || err.code === 'model_not_ready') {
            reject(new Error(err.message));
          }
          printer.end();
          io.stderr.write(`qwen3-asr: ${err.code ?? 'error'}: ${err.message}\n`);
          return;
        }
      }
    });
  });
  await configured;

  return {
    async append(pcm) {
      while (ws.bufferedAmount > MAX_BUFFERED && ws.readyState === ws.OPEN) await new Promise((r) => setTimeout(r, 20));
      if (ws.readyState !== ws.OPEN) return failure;
      ws.send(JSON.stringify({ type: 'input_audio_buffer.append', audio: pcm.toString('base64') }));
    },
    async finish() {
      // The commit's `committed` event cannot be told from one of server VAD's, so a second
      // commit follows: the server handles commits in order, and this one finds the buffer
      // empty, so its error comes after every committed event of the audio sent.
      const drained = new Promise<void>((r) => (probed = r));
      ws.send(JSON.stringify({ type: 'input_audio_buffer.commit', event_id: 'final-commit' }));
      ws.send(JSON.stringify({ type: 'input_audio_buffer.commit', event_id: 'end-probe' }));
      await Promise.race([drained, failure]);
      await Promise.race([pending.idle(), failure]);
    },
    close() {
      ws.removeAllListeners('close');
      ws.close(1000);
    },
  };
}

/** A live session of an engine in this process. */
function engineTarget(transcriber: Transcriber, s: SessionSettings, printer: TranscriptPrinter, io: ListenIo): Target {
  const pending = new Pending();
  const key = (n: number) => String(n);
  const live: LiveSession = transcriber.openLive(
    {
      format: { type: 'pcm16', rate: s.rate },
      language: s.language,
      context: s.context,
      turnDetection: s.vad ? { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 } : null,
    },
    (e: LiveEvent) => {
      switch (e.type) {
        case 'committed':
          pending.add(key(e.utterance));
          return;
        case 'delta':
          printer.delta(key(e.utterance), e.text);
          return;
        case 'completed':
          printer.completed(key(e.utterance), e.text);
          pending.done(key(e.utterance));
          return;
        case 'failed':
          printer.drop(key(e.utterance));
          io.stderr.write(`qwen3-asr: an utterance failed: ${e.message}\n`);
          pending.done(key(e.utterance));
          return;
        case 'error':
          printer.end();
          io.stderr.write(`qwen3-asr: ${e.code}: ${e.message}\n`);
          return;
      }
    },
  );
  return {
    async append(pcm) {
      live.append(pcm);
    },
    async finish() {
      await live.commit().catch((err) => {
        if (!(err instanceof PipelineError && err.code === 'bad_request')) throw err;
      });
      await pending.idle();
    },
    close() {
      live.close();
    },
  };
}

// ---------------------------------------------------------------------------------------
// The command

/** Runs `listen` with the arguments after the command; resolves to the exit code. */
export async function listen(args: string[], io: ListenIo, env?: Env): Promise<number> {
  const settingFlags = cliSettings();
  const printer = new TranscriptPrinter(io.stdout);
  let transcriber: Transcriber | undefined;
  let target: Target | undefined;
  const stop = new AbortController();
  const onSigint = () => stop.abort();
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        'api-key': { type: 'string' },
        fast: { type: 'boolean' },
        rate: { type: 'string' },
        language: { type: 'string' },
        context: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(settingFlags.map(({ flag }) => [flag.name, { type: 'string' as const }])),
      },
    });
    if (values.help) {
      io.stdout.write(LISTEN_USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`listen takes one FILE or - (stdin), got ${positionals.length}`);
    const input = positionals[0];
    const flagValues = Object.fromEntries(settingFlags.map(({ flag }) => [flag.name, (values as Record<string, unknown>)[flag.name] as string | undefined]));
    const settings = parseSettings(env, flagValues);
    const rate = values.rate === undefined ? 16000 : Number(values.rate);
    if (!RATES.includes(rate)) throw new UsageError(`--rate must be 16000 or 24000, got ${JSON.stringify(values.rate)}`);
    if (values.rate !== undefined && input !== '-') throw new UsageError('--rate is for raw PCM on stdin (-); a file carries its own rate');
    let language: string | undefined;
    if (values.language) {
      const r = resolveLanguage(values.language as string);
      if (!r.ok) throw new UsageError(r.message);
      language = r.name || undefined;
    }
    const url = values.url ? realtimeUrl(values.url as string) : undefined;
    const session: SessionSettings = { rate, language, context: values.context as string | undefined, vad: settings.vad === 'on' };
    if (input !== '-') await checkReadableFile(input);
    else if (!io.stdin) throw new UsageError('no stdin to read from');

    if (url) {
      target = await serverTarget(url, (values['api-key'] as string | undefined) ?? settings.apiKey, session, printer, io);
    } else {
      const verbose = settings.given.has('logLevel') && (settings.logLevel === 'debug' || settings.logLevel === 'info');
      transcriber = createTranscriber({
        model: settings.modelName,
        device: settings.device,
        quant: settings.quant,
        threads: settings.threads,
        maxBatchSize: settings.maxBatchSize,
        maxQueue: 1,
        segmentSeconds: settings.segmentSeconds,
        hfHome: settings.hfHome,
        hfEndpoint: settings.hfEndpoint,
        hfOffline: settings.hfOffline,
        hfToken: settings.hfToken,
        live: { maxSessions: 1, updateSeconds: settings.realtimeUpdateSeconds, maxUtteranceSeconds: settings.realtimeMaxUtteranceSeconds },
        log: (level, msg) => {
          if (level === 'warn' || verbose) io.stderr.write(`${msg}\n`);
        },
      });
      await transcriber.whenReady();
      target = engineTarget(transcriber, session, printer, io);
    }

    // Ctrl-C ends the input: the last utterance is still transcribed.
    process.once('SIGINT', onSigint);
    const source = input === '-' ? stdinPcm(io.stdin!, stop.signal) : filePcm(input, values.fast === true, stop.signal);
    for await (const pcm of source) await target.append(pcm);
    await target.finish();
    printer.end();
    return 0;
  } catch (err) {
    printer.end();
    if (err instanceof UsageError || err instanceof SettingError || String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) {
      io.stderr.write(`qwen3-asr: ${(err as Error).message}\n\n${LISTEN_USAGE}`);
      return 2;
    }
    const prefix = err instanceof PipelineError ? `qwen3-asr: ${err.code}: ` : 'qwen3-asr: ';
    io.stderr.write(`${prefix}${(err as Error).message}\n`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
    target?.close();
    await transcriber?.close();
  }
}
