/**
 * The layout's one rule, checked on the source: imports go one way. Each product module may
 * import its own folder and the layers below it, never one above:
 *
 *   settings → audio → engine (types → checkpoint → text → runtime → graphs → thinker → asr | aligner | vad)
 *            → pipeline → formats → server | cli
 *
 * and the server and the CLI reach the engine and the audio decoders only through the
 * pipeline. No product module imports the test support, the tools or the benchmarks. Tests
 * may import anything (an engine test runs the ASR model, say).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = dirname(fileURLToPath(import.meta.url));

/** Layers from the bottom; modules in the same layer but other folders (asr and aligner, server and cli) may not import each other. */
const LAYERS: [folder: string, rank: number][] = [
  ['settings/', 0],
  ['audio/', 1],
  ['engine/types.ts', 2.0],
  ['engine/checkpoint/', 2.1],
  ['engine/text/', 2.2],
  ['engine/runtime/', 2.3],
  ['engine/graphs/', 2.4],
  ['engine/thinker/', 2.5],
  ['engine/asr/', 2.6],
  ['engine/aligner/', 2.6],
  ['engine/vad/', 2.6],
  ['pipeline/', 3],
  ['formats/', 4],
  ['server/', 5],
  ['cli/', 5],
];
/** What the outermost callers may import besides their own folder. */
const CALLER_IMPORTS: Record<string, string[]> = {
  'server/': ['settings/', 'pipeline/', 'formats/'],
  'cli/': ['settings/', 'pipeline/', 'formats/'],
};
const NOT_PRODUCT = ['testing/', 'tools/', 'bench/'];

function layerOf(path: string): [string, number] | undefined {
  const hit = LAYERS.find(([folder]) => path.startsWith(folder));
  return hit;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : /\.(ts|mjs)$/.test(e.name) ? [join(dir, e.name)] : []));
}

/** Relative specifiers of a module's import and export statements and dynamic imports. */
export function relativeImports(source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(/^(?:import|export)\b[^;'"]*?(?:\bfrom\s*)?(['"])(\.{1,2}\/[^'"]+)\1/gm)) found.push(m[2]);
  for (const m of source.matchAll(/\bimport\(\s*(['"])(\.{1,2}\/[^'"]+)\1\s*\)/g)) found.push(m[2]);
  return found;
}

/** Every import of a product module that breaks the rule, as "from -> to (why)". */
export function violations(files: { path: string; source: string }[]): string[] {
  const out: string[] = [];
  for (const { path, source } of files) {
    if (path.endsWith('.test.ts') || NOT_PRODUCT.some((f) => path.startsWith(f))) continue;
    const from = layerOf(path);
    if (!from) {
      out.push(`${path} (in no layer: add its folder to LAYERS)`);
      continue;
    }
    for (const spec of relativeImports(source)) {
      const target = relative(SRC, resolve(SRC, dirname(path), spec)).split('\\').join('/');
      if (target.startsWith(from[0])) continue;
      if (NOT_PRODUCT.some((f) => target.startsWith(f))) {
        out.push(`${path} -> ${target} (product code imports ${target.split('/')[0]}/)`);
        continue;
      }
      const to = layerOf(target);
      if (!to) out.push(`${path} -> ${target} (outside every layer)`);
      else if (to[1] >= from[1]) out.push(`${path} -> ${target} (${to[0]} is not below ${from[0]})`);
      else if (CALLER_IMPORTS[from[0]] && !CALLER_IMPORTS[from[0]].some((f) => target.startsWith(f))) {
        out.push(`${path} -> ${target} (${from[0]} reaches ${to[0]} only through the pipeline)`);
      }
    }
  }
  return out;
}

test('imports go one way: no product module imports a layer above its own', () => {
  const files = sourceFiles(SRC).map((f) => ({ path: relative(SRC, f).split('\\').join('/'), source: readFileSync(f, 'utf8') }));
  assert.ok(files.length > 50, 'found the sources');
  assert.deepEqual(violations(files), []);
});

test('the check catches each kind of wrong import', () => {
  const cases: [string, string, RegExp][] = [
    ['engine/thinker/thinker.ts', "import type { Device } from '../../pipeline/types.ts';", /pipeline\/ is not below engine\/thinker\//],
    ['audio/features.ts', "import { loadModelConfig } from '../engine/checkpoint/config.ts';", /engine\/checkpoint\/ is not below audio\//],
    ['engine/asr/asr-model.ts', "import { ForcedAligner } from '../aligner/aligner-model.ts';", /engine\/aligner\/ is not below engine\/asr\//],
    ['server/main.ts', "import { intraOpThreads } from '../engine/runtime/cpu-threads.ts';", /only through the pipeline/],
    ['cli/main.ts', "import {\n  decodeAudio,\n} from '../audio/decode.ts';", /only through the pipeline/],
    ['pipeline/run-transcription.ts', "const m = await import('../server/app.ts');", /server\/ is not below pipeline\//],
    ['engine/text/prompt.ts', "export { x } from '../graphs/layers.ts';", /engine\/graphs\/ is not below engine\/text\//],
    ['formats/subtitles.ts', "import { AUDIO_DIR } from '../testing/shared.ts';", /product code imports testing\//],
    ['misc/thing.ts', '', /in no layer/],
  ];
  for (const [path, source, why] of cases) {
    const found = violations([{ path, source }]);
    assert.equal(found.length, 1, `${path}: ${source}`);
    assert.match(found[0], why);
  }
  // Imports inside strings or comments are not statements.
  assert.deepEqual(violations([{ path: 'audio/wav.ts', source: "// import { x } from '../server/app.ts';\nconst s = \"import { y } from '../cli/main.ts'\";\n" }]), []);
  // Tests may import anything.
  assert.deepEqual(violations([{ path: 'audio/features.test.ts', source: "import { AsrModel } from '../engine/asr/asr-model.ts';" }]), []);
});
