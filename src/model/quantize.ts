/**
 * Block-wise weight quantisation in the layout of ONNX Runtime's MatMulNBits
 * (com.microsoft): for a linear weight W stored PyTorch-style as [N = out, K = in],
 * every row is cut into blocks of `blockSize` along K; each block gets a float scale
 * (and for 4 bits a zero point), and the quantised values are packed low nibble first.
 * That is exactly the row-major safetensors layout, so no transpose is needed.
 *
 * int8 is symmetric (zero point 128, MatMulNBits' default, so no zero-point input);
 * int4 is asymmetric (min/max per block, with zero points), which keeps small-magnitude
 * blocks precise where a symmetric 4-bit grid would waste half its levels.
 */

export type QuantBits = 4 | 8;

export interface QuantizedMatrix {
  bits: QuantBits;
  blockSize: number;
  /** Output features. */
  n: number;
  /** Input features. */
  k: number;
  /** [n, kBlocks, blockSize * bits / 8] */
  packed: Uint8Array;
  /** [n * kBlocks] */
  scales: Float32Array;
  /** 4-bit only: [n * ceil(kBlocks / 2)], low nibble first. */
  zeroPoints?: Uint8Array;
}

export function quantizeMatrix(w: Float32Array, n: number, k: number, bits: QuantBits, blockSize: number): QuantizedMatrix {
  if (w.length !== n * k) throw new Error(`quantizeMatrix: ${w.length} values for [${n}, ${k}]`);
  const kBlocks = Math.ceil(k / blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const packed = new Uint8Array(n * kBlocks * blockBytes);
  const scales = new Float32Array(n * kBlocks);
  const zpStride = Math.ceil(kBlocks / 2);
  const zeroPoints = bits === 4 ? new Uint8Array(n * zpStride) : undefined;
  const q = new Uint8Array(blockSize);

  for (let row = 0; row < n; row++) {
    const rowBase = row * k;
    for (let b = 0; b < kBlocks; b++) {
      const start = b * blockSize;
      const end = Math.min(start + blockSize, k);
      const out = (row * kBlocks + b) * blockBytes;
      if (bits === 8) {
        let maxAbs = 0;
        for (let i = start; i < end; i++) {
          const a = Math.abs(w[rowBase + i]);
          if (a > maxAbs) maxAbs = a;
        }
        const scale = maxAbs / 127 || 1;
        const inv = 1 / scale;
        scales[row * kBlocks + b] = scale;
        for (let i = 0; i < blockSize; i++) {
          const v = start + i < end ? Math.round(w[rowBase + start + i] * inv) : 0;
          packed[out + i] = Math.max(-128, Math.min(127, v)) + 128;
        }
      } else {
        // The grid must contain 0 exactly so padded (and true-zero) weights stay zero.
        let lo = 0;
        let hi = 0;
        for (let i = start; i < end; i++) {
          const v = w[rowBase + i];
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        const scale = (hi - lo) / 15 || 1;
        const inv = 1 / scale;
        const zp = Math.max(0, Math.min(15, Math.round(-lo * inv)));
        scales[row * kBlocks + b] = scale;
        for (let i = 0; i < blockSize; i++) {
          q[i] = start + i < end ? Math.max(0, Math.min(15, Math.round(w[rowBase + start + i] * inv) + zp)) : zp;
        }
        for (let i = 0; i < blockSize; i += 2) packed[out + i / 2] = q[i] | (q[i + 1] << 4);
        const zi = row * zpStride + (b >> 1);
        zeroPoints![zi] |= b & 1 ? zp << 4 : zp;
      }
    }
  }
  return { bits, blockSize, n, k, packed, scales, zeroPoints };
}

/** Reconstructs the float weights (tests and error measurements). */
export function dequantizeMatrix(m: QuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize } = m;
  const kBlocks = Math.ceil(k / blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const zpStride = Math.ceil(kBlocks / 2);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < kBlocks; b++) {
      const scale = m.scales[row * kBlocks + b];
      const base = (row * kBlocks + b) * blockBytes;
      let zp = 128;
      if (bits === 4) {
        const z = m.zeroPoints![row * zpStride + (b >> 1)];
        zp = b & 1 ? z >> 4 : z & 15;
      }
      for (let i = 0; i < blockSize && b * blockSize + i < k; i++) {
        const qv = bits === 8 ? m.packed[base + i] : i & 1 ? m.packed[base + (i >> 1)] >> 4 : m.packed[base + (i >> 1)] & 15;
        out[row * k + b * blockSize + i] = (qv - zp) * scale;
      }
    }
  }
  return out;
}
