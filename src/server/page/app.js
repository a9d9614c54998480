// The page's file transcription, API key, options and tabs; live captions are in live.js.
// Every URL is relative to the page, so the page works behind a proxy that adds a path prefix.
import { LiveCaptions } from './live.js';

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = 'qwen3-asr.apiKey';

const state = {
  config: null,
  /** The chosen file and the options it was sent with (downloads ask for the same). */
  file: null,
  fileUrl: null,
  options: null,
  /** The transcript text, and the verbose_json answer when word timestamps were asked for. */
  text: '',
  verbose: null,
  /** Server answers per download format, so that a second click does not transcribe again. */
  downloads: new Map(),
  /** The request under way ({ xhr }), which Cancel aborts. */
  running: null,
  words: [],
  spans: [],
  current: -1,
  live: null,
};

// ---------------------------------------------------------------------------------------------
// API key

function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage can be off (private windows); the key then lasts as long as the page.
  }
}

function apiKey() {
  return $('api-key').value.trim();
}

function updateKeyState() {
  const required = state.config?.api_key_required;
  const set = apiKey() !== '';
  const badge = $('key-state');
  badge.textContent = set ? 'set' : required ? 'required' : 'not needed';
  badge.classList.toggle('needed', Boolean(required && !set));
}

function askForKey(message) {
  const panel = $('key-panel');
  panel.open = true;
  $('key-hint').textContent = message;
  $('api-key').focus();
}

$('api-key').value = storedKey();
$('api-key').addEventListener('input', () => {
  storeKey(apiKey());
  updateKeyState();
});
$('forget-key').addEventListener('click', () => {
  $('api-key').value = '';
  storeKey('');
  updateKeyState();
});

// ---------------------------------------------------------------------------------------------
// Server information

async function loadConfig() {
  try {
    const res = await fetch('ui/config.json', { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    state.config = await res.json();
  } catch (err) {
    showError('file-error', `Could not reach the server (${err.message}).`);
    return;
  }
  const { config } = state;
  $('model-name').textContent = config.model;
  const select = $('language');
  for (const { name, code } of config.languages) {
    const option = new Option(name, code);
    option.dataset.name = name;
    select.append(option);
  }
  const words = $('words');
  if (!config.aligner_languages) {
    words.disabled = true;
    $('words-hint').textContent = '(needs the server\'s forced aligner, FORCED_ALIGNER)';
  } else {
    $('words-hint').textContent = '(from the forced aligner; slower)';
  }
  if (!config.realtime) {
    $('live-start').disabled = true;
    $('live-status').textContent = 'Live captions are turned off on this server (REALTIME_MAX_SESSIONS=0).';
  }
  const mb = Math.floor(config.max_upload_bytes / (1024 * 1024));
  $('drop-hint').textContent = `Any format the server can decode, up to ${mb} MB`;
  if (config.api_key_required && !apiKey()) askForKey('This server needs its API key. It is kept in this browser (local storage) only.');
  updateKeyState();
}

function selectedLanguage() {
  const option = $('language').selectedOptions[0];
  return option && option.value ? { code: option.value, name: option.dataset.name } : null;
}

// ---------------------------------------------------------------------------------------------
// Tabs (WAI-ARIA tabs pattern: arrow keys move between tabs)

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab) {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute('aria-selected', String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !selected;
  }
}

for (const tab of tabs) {
  tab.addEventListener('click', () => selectTab(tab));
  tab.addEventListener('keydown', (event) => {
    const i = tabs.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const target = tabs[(next + tabs.length) % tabs.length];
    selectTab(target);
    target.focus();
  });
}

// ---------------------------------------------------------------------------------------------
// Messages and progress

function showError(id, message) {
  const el = $(id);
  el.textContent = message;
  el.hidden = !message;
}

function formatSeconds(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

let ticker = null;

/** Shows the request's progress: the upload's share while it is sent, then `working` and the time since the start. */
function startProgress(working) {
  $('progress').hidden = false;
  $('drop').classList.add('busy');
  setDownloadsEnabled(false);
  const started = performance.now();
  let uploading = true;
  let fraction = null;
  const render = () => {
    const bar = $('progress-bar');
    // The phase is announced to screen readers; the counter beside it is not (it changes twice a second).
    const phase = `${uploading ? 'Uploading' : working}…`;
    if ($('status').textContent !== phase) $('status').textContent = phase;
    if (uploading && fraction !== null && fraction < 1) {
      bar.max = 1;
      bar.value = fraction;
      $('elapsed').textContent = `${Math.round(fraction * 100)} %`;
    } else {
      // No value: an indeterminate bar (the server does not say how far it has got).
      bar.removeAttribute('value');
      $('elapsed').textContent = formatSeconds((performance.now() - started) / 1000);
    }
  };
  render();
  ticker = setInterval(render, 500);
  return {
    upload(f) {
      fraction = f;
      render();
    },
    uploaded() {
      uploading = false;
      render();
    },
  };
}

function stopProgress() {
  clearInterval(ticker);
  ticker = null;
  $('progress').hidden = true;
  $('drop').classList.remove('busy');
  setDownloadsEnabled(true);
}

function setDownloadsEnabled(enabled) {
  for (const b of document.querySelectorAll('[data-download]')) b.disabled = !enabled;
}

// ---------------------------------------------------------------------------------------------
// Requests

/**
 * POST /v1/audio/transcriptions with XMLHttpRequest rather than fetch: it reports upload
 * progress (large files take a while to send) and still hands over the response as it arrives.
 */
function postTranscription(form, { onUpload, onUploaded, onText } = {}) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open('POST', 'v1/audio/transcriptions');
    const key = apiKey();
    if (key) xhr.setRequestHeader('Authorization', `Bearer ${key}`);
    xhr.upload.addEventListener('progress', (e) => onUpload?.(e.lengthComputable ? e.loaded / e.total : null));
    xhr.upload.addEventListener('load', () => onUploaded?.());
    xhr.addEventListener('progress', () => onText?.(xhr.responseText));
    xhr.addEventListener('load', () => resolve({ status: xhr.status, text: xhr.responseText }));
    xhr.addEventListener('error', () => reject(new Error('The connection to the server failed.')));
    xhr.addEventListener('abort', () => reject(new DOMException('Cancelled', 'AbortError')));
    xhr.send(form);
  });
  return { xhr, done };
}

