/**
 * The `qwen3-asr` command line: transcribe or align audio files with the same pipeline the
 * HTTP service uses (decode -> segments -> engine in a worker thread -> formats).
 *
 *   qwen3-asr transcribe <audio> [--model M] [--language L] [--context TEXT] [--max-new-tokens N]
 *                        [--quant none|int8|int4] [--device cpu|cuda|cuda:N] [--threads N]
 *                        [--batch-size N] [--segment-seconds N] [--vad on|off] [--vad-threshold P]
 *                        [--vad-min-silence-ms N] [--timestamps --aligner A]
 *                        [--format json|text|srt|vtt|verbose_json] [--json] [--progress | --no-progress]
 *   qwen3-asr align <audio> --text TEXT --language L --aligner A [--json]
 *   qwen3-asr --version
 *
 * The flags that stand for a setting (--threads for THREADS, …) are read with the environment
 * by src/settings/settings.ts, so they accept exactly what the server accepts, and a flag
 * overrides its variable.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveLanguage } from '../pipeline/languages.ts';
import { createTranscriber } from '../pipeline/transcriber.ts';
import { PipelineError, type LoadProgress, type Transcriber, type TranscriptionResult } from '../pipeline/types.ts';
import { subtitles, verboseJson } from '../formats/response-formats.ts';
import { checkReadableFile } from '../pipeline/audio-file.ts';
import { listen, type ListenIo } from './listen.ts';
import { cliSettings, DEFAULT_CLI_ALIGNER, parseSettings, SettingError, settingMeaning, type Env } from '../settings/settings.ts';

/** `--threads` overrides THREADS and so on: the settings table names each setting's flag. */
const SETTING_FLAGS = cliSettings();

