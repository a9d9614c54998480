/**
 * A checkpoint is not always stored as the released bf16: converted or fine-tuned copies come
 * as F32 or F16, often sharded. The weights reach the engine through other code there (no
 * bf16 fast paths in the quantisers), so tiny-a is rewritten in those forms and must give the
 * golden results: F32 holds bf16 values exactly, so its numbers must equal the bf16 load's bit
 * for bit, quantised ones included; F16 rounds the smallest weights, so it is held to the
 * goldens' tolerances.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AsrModel } from '../asr/asr-model.ts';
import type { Quantization } from '../types.ts';
import { SafetensorsStore, writeSafetensors, type TensorToWrite } from './safetensors.ts';
import { goldenPath, maxAbsDiff, readJson } from '../../testing/shared.ts';

const SOURCE = goldenPath('tiny-a', 'checkpoint');
const index = readJson(goldenPath('tiny-a', 'index.json'));
// One case per audio length class, with and without a forced language.
const cases: any[] = ['en_3s__auto', 'de_7s__lang_english', 'long_40s__context'].map((name) => index.cases.find((c: any) => c.case === name));

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'qwen3-asr-dtypes-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Float to IEEE half, rounding to nearest even (subnormals included); finite inputs only. */
function floatToHalfBits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) throw new Error(`${x} does not fit in float16`);
  if (a < 2 ** -14) return sign | roundEven(a / 2 ** -24); // subnormal (a carry into 0x400 is the smallest normal)
  const e = Math.floor(Math.log2(a));
  const exp = a >= 2 ** (e + 1) ? e + 1 : a < 2 ** e ? e - 1 : e; // log2 rounding at powers of two
  const mant = roundEven((a / 2 ** exp - 1) * 1024); // may carry into the exponent, which is right
  return sign | (((exp + 15) << 10) + mant);
}

function roundEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** tiny-a's tensors rewritten as `dtype`, split over `shards` files with an index when more than one. */
function rewrite(dtype: 'F32' | 'F16', shards: number): string {
  const dir = join(root, `${dtype}-${shards}`);
  const src = SafetensorsStore.openFile(join(SOURCE, 'model.safetensors'));
  mkdirSync(dir);
  for (const f of readdirSync(SOURCE)) if (!f.endsWith('.safetensors')) copyFileSync(join(SOURCE, f), join(dir, f));
  const names = [...src.tensors.keys()];
  const tensors: TensorToWrite[] = names.map((name) => {
    const info = src.tensors.get(name)!;
    const values = src.readFloat32(name);
    const data =
      dtype === 'F32'
        ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
        : new Uint8Array(Uint16Array.from(values, floatToHalfBits).buffer);
    return { name, dtype, shape: info.shape, data };
  });
  if (shards === 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return dir;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    writeSafetensors(join(dir, file), part, { format: 'pt' });
    for (const t of part) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}

async function run(dir: string, quant: Quantization) {
  const model = await AsrModel.load(dir, { device: 'cpu', quant, threads: 2, cacheDir: false });
  try {
    const reqs = cases.map((c) => ({
      samples: SafetensorsStore.openFile(goldenPath('tiny-a', c.audio_file_golden)).readFloat32('waveform'),
      language: c.language ?? undefined,
      context: c.context || undefined,
      maxNewTokens: index.model.max_new_tokens,
    }));
    const out = [];
    for (const r of reqs) out.push((await model.transcribe([r], { keepFirstLogits: true }))[0]);
    return out;
  } finally {
    await model.release();
  }
}

test('F16 half conversion: exact values, rounding to even, subnormals', () => {
  assert.equal(floatToHalfBits(1), 0x3c00);
  assert.equal(floatToHalfBits(-2), 0xc000);
  assert.equal(floatToHalfBits(65504), 0x7bff);
  assert.equal(floatToHalfBits(2 ** -14), 0x0400);
  assert.equal(floatToHalfBits(2 ** -24), 0x0001);
  assert.equal(floatToHalfBits(1 + 2 ** -11), 0x3c00); // tie to even
  assert.equal(floatToHalfBits(1 + 3 * 2 ** -11), 0x3c02); // tie to even, upwards
  assert.equal(floatToHalfBits(2 - 2 ** -12), 0x4000); // carry into the exponent
});

for (const [dtype, shards] of [
  ['F32', 3],
  ['F16', 1],
] as const) {
  test(`tiny-a stored as ${dtype}${shards > 1 ? `, in ${shards} shards` : ''}: ${dtype === 'F32' ? 'the bf16 load bit for bit (fp32, int8, int4)' : 'the goldens within tolerance'}`, async () => {
    const dir = rewrite(dtype, shards);
    for (const quant of dtype === 'F32' ? (['none', 'int8', 'int4'] as const) : (['none'] as const)) {
      const got = await run(dir, quant);
      const want = dtype === 'F32' ? await run(SOURCE, quant) : undefined;
      got.forEach((r, i) => {
        const c = cases[i];
        if (want) {
          assert.deepEqual(r.tokenIds, want[i].tokenIds, `${quant} ${c.case}: ids`);
          assert.equal(maxAbsDiff(r.firstLogits!, want[i].firstLogits!), 0, `${quant} ${c.case}: first logits differ from the bf16 load`);
        }
        if (quant === 'none') {
          const golden = SafetensorsStore.openFile(goldenPath('tiny-a', c.case_file_golden)).readFloat32('first_logits');
          const diff = maxAbsDiff(r.firstLogits!, golden);
          assert.ok(diff <= 1e-3, `${c.case}: first_logits max diff ${diff}`);
          assert.deepEqual(r.tokenIds, c.generated_ids, `${c.case}: ids`);
          assert.equal(r.text, c.parsed_text);
        }
      });
    }
  });
}
