/**
 * A fresh process's model load, as the service's worker does it: `scripts/node.sh --import tsx
 * src/bench/bench-load.ts --model DIR --quant Q [--cache-dir DIR]`, with QWEN3_ASR_PREPACKED_WEIGHTS
 * on or off as the load to time (mapping ONNX Runtime's prepacked weights or not). Prints one
 * JSON line: the seconds from process start to the loaded model (`ready`), of which `load` is
 * AsrModel.load itself (the rest is starting node, tsx and the imports), the process's RSS after
 * the load, and the load's own log lines, each after the second since process start it came at.
 * Run it once to fill the cache, then again for a cached load; alternate builds or settings
 * between runs, as the VM's phases move single runs by seconds.
 */
import { parseArgs } from 'node:util';
import { AsrModel } from '../engine/asr/asr-model.ts';
import type { Quantization } from '../pipeline/types.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    quant: { type: 'string', default: 'int8' },
    threads: { type: 'string', default: '0' },
    'cache-dir': { type: 'string' },
  },
});
const imported = process.uptime();
const t0 = performance.now();
const logs: string[] = [];
const model = await AsrModel.load(values.model!, {
  device: 'cpu',
  quant: values.quant as Quantization,
  threads: Number(values.threads),
  cacheDir: values['cache-dir'],
  log: (m) => logs.push(`${process.uptime().toFixed(2)} ${m}`),
});
const load = (performance.now() - t0) / 1000;
const ready = process.uptime();
const rssGB = process.memoryUsage().rss / 1e9;
console.log(JSON.stringify({ ready: +ready.toFixed(2), load: +load.toFixed(2), imported: +imported.toFixed(2), rssGB: +rssGB.toFixed(2), logs }));
await model.release();
