/**
 * Whether this process's malloc backs large allocations with transparent huge pages, as
 * scripts/node.sh arranges for the service, the CLI and the benchmarks (it sets glibc's
 * `glibc.malloc.hugetlb=1` tunable, which only works from the environment a process starts
 * with). Reported in the server's configuration log line and in the benchmark results, so a
 * slow load can be told from a process started without it.
 *
 * Why it matters: on virtual machines the first touch of each 4 kB page is slow, and a load
 * fills fresh memory: the embedding table, and, the first time a cached graph is used on a
 * machine, the W8A8 weights ONNX Runtime repacks for the integer kernels (later loads map the
 * packed weights from the cache instead: prepacked.ts). Measured before those were kept, on an
 * AMD EPYC Zen 5 VM, 2 vCPUs: a cached 1.7B int8 load took about 7 s with huge pages against
 * about 11 s without, and the first full-length audio-encoder run after a load (whose
 * activations are fresh memory) is faster too; later runs reuse ONNX Runtime's arena either
 * way, and decoding is no faster or slower. The cost is a little more resident memory, as
 * memory is granted in 2 MB pages. docs/benchmarks.md has the full measurements.
 */
import { readFileSync } from 'node:fs';
import { readSetting } from '../../settings/settings.ts';

/** The value `glibc.malloc.hugetlb` has in a GLIBC_TUNABLES string (`a=1:b=2`), if any. */
export function hugetlbTunable(tunables: string | undefined): string | undefined {
  for (const item of (tunables ?? '').split(':')) {
    const eq = item.indexOf('=');
    if (eq > 0 && item.slice(0, eq).trim() === 'glibc.malloc.hugetlb') return item.slice(eq + 1).trim();
  }
  return undefined;
}

/** The selected mode of /sys/kernel/mm/transparent_hugepage/enabled (`always [madvise] never` → madvise). */
export function parseThpMode(text: string | undefined): string | undefined {
  return text ? /\[(\w+)\]/.exec(text)?.[1] : undefined;
}

export interface HugePageFacts {
  /** glibc's version, undefined for another C library (process.report's glibcVersionRuntime). */
  glibc: string | undefined;
  /** GLIBC_TUNABLES as this process sees it (glibc read it when the process started). */
  tunables: string | undefined;
  /** The transparent huge page mode (parseThpMode), undefined where unknown. */
  thp: string | undefined;
}

/**
 * `on (...)` when malloc uses huge pages, else `off (why)`; the reason names the fix. glibc
 * reads the tunable from 2.35 on; Linux grants the pages when THP is `always` or `madvise`.
 */
export function describeHugePages(f: HugePageFacts): string {
  if (!f.glibc) return 'off (not glibc)';
  const [major, minor] = f.glibc.split('.').map(Number);
  if (major < 2 || (major === 2 && minor < 35)) return `off (glibc ${f.glibc} has no glibc.malloc.hugetlb; 2.35 or later does)`;
  const value = hugetlbTunable(f.tunables);
  if (value === undefined) return 'off (GLIBC_TUNABLES has no glibc.malloc.hugetlb: start through scripts/node.sh, as npm start and bin/qwen3-asr do)';
  // 2 asks for pages of a reserved hugetlbfs pool instead (none reserved: ordinary pages).
  if (value === '2') return 'glibc.malloc.hugetlb=2 (hugetlbfs pages, where a pool is reserved)';
  if (value !== '1') return `off (glibc.malloc.hugetlb=${value})`;
  if (f.thp === 'never') return 'off (transparent huge pages are disabled: /sys/kernel/mm/transparent_hugepage/enabled is never)';
  return `on (glibc.malloc.hugetlb=1, transparent huge pages: ${f.thp ?? 'mode unknown'})`;
}

/** describeHugePages for this process. */
export function thisProcessHugePages(): string {
  let thp: string | undefined;
  try {
    thp = parseThpMode(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'));
  } catch {
    thp = undefined;
  }
  // Only the report's header is wanted: no socket details (a report lists open sockets, and
  // resolving their addresses could wait on DNS in the server, which calls this listening).
  const reporter = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined;
  const excluded = reporter?.excludeNetwork;
  let glibc: string | undefined;
  try {
    if (reporter) reporter.excludeNetwork = true;
    glibc = (reporter?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  } finally {
    if (reporter) reporter.excludeNetwork = excluded;
  }
  return describeHugePages({ glibc, tunables: readSetting('glibcTunables'), thp });
}
