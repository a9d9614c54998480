/**
 * npm run make-checkpoint -- --size 1.7b|0.6b|aligner --out DIR [--seed N] [--tokenizer-from DIR]
 * npm run make-checkpoint -- --config FILE --out DIR [...]
 *
 * Writes a full-size random checkpoint in the official format (see random-checkpoint.ts), for
 * measuring load and inference speed without downloading the real weights; or one for any
 * config.json of the family (other widths, head counts, windows), for checking the engine on
 * shapes no released model has (scripts/held-out-goldens.sh runs the reference on one).
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GOLDEN_DIR } from '../testing/shared.ts';
import { join } from 'node:path';
import { parseModelConfig } from '../engine/checkpoint/config.ts';
import { CHECKPOINT_SIZES, DEFAULT_MAX_SHARD_BYTES, referenceConfig, writeRandomCheckpoint, type CheckpointSize } from './random-checkpoint.ts';

const USAGE = `usage: npm run make-checkpoint -- (--size ${CHECKPOINT_SIZES.join('|')} | --config FILE) --out DIR [--seed N] [--tokenizer-from DIR] [--max-shard-size BYTES]

  --size            which released model to imitate: 1.7b (Qwen3-ASR-1.7B, 4.7 GB, two shards),
                    0.6b (Qwen3-ASR-0.6B, 1.9 GB), aligner (Qwen3-ForcedAligner-0.6B, 1.8 GB)
  --config          instead of --size: a config.json of the family (Qwen3-ASR or the aligner)
                    with any widths; written into DIR as given
  --out             folder to write (created if needed; old weight files in it are replaced)
  --seed            random seed, a non-negative integer (default 0)
  --tokenizer-from  snapshot folder to copy vocab.json, merges.txt, tokenizer_config.json,
                    generation_config.json, preprocessor_config.json, chat_template.json from
                    (default: the golden tiny checkpoints in ../shared, when present)
  --max-shard-size  shard the weights beyond this many bytes (default ${DEFAULT_MAX_SHARD_BYTES})`;

class UsageError extends Error {}

function parseSize(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(|B|KB|MB|GB)$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what} must be a byte count such as 4000000000 or 4GB, got ${JSON.stringify(text)}`);
  const unit = { '': 1, B: 1, KB: 1e3, MB: 1e6, GB: 1e9 }[m[2].toUpperCase() as '' | 'B' | 'KB' | 'MB' | 'GB'];
  const n = Math.floor(Number(m[1]) * unit);
  if (n <= 0) throw new UsageError(`${what} must be positive`);
  return n;
}

function readConfig(file: string): any {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--config ${file}: cannot read it (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--config ${file}: not valid JSON (${(err as Error).message})`);
  }
}

function main(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string' },
      config: { type: 'string' },
      out: { type: 'string' },
      seed: { type: 'string' },
      'tokenizer-from': { type: 'string' },
      'max-shard-size': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const size = values.size as CheckpointSize | undefined;
  if (!size === !values.config) throw new UsageError('give either --size or --config');
  if (size && !CHECKPOINT_SIZES.includes(size)) throw new UsageError(`--size ${JSON.stringify(size)} is not one of ${CHECKPOINT_SIZES.join(', ')}`);
  const config = size ? referenceConfig(size) : readConfig(values.config!);
  const label = size ?? values.config!;
  const kind = parseModelConfig(config, label).kind;
  if (!values.out) throw new UsageError('--out DIR is required');
  let seed = 0;
  if (values.seed !== undefined) {
    if (!/^\d+$/.test(values.seed) || !Number.isSafeInteger(Number(values.seed))) throw new UsageError(`--seed must be a non-negative integer, got ${JSON.stringify(values.seed)}`);
    seed = Number(values.seed);
  }
  const maxShardBytes = values['max-shard-size'] !== undefined ? parseSize(values['max-shard-size'], '--max-shard-size') : undefined;
  let tokenizerFrom = values['tokenizer-from'];
  if (!tokenizerFrom) {
    // The golden tiny checkpoints carry the real tokenizer files (the aligner's has <timestamp>).
    tokenizerFrom = join(GOLDEN_DIR, kind === 'aligner' ? 'aligner-a' : 'tiny-a', 'checkpoint');
    if (!existsSync(tokenizerFrom)) {
      throw new UsageError(`no --tokenizer-from given and the default ${tokenizerFrom} does not exist; pass a Qwen3-ASR${kind === 'aligner' ? ' ForcedAligner' : ''} snapshot folder`);
    }
  }

  const result = writeRandomCheckpoint(config, values.out, {
    seed,
    tokenizerFrom,
    maxShardBytes,
    log: (msg) => console.log(msg),
  });
  console.log(`\n${result.dir}`);
  for (const f of result.files) console.log(`  ${f.name.padEnd(36)} ${f.bytes.toLocaleString('en-US').padStart(16)} bytes`);
  console.log(
    `${label}: ${result.tensors} tensors, ${(result.parameters / 1e9).toFixed(3)} B parameters, ` +
      `${(result.weightBytes / 1e9).toFixed(2)} GB of weights in ${result.seconds.toFixed(1)} s ` +
      `(${(result.weightBytes / 1e6 / result.seconds).toFixed(0)} MB/s)`,
  );
}

try {
  main(process.argv.slice(2));
} catch (err) {
  const usage = err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS');
  console.error(`make-checkpoint: ${(err as Error).message}`);
  if (usage) console.error(`\n${USAGE}`);
  process.exitCode = usage ? 2 : 1;
}