function buildForm(file, options, extra) {
  const form = new FormData();
  form.append('file', file, file.name);
  if (options.language) form.append('language', options.language.code);
  if (options.context) form.append('prompt', options.context);
  for (const [key, value] of Object.entries(extra)) {
    for (const v of [value].flat()) form.append(key, String(v));
  }
  return form;
}

/** The message of an error answer in either API's shape. */
function errorMessage(status, text) {
  try {
    const body = JSON.parse(text);
    const message = body?.error?.message ?? (typeof body?.detail === 'string' ? body.detail : null);
    if (message) return message;
  } catch {
    // not JSON: the text itself
  }
  return `The server answered ${status}${text ? `: ${text.slice(0, 300)}` : ''}.`;
}

/** Turns a growing text/event-stream body into events, each once. */
function sseParser(onEvent) {
  let consumed = 0;
  return (text) => {
    for (;;) {
      const end = text.indexOf('\n\n', consumed);
      if (end < 0) return;
      const block = text.slice(consumed, end);
      consumed = end + 2;
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') type = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0) continue;
      let payload;
      try {
        payload = JSON.parse(data.join('\n'));
      } catch {
        continue;
      }
      onEvent(type, payload);
    }
  };
}

class RequestFailed extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function failIfError(response) {
  if (response.status === 200) return;
  if (response.status === 401) askForKey('The server refused the request: enter its API key here.');
  throw new RequestFailed(response.status, errorMessage(response.status, response.text));
}

// ---------------------------------------------------------------------------------------------
// File transcription

function resetResult(file) {
  state.text = '';
  state.verbose = null;
  state.downloads = new Map();
  state.words = [];
  state.spans = [];
  state.current = -1;
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.fileUrl = URL.createObjectURL(file);
  const player = $('player');
  player.src = state.fileUrl;
  $('result').hidden = false;
  $('result-title').textContent = file.name;
  $('result-meta').textContent = '';
  const box = $('transcript');
  box.replaceChildren();
  box.classList.add('running');
  $('transcript-hint').hidden = true;
  showError('file-error', '');
}

