/**
 * The host-owned KV cache: appends land where the graph reads them, growth and row removal
 * keep every stored position, and the int8 format reads back within half a quantisation step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsrModel } from '../asr/asr-model.ts';
import ort from 'onnxruntime-node';
import { KvCache, quantizeVectorsInt8, type KvCacheFormat, type NewKvRows } from './kv-cache.ts';
import { quantizeVectors } from '../graphs/decoder-graph.ts';
import { DataType, GraphBuilder } from './onnx-graph.ts';
import { exactInt8Kernels, goldenPath, seededGaussian } from '../../testing/shared.ts';

const LAYERS = 2;
/** The cache's storage forms: fp32, int8, and int8 offset to uint8 for the u8u8 kernel (KvCache.zeroPoint). */
const LAYOUTS: { format: KvCacheFormat; zeroPoint: 0 | 128; label: string }[] = [
  { format: 'fp32', zeroPoint: 0, label: 'fp32' },
  { format: 'int8', zeroPoint: 0, label: 'int8' },
  { format: 'int8', zeroPoint: 128, label: 'int8 as uint8 + 128' },
];
const KVH = 2;
const HD = 8;

function randomRows(B: number, S: number, seed: number): Float32Array[] {
  let s = seed;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 4;
  return Array.from({ length: LAYERS }, () => Float32Array.from({ length: B * KVH * S * HD }, next));
}

/**
 * Graph outputs for fp32 rows [B, kvH, S, hd] per layer in the cache's format; int8 rows are
 * quantised as the decoder graph does (quantizeVectorsInt8, checked against the graph below),
 * keys transposed to [B, kvH, hd, S]; with zero point 128 as the bytes of uint8 value + 128.
 */
function rowsFor(format: KvCacheFormat, keys: Float32Array[], values: Float32Array[], S: number, zeroPoint: 0 | 128 = 0): NewKvRows {
  if (format === 'fp32') return { format, keys, values };
  const transposed = (q: Int8Array) => {
    const t = new Int8Array(q.length);
    for (let bh = 0; bh < q.length / (S * HD); bh++) for (let i = 0; i < S; i++) for (let d = 0; d < HD; d++) t[(bh * HD + d) * S + i] = q[(bh * S + i) * HD + d];
    return t;
  };
  const k = keys.map((x) => quantizeVectorsInt8(x, HD, zeroPoint));
  const v = values.map((x) => quantizeVectorsInt8(x, HD, zeroPoint));
  return { format, keys: k.map((x) => transposed(x.q)), values: v.map((x) => x.q), keyScales: k.map((x) => x.scales), valueScales: v.map((x) => x.scales) };
}

