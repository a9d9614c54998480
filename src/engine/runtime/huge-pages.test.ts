import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { describeHugePages, hugetlbTunable, parseThpMode, thisProcessHugePages } from './huge-pages.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..', '..');

test('huge pages: the tunable is found among others, and THP modes are read', () => {
  assert.equal(hugetlbTunable(undefined), undefined);
  assert.equal(hugetlbTunable(''), undefined);
  assert.equal(hugetlbTunable('glibc.malloc.arena_max=2'), undefined);
  assert.equal(hugetlbTunable('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'), '1');
  assert.equal(hugetlbTunable('glibc.malloc.hugetlb=0:x=1'), '0');
  assert.equal(parseThpMode('always [madvise] never\n'), 'madvise');
  assert.equal(parseThpMode('[always] madvise never'), 'always');
  assert.equal(parseThpMode(undefined), undefined);
});

test('huge pages: the description says on, or off and why', () => {
  const on = { glibc: '2.36', tunables: 'glibc.malloc.hugetlb=1', thp: 'madvise' };
  assert.match(describeHugePages(on), /^on \(.*madvise/);
  assert.match(describeHugePages({ ...on, thp: 'always' }), /^on /);
  assert.match(describeHugePages({ ...on, glibc: undefined }), /^off \(not glibc/);
  assert.match(describeHugePages({ ...on, glibc: '2.31' }), /^off \(glibc 2\.31/);
  assert.match(describeHugePages({ ...on, tunables: undefined }), /^off .*scripts\/node\.sh/);
  assert.match(describeHugePages({ ...on, tunables: 'glibc.malloc.hugetlb=0' }), /^off \(glibc\.malloc\.hugetlb=0\)/);
  assert.match(describeHugePages({ ...on, thp: 'never' }), /^off .*never/);
  assert.match(describeHugePages({ ...on, tunables: 'glibc.malloc.hugetlb=2' }), /hugetlbfs/);
});

/** GLIBC_TUNABLES as a process started by scripts/node.sh sees it, starting from `tunables`. */
function startedWith(tunables: string | undefined): string | undefined {
  const env = { ...process.env };
  delete env.GLIBC_TUNABLES;
  if (tunables !== undefined) env.GLIBC_TUNABLES = tunables;
  const out = execFileSync(join(REPO_ROOT, 'scripts', 'node.sh'), ['-e', 'console.log(JSON.stringify(process.env.GLIBC_TUNABLES ?? null))'], { env, encoding: 'utf8' });
  return JSON.parse(out) ?? undefined;
}

test('scripts/node.sh adds glibc.malloc.hugetlb=1 unless GLIBC_TUNABLES already names it', () => {
  assert.equal(startedWith(undefined), 'glibc.malloc.hugetlb=1');
  assert.equal(startedWith(''), 'glibc.malloc.hugetlb=1');
  assert.equal(startedWith('glibc.malloc.arena_max=2'), 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1');
  assert.equal(startedWith('glibc.malloc.hugetlb=0'), 'glibc.malloc.hugetlb=0');
  assert.equal(startedWith('a=1:glibc.malloc.hugetlb=2:b=3'), 'a=1:glibc.malloc.hugetlb=2:b=3');
});

test('huge pages: this process is described without throwing', () => {
  assert.match(thisProcessHugePages(), /^(on|off) \(|^glibc\.malloc\.hugetlb=2/);
});