async function transcribeFile(file) {
  if (state.running) return;
  const words = $('words').checked && !$('words').disabled;
  state.file = file;
  state.options = { language: selectedLanguage(), context: $('context').value.trim(), words };
  resetResult(file);
  const box = $('transcript');
  const progress = startProgress('Transcribing');
  const started = performance.now();
  try {
    if (words) {
      // Word timestamps come with verbose_json, which the server does not stream.
      const request = postTranscription(
        buildForm(file, state.options, { response_format: 'verbose_json', 'timestamp_granularities[]': ['word', 'segment'] }),
        { onUpload: progress.upload, onUploaded: progress.uploaded },
      );
      state.running = request;
      const response = await request.done;
      failIfError(response);
      state.verbose = JSON.parse(response.text);
      state.text = state.verbose.text;
      state.downloads.set('json', JSON.stringify(state.verbose, null, 2));
      renderWords(state.verbose.text, state.verbose.words ?? []);
      showMeta(started, state.verbose.language, state.verbose.duration);
    } else {
      // Streamed: the text appears as the server decodes it.
      let streamError = null;
      let finalText = null;
      const parse = sseParser((type, data) => {
        if (type === 'transcript.text.delta' && typeof data.delta === 'string') {
          state.text += data.delta;
          box.append(data.delta);
          box.scrollTop = box.scrollHeight;
        } else if (type === 'transcript.text.done') {
          finalText = data.text;
        } else if (type === 'error') {
          streamError = data.error?.message ?? data.message ?? 'The transcription failed.';
        }
      });
      const request = postTranscription(buildForm(file, state.options, { response_format: 'json', stream: 'true' }), {
        onUpload: progress.upload,
        onUploaded: progress.uploaded,
        onText: (text) => parse(text),
      });
      state.running = request;
      const response = await request.done;
      failIfError(response);
      parse(response.text);
      if (streamError) throw new Error(streamError);
      // The done event carries the whole text: it is the truth if a delta was missed.
      state.text = finalText ?? state.text;
      renderPlain(state.text);
      showMeta(started, null, null);
    }
  } catch (err) {
    if (err.name === 'AbortError') {
      showError('file-error', 'Cancelled.');
    } else {
      showError('file-error', err.message);
    }
    if (!state.text) box.replaceChildren();
  } finally {
    state.running = null;
    box.classList.remove('running');
    stopProgress();
  }
}

