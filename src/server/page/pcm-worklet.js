// AudioWorklet processor: the microphone's audio, mixed to mono and resampled from the
// AudioContext's rate (`sampleRate`, often 44.1 or 48 kHz) to the rate the server is told
// (24 kHz), as 16-bit PCM in chunks of `chunkMs`, posted to the page with the chunk's level.
// A browser-side AudioContext at 24 kHz would resample for us, but not every browser lets a
// microphone stream into a context at another rate than the device's, so it is done here.

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { rate = 24000, chunkMs = 100 } = options.processorOptions ?? {};
    /** Input samples per output sample. */
    this.step = sampleRate / rate;
    this.chunkLength = Math.max(1, Math.round((rate * chunkMs) / 1000));
    this.chunk = new Int16Array(this.chunkLength);
    this.filled = 0;
    this.sumSquares = 0;
    // Downsampling needs a low-pass first, or what lies above the new Nyquist frequency folds
    // back into speech: a moving average over one output period is a simple one that does.
    this.taps = new Float32Array(Math.max(1, Math.round(this.step)));
    this.tapIndex = 0;
    this.tapSum = 0;
    /** Position of the next output sample in input samples, counted from the current block; -1 is the previous block's last sample. */
    this.position = 0;
    this.previous = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0 || channels[0].length === 0) return true;
    const n = channels[0].length;
    const filtered = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let sample = 0;
      for (const channel of channels) sample += channel[i];
      sample /= channels.length;
      this.tapSum += sample - this.taps[this.tapIndex];
      this.taps[this.tapIndex] = sample;
      this.tapIndex = (this.tapIndex + 1) % this.taps.length;
      filtered[i] = this.tapSum / this.taps.length;
    }
    // Linear interpolation between neighbouring (filtered) input samples.
    while (this.position < n - 1) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = i < 0 ? this.previous : filtered[i];
      const b = filtered[i + 1];
      this.push(a + (b - a) * frac);
      this.position += this.step;
    }
    this.position -= n;
    this.previous = filtered[n - 1];
    return true;
  }

  push(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.sumSquares += clamped * clamped;
    this.chunk[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled < this.chunkLength) return;
    const level = Math.sqrt(this.sumSquares / this.chunkLength);
    // Int16Array bytes are in the platform's order, little-endian on every browser platform: what audio/pcm is.
    const pcm = this.chunk.buffer;
    this.port.postMessage({ pcm, level }, [pcm]);
    // The transferred buffer is gone from this side (its length reads 0): a new one each time.
    this.chunk = new Int16Array(this.chunkLength);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor('pcm16-capture', Pcm16Capture);
