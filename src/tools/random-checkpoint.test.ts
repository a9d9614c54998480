import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelConfig, parseModelConfig } from '../engine/checkpoint/config.ts';
import { readSafetensorsHeader, SafetensorsStore } from '../engine/checkpoint/safetensors.ts';
import { goldenPath, readJson, REPO_ROOT } from '../testing/shared.ts';
import {
  checkpointTensors,
  DEFAULT_MAX_SHARD_BYTES,
  elementCount,
  planShards,
  randomTensorBytes,
  referenceConfig,
  writeRandomCheckpoint,
  type TensorSpec,
} from './random-checkpoint.ts';

const TINY = goldenPath('tiny-a', 'checkpoint');
const ALIGNER = goldenPath('aligner-a', 'checkpoint');
let scratch = '';

before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'qwen3-asr-randckpt-'));
});
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** name -> shape of a checkpoint folder's tensors. */
function shapesOf(dir: string): Map<string, number[]> {
  const store = SafetensorsStore.openDir(dir);
  return new Map([...store.tensors.values()].map((t) => [t.name, t.shape]));
}

function specShapes(specs: TensorSpec[]): Map<string, number[]> {
  return new Map(specs.map((s) => [s.name, s.shape]));
}

function stats(bytes: Uint8Array): { mean: number; std: number } {
  const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const f = new Float32Array(new Uint32Array(Array.from(u16, (b) => b << 16)).buffer);
  let mean = 0;
  for (const x of f) mean += x;
  mean /= f.length;
  let v = 0;
  for (const x of f) v += (x - mean) ** 2;
  return { mean, std: Math.sqrt(v / f.length) };
}

test('the 0.6B and aligner configs are the released files, key order included', () => {
  for (const [size, file] of [['0.6b', 'Qwen3-ASR-0.6B.config.json'], ['aligner', 'Qwen3-ForcedAligner-0.6B.config.json']] as const) {
    const released = readJson(goldenPath('reference-configs', file));
    assert.equal(JSON.stringify(referenceConfig(size)), JSON.stringify(released), `${size} config`);
  }
});

test('the 1.7B config is the 0.6B file with every known 1.7B value', () => {
  const cfg = referenceConfig('1.7b');
  const known = readJson(goldenPath('reference-configs', 'Qwen3-ASR-1.7B.known-values.json'));
  const check = (want: Record<string, unknown>, have: Record<string, unknown>, path: string) => {
    for (const [key, value] of Object.entries(want)) {
      if (key.startsWith('_')) continue;
      if (value && typeof value === 'object' && !Array.isArray(value)) check(value as Record<string, unknown>, have[key] as Record<string, unknown>, `${path}.${key}`);
      else assert.deepEqual(have[key], value, `${path}.${key}`);
    }
  };
  check(known, cfg, 'config');
  // Same structure (every key path) as the released 0.6B file.
  const paths = (o: unknown, prefix = ''): string[] =>
    o && typeof o === 'object' && !Array.isArray(o) ? Object.entries(o).flatMap(([k, v]) => [`${prefix}${k}`, ...paths(v, `${prefix}${k}.`)]) : [];
  assert.deepEqual(paths(cfg), paths(readJson(goldenPath('reference-configs', 'Qwen3-ASR-0.6B.config.json'))));
  // Fresh objects each call: editing one does not change the next.
  cfg.thinker_config.text_config.hidden_size = 1;
  assert.equal(referenceConfig('1.7b').thinker_config.text_config.hidden_size, 2048);
  assert.equal(referenceConfig('0.6b').thinker_config.text_config.hidden_size, 1024);
});

test('the tensor list matches the golden tiny checkpoints name for name and shape for shape', () => {
  for (const dir of [TINY, ALIGNER]) {
    const specs = checkpointTensors(loadModelConfig(dir));
    assert.deepEqual(specShapes(specs), shapesOf(dir), dir);
    assert.equal(specs.length, new Set(specs.map((s) => s.name)).size, 'no duplicate names');
  }
  // The released ASR files also store the tied head, drawn from the embedding's stream.
  const withHead = checkpointTensors(loadModelConfig(TINY), { storeTiedHead: true });
  const head = withHead.find((s) => s.name === 'thinker.lm_head.weight')!;
  assert.deepEqual(head.shape, [151936, 64]);
  assert.equal(head.init.stream, 'thinker.model.embed_tokens.weight');
});

