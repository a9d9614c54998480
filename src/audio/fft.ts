/**
 * Mixed-radix complex FFT of any fixed size (radices 2, 3, 4, 5 have hand-written butterflies,
 * any other prime factor falls back to a generic butterfly).
 *
 * The log-mel front end needs a 400-point transform (n_fft = 400 = 4·4·5·5), which the usual
 * power-of-two FFTs cannot do; a dense 201×400 DFT would cost 80 000 multiply-adds per frame
 * instead of ~8 000 here.
 *
 * Algorithm: Stockham autosort, decimation in frequency. Each stage of radix r reads
 * x[q + s·(p + k·m)] (k = 0..r−1), forms the r-point DFT of those values, multiplies output j by
 * the twiddle w_n^(p·j) and writes it to y[q + s·(r·p + j)]; then n ← m = n/r and s ← s·r. The
 * result comes out in natural order with no bit-reversal pass, ping-ponging between two
 * buffers. All arithmetic is float64 (the goldens are computed in float64).
 */

interface Stage {
  radix: number;
  /** Sub-transform length after this stage (n_stage / radix). */
  m: number;
  /** Stride of this stage (product of the radices before it). */
  s: number;
  /** Twiddles w^(p·j), p = 0..m−1, j = 1..radix−1: re/im interleaved, row p has radix−1 entries. */
  twiddle: Float64Array;
}

function factorize(n: number): number[] {
  const radices: number[] = [];
  let rest = n;
  // Radix 4 first (fewest multiplications), then the small primes, then whatever is left.
  while (rest % 4 === 0) {
    radices.push(4);
    rest /= 4;
  }
  for (const p of [2, 3, 5]) {
    while (rest % p === 0) {
      radices.push(p);
      rest /= p;
    }
  }
  for (let p = 7; p * p <= rest; p += 2) {
    while (rest % p === 0) {
      radices.push(p);
      rest /= p;
    }
  }
  if (rest > 1) radices.push(rest);
  return radices;
}

export class ComplexFft {
  readonly size: number;
  private readonly stages: Stage[];
  private readonly bufA: Float64Array;
  private readonly bufB: Float64Array;
  /** Generic-radix scratch (only used for prime factors > 5). */
  private readonly scratch: Float64Array;
  private readonly rootCos: Float64Array[] = [];
  private readonly rootSin: Float64Array[] = [];

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`FFT size must be a positive integer, got ${size}`);
    this.size = size;
    this.bufA = new Float64Array(2 * size);
    this.bufB = new Float64Array(2 * size);
    this.stages = [];
    let n = size;
    let s = 1;
    let maxRadix = 1;
    for (const radix of factorize(size)) {
      const m = n / radix;
      const twiddle = new Float64Array(2 * m * (radix - 1));
      for (let p = 0; p < m; p++) {
        for (let j = 1; j < radix; j++) {
          const angle = (-2 * Math.PI * p * j) / n;
          const o = 2 * (p * (radix - 1) + (j - 1));
          twiddle[o] = Math.cos(angle);
          twiddle[o + 1] = Math.sin(angle);
        }
      }
      this.stages.push({ radix, m, s, twiddle });
      if (radix > 5) {
        const c = new Float64Array(radix);
        const si = new Float64Array(radix);
        for (let k = 0; k < radix; k++) {
          c[k] = Math.cos((-2 * Math.PI * k) / radix);
          si[k] = Math.sin((-2 * Math.PI * k) / radix);
        }
        this.rootCos[radix] = c;
        this.rootSin[radix] = si;
      }
      maxRadix = Math.max(maxRadix, radix);
      n = m;
      s *= radix;
    }
    this.scratch = new Float64Array(2 * maxRadix);
  }

  /**
   * Forward transform X[k] = Σ x[t]·e^(−2πi·k·t/n) of `data` (re/im interleaved, length 2n).
   * Returns an internal buffer holding the result (valid until the next call).
   */
  forward(data: Float64Array): Float64Array {
    if (data.length !== 2 * this.size) throw new Error(`FFT input must hold ${2 * this.size} values (re/im), got ${data.length}`);
    let x = this.bufA;
    let y = this.bufB;
    x.set(data);
    for (const stage of this.stages) {
      this.runStage(stage, x, y);
      const t = x;
      x = y;
      y = t;
    }
    return x;
  }

  private runStage(stage: Stage, x: Float64Array, y: Float64Array): void {
    const { radix, m, s, twiddle } = stage;
    if (radix === 4) return radix4(m, s, twiddle, x, y);
    if (radix === 2) return radix2(m, s, twiddle, x, y);
    if (radix === 5) return radix5(m, s, twiddle, x, y);
    if (radix === 3) return radix3(m, s, twiddle, x, y);
    return this.radixGeneric(stage, x, y);
  }

  private radixGeneric(stage: Stage, x: Float64Array, y: Float64Array): void {
    const { radix: r, m, s, twiddle } = stage;
    const c = this.rootCos[r];
    const sn = this.rootSin[r];
    const a = this.scratch;
    for (let p = 0; p < m; p++) {
      for (let q = 0; q < s; q++) {
        for (let k = 0; k < r; k++) {
          const i = 2 * (q + s * (p + k * m));
          a[2 * k] = x[i];
          a[2 * k + 1] = x[i + 1];
        }
        for (let j = 0; j < r; j++) {
          let re = 0;
          let im = 0;
          for (let k = 0; k < r; k++) {
            const e = (j * k) % r;
            re += a[2 * k] * c[e] - a[2 * k + 1] * sn[e];
            im += a[2 * k] * sn[e] + a[2 * k + 1] * c[e];
          }
          const o = 2 * (q + s * (r * p + j));
          if (j === 0) {
            y[o] = re;
            y[o + 1] = im;
          } else {
            const t = 2 * (p * (r - 1) + j - 1);
            const wr = twiddle[t];
            const wi = twiddle[t + 1];
            y[o] = re * wr - im * wi;
            y[o + 1] = re * wi + im * wr;
          }
        }
      }
    }
  }
}

