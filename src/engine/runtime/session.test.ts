/** The compiled-graph cache: reuse, invalidation, damaged entries, and the uncached path. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative as relativePath } from 'node:path';
import { after, test } from 'node:test';
import ort from 'onnxruntime-node';
import { DataType, type GraphBuilder } from './onnx-graph.ts';
import { defaultThreadCount } from './cpu-threads.ts';
import { createSession, sessionOptions } from './session.ts';

const root = mkdtempSync(join(tmpdir(), 'qwen3-asr-cache-test-'));
const cacheDir = join(root, 'cache');
const ckpt = join(root, 'ckpt');
after(() => rmSync(root, { recursive: true, force: true }));

function scaleGraph(factor: number) {
  return (g: GraphBuilder) => {
    const x = g.input('x', DataType.FLOAT, [2]);
    g.node('Mul', [x, g.constFloat([factor])], {}, { outputs: ['y'] });
    g.output('y', DataType.FLOAT, [2]);
  };
}

async function run(s: ort.InferenceSession): Promise<number[]> {
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
  await s.release();
  return Array.from(out.y.data as Float32Array);
}

test('a cached build is reused, and a changed checkpoint or parameter builds anew', async () => {
  mkdirSync(ckpt, { recursive: true });
  writeFileSync(join(ckpt, 'config.json'), '{"a":1}');
  writeFileSync(join(ckpt, 'w.bin'), 'weights');
  const opts = { device: 'cpu' as const, threads: 1, cacheDir, cacheSource: { dir: ckpt, files: [join(ckpt, 'w.bin')], code: [import.meta.url] } };
  let builds = 0;
  const counted = (f: number) => (g: GraphBuilder) => {
    builds++;
    scaleGraph(f)(g);
  };
  assert.deepEqual(await run(await createSession('m', counted(3), opts, { p: 1 })), [3, 6]);
  assert.deepEqual(await run(await createSession('m', counted(5), opts, { p: 1 })), [3, 6], 'second load must come from the cache');
  assert.equal(builds, 1);
  assert.deepEqual(await run(await createSession('m', counted(5), opts, { p: 2 })), [5, 10]);
  writeFileSync(join(ckpt, 'config.json'), '{"a":2}');
  assert.deepEqual(await run(await createSession('m', counted(7), opts, { p: 2 })), [7, 14]);
  assert.equal(builds, 3);
  assert.ok(readdirSync(cacheDir).every((d) => !d.includes('partial')), 'no partial builds left behind');
  // The rebuild for the changed checkpoint replaced the p: 2 entry; p: 1 (built for the old
  // config) is a different slot and stays until it is rebuilt itself.
  const entries = () => readdirSync(cacheDir).filter((d) => d.startsWith('m-')).length;
  assert.equal(entries(), 2);
  assert.deepEqual(await run(await createSession('m', counted(9), opts, { p: 1 })), [9, 18]);
  assert.equal(entries(), 2, 'superseded builds of a slot are removed');
  // A build left half-done by a process that no longer exists is removed too; one whose
  // process is alive (this one) is not.
  mkdirSync(join(cacheDir, 'm-0123.partial-999999999-1'));
  mkdirSync(join(cacheDir, `m-4567.partial-${process.pid}-1`));
  writeFileSync(join(ckpt, 'w.bin'), 'weights, changed');
  assert.deepEqual(await run(await createSession('m', counted(11), opts, { p: 1 })), [11, 22]);
  assert.ok(!readdirSync(cacheDir).includes('m-0123.partial-999999999-1'), 'a dead build is removed');
  assert.ok(readdirSync(cacheDir).includes(`m-4567.partial-${process.pid}-1`), 'a live build is kept');
  rmSync(join(cacheDir, `m-4567.partial-${process.pid}-1`), { recursive: true });
  // The same checkpoint named by a relative path is the same build.
  const relative = { ...opts, cacheSource: { dir: relativePath(process.cwd(), ckpt), files: [relativePath(process.cwd(), join(ckpt, 'w.bin'))], code: [import.meta.url] } };
  assert.deepEqual(await run(await createSession('m', counted(13), relative, { p: 1 })), [11, 22], 'a relative path hits the cache');
  // Another graph whose name starts the same is never touched.
  await run(await createSession('m_other', scaleGraph(2), opts, { p: 1 }));
  assert.deepEqual(await run(await createSession('m', counted(15), opts, { p: 1 })), [11, 22]);
  assert.equal(readdirSync(cacheDir).filter((d) => d.startsWith('m_other-')).length, 1);
  // A choice the code derives (a new version deciding differently) builds anew and replaces
  // the entry of the same chosen parameters.
  assert.deepEqual(await run(await createSession('m', counted(17), opts, { p: 1 }, { derived: true })), [17, 34]);
  assert.deepEqual(await run(await createSession('m', counted(19), opts, { p: 1 }, { derived: true })), [17, 34], 'and is cached');
  assert.equal(entries(), 2, 'the entry built without the derived choice is gone');
});

test('a damaged cache entry is rebuilt', async () => {
  const opts = { device: 'cpu' as const, threads: 1, cacheDir, cacheSource: { dir: ckpt, files: [], code: [import.meta.url] } };
  await run(await createSession('d', scaleGraph(2), opts, {}));
  const entry = readdirSync(cacheDir).find((d) => d.startsWith('d-'))!;
  writeFileSync(join(cacheDir, entry, 'd.onnx'), 'garbage');
  assert.deepEqual(await run(await createSession('d', scaleGraph(2), opts, {})), [2, 4]);
});

test('without a cache the temporary build folder is removed', async () => {
  const before = readdirSync(tmpdir()).filter((d) => d.startsWith('qwen3-asr-t-')).length;
  assert.deepEqual(await run(await createSession('t', scaleGraph(4), { device: 'cpu', threads: 1, cacheDir: false }, {})), [4, 8]);
  assert.equal(readdirSync(tmpdir()).filter((d) => d.startsWith('qwen3-asr-t-')).length, before);
});

test('sessions run on one thread per physical core unless a count is asked for', () => {
  // ONNX Runtime's own default (0) is half the logical CPUs on Linux, one on a 2-vCPU VM: never left to it.
  assert.equal(sessionOptions('x', { device: 'cpu', threads: 0 }).intraOpNumThreads, defaultThreadCount());
  assert.equal(sessionOptions('x', { device: 'cpu', threads: 3 }).intraOpNumThreads, 3);
  assert.equal(sessionOptions('x', { device: 'cpu', threads: 0 }).interOpNumThreads, 1);
});

test('the cache key covers the import closure of the graph builders, found rather than listed', async () => {
  const { importClosure, sourceHash } = await import('./graph-cache.ts');
  const { ENCODER_GRAPH_SOURCE } = await import('../graphs/encoder-graph.ts');
  const { DECODER_GRAPH_SOURCE } = await import('../graphs/decoder-graph.ts');
  const names = (url: string) => importClosure([url]).map((f) => f.slice(f.indexOf('/src/engine/') + '/src/engine/'.length));
  for (const url of [ENCODER_GRAPH_SOURCE, DECODER_GRAPH_SOURCE]) {
    const files = names(url);
    // Every file whose code decides the graphs' bytes, safetensors.ts (bf16 conversion) included.
    for (const f of ['runtime/onnx-graph.ts', 'runtime/protobuf.ts', 'graphs/layers.ts', 'runtime/int8-kernel.ts', 'runtime/quantize.ts', 'checkpoint/safetensors.ts']) {
      assert.ok(files.includes(f), `${f} is missing from the closure of ${url}: ${files.join(', ')}`);
    }
    assert.ok(!files.some((f) => f.endsWith('.test.ts')));
    // Only the engine's own code: a settings or pipeline change does not rebuild every graph.
    assert.ok(importClosure([url]).every((f) => f.includes('/src/engine/')), files.join(', '));
  }
  // A change anywhere in the closure changes the hash; a file outside it does not.
  const dir = join(root, 'src-closure');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'entry.ts'), "import { a } from './a.ts';\nexport * from './b.ts';\nexport const e = a;\n");
  writeFileSync(join(dir, 'a.ts'), "import type { B } from './b.ts';\nexport const a = 1;\n");
  writeFileSync(join(dir, 'b.ts'), 'export type B = number;\n');
  writeFileSync(join(dir, 'other.ts'), 'export const o = 1;\n');
  const entry = join(dir, 'entry.ts');
  assert.deepEqual(importClosure([entry]).map((f) => f.slice(dir.length + 1)), ['a.ts', 'b.ts', 'entry.ts']);
  // sourceHash memoises per entry list; equal lists of the same entry recompute.
  const before = sourceHash([entry]);
  writeFileSync(join(dir, 'other.ts'), 'export const o = 2;\n');
  assert.equal(sourceHash([entry, entry]), before, 'a file outside the closure is not part of the key');
  writeFileSync(join(dir, 'b.ts'), 'export type B = string;\n');
  assert.notEqual(sourceHash([entry, entry, entry]), before, 'a file inside the closure is');
});