test('full-size tensor lists have the released parameter counts (spec §2.2) and sharding', () => {
  const count = (size: '0.6b' | '1.7b' | 'aligner') => {
    const specs = checkpointTensors(parseModelConfig(referenceConfig(size), size), { storeTiedHead: true });
    return { specs, tensors: specs.length, params: specs.reduce((sum, s) => sum + elementCount(s.shape), 0) };
  };
  const small = count('0.6b');
  assert.equal(small.tensors, 301 + 311);
  assert.equal((small.params / 1e6).toFixed(1), '938.0');
  const big = count('1.7b');
  assert.equal(big.tensors, 397 + 311);
  assert.equal((big.params / 1e9).toFixed(3), '2.349');
  assert.deepEqual(specShapes(big.specs).get('thinker.model.layers.27.self_attn.q_proj.weight'), [2048, 2048]);
  assert.deepEqual(specShapes(big.specs).get('thinker.audio_tower.conv_out.weight'), [1024, 7680]);
  const aligner = count('aligner');
  assert.equal(aligner.tensors, 397 + 311);
  assert.ok(Math.abs(aligner.params / 917.8e6 - 1) < 2e-4, `aligner ${aligner.params}`);
  assert.deepEqual(specShapes(aligner.specs).get('thinker.lm_head.weight'), [5000, 1024]);
  // 1.7B (4.7 GB) splits in two like the release; the 0.6B models fit in one file.
  assert.equal(planShards(big.specs, DEFAULT_MAX_SHARD_BYTES).length, 2);
  assert.ok(small.params * 2 < DEFAULT_MAX_SHARD_BYTES && aligner.params * 2 < DEFAULT_MAX_SHARD_BYTES);
});

test('random values are seeded per tensor and scaled as asked', () => {
  const spec: TensorSpec = { name: 'w', shape: [301, 333], init: { mean: 0, std: 0.05 } };
  const a = randomTensorBytes(spec, 7);
  assert.equal(a.byteLength, 301 * 333 * 2);
  assert.ok(Buffer.from(a).equals(Buffer.from(randomTensorBytes(spec, 7))), 'same seed, same bytes');
  assert.ok(!Buffer.from(a).equals(Buffer.from(randomTensorBytes(spec, 8))), 'another seed, other bytes');
  assert.ok(!Buffer.from(a).equals(Buffer.from(randomTensorBytes({ ...spec, name: 'v' }, 7))), 'another tensor, other bytes');
  assert.ok(Buffer.from(a).equals(Buffer.from(randomTensorBytes({ ...spec, name: 'v', init: { ...spec.init, stream: 'w' } }, 7))), 'a shared stream gives the same bytes');
  // Written into a larger reused buffer: same bytes, and an odd element count is filled completely.
  const reused = new Uint8Array(a.byteLength + 64).fill(0xaa);
  assert.ok(Buffer.from(randomTensorBytes(spec, 7, reused)).equals(Buffer.from(a)));
  assert.equal(reused[a.byteLength], 0xaa, 'nothing written past the tensor');
  const odd = randomTensorBytes({ name: 'odd', shape: [3], init: { mean: 1, std: 0.05 } }, 1);
  assert.ok(stats(odd).mean > 0.8 && stats(odd).mean < 1.2, 'last odd element is a real sample');

  const s = stats(a);
  assert.ok(Math.abs(s.mean) < 0.002, `mean ${s.mean}`);
  assert.ok(Math.abs(s.std / 0.05 - 1) < 0.02, `std ${s.std}`);
  const norm = stats(randomTensorBytes({ name: 'n', shape: [4096], init: { mean: 1, std: 0.05 } }, 3));
  assert.ok(Math.abs(norm.mean - 1) < 0.01 && Math.abs(norm.std / 0.05 - 1) < 0.1, `norm ${norm.mean} ${norm.std}`);
});

