/** Prepacked weights kept with cached graphs: what is saved, that it is used, and that nothing else is. */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import ort from 'onnxruntime-node';
import { DataType, type GraphBuilder } from './onnx-graph.ts';
import { createSession } from './session.ts';
import { lockForPacking, MAX_PACKINGS, modelInitializers, packedFor, prepackTag, wantsPacking, withExternalData } from './prepacked.ts';

const root = mkdtempSync(join(tmpdir(), 'qwen3-asr-prepacked-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

const M = 3;
const K = 256;
const N = 512;

/** One W8A8 product (as layers.ts w8a8Product builds it) with a 128 KB int8 weight in the external file. */
function w8a8Graph(g: GraphBuilder): void {
  const x = g.input('x', DataType.UINT8, [M, K]);
  const scale = g.input('row_scale', DataType.FLOAT, [M, 1]);
  const w = new Int8Array(K * N).map((_, i) => ((i * 7919) % 251) - 125);
  const scales = new Float32Array(N).map((_, i) => 0.01 + i / 1e4);
  const wq = g.initializer('proj.qweight_kn', w, [K, N], DataType.INT8);
  g.node('MatMulIntegerToFloat', [x, wq, scale, g.initializer('proj.channel_scales', scales, [N]), g.constUint8(128)], {}, { domain: 'com.microsoft', outputs: ['y'] });
  g.output('y', DataType.FLOAT, [M, N]);
}

const feeds = () => ({
  x: new ort.Tensor('uint8', new Uint8Array(M * K).map((_, i) => (i * 31) % 256), [M, K]),
  row_scale: new ort.Tensor('float32', Float32Array.from([0.5, 0.25, 2]), [M, 1]),
});

async function outputs(s: ort.InferenceSession): Promise<Float32Array> {
  const out = await s.run(feeds());
  await s.release();
  return out.y.data as Float32Array;
}

function entryOf(cacheDir: string, name: string): string {
  return join(cacheDir, readdirSync(cacheDir).find((d) => d.startsWith(`${name}-`) && !d.includes('partial'))!);
}

/** A cache folder and a checkpoint folder (just a config.json) of their own. */
function setup(name: string) {
  const cacheDir = join(root, name);
  const ckpt = mkdtempSync(join(root, `${name}-ckpt-`));
  writeFileSync(join(ckpt, 'config.json'), '{}');
  return { cacheDir, opts: { device: 'cpu' as const, threads: 1, cacheDir, prepacked: true, cacheSource: { dir: ckpt, files: [], code: [import.meta.url] } } };
}

test('the first inference session made from a cache entry saves the prepacked weights; later ones use them and compute the same', async () => {
  const { cacheDir, opts } = setup('p');
  const reference = await outputs(await createSession('p', w8a8Graph, { ...opts, cacheDir: false }, {}));
  const logs: string[] = [];
  assert.deepEqual(await outputs(await createSession('p', w8a8Graph, { ...opts, log: (m) => logs.push(m) }, {})), reference);
  const entry = entryOf(cacheDir, 'p');
  assert.ok(packedFor(entry), 'the entry records this machine');
  assert.ok(!wantsPacking(entry));
  assert.match(logs.join('\n'), /prepacked weights saved/);
  const packed = modelInitializers(readFileSync(join(entry, 'p.onnx'))).find((i) => i.name === 'proj.qweight_kn')!;
  const blobs = packed.entries.filter(([k]) => k.startsWith('prepacked_'));
  assert.equal(blobs.length, 1, JSON.stringify(packed.entries));
  assert.match(blobs[0][1], /^MatMulIntegerToFloat\+\d+\|\d+;\d+;0$/);
  assert.ok(readdirSync(entry).every((f) => !f.startsWith('prepack-') && f !== 'prepack.lock'), 'no temporary files left');
  const size = statSync(join(entry, 'p.weights')).size;

  logs.length = 0;
  assert.deepEqual(await outputs(await createSession('p', w8a8Graph, { ...opts, log: (m) => logs.push(m) }, {})), reference);
  assert.match(logs.join('\n'), /prepacked weights mapped/);
  assert.equal(statSync(join(entry, 'p.weights')).size, size, 'packed once');
});

test('a saved blob is used only under the key this CPU packs to', async () => {
  const { cacheDir, opts } = setup('k');
  const reference = await outputs(await createSession('k', w8a8Graph, { ...opts, cacheDir: false }, {}));
  await outputs(await createSession('k', w8a8Graph, opts, {}));
  const entry = entryOf(cacheDir, 'k');
  const modelPath = join(entry, 'k.onnx');
  const model = readFileSync(modelPath);
  const init = modelInitializers(model).find((i) => i.name === 'proj.qweight_kn')!;
  const [, value] = init.entries.find(([k]) => k === 'prepacked_0')!;
  const [key, blob] = value.split('|');
  const [offset, length] = blob.split(';').map(Number);
  // Overwrite the blob: under its own key ONNX Runtime uses it as it is (so the outputs change:
  // the blob really is what the session computes with) ...
  const fd = openSync(join(entry, 'k.weights'), 'r+');
  writeSync(fd, Buffer.alloc(length, 0x55), 0, length, offset);
  closeSync(fd);
  assert.notDeepEqual(await outputs(await createSession('k', w8a8Graph, opts, {})), reference);
  // Sessions told not to use the blobs load the model as it was built, and pack into memory.
  assert.ok(existsSync(join(entry, 'k.unpacked.onnx')));
  assert.deepEqual(await outputs(await createSession('k', w8a8Graph, { ...opts, prepacked: false }, {})), reference);
  // ... and under a key no kernel packs to (a blob from another CPU), it is never used. (The
  // key keeps its length, so the model stays valid protobuf.)
  const other = key.slice(0, -1) + (key.endsWith('1') ? '2' : '1');
  writeFileSync(modelPath, Buffer.from(Buffer.from(model).toString('latin1').replace(`${key}|`, `${other}|`), 'latin1'));
  assert.equal(modelInitializers(readFileSync(modelPath)).find((i) => i.name === 'proj.qweight_kn')!.entries.find(([k]) => k === 'prepacked_0')![1].split('|')[0], other);
  assert.deepEqual(await outputs(await createSession('k', w8a8Graph, opts, {})), reference);
  const left = Buffer.alloc(length);
  const rd = openSync(join(entry, 'k.weights'), 'r');
  readSync(rd, left, 0, length, offset);
  closeSync(rd);
  assert.ok(left.every((b) => b === 0x55), 'the same entry, not a rebuilt one');
});

test('external data entries are added to the named initializers and nothing else changes', async () => {
  const { cacheDir, opts } = setup('e');
  await outputs(await createSession('e', w8a8Graph, { ...opts }, {}));
  const entry = entryOf(cacheDir, 'e');
  const model = readFileSync(join(entry, 'e.onnx'));
  const before = modelInitializers(model);
  const edited = withExternalData(model, new Map([['proj.channel_scales', [['note', 'a'] as [string, string], ['more', 'b'] as [string, string]]]]));
  const after = modelInitializers(edited);
  assert.deepEqual(
    after.map((i) => i.name),
    before.map((i) => i.name),
  );
  for (const [i, init] of after.entries()) {
    assert.deepEqual(init.entries, init.name === 'proj.channel_scales' ? [...before[i].entries, ['note', 'a'], ['more', 'b']] : before[i].entries);
  }
  assert.equal(Buffer.compare(withExternalData(model, new Map()), model), 0);
});

test('one packer at a time; a lock left by a process that is gone is taken over', () => {
  const dir = mkdtempSync(join(root, 'lock-'));
  const lock = lockForPacking(dir);
  assert.ok(lock);
  assert.equal(lockForPacking(dir), undefined, 'held by a live process (this one)');
  lock.release();
  writeFileSync(join(dir, 'prepack.lock'), '999999999');
  writeFileSync(join(dir, 'prepack-999999999-1'), 'left behind');
  const again = lockForPacking(dir);
  assert.ok(again, 'a dead owner');
  assert.ok(!readdirSync(dir).includes('prepack-999999999-1'), "the dead packer's temporary files are removed");
  again.release();
  // A lock file without a process id yet belongs to a packer that has just created it, unless
  // it has been left like that for a minute.
  writeFileSync(join(dir, 'prepack.lock'), '');
  assert.equal(lockForPacking(dir), undefined, 'just created');
  const old = new Date(Date.now() - 120_000);
  utimesSync(join(dir, 'prepack.lock'), old, old);
  const taken = lockForPacking(dir);
  assert.ok(taken, 'left empty by a packer that died');
  taken.release();
});

test('an entry is packed for a bounded number of machines', () => {
  const dir = mkdtempSync(join(root, 'tags-'));
  assert.ok(wantsPacking(dir));
  const others = Array.from({ length: MAX_PACKINGS }, (_, i) => `other-${i}`);
  writeFileSync(join(dir, 'prepacked.json'), JSON.stringify({ tags: others.slice(0, -1) }));
  assert.ok(wantsPacking(dir));
  writeFileSync(join(dir, 'prepacked.json'), JSON.stringify({ tags: others }));
  assert.ok(!wantsPacking(dir), 'full');
  writeFileSync(join(dir, 'prepacked.json'), JSON.stringify({ tags: [prepackTag()] }));
  assert.ok(!wantsPacking(dir) && packedFor(dir));
});

test('tiny-a int8 and int4: logits from the cache, packed and then with its blobs, equal those of an uncached load', async () => {
  // Imported here: the runtime layer's own tests above need no model.
  const { AsrModel } = await import('../asr/asr-model.ts');
  const { SafetensorsStore } = await import('../checkpoint/safetensors.ts');
  const { goldenSets } = await import('../../testing/shared.ts');
  const tinyA = goldenSets('asr', ['tiny-a']).find((s) => s.name === 'tiny-a')!;
  const reqs = [0, 5].map((i) => {
    const c = tinyA.index.cases[i];
    return { samples: SafetensorsStore.openFile(tinyA.path(c.audio_file_golden)).readFloat32('waveform'), language: c.language ?? undefined, context: c.context || undefined, maxNewTokens: 4 };
  });
  for (const quant of ['int8', 'int4'] as const) {
    const cacheDir = join(root, `tiny-${quant}`);
    const run = async (dir: string | false) => {
      const model = await AsrModel.load(tinyA.path('checkpoint'), { device: 'cpu', quant, threads: 2, cacheDir: dir, prepacked: true });
      try {
        return await model.transcribe(reqs, { keepStepLogits: true, ignoreStopTokens: true });
      } finally {
        await model.release();
      }
    };
    const uncached = await run(false);
    const cold = await run(cacheDir);
    const decoder = join(cacheDir, readdirSync(cacheDir).find((d) => d.startsWith('text_decoder-'))!);
    assert.ok(packedFor(decoder), `${quant}: packed on the first load`);
    const blobs = modelInitializers(readFileSync(join(decoder, 'text_decoder.onnx'))).filter((i) => i.entries.some(([k]) => k.startsWith('prepacked_')));
    assert.ok(blobs.length > 0, `${quant}: the decoder entry names its prepacked weights`);
    const warm = await run(cacheDir);
    for (const got of [cold, warm]) {
      got.forEach((r, i) => {
        assert.deepEqual(r.tokenIds, uncached[i].tokenIds, `${quant} case ${i}: ids`);
        r.stepLogits!.forEach((l, s) => assert.deepEqual(l, uncached[i].stepLogits![s], `${quant} case ${i} step ${s}: logits bit for bit`));
      });
    }
  }
});
