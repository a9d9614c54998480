// Live captions: the microphone, through an AudioWorklet (pcm-worklet.js) as 16-bit PCM at
// 24 kHz, to the server's /v1/realtime WebSocket, which speaks OpenAI's Realtime API in
// transcription mode. Each utterance the server's voice detection finds becomes a line: its
// text grows with the delta events and is replaced by the completed transcript.

const RATE = 24000;
const CHUNK_MS = 100;
/** Audio kept while the socket opens; beyond it the oldest is dropped. */
const MAX_QUEUED_CHUNKS = 50;
/** How long Stop waits for the transcripts of speech already sent. */
const STOP_WAIT_MS = 5000;

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function microphoneMessage(err) {
  if (!window.isSecureContext) return 'The microphone needs a secure page: open this page over https:// or on localhost.';
  if (err?.name === 'NotAllowedError') return 'Microphone access was refused. Allow it in the browser and start again.';
  if (err?.name === 'NotFoundError') return 'No microphone was found.';
  return `Could not use the microphone: ${err?.message ?? err}`;
}

export class LiveCaptions {
  /**
   * @param {{ key: string, language?: string, context?: string, list: HTMLElement,
   *   onStatus(text: string): void, onError(message: string): void, onLevel(level: number): void, onEnd(): void }} options
   */
  constructor(options) {
    this.options = options;
    /** item_id → { li, text, done } */
    this.lines = new Map();
    this.queue = [];
    this.speaking = null;
    this.stopping = false;
    this.ended = false;
    this.failed = false;
  }