const usageLine = (left: string, right: string) => `  ${left.padEnd(23)}${right}\n`;
/** Markdown of the settings table as plain text for a terminal: no code marks, no references to README's sections. */
const plain = (markdown: string) => markdown.replace(/ — see \[[^\]]*\]\([^)]*\)/g, '').replace(/`/g, '');

function settingUsage(): string {
  return SETTING_FLAGS.map(({ setting, flag }) =>
    usageLine(`--${flag.name} ${flag.arg}`, `${plain(settingMeaning(setting, flag.doc))} (default: $${setting.env} or ${plain(flag.default ?? setting.default)})`),
  ).join('');
}

export const USAGE = `Usage:
  qwen3-asr transcribe <audio> [options]
  qwen3-asr align <audio> --text TEXT --language L [--aligner A] [--json]
  qwen3-asr listen FILE|- [--url URL] [--fast]   live transcription (qwen3-asr listen --help)

Options:
${usageLine('--language L', 'force the language (Qwen name, ISO code or BCP-47 tag); default: detect')}\
${usageLine('--context TEXT', 'context for the system prompt (names, terms)')}\
${usageLine('--timestamps', 'word timestamps with the forced aligner')}\
${usageLine('--format F', 'text | json | verbose_json | srt | vtt (default: text)')}\
${usageLine('--json', 'one JSON object: text, language, raw, token_ids, duration, segments')}\
${usageLine('--text TEXT', 'align: the text to place in the audio')}\
${usageLine('--progress', 'progress on stderr (download, load, transcription) also when it is not a terminal')}\
${usageLine('--no-progress', 'no progress, also on a terminal')}\
${usageLine('-V, --version', 'the version')}\
${usageLine('-h, --help', 'this help')}
Settings (a flag overrides its environment variable; README "Configuration" lists every variable):
${settingUsage()}`;

class UsageError extends Error {}

const FORMATS = ['text', 'json', 'verbose_json', 'srt', 'vtt'] as const;

/** The package's version (package.json), as `--version` prints it. */
const packageVersion = (): string => JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

const clock = (s: number) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
const bytes = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);
const percent = (done: number, total: number) => String(total > 0 ? Math.floor((100 * done) / total) : 100).padStart(3) + '%';

/**
 * Progress on stderr, from the first byte of a download to the last segment: the download
 * (bytes of all files, the file in flight), the model's parts as they are built, then the
 * transcription by audio time. On a terminal one line per stage is rewritten in place (at most
 * four times a second); elsewhere (--progress) a line is written per stage, then at most one a
 * second and only when the whole percentage moves, and the last line of each stage always.
 */
export function progressPrinter(stderr: CliIo['stderr'], mode: 'terminal' | 'lines' | 'off', now: () => number = Date.now) {
  let stage = '';
  let last = 0;
  let shown = '';
  let key = '';
  let open = false;
  /** Repos with a transfer under way: a snapshot already cached reports its files whole, and shows nothing. */
  const fetching = new Set<string>();
  const show = (name: string, line: string, unit: string, final: boolean) => {
    if (mode === 'off') return;
    const t = now();
    const fresh = name !== stage;
    if (!fresh && !final && t - last < (mode === 'terminal' ? 250 : 1000)) return;
    if (!fresh && !final && mode === 'lines' && unit === key) return;
    if (line === shown) return;
    if (mode === 'terminal') {
      stderr.write(`${fresh && open ? '\n' : ''}\r${line}\x1b[K`);
      open = true;
    } else {
      stderr.write(line + '\n');
    }
    stage = name;
    last = t;
    shown = line;
    key = unit;
  };
  return {
    load(p: LoadProgress) {
      if (p.stage === 'download') {
        if (p.fileSize === undefined || p.fileBytes < p.fileSize) fetching.add(p.repo);
        if (!fetching.has(p.repo)) return;
        const pct = percent(p.bytes, p.totalBytes);
        show(`download ${p.repo}`, `downloading ${p.repo} ${pct} (${bytes(p.bytes)} / ${bytes(p.totalBytes)}; ${p.file}, file ${p.fileIndex} of ${p.files})`, pct, p.bytes >= p.totalBytes);
      } else {
        show('load', `loading ${p.step}/${p.steps}: ${p.part}`, '', true);
      }
    },
    transcribing(done: number, total: number) {
      const pct = percent(done, total);
      show('transcribe', `transcribing ${pct} (${clock(done)} / ${clock(total)})`, pct, done >= total);
    },
    end() {
      if (mode === 'terminal' && open) stderr.write('\n');
      open = false;
    },
  };
}

function render(result: TranscriptionResult, format: (typeof FORMATS)[number], timestamps: boolean): string {
  switch (format) {
    case 'text':
      return result.text + '\n';
    case 'json':
      return JSON.stringify(timestamps ? { text: result.text, language: result.language, words: result.words ?? [] } : { text: result.text, language: result.language }) + '\n';
    case 'verbose_json':
      return JSON.stringify(verboseJson(result, { granularities: timestamps ? ['segment', 'word'] : ['segment'] }), null, 2) + '\n';
    case 'srt':
    case 'vtt':
      return subtitles(result, format);
  }
}

/** `--json`: everything a script needs, including the raw model output and token ids. */
export function cliJson(result: TranscriptionResult): Record<string, unknown> {
  const one = result.segments.length === 1 ? result.segments[0] : undefined;
  return {
    text: result.text,
    language: result.language,
    raw: one ? one.raw : result.segments.map((s) => s.raw).join('\n'),
    token_ids: one ? one.tokenIds : result.segments.flatMap((s) => s.tokenIds),
    truncated: result.segments.some((s) => s.truncated),
    repetition_stopped: result.segments.some((s) => s.repetitionStopped),
    duration: result.duration,
    segments: result.segments.map((s) => ({
      id: s.id,
      start: s.start,
      end: s.end,
      text: s.text,
      language: s.language,
      raw: s.raw,
      token_ids: s.tokenIds,
      text_token_ids: s.textTokenIds,
      truncated: s.truncated,
      repetition_stopped: s.repetitionStopped,
      ...(s.words ? { words: s.words } : {}),
    })),
    ...(result.words ? { words: result.words } : {}),
  };
}

async function withTranscriber<T>(make: () => Transcriber, run: (t: Transcriber) => Promise<T>): Promise<T> {
  const t = make();
  try {
    await t.whenReady();
    return await run(t);
  } finally {
    await t.close();
  }
}

/** Where the CLI writes: the process's streams, or a test's collectors. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
}

/**
 * Runs the CLI; resolves to the exit code (0 ok, 1 failure, 2 usage error or invalid setting).
 * `env` is where the settings are read and checked (default: this process's environment; the
 * engine's worker reads its own defaults, such as the graph cache, from the process's).
 */
export async function main(argv: string[], io: CliIo = process, env?: Env): Promise<number> {
  const [command, ...rest] = argv;
  let progress: ReturnType<typeof progressPrinter> | undefined;
  try {
    // No command is a usage error: the usage goes to stderr, stdout stays empty for pipelines.
    if (!command) throw new UsageError('missing command: transcribe or align');
    if (command === '-h' || command === '--help' || command === 'help') {
      io.stdout.write(USAGE);
      return 0;
    }
    if (command === '-V' || command === '--version') {
      io.stdout.write(`${packageVersion()}\n`);
      return 0;
    }
    if (command === 'listen') return await listen(rest, { stdout: io.stdout, stderr: io.stderr, stdin: (io as Partial<ListenIo>).stdin ?? process.stdin }, env);
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        model: { type: 'string' },
        language: { type: 'string' },
        context: { type: 'string' },
        'max-new-tokens': { type: 'string' },
        quant: { type: 'string' },
        device: { type: 'string' },
        threads: { type: 'string' },
        'batch-size': { type: 'string' },
        'segment-seconds': { type: 'string' },
        vad: { type: 'string' },
        'vad-threshold': { type: 'string' },
        'vad-min-silence-ms': { type: 'string' },
        timestamps: { type: 'boolean' },
        aligner: { type: 'string' },
        format: { type: 'string' },
        json: { type: 'boolean' },
        text: { type: 'string' },
        'hf-home': { type: 'string' },
        progress: { type: 'boolean' },
        'no-progress': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
    if (values.help) {
      io.stdout.write(USAGE);
      return 0;
    }
    if (values.version) {
      io.stdout.write(`${packageVersion()}\n`);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`${command} takes exactly one audio file, got ${positionals.length}`);
    const audio = positionals[0];
    const flagValues = Object.fromEntries(SETTING_FLAGS.map(({ flag }) => [flag.name, values[flag.name as keyof typeof values] as string | undefined]));
    const settings = parseSettings(env, flagValues);
    // The engine's messages only when LOG_LEVEL asks for them: its default (info) is the server's.
    const verbose = settings.given.has('logLevel') && (settings.logLevel === 'debug' || settings.logLevel === 'info');
    if (values.progress && values['no-progress']) throw new UsageError('--progress and --no-progress contradict each other');
    // Progress on a terminal unless --no-progress; elsewhere only with --progress (stderr may be a log).
    const printer = progressPrinter(io.stderr, values['no-progress'] ? 'off' : io.stderr.isTTY === true ? 'terminal' : values.progress ? 'lines' : 'off');
    progress = printer;
    const common = {
      device: settings.device,
      quant: settings.quant,
      threads: settings.threads,
      maxBatchSize: settings.maxBatchSize,
      maxQueue: 1,
      hfHome: settings.hfHome,
      hfEndpoint: settings.hfEndpoint,
      hfOffline: settings.hfOffline,
      hfToken: settings.hfToken,
      onLoadProgress: (p: LoadProgress) => printer.load(p),
      // Errors are not logged here: every one the transcriber logs (load failure, worker crash)
      // also rejects the awaited call and is printed once by the catch below.
      log: (level: string, msg: string) => {
        if (level !== 'warn' && !verbose) return;
        printer.end();
        io.stderr.write(`${msg}\n`);
      },
    };

    if (command === 'transcribe') {
      const format = (values.format ?? 'text') as (typeof FORMATS)[number];
      if (!FORMATS.includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(values.format)}`);
      let language: string | undefined;
      if (values.language) {
        const r = resolveLanguage(values.language);
        if (!r.ok) throw new UsageError(r.message);
        language = r.name || undefined;
      }
      const timestamps = values.timestamps ?? false;
      const aligner = timestamps ? (settings.forcedAligner ?? DEFAULT_CLI_ALIGNER) : undefined;
      // Fail before loading (or downloading) a model when the file cannot be read at all.
      await checkReadableFile(audio);
      const result = await withTranscriber(
        () =>
          createTranscriber({
            ...common,
            model: settings.modelName,
            aligner,
            segmentSeconds: settings.segmentSeconds,
            vad: settings.vad === 'on' ? { threshold: settings.vadThreshold, minSilenceMs: settings.vadMinSilenceMs } : undefined,
          }),
        (t) =>
          t.transcribeFile(audio, {
            language,
            context: values.context,
            timestamps,
            maxNewTokens: settings.maxNewTokens,
            onProgress: (d, total) => printer.transcribing(d, total),
          }),
      );
      printer.end();
      io.stdout.write(values.json ? JSON.stringify(cliJson(result)) + '\n' : render(result, format, timestamps));
      return 0;
    }

    if (command === 'align') {
      if (values.text === undefined) throw new UsageError('align needs --text TEXT');
      if (!values.language) throw new UsageError('align needs --language L (a language the aligner supports, e.g. English)');
      const r = resolveLanguage(values.language);
      if (!r.ok || !r.name) throw new UsageError(r.ok ? 'align needs a language, not auto-detection' : r.message);
      await checkReadableFile(audio);
      const items = await withTranscriber(
        () => {
          const aligner = settings.forcedAligner ?? DEFAULT_CLI_ALIGNER;
          return createTranscriber({ ...common, model: aligner, aligner, alignOnly: true });
        },
        (t) => {
          // The worker's align() does not check the language (the transcribe path does): without
          // this, a language the aligner was not trained on gives confident-looking garbage.
          const supported = t.alignerLanguages ?? [];
          if (!supported.some((l) => l.toLowerCase() === r.name.toLowerCase())) {
            throw new UsageError(`the forced aligner does not support ${r.name}; it supports ${supported.join(', ')}`);
          }
          return t.alignFile(audio, values.text!, r.name);
        },
      );
      printer.end();
      const out = { text: values.text, language: r.name, items };
      io.stdout.write(values.json ? JSON.stringify(out) + '\n' : items.map((i) => `${i.start.toFixed(3)}\t${i.end.toFixed(3)}\t${i.text}`).join('\n') + '\n');
      return 0;
    }
    throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  } catch (err) {
    progress?.end();
    // parseArgs' own errors (unknown option, missing value, value given to a flag, …) are usage errors too.
    if (err instanceof UsageError || err instanceof SettingError || String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) {
      io.stderr.write(`qwen3-asr: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    const prefix = err instanceof PipelineError ? `qwen3-asr: ${err.code}: ` : 'qwen3-asr: ';
    io.stderr.write(`${prefix}${(err as Error).message}\n`);
    return 1;
  }
}

/** True when this file is the script node was started with (`npm run cli`), not an import (bin/qwen3-asr.js). */
function isMainScript(): boolean {
  if (!process.argv[1]) return false;
  try {
    // Compare real paths: a URL built by hand misses percent-encoding (spaces) and symlinks.
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainScript()) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
