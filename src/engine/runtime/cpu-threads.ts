/**
 * How many intra-op threads ONNX Runtime's sessions run with when none are asked for
 * (THREADS=0, `--threads` left out): one per physical core this process may use.
 *
 * Why not ONNX Runtime's own default (intraOpNumThreads 0): on Linux it is half the logical
 * CPUs (std::thread::hardware_concurrency() / 2, which assumes two hyperthreads per core;
 * microsoft/onnxruntime#13974), so on a 2-vCPU VM whose vCPUs are two cores without
 * hyperthreads every session would run on one thread while the other core sits idle. Counted
 * here from what Linux reports, both cores work: on an AMD EPYC Zen 5 VM, 2 vCPUs, the 60 s
 * benchmark recording goes through the 0.6B int8 pipeline in about 5.7 s on two threads against
 * 8.3 s on one (docs/benchmarks.md has the per-product figures).
 *
 * Physical cores, not logical CPUs, as ONNX Runtime means to count: two hyperthreads share one
 * core's vector units and its memory bandwidth, which is what these products are bound by. A CPU
 * quota (what `docker run --cpus` sets: cgroup v2 `cpu.max`, or v1's CFS quota) caps the count: threads
 * beyond the quota only wait for each other (more threads than cores make every product
 * 2–3x slower on an AMD EPYC Zen 5 VM, 2 vCPUs).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** The CPU numbers of a Linux CPU list such as `0-3,8,10-11`. */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) continue;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    for (let c = first; c <= last; c++) cpus.push(c);
  }
  return cpus;
}

/**
 * Whole CPUs a quota and period allow: a cgroup v2 `cpu.max` line (`200000 100000` → 2; `max
 * 100000` → none), or cgroup v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us` joined by a space
 * (`-1 100000` → none).
 */
export function parseCpuQuota(cpuMax: string | undefined): number | undefined {
  const m = /^(\d+)\s+(\d+)/.exec(cpuMax?.trim() ?? '');
  if (!m || Number(m[2]) === 0) return undefined;
  return Math.max(1, Math.ceil(Number(m[1]) / Number(m[2])));
}

/** What the count is made from; each part may be missing (not Linux, a masked /sys). */
export interface CpuTopology {
  /** CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status). */
  allowed?: number[];
  /** The physical core a CPU belongs to (package and core id), undefined when unknown. */
  coreOf: (cpu: number) => string | undefined;
  /** The cgroup's CPU quota in whole CPUs (cgroupQuota). */
  quota?: number;
  /** The logical CPUs Node sees (os.availableParallelism()). */
  logical: number;
}

/** One thread per physical core among the allowed CPUs, capped by the quota; at least one. */
export function countThreads(t: CpuTopology): number {
  const cpus = t.allowed && t.allowed.length > 0 ? t.allowed : undefined;
  let count = cpus?.length ?? t.logical;
  if (cpus) {
    const cores = new Set<string>();
    let known = true;
    for (const cpu of cpus) {
      const core = t.coreOf(cpu);
      if (core === undefined) {
        known = false;
        break;
      }
      cores.add(core);
    }
    if (known) count = cores.size;
  }
  if (t.quota !== undefined) count = Math.min(count, t.quota);
  return Math.max(1, count);
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The CPU quota of this process's cgroup, in whole CPUs; undefined when there is none or it cannot be read. */
function cgroupQuota(): number | undefined {
  // cgroup v2: one line `0::/path`; the quota of that cgroup (in a container, usually `/`).
  const cgroup = /^0::(\S*)$/m.exec(read('/proc/self/cgroup') ?? '')?.[1];
  if (cgroup !== undefined) {
    const quota = parseCpuQuota(read(`/sys/fs/cgroup${cgroup === '/' ? '' : cgroup}/cpu.max`));
    if (quota !== undefined) return quota;
  }
  // cgroup v1 (older Docker hosts): the cpu controller's CFS quota, mounted for the container's own cgroup.
  for (const dir of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct']) {
    const quota = read(`${dir}/cpu.cfs_quota_us`)?.trim();
    const period = read(`${dir}/cpu.cfs_period_us`)?.trim();
    if (quota !== undefined && period !== undefined) return parseCpuQuota(`${quota} ${period}`);
  }
  return undefined;
}

/** This machine's topology, read from /proc and /sys. */
export function thisTopology(): CpuTopology {
  const allowedList = /^Cpus_allowed_list:\s*(.+)$/m.exec(read('/proc/self/status') ?? '')?.[1];
  return {
    allowed: allowedList ? parseCpuList(allowedList) : undefined,
    coreOf: (cpu) => {
      const dir = `/sys/devices/system/cpu/cpu${cpu}/topology`;
      const core = read(`${dir}/core_id`)?.trim();
      const pkg = read(`${dir}/physical_package_id`)?.trim();
      return core === undefined || pkg === undefined ? undefined : `${pkg}:${core}`;
    },
    quota: cgroupQuota(),
    logical: availableParallelism(),
  };
}

let cached: number | undefined;

/** The intra-op thread count used when none is asked for (read once). */
export function defaultThreadCount(): number {
  cached ??= countThreads(thisTopology());
  return cached;
}

/** The threads a session runs with: the count asked for, or (0) defaultThreadCount(). */
export function intraOpThreads(asked: number): number {
  return asked > 0 ? asked : defaultThreadCount();
}