test('a checkpoint generated from the tiny-a config loads like the golden one', () => {
  const out = join(scratch, 'tiny');
  const logs: string[] = [];
  const result = writeRandomCheckpoint(readJson(join(TINY, 'config.json')), out, { seed: 5, tokenizerFrom: TINY, log: (m) => logs.push(m) });
  assert.ok(logs.some((l) => l.includes('wrote model.safetensors')));

  const golden = loadModelConfig(TINY);
  const made = loadModelConfig(out);
  assert.deepEqual({ ...made, file: '' }, { ...golden, file: '' });

  // Every golden tensor, plus the stored tied head, all bf16 and finite.
  const store = SafetensorsStore.openDir(out);
  const expected = new Map(shapesOf(TINY)).set('thinker.lm_head.weight', [151936, 64]);
  assert.deepEqual(shapesOf(out), expected);
  assert.equal(result.tensors, expected.size);
  for (const t of store.tensors.values()) {
    assert.equal(t.dtype, 'BF16', t.name);
    store.readFloat32(t.name); // throws on a non-finite value
  }
  assert.deepEqual(readSafetensorsHeader(join(out, 'model.safetensors')).metadata, { format: 'pt' });
  assert.ok(store.readRaw('thinker.lm_head.weight').equals(store.readRaw('thinker.model.embed_tokens.weight')), 'tied head equals the embedding');
  const fc1 = stats(store.readRaw('thinker.audio_tower.layers.0.fc1.weight'));
  assert.ok(Math.abs(fc1.std * Math.sqrt(64) - 1) < 0.1, `fc1 std ${fc1.std} ~ 1/sqrt(fan_in)`);
  const qNorm = stats(store.readRaw('thinker.model.layers.1.self_attn.q_norm.weight'));
  assert.ok(Math.abs(qNorm.mean - 1) < 0.05, `q_norm mean ${qNorm.mean}`);

  for (const name of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'generation_config.json', 'preprocessor_config.json', 'chat_template.json']) {
    assert.ok(readFileSync(join(out, name)).equals(readFileSync(join(TINY, name))), `${name} copied`);
  }
  assert.ok(!existsSync(join(out, 'model.safetensors.index.json')));
});

test('sharding writes an index, keeps every tensor byte for byte, and replaces old weight files', () => {
  const config = readJson(join(TINY, 'config.json'));
  const single = join(scratch, 'single');
  const sharded = join(scratch, 'sharded');
  writeRandomCheckpoint(config, single, { seed: 11, tokenizerFrom: TINY });
  // Start from a folder holding a single-file checkpoint: it must not survive next to the shards.
  writeRandomCheckpoint(config, sharded, { seed: 11, tokenizerFrom: TINY });
  const maxShardBytes = 8e6;
  const result = writeRandomCheckpoint(config, sharded, { seed: 11, tokenizerFrom: TINY, maxShardBytes });

  const shardFiles = readdirSync(sharded).filter((n) => n.endsWith('.safetensors')).sort();
  assert.ok(shardFiles.length >= 3, `${shardFiles.length} shards`);
  shardFiles.forEach((name, i) => assert.equal(name, `model-${String(i + 1).padStart(5, '0')}-of-${String(shardFiles.length).padStart(5, '0')}.safetensors`));
  assert.ok(!existsSync(join(sharded, 'model.safetensors')), 'the old single file was removed');

  const index = readJson(join(sharded, 'model.safetensors.index.json'));
  assert.equal(index.metadata.total_size, result.weightBytes);
  const a = SafetensorsStore.openFile(join(single, 'model.safetensors'));
  const b = SafetensorsStore.openDir(sharded);
  assert.deepEqual(Object.keys(index.weight_map).sort(), [...a.tensors.keys()].sort());
  assert.equal([...b.tensors.values()].reduce((sum, t) => sum + t.byteLength, 0), index.metadata.total_size);
  for (const name of a.tensors.keys()) {
    assert.equal(b.info(name).file, join(sharded, index.weight_map[name]), name);
    assert.ok(a.readRaw(name).equals(b.readRaw(name)), `${name} is the same in both layouts`);
  }
  for (const name of shardFiles) {
    const tensors = readSafetensorsHeader(join(sharded, name)).tensors;
    const bytes = tensors.reduce((sum, t) => sum + t.byteLength, 0);
    assert.ok(bytes <= maxShardBytes || tensors.length === 1, `${name} holds ${bytes} bytes`);
  }

  // And back to one file: the shards and the index go.
  writeRandomCheckpoint(config, sharded, { seed: 11, tokenizerFrom: TINY });
  assert.deepEqual(readdirSync(sharded).filter((n) => n.startsWith('model')), ['model.safetensors']);
});