for (const { format, zeroPoint, label } of LAYOUTS) {
  test(`${label} KV cache: appends, growth past its step and dropped rows keep every position`, () => {
    const B = 3;
    const cache = new KvCache(LAYERS, B, KVH, HD, [0, 1, 2], format, zeroPoint);
    // Expected [layer][b][h][pos] -> {key, value}, written as the graph would output them.
    const written: { key: Float32Array; value: Float32Array }[][][][] = Array.from({ length: LAYERS }, () =>
      Array.from({ length: B }, () => Array.from({ length: KVH }, () => [])),
    );
    const appendChunk = (S: number, seed: number) => {
      const keys = randomRows(B, S, seed);
      const values = randomRows(B, S, seed + 1);
      if (seed === 5) keys[0].fill(0, 0, S * HD); // an all-zero vector must read back as zeros
      for (let l = 0; l < LAYERS; l++)
        for (let b = 0; b < B; b++)
          for (let h = 0; h < KVH; h++)
            for (let i = 0; i < S; i++) {
              const at = ((b * KVH + h) * S + i) * HD;
              written[l][b][h].push({ key: keys[l].slice(at, at + HD), value: values[l].slice(at, at + HD) });
            }
      cache.append(rowsFor(format, keys, values, S, zeroPoint), S);
    };
    // Every growth of the stride past its buffer's room (which a new buffer doubles) and
    // every growth inside it (rows moving up in place) must keep each row's positions and
    // leave its slack zero.
    const slackIsZero = () => {
      const { cap, len, batch } = cache;
      const hd = format === 'int8' ? 1 : HD; // int8 keys: one run of positions per dimension
      for (let l = 0; l < LAYERS; l++) {
        const runs: [ArrayLike<number>, number, number][] = [[cache.values[l], batch * KVH, HD]];
        if (format === 'int8') runs.push([cache.keys[l], batch * KVH * HD, 1], [cache.keyScales[l], batch * KVH, 1], [cache.valueScales[l], batch * KVH, 1]);
        else runs.push([cache.keys[l], batch * KVH, hd]);
        for (const [a, rows, per] of runs) {
          assert.equal(a.length, rows * cap * per);
          for (let r = 0; r < rows; r++) for (let i = (r * cap + len) * per; i < (r + 1) * cap * per; i++) assert.equal(a[i], 0, `slack of row ${r} at ${i}`);
        }
      }
    };
    appendChunk(5, 5);
    const caps = new Set<number>();
    for (let i = 0; i < 200; i++) {
      appendChunk(1, 100 + i);
      if (!caps.has(cache.cap)) slackIsZero();
      caps.add(cache.cap);
    }
    assert.equal(cache.len, 205);
    assert.deepEqual([...caps], [64, 128, 192, 256]);

    const check = (rows: number[]) => {
      rows.forEach((orig, b) => {
        for (let l = 0; l < LAYERS; l++)
          for (let h = 0; h < KVH; h++)
            for (let pos = 0; pos < cache.len; pos++) {
              const got = cache.read(l, b, h, pos);
              const want = written[l][orig][h][pos];
              for (const kind of ['key', 'value'] as const) {
                const max = Math.max(...want[kind].map(Math.abs));
                const tol = format === 'fp32' ? 0 : max / 254 + 1e-6;
                for (let d = 0; d < HD; d++) {
                  assert.ok(Math.abs(got[kind][d] - want[kind][d]) <= tol, `${kind} l${l} b${orig} h${h} pos ${pos} d${d}: ${got[kind][d]} vs ${want[kind][d]}`);
                }
              }
            }
      });
    };
    check([0, 1, 2]);
    cache.keepRows([0, 2]);
    assert.equal(cache.batch, 2);
    assert.deepEqual(cache.padStart, [0, 2]);
    check([0, 2]);
    // Appending continues with the smaller batch, growing the views keepRows left.
    const k = randomRows(2, 1, 77);
    const v = randomRows(2, 1, 78);
    cache.append(rowsFor(format, k, v, 1, zeroPoint), 1);
    for (let b = 0; b < 2; b++)
      for (let h = 0; h < KVH; h++) {
        const got = cache.read(1, b, h, 205);
        const at = (b * KVH + h) * HD;
        for (let d = 0; d < HD; d++) assert.ok(Math.abs(got.value[d] - v[1][at + d]) <= (format === 'fp32' ? 0 : 2 / 254 + 1e-6));
      }
    for (let i = 0; i < 60; i++) {
      const kk = randomRows(2, 1, 300 + i);
      const vv = randomRows(2, 1, 400 + i);
      cache.append(rowsFor(format, kk, vv, 1, zeroPoint), 1);
    }
    assert.equal(cache.cap, 320);
    slackIsZero();
    for (let l = 0; l < LAYERS; l++)
      for (let b = 0; b < 2; b++)
        for (let h = 0; h < KVH; h++)
          for (let pos = 0; pos < 205; pos++) {
            const got = cache.read(l, b, h, pos);
            const want = written[l][[0, 2][b]][h][pos];
            for (const kind of ['key', 'value'] as const) {
              const tol = format === 'fp32' ? 0 : Math.max(...want[kind].map(Math.abs)) / 254 + 1e-6;
              for (let d = 0; d < HD; d++) assert.ok(Math.abs(got[kind][d] - want[kind][d]) <= tol, `after regrowth: ${kind} l${l} b${b} h${h} pos ${pos} d${d}`);
            }
          }
  });
}

for (const zeroPoint of [0, 128] as const) {
  test(`int8 KV cache (zero point ${zeroPoint}): graph inputs have the layouts and types the decoder graph declares`, () => {
    const cache = new KvCache(1, 2, KVH, HD, [0, 0], 'int8', zeroPoint);
    cache.append(rowsFor('int8', randomRows(2, 3, 9), randomRows(2, 3, 10), 3, zeroPoint), 3);
    const feeds: Record<string, { dims: readonly number[]; type: string }> = {};
    cache.feeds(0, feeds as never);
    const P = cache.cap;
    assert.deepEqual(feeds['past_key.0'].dims, [2, KVH, HD, P]);
    assert.equal(feeds['past_key.0'].type, zeroPoint ? 'uint8' : 'int8');
    assert.equal(feeds['past_value.0'].type, zeroPoint ? 'uint8' : 'int8');
    assert.deepEqual(feeds['past_value.0'].dims, [2, KVH, P, HD]);
    assert.deepEqual(feeds['past_key_scale.0'].dims, [2, KVH, 1, P]);
    assert.deepEqual(feeds['past_value_scale.0'].dims, [2, KVH, 1, P]);
    // Unfilled slack reads as zeros (masked in the graph, and zero scale keeps it harmless).
    assert.ok(cache.read(0, 1, 1, P - 1).key.every((v) => v === 0));
  });
}