function radix2(m: number, s: number, tw: Float64Array, x: Float64Array, y: Float64Array): void {
  for (let p = 0; p < m; p++) {
    const wr = tw[2 * p];
    const wi = tw[2 * p + 1];
    for (let q = 0; q < s; q++) {
      const i0 = 2 * (q + s * p);
      const i1 = 2 * (q + s * (p + m));
      const ar = x[i0], ai = x[i0 + 1], br = x[i1], bi = x[i1 + 1];
      const o0 = 2 * (q + s * 2 * p);
      const o1 = o0 + 2 * s;
      y[o0] = ar + br;
      y[o0 + 1] = ai + bi;
      const dr = ar - br, di = ai - bi;
      y[o1] = dr * wr - di * wi;
      y[o1 + 1] = dr * wi + di * wr;
    }
  }
}

function radix3(m: number, s: number, tw: Float64Array, x: Float64Array, y: Float64Array): void {
  const c1 = -0.5;
  const s1 = -Math.sqrt(3) / 2; // sin(−2π/3)
  for (let p = 0; p < m; p++) {
    const t = 4 * p;
    const w1r = tw[t], w1i = tw[t + 1], w2r = tw[t + 2], w2i = tw[t + 3];
    for (let q = 0; q < s; q++) {
      const i0 = 2 * (q + s * p), i1 = 2 * (q + s * (p + m)), i2 = 2 * (q + s * (p + 2 * m));
      const ar = x[i0], ai = x[i0 + 1], br = x[i1], bi = x[i1 + 1], cr = x[i2], ci = x[i2 + 1];
      const sr = br + cr, si = bi + ci;
      const dr = br - cr, di = bi - ci;
      const mr = ar + c1 * sr, mi = ai + c1 * si;
      // y1 = a + b·ω + c·ω², y2 = a + b·ω² + c·ω with ω = e^(−2πi/3)
      const y1r = mr - s1 * di, y1i = mi + s1 * dr;
      const y2r = mr + s1 * di, y2i = mi - s1 * dr;
      const o0 = 2 * (q + s * 3 * p), o1 = o0 + 2 * s, o2 = o1 + 2 * s;
      y[o0] = ar + sr;
      y[o0 + 1] = ai + si;
      y[o1] = y1r * w1r - y1i * w1i;
      y[o1 + 1] = y1r * w1i + y1i * w1r;
      y[o2] = y2r * w2r - y2i * w2i;
      y[o2 + 1] = y2r * w2i + y2i * w2r;
    }
  }
}

