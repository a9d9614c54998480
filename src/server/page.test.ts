/**
 * The web page at `/`: content negotiation over HTTP, then the page itself in a real browser
 * (Debian's chromium, driven by playwright-core) against the real server on the tiny
 * checkpoint and the tiny aligner, with the API key switched on. The transcripts are
 * nonsense but deterministic, so what the page shows is compared with what the API answers
 * for the same file. Screenshots go to a folder under the OS temp dir (printed).
 *
 * Without chromium (scripts/setup.sh installs it where it runs as root) the browser tests are
 * skipped with the reason; the HTTP tests always run.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { createTranscriber } from '../pipeline/transcriber.ts';
import type { Transcriber } from '../pipeline/types.ts';
import { listenUrl, pcm16Wav, testServerConfig } from '../testing/http.ts';
import { AUDIO_DIR, goldenPath } from '../testing/shared.ts';
import { buildApp } from './app.ts';
import type { ServerConfig } from './config.ts';
import { prefersHtml } from './routes/page.ts';

const CHROMIUM = '/usr/bin/chromium';
const NO_BROWSER = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is not installed: run scripts/setup.sh as root, or apt-get install --no-install-recommends chromium`;

const API_KEY = 'page-key-5d1c';
const AUTH = { authorization: `Bearer ${API_KEY}` };
const TINY = goldenPath('tiny-a', 'checkpoint');
const ALIGNER = goldenPath('aligner-a', 'checkpoint');
const JFK = join(AUDIO_DIR, 'jfk.wav');
/** 30 s of dialogue: three 10 s segments, so the streamed text arrives in several pieces. */
const DIALOGUE = join(AUDIO_DIR, 'notld', '30s_i_wont_open_this_door_again.wav');
const EN3S = goldenPath('tiny-a', 'audio', 'en_3s.wav');
const CHROME_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';

let app: FastifyInstance;
let transcriber: Transcriber;
let url: string;
let scratch: string;
let shots: string;
let micWav: string;
let browser: Browser | undefined;

function config(uploadDir: string): ServerConfig {
  return testServerConfig(uploadDir, {
    forcedAligner: ALIGNER,
    segmentSeconds: 10,
    maxUploadBytes: 24 * 1024 * 1024,
    maxQueue: 4,
    apiKey: API_KEY,
    decodeConcurrency: 2,
    decodeTimeoutMs: 120_000,
    realtime: { maxSessions: 2, updateSeconds: 1, maxUtteranceSeconds: 30 },
  });
}

/** The samples of a 16-bit PCM WAV's data chunk. */
function pcm16Samples(wav: Buffer): Int16Array {
  let pos = 12;
  while (pos + 8 <= wav.length) {
    const id = wav.toString('ascii', pos, pos + 4);
    const size = wav.readUInt32LE(pos + 4);
    if (id === 'data') return new Int16Array(wav.buffer.slice(wav.byteOffset + pos + 8, wav.byteOffset + pos + 8 + size));
    pos += 8 + size + (size & 1);
  }
  throw new Error('no data chunk');
}

async function api(path: string, fields: Record<string, string | string[]>, file: string): Promise<Response> {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(await readFile(file))]), file.split('/').at(-1)!);
  for (const [key, value] of Object.entries(fields)) for (const v of [value].flat()) form.append(key, v);
  return fetch(url + path, { method: 'POST', body: form, headers: AUTH });
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-asr-page-test-'));
  shots = await mkdtemp(join(tmpdir(), 'qwen3-asr-page-screenshots-'));
  const cfg = config(await mkdtemp(join(scratch, 'uploads-')));
  transcriber = createTranscriber({
    model: TINY,
    aligner: ALIGNER,
    device: 'cpu',
    quant: 'none',
    threads: 1,
    maxBatchSize: 4,
    maxQueue: cfg.maxQueue,
    hfOffline: true,
    segmentSeconds: 10,
  });
  app = buildApp({ config: cfg, transcriber, logger: false });
  url = await listenUrl(app);

  // The fake microphone plays a WAV in a loop: speech, then silence that ends the utterance.
  const jfk = pcm16Samples(await readFile(JFK));
  const mic = new Int16Array(jfk.length + 16000 * 2);
  mic.set(jfk);
  micWav = join(scratch, 'microphone.wav');
  await writeFile(micWav, pcm16Wav(mic, 16000));

  if (!NO_BROWSER) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--use-fake-ui-for-media-stream',
        '--use-fake-device-for-media-stream',
        `--use-file-for-fake-audio-capture=${micWav}`,
        '--autoplay-policy=no-user-gesture-required',
      ],
    });
  }
  await transcriber.whenReady();
  console.log(`page screenshots: ${shots}`);
});