for (const int8Kernel of exactInt8Kernels()) {
  test(`int8 KV cache (${int8Kernel}): the decoder graph hands over its new rows quantised in the cache layout (tiny-a)`, async () => {
    // fp32 weights for both models, so the first layer's keys and values of a prompt pass are
    // the same numbers; the int8 cache must hold them within half a quantisation step.
    const dir = goldenPath('tiny-a', 'checkpoint');
    const load = (kvCache: KvCacheFormat) => AsrModel.load(dir, { device: 'cpu', quant: 'none', threads: 2, cacheDir: false, precisions: { kvCache, int8Kernel } });
    const [exact, int8] = [await load('fp32'), await load('int8')];
    try {
      const H = exact.config.text.hiddenSize;
      const B = 2;
      const S = 7;
      let s = 3;
      const embeds = Float32Array.from({ length: B * S * H }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2);
      const caches = [exact, int8].map((m) => m.decoder.newCache(B, [0, 2]));
      await exact.decoder.forward(caches[0], embeds, S, [S - 1]);
      await int8.decoder.forward(caches[1], embeds, S, [S - 1]);
      assert.equal(caches[1].len, S);
      const { kvHeads } = exact.config.text;
      for (let b = 0; b < B; b++)
        for (let h = 0; h < kvHeads; h++)
          for (let pos = 0; pos < S; pos++) {
            const want = caches[0].read(0, b, h, pos);
            const got = caches[1].read(0, b, h, pos);
            for (const kind of ['key', 'value'] as const) {
              const tol = Math.max(...want[kind].map(Math.abs)) / 254 + 1e-6;
              want[kind].forEach((w, d) => assert.ok(Math.abs(got[kind][d] - w) <= tol, `${kind} b${b} h${h} pos ${pos} d${d}: ${got[kind][d]} vs ${w}`));
            }
          }
    } finally {
      await exact.release();
      await int8.release();
    }
  });
}

for (const { format, zeroPoint, label } of LAYOUTS) {
  test(`${label} KV cache: stacking rows of separately filled caches keeps every position, left-padded`, () => {
    // Two caches as two prefill groups would leave them: own batch sizes, pads and lengths.
    const a = new KvCache(LAYERS, 2, KVH, HD, [0, 3], format, zeroPoint);
    a.append(rowsFor(format, randomRows(2, 70, 1), randomRows(2, 70, 2), 70, zeroPoint), 70); // crosses the growth step
    const b = new KvCache(LAYERS, 1, KVH, HD, [0], format, zeroPoint);
    b.append(rowsFor(format, randomRows(1, 9, 3), randomRows(1, 9, 4), 9, zeroPoint), 9);
    const parts = [
      { cache: b, row: 0 }, // 9 positions
      { cache: a, row: 1 }, // 67 (3 padded)
      { cache: a, row: 0 }, // 70
    ];
    const stacked = KvCache.stack(parts);
    assert.equal(stacked.batch, 3);
    assert.equal(stacked.len, 70);
    assert.deepEqual(stacked.padStart, [61, 3, 0]);
    assert.ok(stacked.cap >= 70 && stacked.cap % 64 === 0);
    parts.forEach(({ cache, row }, r) => {
      const n = cache.position(row);
      for (let l = 0; l < LAYERS; l++)
        for (let h = 0; h < KVH; h++)
          for (let i = 0; i < n; i++) {
            const want = cache.read(l, row, h, cache.padStart[row] + i);
            const got = stacked.read(l, r, h, stacked.padStart[r] + i);
            assert.deepEqual(got, want, `row ${r} l${l} h${h} position ${i}`);
          }
      // Padding before the row's first position stays empty.
      if (stacked.padStart[r] > 0) assert.ok(stacked.read(0, r, 0, stacked.padStart[r] - 1).value.every((v) => v === 0));
    });
    // Decoding continues on the stacked cache.
    stacked.append(rowsFor(format, randomRows(3, 1, 5), randomRows(3, 1, 6), 1, zeroPoint), 1);
    assert.equal(stacked.len, 71);
    assert.deepEqual(stacked.read(1, 2, 1, 10), a.read(1, 0, 1, 10));
  });
}

