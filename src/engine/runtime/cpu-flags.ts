/**
 * The CPU's feature flags, as Linux's /proc/cpuinfo names them: what the engine's choices
 * that depend on the machine read (the integer kernel, int8-kernel.ts; which decoder graph
 * runs steps of small batches, thinker/precision.ts stepGraphRowsFor).
 */
import { readFileSync } from 'node:fs';

/** The flags of a /proc/cpuinfo text (its first `flags` line); none when it has none. */
export function parseCpuFlags(cpuinfo: string | undefined): ReadonlySet<string> {
  return new Set(/^flags[ \t]*:(.*)$/m.exec(cpuinfo ?? '')?.[1].match(/\S+/g) ?? []);
}

let cached: { cpuinfo: string | undefined; flags: ReadonlySet<string> } | undefined;

/** This machine's /proc/cpuinfo (undefined where there is none: not Linux) and its flags. */
export function thisCpu(): { cpuinfo: string | undefined; flags: ReadonlySet<string> } {
  if (!cached) {
    let cpuinfo: string | undefined;
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // Not Linux: flags unknown.
    }
    cached = { cpuinfo, flags: parseCpuFlags(cpuinfo) };
  }
  return cached;
}