after(async () => {
  try {
    await browser?.close();
  } finally {
    await app?.close();
    await transcriber?.close();
    await rm(scratch, { recursive: true, force: true });
  }
});

describe('GET / content negotiation', () => {
  test('prefersHtml: browsers get the page, API clients and wildcards the JSON', () => {
    assert.equal(prefersHtml(CHROME_ACCEPT), true);
    assert.equal(prefersHtml('text/html'), true);
    assert.equal(prefersHtml('application/xhtml+xml'), true);
    assert.equal(prefersHtml('text/html;q=0.9, application/json;q=0.5'), true);
    assert.equal(prefersHtml(undefined), false);
    assert.equal(prefersHtml(''), false);
    assert.equal(prefersHtml('*/*'), false);
    assert.equal(prefersHtml('application/json'), false);
    assert.equal(prefersHtml('application/json, text/html'), false, 'JSON first at the same quality');
    assert.equal(prefersHtml('text/html;q=0.5, application/json'), false);
    assert.equal(prefersHtml('text/html;q=0'), false);
    assert.equal(prefersHtml('TEXT/HTML; charset=utf-8'), true);
  });

  test('a browser gets the page without the API key; API clients get the JSON behind it', async () => {
    const page = await fetch(url + '/', { headers: { accept: CHROME_ACCEPT } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('vary') ?? '', /Accept/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const html = await page.text();
    assert.match(html, /<title>qwen3-asr/);
    // Nothing is loaded from elsewhere: every src and href is relative to the page.
    for (const [, link] of html.matchAll(/(?:src|href)="([^"]+)"/g)) assert.doesNotMatch(link, /^(?:[a-z]+:)?\/\//i, link);

    const denied = await fetch(url + '/');
    assert.equal(denied.status, 401);
    assert.match(denied.headers.get('vary') ?? '', /Accept/);
    const json = await fetch(url + '/', { headers: { ...AUTH, accept: 'application/json' } });
    assert.equal(json.status, 200);
    const info = await json.json();
    assert.ok(info.endpoints['/transcribe'], 'the original service\'s information');
  });

  test('the page files and /ui/config.json are served; nothing else under /ui/', async () => {
    for (const [file, type] of [
      ['app.js', /^text\/javascript/],
      ['live.js', /^text\/javascript/],
      ['pcm-worklet.js', /^text\/javascript/],
      ['style.css', /^text\/css/],
      ['icon.svg', /^image\/svg\+xml/],
    ] as const) {
      const res = await fetch(`${url}/ui/${file}`);
      assert.equal(res.status, 200, file);
      assert.match(res.headers.get('content-type') ?? '', type, file);
      assert.ok((await res.text()).length > 100, file);
    }
    assert.equal((await fetch(`${url}/ui/index.html`)).status, 404);
    assert.equal((await fetch(`${url}/ui/..%2Froutes%2Fpage.ts`)).status, 404);

    const cfg = await (await fetch(`${url}/ui/config.json`)).json();
    const info = await (await fetch(url + '/', { headers: AUTH })).json();
    assert.equal(cfg.model, info.model, 'the model as GET / names it');
    assert.equal(cfg.api_key_required, true);
    assert.equal(cfg.realtime, true);
    assert.deepEqual(cfg.languages.find((l: { name: string }) => l.name === 'English'), { name: 'English', code: 'en' });
    assert.ok(Array.isArray(cfg.aligner_languages) && cfg.aligner_languages.includes('English'));
    // The page's routes stay out of the API documentation.
    const openapi = await (await fetch(`${url}/openapi.json`)).json();
    assert.ok(!Object.keys(openapi.paths).some((p) => p.startsWith('/ui')));
  });
});

describe('the page in Chromium', { skip: NO_BROWSER }, () => {
  const contexts: BrowserContext[] = [];

  after(async () => {
    await Promise.allSettled(contexts.map((c) => c.close()));
  });

  /** A fresh page with the API key entered and English chosen. */
  async function openPage(t: TestContext, options: { key?: boolean; dark?: boolean; phone?: boolean } = {}): Promise<Page> {
    const context = await browser!.newContext({
      acceptDownloads: true,
      colorScheme: options.dark ? 'dark' : 'light',
      viewport: options.phone ? { width: 390, height: 844 } : { width: 1100, height: 900 },
    });
    contexts.push(context);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    t.after(async () => {
      await context.close();
    });
    (page as Page & { problems: string[] }).problems = problems;
    await page.goto(url + '/');
    await page.waitForFunction(() => (document.getElementById('language') as HTMLSelectElement).options.length > 1);
    if (options.key !== false) await page.fill('#api-key', API_KEY);
    await page.selectOption('#language', 'en');
    return page;
  }

  const problemsOf = (page: Page) => (page as Page & { problems: string[] }).problems;

  async function transcriptDone(page: Page): Promise<void> {
    await page.waitForFunction(() => !document.getElementById('transcript')!.classList.contains('running') && document.getElementById('progress')!.hidden, undefined, {
      timeout: 30_000,
    });
    const error = await page.locator('#file-error').textContent();
    assert.equal(await page.locator('#file-error').isHidden(), true, `the page shows an error: ${error}`);
  }

  test('a chosen file is transcribed, its text streamed onto the page as it is decoded', async (t) => {
    const page = await openPage(t);
    assert.equal(await page.locator('#key-state').textContent(), 'set');
    // The text the box held after each piece added while the request ran (pieces that arrive
    // in one network read are still told apart: each is its own mutation record).
    await page.evaluate(() => {
      const box = document.getElementById('transcript')!;
      const seen: string[] = [];
      (window as any).seen = seen;
      new MutationObserver((records) => {
        if (!box.classList.contains('running')) return;
        for (const record of records) {
          for (const node of record.addedNodes) {
            if (!box.contains(node)) continue;
            let upTo = '';
            for (const child of box.childNodes) {
              upTo += child.textContent;
              if (child === node) break;
            }
            seen.push(upTo);
          }
        }
      }).observe(box, { childList: true });
    });
    await page.setInputFiles('#file', DIALOGUE);
    await transcriptDone(page);
    const shown = await page.locator('#transcript').textContent();

    const expected = (await (await api('/v1/audio/transcriptions', { language: 'en' }, DIALOGUE)).json()).text;
    assert.ok(expected.length > 0);
    assert.equal(shown, expected);
    const seen: string[] = await page.evaluate(() => (window as any).seen);
    assert.ok(
      seen.some((text) => text.length > 0 && text.length < expected.length && expected.startsWith(text)),
      `part of the text was shown before the end: ${JSON.stringify(seen)}`,
    );
    assert.match((await page.locator('#result-meta').textContent()) ?? '', /transcribed in/);
    assert.equal(await page.locator('#result-title').textContent(), '30s_i_wont_open_this_door_again.wav');
    await page.screenshot({ path: join(shots, 'file-streamed.png'), fullPage: true });
    assert.deepEqual(problemsOf(page), []);
  });

  test('a dropped file is transcribed; dark colour scheme on a phone-sized screen', async (t) => {
    const page = await openPage(t, { dark: true, phone: true });
    const bytes = (await readFile(JFK)).toString('base64');
    await page.evaluate((b64) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], 'jfk.wav', { type: 'audio/wav' }));
      const zone = document.getElementById('drop')!;
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, bytes);
    await transcriptDone(page);
    const expected = (await (await api('/v1/audio/transcriptions', { language: 'en' }, JFK)).json()).text;
    assert.equal(await page.locator('#transcript').textContent(), expected);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(background, 'rgb(15, 17, 21)', 'the dark palette');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'nothing is wider than the screen');
    await page.screenshot({ path: join(shots, 'file-dropped-dark-phone.png'), fullPage: true });
    assert.deepEqual(problemsOf(page), []);
  });

  test('without the API key the page asks for it and shows the server\'s refusal', async (t) => {
    const page = await openPage(t, { key: false });
    assert.equal(await page.locator('#key-panel').getAttribute('open'), '');
    assert.equal(await page.locator('#key-state').textContent(), 'required');
    await page.setInputFiles('#file', JFK);
    await page.locator('#file-error').waitFor({ state: 'visible' });
    assert.match((await page.locator('#file-error').textContent()) ?? '', /API key/);
    await page.screenshot({ path: join(shots, 'api-key-needed.png'), fullPage: true });
    // The key is kept in local storage: a reload finds it.
    await page.fill('#api-key', API_KEY);
    await page.reload();
    assert.equal(await page.inputValue('#api-key'), API_KEY);
  });

  test('word timestamps: the aligner\'s words in the text, a click seeks, the current word is highlighted while playing', async (t) => {
    const page = await openPage(t);
    await page.check('#words');
    await page.setInputFiles('#file', EN3S);
    await transcriptDone(page);
    const verbose = await (await api('/v1/audio/transcriptions', { language: 'en', response_format: 'verbose_json', 'timestamp_granularities[]': ['word', 'segment'] }, EN3S)).json();
    assert.ok(verbose.words.length > 0);
    const spans = await page.locator('#transcript .word').evaluateAll((els) => els.map((e) => ({ word: e.textContent, start: Number((e as HTMLElement).dataset.start) })));
    assert.deepEqual(spans, verbose.words.map((w: { word: string; start: number }) => ({ word: w.word, start: w.start })));
    assert.equal(await page.locator('#transcript').textContent(), verbose.text);

    // The tiny aligner's random weights put every word far past the end of the 3 s clip, so
    // the page is next given the same answer with the words' times spread over the clip: the
    // page's own part (seeking, highlighting while playing) is what this checks.
    const duration = verbose.duration as number;
    const step = duration / verbose.words.length;
    const spread = { ...verbose, words: verbose.words.map((w: { word: string }, i: number) => ({ ...w, start: i * step, end: (i + 0.9) * step })) };
    await page.route('**/v1/audio/transcriptions', (route) => route.fulfill({ json: spread }));
    await page.setInputFiles('#file', EN3S);
    await transcriptDone(page);
    const last = verbose.words.length - 1;
    await page.evaluate((time) => {
      (document.getElementById('player') as HTMLAudioElement).currentTime = time;
    }, (last + 0.5) * step);
    await page.waitForFunction((i) => document.querySelector('#transcript .word.current')?.getAttribute('data-index') === String(i), last);

    // A click on the first word plays from its start, and the highlight moves on with the audio.
    await page.locator('#transcript .word').first().click();
    await page.waitForFunction(() => document.querySelector('#transcript .word.current')?.getAttribute('data-index') === '0');
    const playing = await page.evaluate(() => !(document.getElementById('player') as HTMLAudioElement).paused);
    assert.ok(playing, 'the player plays after the click');
    await page.screenshot({ path: join(shots, 'words-first.png'), fullPage: true });
    if (last > 0) {
      await page.waitForFunction(() => document.querySelector('#transcript .word.current')?.getAttribute('data-index') !== '0', undefined, { timeout: 10_000 });
    }
    await page.screenshot({ path: join(shots, 'words-playing.png'), fullPage: true });
    assert.deepEqual(problemsOf(page), []);
  });

  test('downloads: SRT and VTT from the server for the same file, JSON and text as shown', async (t) => {
    const page = await openPage(t);
    await page.setInputFiles('#file', JFK);
    await transcriptDone(page);
    const shown = await page.locator('#transcript').textContent();

    const downloaded = async (kind: string) => {
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.click(`[data-download="${kind}"]`)]);
      assert.equal(download.suggestedFilename(), `jfk.${kind}`);
      return readFile((await download.path())!, 'utf8');
    };
    const srt = await downloaded('srt');
    const vtt = await downloaded('vtt');
    const json = JSON.parse(await downloaded('json'));
    const txt = await downloaded('txt');

    assert.equal(srt, await (await api('/v1/audio/transcriptions', { language: 'en', response_format: 'srt' }, JFK)).text());
    assert.equal(vtt, await (await api('/v1/audio/transcriptions', { language: 'en', response_format: 'vtt' }, JFK)).text());
    assert.match(srt, /^1\r?\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\r?\n/);
    assert.match(vtt, /^WEBVTT\r?\n\r?\n(?:.*\r?\n)*?\d\d:\d\d:\d\d\.\d{3} --> /);
    assert.equal(json.text, shown);
    assert.ok(Array.isArray(json.segments) && json.segments.length > 0);
    assert.equal(txt, shown);
    assert.deepEqual(problemsOf(page), []);
  });

  test('live captions from the microphone over /v1/realtime', async (t) => {
    const page = await openPage(t);
    await page.click('#tab-live');
    await page.click('#live-start');
    // A completed utterance, or the page's error message: whichever comes first.
    await page.waitForFunction(
      () => document.querySelector('#captions .caption[data-state="completed"]') !== null || !document.getElementById('live-error')!.hidden,
      undefined,
      { timeout: 40_000 },
    );
    await page.screenshot({ path: join(shots, 'live.png'), fullPage: true });
    const error = await page.locator('#live-error').textContent();
    assert.equal(await page.locator('#live-error').isHidden(), true, `the page reports: ${error}`);
    const line = (await page.locator('#captions .caption[data-state="completed"]').first().textContent()) ?? '';
    assert.ok(line.trim().length > 0, 'a completed caption has text');
    await page.click('#live-stop');
    await page.waitForFunction(() => !(document.getElementById('live-start') as HTMLButtonElement).disabled, undefined, { timeout: 10_000 });
    assert.match((await page.locator('#live-status').textContent()) ?? '', /^Stopped/);
    await page.screenshot({ path: join(shots, 'live-stopped.png'), fullPage: true });
    assert.deepEqual(problemsOf(page), []);
  });
});
