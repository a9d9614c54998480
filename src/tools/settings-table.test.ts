import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SETTING_KEYS, SETTINGS, settingsMarkdown } from '../settings/settings.ts';
import { README, splitAtMarkers, withSettingsTable } from './settings-table.ts';

test("README's configuration table is the one generated from the settings table (npm run docs:settings)", () => {
  const readme = readFileSync(README, 'utf8');
  const { table } = splitAtMarkers(readme);
  assert.equal(table.join('\n'), settingsMarkdown(), 'README.md is out of date: run `npm run docs:settings`');
  assert.equal(withSettingsTable(readme), readme);
});

test('the generated table: one row per variable, development variables last', () => {
  const rows = settingsMarkdown()
    .split('\n')
    .filter((line) => /^\| `/.test(line))
    .map((line) => /^\| `([A-Z0-9_]+)` \|/.exec(line)?.[1]);
  const envs = SETTING_KEYS.map((k) => SETTINGS[k].env);
  assert.deepEqual([...rows].sort(), [...envs].sort(), 'every variable once');
  const firstDev = rows.findIndex((env) => SETTING_KEYS.some((k) => SETTINGS[k].env === env && SETTINGS[k].group === 'development'));
  assert.ok(rows.slice(firstDev).every((env) => SETTING_KEYS.some((k) => SETTINGS[k].env === env && SETTINGS[k].group === 'development')));
});

test('only the lines between the markers are rewritten', () => {
  const readme = '# x\n\ntext before\n<!-- settings:start -->\nold table\n| a | b |\n<!-- settings:end -->\n\ntext after\n';
  const out = withSettingsTable(readme);
  assert.equal(out, `# x\n\ntext before\n<!-- settings:start -->\n${settingsMarkdown()}\n<!-- settings:end -->\n\ntext after\n`);
  assert.equal(withSettingsTable('a\n<!-- settings:start -->\n<!-- settings:end -->\nb'), `a\n<!-- settings:start -->\n${settingsMarkdown()}\n<!-- settings:end -->\nb`);
  assert.throws(() => withSettingsTable('no markers'), /needs the lines/);
  assert.throws(() => withSettingsTable('<!-- settings:end -->\n<!-- settings:start -->'), /in that order/);
});