function showMeta(started, language, duration) {
  const parts = [];
  if (language) parts.push(language[0].toUpperCase() + language.slice(1));
  const seconds = duration ?? $('player').duration;
  if (Number.isFinite(seconds)) parts.push(`${formatSeconds(seconds)} of audio`);
  parts.push(`transcribed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  $('result-meta').textContent = parts.join(' · ');
}

function renderPlain(text) {
  const box = $('transcript');
  if (text) {
    box.textContent = text;
  } else {
    const empty = document.createElement('span');
    empty.className = 'transcript-empty';
    empty.textContent = 'No speech was recognised.';
    box.replaceChildren(empty);
  }
}

/**
 * The transcript with each aligned word in a span. The aligner's words are the text's letters
 * and digits without punctuation, in order, so each is found in the text after the previous
 * one and the text between them (spaces, punctuation) is kept as it is. If one is not found
 * (a text the words did not come from), the words are shown on their own.
 */
function renderWords(text, words) {
  const box = $('transcript');
  if (words.length === 0) return renderPlain(text);
  const pieces = [];
  let cursor = 0;
  for (const word of words) {
    const at = word.word ? text.indexOf(word.word, cursor) : -1;
    if (at < 0) {
      pieces.length = 0;
      break;
    }
    if (at > cursor) pieces.push(text.slice(cursor, at));
    pieces.push(word);
    cursor = at + word.word.length;
  }
  if (pieces.length === 0) {
    words.forEach((word, i) => {
      if (i > 0) pieces.push(' ');
      pieces.push(word);
    });
  } else if (cursor < text.length) {
    pieces.push(text.slice(cursor));
  }
  const spans = [];
  const fragment = document.createDocumentFragment();
  for (const piece of pieces) {
    if (typeof piece === 'string') {
      fragment.append(piece);
      continue;
    }
    const span = document.createElement('span');
    span.className = 'word';
    span.textContent = piece.word;
    span.dataset.index = String(spans.length);
    span.dataset.start = String(piece.start);
    span.dataset.end = String(piece.end);
    span.title = `${formatSeconds(piece.start)} (${piece.start.toFixed(2)} s)`;
    spans.push(span);
    fragment.append(span);
  }
  box.replaceChildren(fragment);
  state.words = words;
  state.spans = spans;
  state.current = -1;
  $('transcript-hint').hidden = false;
  highlight();
}

/** The word being spoken at `t`: the last that starts at or before it, unless it ended a while ago. */
function wordAt(t) {
  const words = state.words;
  let lo = 0;
  let hi = words.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (words[mid].start <= t) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found < 0) return -1;
  const next = words[found + 1];
  const until = Math.max(words[found].end + 0.3, next ? Math.min(next.start, words[found].end + 1) : 0);
  return t <= until ? found : -1;
}

function highlight() {
  if (state.spans.length === 0) return;
  const player = $('player');
  const index = wordAt(player.currentTime);
  if (index === state.current) return;
  state.spans[state.current]?.classList.remove('current');
  state.current = index;
  const span = state.spans[index];
  if (!span) return;
  span.classList.add('current');
  if (!player.paused) keepVisible(span);
}

/** Scrolls the transcript box (not the page) so that the current word stays in view. */
function keepVisible(span) {
  const box = $('transcript');
  const top = span.offsetTop;
  if (top < box.scrollTop || top + span.offsetHeight > box.scrollTop + box.clientHeight) {
    box.scrollTop = Math.max(0, top - box.clientHeight / 3);
  }
}

function followPlayback() {
  highlight();
  if (!$('player').paused) requestAnimationFrame(followPlayback);
}

$('player').addEventListener('play', () => requestAnimationFrame(followPlayback));
for (const type of ['timeupdate', 'seeked']) $('player').addEventListener(type, highlight);

$('transcript').addEventListener('click', (event) => {
  const span = event.target.closest?.('.word');
  if (!span) return;
  const player = $('player');
  player.currentTime = Number(span.dataset.start);
  highlight();
  player.play().catch(() => undefined);
});

// ---------------------------------------------------------------------------------------------
// Downloads

const DOWNLOAD_TYPES = {
  srt: 'application/x-subrip',
  vtt: 'text/vtt',
  json: 'application/json',
  txt: 'text/plain',
};

function save(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function download(kind) {
  if (!state.file || state.running) return;
  const base = state.file.name.replace(/\.[^.]*$/, '') || 'transcript';
  const name = `${base}.${kind}`;
  if (kind === 'txt') return save(state.text, name, DOWNLOAD_TYPES.txt);
  let body = state.downloads.get(kind);
  if (body === undefined) {
    // The server formats subtitles from the same file and options (it transcribes it again).
    const extra =
      kind === 'json'
        ? { response_format: 'verbose_json', 'timestamp_granularities[]': state.options.words ? ['word', 'segment'] : ['segment'] }
        : { response_format: kind };
    const progress = startProgress(`Preparing the ${kind.toUpperCase()} file`);
    try {
      const request = postTranscription(buildForm(state.file, state.options, extra), { onUpload: progress.upload, onUploaded: progress.uploaded });
      state.running = request;
      const response = await request.done;
      failIfError(response);
      body = kind === 'json' ? JSON.stringify(JSON.parse(response.text), null, 2) : response.text;
      state.downloads.set(kind, body);
    } catch (err) {
      showError('file-error', err.name === 'AbortError' ? 'Cancelled.' : err.message);
      return;
    } finally {
      state.running = null;
      stopProgress();
    }
  }
  save(body, name, DOWNLOAD_TYPES[kind]);
}

for (const button of document.querySelectorAll('[data-download]')) {
  button.addEventListener('click', () => download(button.dataset.download));
}

$('cancel').addEventListener('click', () => state.running?.xhr.abort());

// ---------------------------------------------------------------------------------------------
// File picker and drag and drop

$('file').addEventListener('change', () => {
  const file = $('file').files?.[0];
  if (file) transcribeFile(file);
  // Choosing the same file again is a new request.
  $('file').value = '';
});

const drop = $('drop');
drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  event.dataTransfer.dropEffect = 'copy';
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  const file = event.dataTransfer.files?.[0];
  if (file) transcribeFile(file);
});
// A file dropped beside the drop zone would otherwise replace the page with the file.
window.addEventListener('dragover', (event) => {
  event.preventDefault();
  if (!drop.contains(event.target)) event.dataTransfer.dropEffect = 'none';
});
window.addEventListener('drop', (event) => event.preventDefault());

// ---------------------------------------------------------------------------------------------
// Live captions

function setLiveRunning(running) {
  $('live-start').disabled = running || state.config?.realtime === false;
  $('live-stop').disabled = !running;
}

$('live-start').addEventListener('click', async () => {
  if (state.live) return;
  showError('live-error', '');
  setLiveRunning(true);
  const live = new LiveCaptions({
    key: apiKey(),
    language: selectedLanguage()?.code,
    context: $('context').value.trim(),
    list: $('captions'),
    onStatus: (text) => ($('live-status').textContent = text),
    onError: (message) => {
      showError('live-error', message);
      if (/api key|unauthori[sz]ed|401/i.test(message)) askForKey('Live captions need the server\'s API key.');
    },
    onLevel: (level) => ($('live-level').style.width = `${Math.round(Math.min(1, level * 4) * 100)}%`),
    onEnd: () => {
      state.live = null;
      setLiveRunning(false);
      $('live-level').style.width = '0';
    },
  });
  state.live = live;
  await live.start();
});

$('live-stop').addEventListener('click', () => state.live?.stop());

loadConfig();
