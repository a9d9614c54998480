/**
 * Turns a graph built in TypeScript into an ONNX Runtime session.
 *
 * The model and its external weight file are written to a private temporary folder, the
 * session is created from that path (onnxruntime-node cannot take external data from
 * buffers), and the folder is removed right after: ONNX Runtime has read or mapped the
 * weights by then, and on Linux a mapped file outlives its directory entry.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { ExternalDataFile, GraphBuilder } from './graph.ts';
import type { Device } from '../../pipeline/types.ts';

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; 0 lets ONNX Runtime use one per physical core. */
  threads: number;
  /** Where the temporary model files go (default: the OS temp folder). */
  workDir?: string;
}

export class DeviceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceError';
  }
}

export function executionProviders(device: Device): ort.InferenceSession.ExecutionProviderConfig[] {
  if (device === 'cpu') return ['cpu'];
  const m = /^cuda(?::(\d+))?$/.exec(device);
  if (!m) throw new DeviceError(`unknown device ${JSON.stringify(device)}: use cpu, cuda or cuda:N`);
  return [{ name: 'cuda', deviceId: m[1] ? Number(m[1]) : 0 }, 'cpu'];
}

export async function createSession(
  name: string,
  build: (g: GraphBuilder) => void,
  opts: SessionOptions,
): Promise<ort.InferenceSession> {
  const dir = mkdtempSync(join(opts.workDir ?? tmpdir(), `qwen3-asr-${name}-`));
  try {
    const ext = new ExternalDataFile(join(dir, `${name}.weights`));
    const g = new GraphBuilder(name, ext);
    try {
      build(g);
    } finally {
      ext.close();
    }
    const modelPath = join(dir, `${name}.onnx`);
    writeFileSync(modelPath, g.toBytes());
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: executionProviders(opts.device),
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      logSeverityLevel: 3,
    };
    if (opts.threads > 0) options.intraOpNumThreads = opts.threads;
    try {
      return await ort.InferenceSession.create(modelPath, options);
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (opts.device !== 'cpu' && /cuda|shared library|provider/i.test(msg)) {
        throw new DeviceError(
          `DEVICE=${opts.device}: ONNX Runtime's CUDA execution provider could not be loaded (${msg.split('\n')[0]}). ` +
            'Install it with `npm run install:cuda` (downloads the CUDA provider libraries for onnxruntime-node; needs a CUDA 12 driver), or use DEVICE=cpu.',
        );
      }
      throw err;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
