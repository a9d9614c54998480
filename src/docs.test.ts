/**
 * The documentation's own rules, checked: README is a manual of at most 340 lines (the APIs,
 * live transcription, the page, Docker, configuration and the engine, each briefly), and
 * nothing in README, docs or the source tells the project's history in work sessions (the
 * measurements are dated facts about named machines in docs/benchmarks.md).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './testing/shared.ts';

const ORDINALS = 'first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|\\d+(?:st|nd|rd|th)';
/** An ordinal before the word, or a number after it: a work session, never ONNX Runtime's. */
const DIARY = new RegExp(`\\b(?:(?:${ORDINALS})(?:\\s+and\\s+(?:${ORDINALS}))?\\s+sessions?|sessions?\\s+\\d+(?:\\s*[–-]\\s*\\d+)?)\\b`, 'i');

function files(dir: string, keep: (name: string) => boolean): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === 'node_modules' || e.name.startsWith('.') ? [] : files(join(dir, e.name), keep)) : keep(e.name) ? [join(dir, e.name)] : [],
  );
}

test('README is a manual of at most 340 lines', () => {
  const lines = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').trimEnd().split('\n').length;
  assert.ok(lines <= 340, `README.md has ${lines} lines`);
});

test('README, docs and source speak of the project, not of work sessions', () => {
  const found: string[] = [];
  const scanned = [
    join(REPO_ROOT, 'README.md'),
    ...files(join(REPO_ROOT, 'docs'), (n) => n.endsWith('.md')),
    ...files(join(REPO_ROOT, 'src'), (n) => /\.(ts|mjs|md)$/.test(n)),
    ...files(join(REPO_ROOT, 'scripts'), () => true),
    ...files(join(REPO_ROOT, 'bin'), () => true),
  ];
  for (const file of scanned) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (DIARY.test(line)) found.push(`${relative(REPO_ROOT, file)}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.ok(scanned.length > 100, 'found the files');
  assert.deepEqual(found, []);
});

test('the diary pattern finds work sessions and leaves ONNX Runtime sessions alone', () => {
  // Built from parts, so this file holds no phrase the scan itself looks for.
  const w = 'session';
  for (const s of [`on the seventh ${w}'s Intel VM`, `${w}s 11–15 measured`, `in ${w} 16`, `the fourth and fifth ${w}s`, `the 14th ${w}`]) assert.ok(DIARY.test(s), s);
  for (const s of ['creates the ONNX Runtime session', 'sessions run on one thread per core', 'InferenceSession.create', "the batch graph's own session"]) assert.ok(!DIARY.test(s), s);
});