function radix4(m: number, s: number, tw: Float64Array, x: Float64Array, y: Float64Array): void {
  for (let p = 0; p < m; p++) {
    const t = 6 * p;
    const w1r = tw[t], w1i = tw[t + 1], w2r = tw[t + 2], w2i = tw[t + 3], w3r = tw[t + 4], w3i = tw[t + 5];
    for (let q = 0; q < s; q++) {
      const i0 = 2 * (q + s * p), i1 = 2 * (q + s * (p + m)), i2 = 2 * (q + s * (p + 2 * m)), i3 = 2 * (q + s * (p + 3 * m));
      const ar = x[i0], ai = x[i0 + 1], br = x[i1], bi = x[i1 + 1];
      const cr = x[i2], ci = x[i2 + 1], dr = x[i3], di = x[i3 + 1];
      const apcr = ar + cr, apci = ai + ci, amcr = ar - cr, amci = ai - ci;
      const bpdr = br + dr, bpdi = bi + di, bmdr = br - dr, bmdi = bi - di;
      // ω = −i: y1 = (a−c) − i(b−d), y3 = (a−c) + i(b−d)
      const y1r = amcr + bmdi, y1i = amci - bmdr;
      const y2r = apcr - bpdr, y2i = apci - bpdi;
      const y3r = amcr - bmdi, y3i = amci + bmdr;
      const o0 = 2 * (q + s * 4 * p), o1 = o0 + 2 * s, o2 = o1 + 2 * s, o3 = o2 + 2 * s;
      y[o0] = apcr + bpdr;
      y[o0 + 1] = apci + bpdi;
      y[o1] = y1r * w1r - y1i * w1i;
      y[o1 + 1] = y1r * w1i + y1i * w1r;
      y[o2] = y2r * w2r - y2i * w2i;
      y[o2 + 1] = y2r * w2i + y2i * w2r;
      y[o3] = y3r * w3r - y3i * w3i;
      y[o3 + 1] = y3r * w3i + y3i * w3r;
    }
  }
}

const C5_1 = Math.cos((2 * Math.PI) / 5);
const C5_2 = Math.cos((4 * Math.PI) / 5);
const S5_1 = Math.sin((2 * Math.PI) / 5);
const S5_2 = Math.sin((4 * Math.PI) / 5);

function radix5(m: number, s: number, tw: Float64Array, x: Float64Array, y: Float64Array): void {
  for (let p = 0; p < m; p++) {
    const t = 8 * p;
    for (let q = 0; q < s; q++) {
      const i0 = 2 * (q + s * p);
      const st = 2 * s * m;
      const x0r = x[i0], x0i = x[i0 + 1];
      const x1r = x[i0 + st], x1i = x[i0 + st + 1];
      const x2r = x[i0 + 2 * st], x2i = x[i0 + 2 * st + 1];
      const x3r = x[i0 + 3 * st], x3i = x[i0 + 3 * st + 1];
      const x4r = x[i0 + 4 * st], x4i = x[i0 + 4 * st + 1];
      const s14r = x1r + x4r, s14i = x1i + x4i, d14r = x1r - x4r, d14i = x1i - x4i;
      const s23r = x2r + x3r, s23i = x2i + x3i, d23r = x2r - x3r, d23i = x2i - x3i;
      const a1r = x0r + C5_1 * s14r + C5_2 * s23r, a1i = x0i + C5_1 * s14i + C5_2 * s23i;
      const a2r = x0r + C5_2 * s14r + C5_1 * s23r, a2i = x0i + C5_2 * s14i + C5_1 * s23i;
      // Forward transform (e^(−iθ)): the sine terms enter as −i·(…)
      const b1r = S5_1 * d14i + S5_2 * d23i, b1i = -(S5_1 * d14r + S5_2 * d23r);
      const b2r = S5_2 * d14i - S5_1 * d23i, b2i = -(S5_2 * d14r - S5_1 * d23r);
      const y1r = a1r + b1r, y1i = a1i + b1i;
      const y4r = a1r - b1r, y4i = a1i - b1i;
      const y2r = a2r + b2r, y2i = a2i + b2i;
      const y3r = a2r - b2r, y3i = a2i - b2i;
      const o0 = 2 * (q + s * 5 * p), os = 2 * s;
      y[o0] = x0r + s14r + s23r;
      y[o0 + 1] = x0i + s14i + s23i;
      let wr = tw[t], wi = tw[t + 1];
      y[o0 + os] = y1r * wr - y1i * wi;
      y[o0 + os + 1] = y1r * wi + y1i * wr;
      wr = tw[t + 2];
      wi = tw[t + 3];
      y[o0 + 2 * os] = y2r * wr - y2i * wi;
      y[o0 + 2 * os + 1] = y2r * wi + y2i * wr;
      wr = tw[t + 4];
      wi = tw[t + 5];
      y[o0 + 3 * os] = y3r * wr - y3i * wi;
      y[o0 + 3 * os + 1] = y3r * wi + y3i * wr;
      wr = tw[t + 6];
      wi = tw[t + 7];
      y[o0 + 4 * os] = y4r * wr - y4i * wi;
      y[o0 + 4 * os + 1] = y4r * wi + y4i * wr;
    }
  }
}
