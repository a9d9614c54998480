/** The default intra-op thread count: physical cores this process may use, capped by a CPU quota. */
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { countThreads, defaultThreadCount, intraOpThreads, parseCpuList, parseCpuQuota, thisTopology } from './cpu-threads.ts';

test('cpu threads: Linux CPU lists', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList('5'), [5]);
  assert.deepEqual(parseCpuList(''), []);
});

test('cpu threads: cgroup quotas in whole CPUs, rounded up; none when unlimited or unreadable', () => {
  assert.equal(parseCpuQuota('200000 100000\n'), 2);
  assert.equal(parseCpuQuota('150000 100000'), 2);
  assert.equal(parseCpuQuota('50000 100000'), 1);
  assert.equal(parseCpuQuota('max 100000'), undefined);
  assert.equal(parseCpuQuota('-1 100000'), undefined, 'cgroup v1: no quota');
  assert.equal(parseCpuQuota('400000 100000'), 4, 'cgroup v1 quota and period');
  assert.equal(parseCpuQuota(undefined), undefined);
});

test('cpu threads: one per physical core of the allowed CPUs, hyperthreads counted once', () => {
  // Two packages of two cores with two hyperthreads each: cpus 4p..4p+3 are package p, pairs share a core.
  const coreOf = (cpu: number) => `${cpu >> 2}:${(cpu >> 1) & 1}`;
  assert.equal(countThreads({ allowed: [0, 1, 2, 3, 4, 5, 6, 7], coreOf, logical: 8 }), 4);
  assert.equal(countThreads({ allowed: [0, 1], coreOf, logical: 8 }), 1, 'two hyperthreads of one core');
  assert.equal(countThreads({ allowed: [0, 2, 4], coreOf, logical: 8 }), 3);
  // The 2-vCPU VMs: two cores, one thread each.
  assert.equal(countThreads({ allowed: [0, 1], coreOf: (c) => `0:${c}`, logical: 2 }), 2);
});

test('cpu threads: a quota caps the count; unknown topology falls back to the CPUs; never below one', () => {
  const coreOf = (c: number) => `0:${c}`;
  assert.equal(countThreads({ allowed: [0, 1, 2, 3], coreOf, quota: 2, logical: 4 }), 2);
  assert.equal(countThreads({ allowed: [0, 1, 2, 3], coreOf, quota: 8, logical: 4 }), 4);
  assert.equal(countThreads({ allowed: [0, 1, 2], coreOf: () => undefined, logical: 8 }), 3, 'allowed CPUs when cores are unknown');
  assert.equal(countThreads({ coreOf: () => undefined, logical: 6 }), 6, 'logical CPUs when nothing else is known');
  assert.equal(countThreads({ allowed: [], coreOf, quota: 1, logical: 0 }), 1);
});

test('cpu threads: this machine counts between one and its logical CPUs', () => {
  const n = defaultThreadCount();
  assert.equal(n, countThreads(thisTopology()));
  assert.ok(n >= 1 && n <= availableParallelism(), `${n} threads for ${availableParallelism()} CPUs`);
  if (process.platform === 'linux') assert.ok(thisTopology().allowed?.length, 'Linux lists the allowed CPUs');
  assert.equal(intraOpThreads(0), n);
  assert.equal(intraOpThreads(5), 5, 'a count asked for is kept, even above the cores');
});
