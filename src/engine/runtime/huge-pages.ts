/**
 * Whether this process's malloc backs large allocations with transparent huge pages, as
 * scripts/node.sh arranges for the service, the CLI and the benchmarks (it sets glibc's
 * `glibc.malloc.hugetlb=1` tunable, which only works from the environment a process starts
 * with). Reported in the server's configuration log line and in the benchmark results, so a
 * slow load can be told from a process started without it.
 *
 * Why it matters: most of what ONNX Runtime does at load is fill fresh memory. Creating the
 * 1.7B int8 decoder's session from its cached graph took 6.1–7.6 s, 5–6 s of it repacking the
 * W8A8 weights for the integer kernels (1.4 s with repacking disabled), and on these VMs the
 * first touch of each 4 kB page is slow. Alternating runs on the AMD Zen 5 VM, two threads:
 * - 1.7B int8, cached load: 6.9 and 7.4 s with huge pages, 10.5 and 11.1 s without (the
 *   decoder's session 5.0 s against 6.1–6.7 s); RSS after loading 3.18 GB against 2.85 GB
 *   (memory is granted in 2 MB pages). `bench-model` twice each: cached load 7.1 / 6.4 s
 *   against 12.6 / 11.8 s, encoder 41.9 / 41.5 audio-s/s against 34.9 / 33.1, decoding and
 *   the pipeline (13.4 / 12.5 s against 12.7 / 12.9 s) within the noise. (The bench's encoder
 *   figure is the first 60 s run after loading, whose activations are fresh memory: five runs
 *   in a row of the 0.6B int8 encoder took 1346, 973, 987, 1021, 1021 ms with huge pages and
 *   1757, 980, 958, 933, 904 ms without — 65,027 page faults in the first run without, 1,062
 *   with. Later runs reuse ONNX Runtime's arena either way.)
 * - 0.6B int8, `bench-model` twice each: cached load 3.0 / 4.9 s against 6.0 / 5.9 s; audio
 *   encoder 52.1 / 50.8 audio-seconds per second against 37.8 / 39.2; prefill (424 / 462 vs
 *   473 / 411 tokens/s), decoding (batch 1 35.5 / 37.3 vs 37.6 / 34.9 tokens/s, batch 8
 *   97.7 / 112.0 vs 112.9 / 98.1) and the 60 s pipeline (7.6 / 5.9 s vs 7.7 / 6.0 s) within
 *   the runs' noise; peak RSS 2.33 / 2.19 GB against 2.19 / 2.18 GB.
 */
import { readFileSync } from 'node:fs';

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
  return describeHugePages({ glibc, tunables: process.env.GLIBC_TUNABLES, thp });
}