test('an aligner checkpoint gets the aligner head and needs the aligner tokenizer', () => {
  const config = readJson(join(ALIGNER, 'config.json'));
  assert.throws(() => writeRandomCheckpoint(config, join(scratch, 'bad-aligner'), { tokenizerFrom: TINY }), /no added token 151705 \(config\.json timestamp_token_id\).*ForcedAligner/);
  assert.throws(() => writeRandomCheckpoint(config, join(scratch, 'bad-aligner'), { tokenizerFrom: join(scratch, 'nowhere') }), /tokenizer folder .*nowhere does not exist/);
  assert.throws(() => writeRandomCheckpoint(config, join(scratch, 'bad-aligner'), { tokenizerFrom: goldenPath() }), /lacks vocab\.json/);
  const bad = structuredClone(config);
  delete bad.thinker_config.text_config.hidden_size;
  assert.throws(() => writeRandomCheckpoint(bad, join(scratch, 'bad-aligner'), { tokenizerFrom: ALIGNER }), /text_config\.hidden_size is missing/);

  const out = join(scratch, 'aligner');
  writeRandomCheckpoint(config, out, { seed: 2, tokenizerFrom: ALIGNER });
  const cfg = loadModelConfig(out);
  assert.equal(cfg.kind, 'aligner');
  assert.equal(cfg.classifyNum, 5000);
  assert.deepEqual(shapesOf(out), shapesOf(ALIGNER));
});

test('make-checkpoint rejects bad arguments with usage help', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'tools', 'make-checkpoint.ts'), ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
  const bad = run('--size', '3b', '--out', join(scratch, 'cli'));
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /--size "3b" is not one of 1\.7b, 0\.6b, aligner/);
  assert.match(bad.stderr, /usage: npm run make-checkpoint/);
  assert.ok(!existsSync(join(scratch, 'cli')), 'nothing written');
  const noOut = run('--size', '0.6b');
  assert.equal(noOut.status, 2);
  assert.match(noOut.stderr, /--out DIR is required/);
  const badSeed = run('--size', '0.6b', '--out', join(scratch, 'cli'), '--seed=abc');
  assert.equal(badSeed.status, 2);
  assert.match(badSeed.stderr, /--seed must be a non-negative integer, got "abc"/);
  assert.ok(!existsSync(join(scratch, 'cli')), 'nothing written');
  const both = run('--size', '0.6b', '--config', join(TINY, 'config.json'), '--out', join(scratch, 'cli'));
  assert.equal(both.status, 2);
  assert.match(both.stderr, /give either --size or --config/);
  writeFileSync(join(scratch, 'broken.json'), '{"model_type": ');
  const broken = run('--config', join(scratch, 'broken.json'), '--out', join(scratch, 'cli'));
  assert.equal(broken.status, 2);
  assert.match(broken.stderr, /--config .*broken\.json: not valid JSON/);
  assert.ok(!existsSync(join(scratch, 'cli')), 'nothing written');
});

test('make-checkpoint --config writes a checkpoint for any widths of the family', () => {
  // Shapes no released model has: every query head with its own kv head, heads 12 wide, a
  // query width (60) and an audio width (36) that differ from the hidden size (40), windows of 4 s.
  const cfg = readJson(join(TINY, 'config.json'));
  Object.assign(cfg.thinker_config.text_config, { hidden_size: 40, num_hidden_layers: 1, num_attention_heads: 5, num_key_value_heads: 5, head_dim: 12, intermediate_size: 72 });
  cfg.thinker_config.text_config.rope_scaling.mrope_section = [2, 2, 2];
  Object.assign(cfg.thinker_config.audio_config, { d_model: 36, encoder_layers: 1, encoder_attention_heads: 3, encoder_ffn_dim: 56, downsample_hidden_size: 8, output_dim: 40, n_window_infer: 400 });
  const file = join(scratch, 'tiny-c.json');
  writeFileSync(file, JSON.stringify(cfg));
  const out = join(scratch, 'from-config');
  const made = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'tools', 'make-checkpoint.ts'), '--config', file, '--out', out, '--seed', '3'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  assert.deepEqual(readJson(join(out, 'config.json')), cfg);
  const loaded = loadModelConfig(out);
  assert.equal(loaded.text.kvHeads, 5);
  assert.equal(loaded.audio.dModel, 36);
  const store = SafetensorsStore.openDir(out);
  assert.deepEqual(store.tensors.get('thinker.model.layers.0.self_attn.k_proj.weight')!.shape, [60, 40]);
  assert.deepEqual(store.tensors.get('thinker.audio_tower.proj2.weight')!.shape, [40, 36]);
});
