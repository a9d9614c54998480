/**
 * What the callers of the pipeline may show about the engine and its model without reaching
 * into the engine: the model id clients see, and the runtime settings in effect.
 */
import { existsSync } from 'node:fs';
import { basename, isAbsolute } from 'node:path';
import { isRepoId } from '../engine/checkpoint/hub-download.ts';
import { intraOpThreads } from '../engine/runtime/cpu-threads.ts';
import { thisProcessHugePages } from '../engine/runtime/huge-pages.ts';

/** The id clients see for a configured model: a Hugging Face repo id as is, a folder by its name. */
export function publicModelId(modelName: string): string {
  const isFolder = isAbsolute(modelName) || modelName.startsWith('.') || existsSync(modelName);
  return !isFolder && isRepoId(modelName) ? modelName : basename(modelName);
}

/** Who publishes a model id: a repo id's organisation in lower case, "local" for a folder. */
export function modelOwner(id: string): string {
  return isRepoId(id) ? id.split('/')[0].toLowerCase() : 'local';
}

/** The runtime settings in effect: intra-op threads (THREADS resolved) and whether malloc uses huge pages. */
export function runtimeSummary(threads: number): { threads: number; hugePages: string } {
  return { threads: intraOpThreads(threads), hugePages: thisProcessHugePages() };
}