  async start() {
    const { onStatus } = this.options;
    try {
      if (!navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error('not available'), { name: 'NotSupportedError' });
      onStatus('Asking for the microphone…');
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: { ideal: 1 } } });
    } catch (err) {
      this.fail(microphoneMessage(err));
      return this.finish();
    }
    if (this.stopping) return this.finish();
    try {
      this.context = new AudioContext();
      await this.context.audioWorklet.addModule(new URL('./pcm-worklet.js', import.meta.url));
      this.source = this.context.createMediaStreamSource(this.stream);
      this.node = new AudioWorkletNode(this.context, 'pcm16-capture', { processorOptions: { rate: RATE, chunkMs: CHUNK_MS } });
      this.node.port.onmessage = (event) => this.sendAudio(event.data);
      // Connected to the output (it writes silence) so that the browser keeps running it.
      this.source.connect(this.node).connect(this.context.destination);
      await this.context.resume();
    } catch (err) {
      this.fail(`Could not process the microphone's audio: ${err?.message ?? err}`);
      return this.finish();
    }
    this.connect();
  }

  connect() {
    const { key, onStatus } = this.options;
    const url = new URL('v1/realtime?intent=transcription', document.baseURI);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    // A browser cannot set headers on a WebSocket: the key travels as a subprotocol, as OpenAI's clients do it.
    const protocols = key ? ['realtime', `openai-insecure-api-key.${key}`] : ['realtime'];
    onStatus('Connecting…');
    let ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (err) {
      this.fail(`Could not open the live connection: ${err.message}`);
      return this.finish();
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.opened = true;
      const transcription = {};
      if (this.options.language) transcription.language = this.options.language;
      if (this.options.context) transcription.prompt = this.options.context;
      this.send({
        type: 'session.update',
        session: {
          type: 'transcription',
          audio: { input: { format: { type: 'audio/pcm', rate: RATE }, transcription, turn_detection: { type: 'server_vad' } } },
        },
      });
      for (const audio of this.queue.splice(0)) this.send({ type: 'input_audio_buffer.append', audio });
      onStatus('Listening…');
    });
    ws.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handle(message);
    });
    ws.addEventListener('close', (event) => {
      if (!this.stopping && !this.failed) {
        const why = event.reason ? `: ${event.reason}` : '';
        this.fail(this.opened ? `The live connection closed (${event.code}${why}).` : `Could not connect to live captions at ${url.pathname} (${event.code}${why}).`);
      }
      this.finish();
    });
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  sendAudio({ pcm, level }) {
    this.options.onLevel(level);
    if (this.stopping) return;
    const audio = toBase64(pcm);
    if (this.ws?.readyState === WebSocket.OPEN && this.opened) {
      this.send({ type: 'input_audio_buffer.append', audio });
    } else {
      this.queue.push(audio);
      if (this.queue.length > MAX_QUEUED_CHUNKS) this.queue.shift();
    }
  }

  /** The line of an utterance, made when the server first mentions it. */
  line(itemId) {
    let line = this.lines.get(itemId);
    if (!line) {
      const li = document.createElement('li');
      li.className = 'caption';
      li.dataset.item = itemId;
      li.dataset.state = 'partial';
      this.options.list.append(li);
      line = { li, text: '', done: false };
      this.lines.set(itemId, line);
    }
    return line;
  }

  render(line) {
    line.li.textContent = line.text;
    const list = this.options.list;
    list.scrollTop = list.scrollHeight;
  }

  finishLine(itemId, state, text) {
    const line = this.line(itemId);
    line.done = true;
    line.li.dataset.state = state;
    if (state === 'completed' && !text.trim()) {
      // Voice detection also fires on noise; an utterance without words leaves no line.
      line.li.remove();
    } else {
      line.text = text;
      this.render(line);
    }
    this.settle();
  }

  handle(message) {
    const { onStatus } = this.options;
    switch (message.type) {
      case 'session.created':
      case 'session.updated':
        if (!this.stopping) onStatus('Listening…');
        break;
      case 'input_audio_buffer.speech_started':
        this.speaking = message.item_id;
        this.line(message.item_id);
        if (!this.stopping) onStatus('Hearing speech…');
        break;
      case 'input_audio_buffer.speech_stopped':
        this.speaking = null;
        if (!this.stopping) onStatus('Listening…');
        break;
      case 'input_audio_buffer.committed':
        if (message.item_id === this.speaking) this.speaking = null;
        this.line(message.item_id);
        break;
      case 'conversation.item.input_audio_transcription.delta': {
        const line = this.line(message.item_id);
        if (line.done) break;
        line.text += message.delta ?? '';
        this.render(line);
        break;
      }
      case 'conversation.item.input_audio_transcription.completed':
        this.finishLine(message.item_id, 'completed', message.transcript ?? '');
        break;
      case 'conversation.item.input_audio_transcription.failed':
        this.finishLine(message.item_id, 'failed', `Not transcribed: ${message.error?.message ?? 'the server failed'}`);
        break;
      case 'error':
        this.options.onError((typeof message.error === 'string' ? message.error : message.error?.message) ?? 'The server reported an error.');
        break;
      default:
        break;
    }
  }

  /** Resolves the wait of Stop once every utterance has its transcript. */
  settle() {
    if (this.stopping && this.whenSettled && [...this.lines.values()].every((l) => l.done)) this.whenSettled();
  }

  fail(message) {
    this.failed = true;
    this.options.onError(message);
  }

  stopCapture() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.source?.disconnect();
    this.node?.disconnect();
    if (this.node) this.node.port.onmessage = null;
    if (this.context && this.context.state !== 'closed') this.context.close().catch(() => undefined);
    this.options.onLevel(0);
  }

  /**
   * Stops the microphone, asks for the transcript of the utterance under way (commit), waits a
   * little for the transcripts still coming, then closes the socket normally.
   */
  async stop() {
    if (this.stopping) return;
    this.stopping = true;
    this.stopCapture();
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.options.onStatus('Finishing…');
      if (this.speaking) this.send({ type: 'input_audio_buffer.commit' });
      await new Promise((resolve) => {
        this.whenSettled = resolve;
        setTimeout(resolve, STOP_WAIT_MS);
        this.settle();
      });
      this.ws.close(1000, 'done');
    }
    this.finish();
  }

  finish() {
    if (this.ended) return;
    this.ended = true;
    this.stopping = true;
    this.stopCapture();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'done');
    for (const line of this.lines.values()) {
      if (line.done) continue;
      // Speech cut off by Stop: its last partial text stays, without the "still coming" mark.
      line.li.dataset.state = line.text ? 'stopped' : 'gone';
      if (!line.text) line.li.remove();
    }
    this.options.onStatus(this.failed ? 'Stopped.' : 'Stopped. Start again to continue.');
    this.options.onEnd();
  }
}
