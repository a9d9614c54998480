/**
 * `npm run docs:settings`: writes README's configuration table from the settings table
 * (src/settings/settings.ts), between the lines `<!-- settings:start -->` and
 * `<!-- settings:end -->`; the rest of README is left as it is. settings-table.test.ts fails
 * while README's table differs from the generated one.
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { settingsMarkdown } from '../settings/settings.ts';

export const README = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md');
export const START_MARKER = '<!-- settings:start -->';
export const END_MARKER = '<!-- settings:end -->';

/** README's lines up to the start marker, between the markers, and from the end marker on. */
export function splitAtMarkers(readme: string): { before: string[]; table: string[]; after: string[] } {
  const lines = readme.split('\n');
  const at = (marker: string) => lines.flatMap((line, i) => (line.trim() === marker ? [i] : []));
  const starts = at(START_MARKER);
  const ends = at(END_MARKER);
  if (starts.length !== 1 || ends.length !== 1 || ends[0] < starts[0]) {
    throw new Error(`README.md needs the lines ${START_MARKER} and ${END_MARKER}, once each and in that order`);
  }
  return { before: lines.slice(0, starts[0] + 1), table: lines.slice(starts[0] + 1, ends[0]), after: lines.slice(ends[0]) };
}

/** README with the generated table between the markers. */
export function withSettingsTable(readme: string): string {
  const { before, after } = splitAtMarkers(readme);
  return [...before, ...settingsMarkdown().split('\n'), ...after].join('\n');
}

function isMainScript(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainScript()) {
  const readme = readFileSync(README, 'utf8');
  const updated = withSettingsTable(readme);
  if (updated === readme) console.log('README.md: the settings table is up to date');
  else {
    writeFileSync(README, updated);
    console.log('README.md: settings table written');
  }
}