test('KV cache: caches of different shapes or formats do not stack', () => {
  const a = new KvCache(LAYERS, 1, KVH, HD, [0], 'int8');
  const b = new KvCache(LAYERS, 1, KVH, HD, [0], 'fp32');
  const c = new KvCache(LAYERS, 1, KVH, HD * 2, [0], 'int8');
  const d = new KvCache(LAYERS, 1, KVH, HD, [0], 'int8', 128);
  assert.throws(() => KvCache.stack([{ cache: a, row: 0 }, { cache: b, row: 0 }]), /differ/);
  assert.throws(() => KvCache.stack([{ cache: a, row: 0 }, { cache: c, row: 0 }]), /differ/);
  assert.throws(() => KvCache.stack([{ cache: a, row: 0 }, { cache: d, row: 0 }]), /differ/);
  assert.throws(() => KvCache.stack([]), /nothing to stack/);
});

for (const { format, zeroPoint, label } of LAYOUTS) {
  test(`${label} KV cache: rows kept in place still grow, and only ascending rows can be kept`, () => {
    const cache = new KvCache(LAYERS, 4, KVH, HD, [0, 0, 0, 0], format, zeroPoint);
    cache.append(rowsFor(format, randomRows(4, 60, 11), randomRows(4, 60, 12), 60, zeroPoint), 60);
    const before = [1, 3].map((b) => cache.read(1, b, 1, 59));
    cache.keepRows([1, 3]);
    assert.equal(cache.keys[0].length, 2 * KVH * HD * cache.cap, 'arrays are views of the kept rows');
    // Growth past the cache step reallocates from those views.
    for (let i = 0; i < 10; i++) cache.append(rowsFor(format, randomRows(2, 1, 20 + i), randomRows(2, 1, 40 + i), 1, zeroPoint), 1);
    assert.equal(cache.len, 70);
    assert.equal(cache.cap, 128);
    [0, 1].forEach((b) => assert.deepEqual(cache.read(1, b, 1, 59), before[b]));
    assert.throws(() => cache.keepRows([1, 0]), /ascending/);
    assert.throws(() => cache.keepRows([0, 2]), /ascending rows of the batch/);
  });
}

for (const zeroPoint of [0, 128] as const) {
  test(`host quantisation of a step's new keys and values equals the graph's, bit for bit (zero point ${zeroPoint})`, async () => {
    // The step graph hands its new rows over in fp32 and the host quantises them; the batch
    // graph quantises in the graph (quantizeVectors). Both must store the same int8 cache.
    const hd = 16;
    const rows = 64;
    const x = Float32Array.from({ length: rows * hd }, seededGaussian(5));
    x.fill(0, 3 * hd, 4 * hd); // an all-zero vector
    // Row 5: max 31.75, so scale = 0.25 exactly, and (i − 8)·0.125 / 0.25 = (i − 8) / 2 makes
    // every odd i − 8 a tie.
    x[5 * hd] = 127 * 0.25;
    for (let i = 1; i < hd; i++) x[5 * hd + i] = (i - 8) * 0.125;
    const g = new GraphBuilder('quantize-vectors');
    const xin = g.input('x', DataType.FLOAT, [rows, hd]);
    // As the batch graph quantises new rows: zero points of the scales' shape when offset.
    const type = zeroPoint ? DataType.UINT8 : DataType.INT8;
    const zeroPoints = zeroPoint ? g.op('Expand', [g.constUint8(zeroPoint), g.constInt64([rows, 1])]) : undefined;
    const q = quantizeVectors(g, xin, { hd, maxAbs: 127, type, zeroPoints, names: { q: 'q', scale: 's' } });
    assert.equal(q.q, 'q');
    g.output('q', type, [rows, hd]);
    g.output('s', DataType.FLOAT, [rows, 1]);
    const session = await ort.InferenceSession.create(g.toBytes());
    try {
      const out = await session.run({ x: new ort.Tensor('float32', x, [rows, hd]) });
      const host = quantizeVectorsInt8(x, hd, zeroPoint);
      assert.deepEqual(Array.from(host.scales), Array.from(out.s.data as Float32Array));
      // The same bytes (an int8 view of the graph's uint8 output when offset).
      const graphBytes = out.q.data as Int8Array | Uint8Array;
      assert.deepEqual(Array.from(host.q), Array.from(new Int8Array(graphBytes.buffer, graphBytes.byteOffset, graphBytes.length)));
      const values = Array.from(host.q.subarray(5 * hd, 6 * hd), (v) => (zeroPoint ? (v & 0xff) - zeroPoint : v));
      assert.ok(values.some((v) => v % 2 === 0 && v !== 0), 'the tie row has even results');
    } finally {
      await session.release();
    }
  });
}

