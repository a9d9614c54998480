/** Reading the CPU's feature flags, on which the integer kernel and the step graph's rows depend. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCpuFlags, thisCpu } from './cpu-flags.ts';

test('cpu flags: the first flags line of /proc/cpuinfo, whole names', () => {
  const flags = parseCpuFlags('processor\t: 0\nflags\t\t: fpu  avx2 avx512_vnni\nbugs\t\t: spectre\nflags\t\t: amx_int8\n');
  assert.deepEqual([...flags], ['fpu', 'avx2', 'avx512_vnni']);
  assert.equal(parseCpuFlags(undefined).size, 0);
  assert.equal(parseCpuFlags('processor: 0').size, 0);
});

test('cpu flags: this machine read once, its flags from its own cpuinfo', () => {
  const cpu = thisCpu();
  assert.equal(thisCpu(), cpu);
  assert.deepEqual(cpu.flags, parseCpuFlags(cpu.cpuinfo));
  if (process.platform === 'linux') assert.ok(cpu.flags.size > 0, 'Linux lists flags in /proc/cpuinfo');
});
