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

test('cpu flags: the lines around `flags` in real cpuinfo texts are not read as flags', () => {
  // Linux with VT-x lists `vmx flags` after `flags`; a text cut before `flags` must not take them.
  assert.deepEqual([...parseCpuFlags('model name\t: Intel(R) Xeon(R)\nvmx flags\t: vnmi ept vpid\nflags\t\t: sse2 avx_vnni\n')], ['sse2', 'avx_vnni']);
  assert.equal(parseCpuFlags('vmx flags\t: vnmi ept\n').size, 0);
  // An empty flags line (some virtual CPUs) has no flags, not one empty-named flag.
  assert.equal(parseCpuFlags('processor\t: 0\nflags\t\t:\nbogomips\t: 4000\n').size, 0);
  assert.equal(parseCpuFlags('flags\t\t:   \t\n').size, 0);
  // The value ends with its line: the next line's name is not a flag.
  assert.deepEqual([...parseCpuFlags('flags\t\t: fpu\nbugs\t\t: spectre_v1\n')], ['fpu']);
  // Windows line ends (a cpuinfo text copied between machines).
  assert.deepEqual([...parseCpuFlags('flags\t\t: fpu amx_int8\r\nbugs\t\t: none\r\n')], ['fpu', 'amx_int8']);
  // ARM lists `Features` instead: no x86 flags, so the x86-only rules see none.
  assert.equal(parseCpuFlags('processor\t: 0\nFeatures\t: fp asimd asimddp\n').size, 0);
  // A `flags` line without its colon is not the flags line.
  assert.equal(parseCpuFlags('flags avx512_vnni\n').size, 0);
});

test('cpu flags: this machine read once, from its own /proc/cpuinfo', () => {
  const cpu = thisCpu();
  assert.equal(thisCpu(), cpu, 'read once');
  if (process.platform !== 'linux') {
    assert.equal(cpu.cpuinfo, undefined);
    assert.equal(cpu.flags.size, 0);
    return;
  }
  assert.match(cpu.cpuinfo ?? '', /^processor\s*:/m, 'the text is /proc/cpuinfo');
  // Every x86-64 CPU has SSE2 (the architecture requires it) and an FPU.
  if (process.arch === 'x64') for (const flag of ['fpu', 'sse2']) assert.ok(cpu.flags.has(flag), `${flag} among ${[...cpu.flags].slice(0, 8).join(' ')} …`);
  for (const flag of cpu.flags) assert.match(flag, /^[a-z0-9_]+$/, `flag ${JSON.stringify(flag)}`);
});