for (const { format, zeroPoint, label } of LAYOUTS) {
  test(`${label} KV cache: growth within reserved room stays in the same buffers and keeps every position`, () => {
    const B = 2;
    const cache = new KvCache(LAYERS, B, KVH, HD, [0, 1], format, zeroPoint);
    const prompt = { keys: randomRows(B, 40, 1), values: randomRows(B, 40, 2) };
    cache.reserve(40 + 150);
    const buffers = () => [cache.keys, cache.values, ...(format === 'int8' ? [cache.keyScales, cache.valueScales] : [])].map((a) => a.map((x) => x.buffer));
    const reserved = buffers();
    cache.append(rowsFor(format, prompt.keys, prompt.values, 40, zeroPoint), 40);
    const steps: { keys: Float32Array[]; values: Float32Array[] }[] = [];
    for (let i = 0; i < 150; i++) {
      steps.push({ keys: randomRows(B, 1, 10 + i), values: randomRows(B, 1, 500 + i) });
      cache.append(rowsFor(format, steps[i].keys, steps[i].values, 1, zeroPoint), 1);
    }
    assert.equal(cache.cap, 192);
    buffers().forEach((kind, k) => kind.forEach((buffer, l) => assert.equal(buffer, reserved[k][l], `kind ${k} layer ${l} moved to a new buffer`)));
    // Every position reads back (one dimension checked per kind, all layers, rows, heads).
    for (let l = 0; l < LAYERS; l++)
      for (let b = 0; b < B; b++)
        for (let h = 0; h < KVH; h++)
          for (let pos = 0; pos < 190; pos++) {
            const [src, at] = pos < 40 ? [prompt, ((b * KVH + h) * 40 + pos) * HD] : [steps[pos - 40], (b * KVH + h) * HD];
            const got = cache.read(l, b, h, pos);
            for (const kind of ['key', 'value'] as const) {
              const want = src[kind === 'key' ? 'keys' : 'values'][l].subarray(at, at + HD);
              const tol = format === 'fp32' ? 0 : Math.max(...want.map(Math.abs)) / 254 + 1e-6;
              for (let d = 0; d < HD; d++) assert.ok(Math.abs(got[kind][d] - want[d]) <= tol, `${kind} l${l} b${b} h${h} pos ${pos} d${d}`);
            }
          }
    // Past the room, growth moves to new buffers and still keeps everything.
    for (let i = 0; i < 200; i++) cache.append(rowsFor(format, randomRows(B, 1, 900 + i), randomRows(B, 1, 1200 + i), 1, zeroPoint), 1);
    assert.notEqual(cache.keys[0].buffer, reserved[0][0]);
    assert.deepEqual(cache.read(1, 1, 1, 45).value.length, HD);
    const want = steps[5].values[1].subarray((1 * KVH + 1) * HD, (1 * KVH + 2) * HD);
    const got = cache.read(1, 1, 1, 45).value;
    for (let d = 0; d < HD; d++) assert.ok(Math.abs(got[d] - want[d]) <= (format === 'fp32' ? 0 : Math.max(...want.map(Math.abs)) / 254 + 1e-6));
  });
}

test('KV cache: stacking reserves room for the positions still to come', () => {
  const a = new KvCache(LAYERS, 1, KVH, HD, [0], 'int8');
  a.append(rowsFor('int8', randomRows(1, 30, 1), randomRows(1, 30, 2), 30), 30);
  const stacked = KvCache.stack([{ cache: a, row: 0 }, { cache: a, row: 0 }], 200);
  const buffer = stacked.values[0].buffer;
  for (let i = 0; i < 200; i++) stacked.append(rowsFor('int8', randomRows(2, 1, 3 + i), randomRows(2, 1, 400 + i), 1), 1);
  assert.equal(stacked.cap, 256);
  assert.equal(stacked.values[0].buffer, buffer);
  assert.deepEqual(stacked.read(0, 1, 1, 29), a.read(0, 0, 1, 29));
});
