// The migrations applied at start-up are the ones the drizzle schemas imply, for both dialects.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

describe.each([
  ['sqlite', 'sqlite'],
  ['postgres', 'postgresql'],
])('migrations for %s', (folder, dialect) => {
  it(`drizzle/${folder} is up to date with src/queue/${folder}/schema.ts`, async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'murmur-drift-')), 'drizzle');
    cpSync(join(root, 'drizzle', folder), out, { recursive: true });
    // drizzle-kit takes its paths relative to the working directory: run it from / on a copy.
    const { stdout } = await promisify(execFile)(
      join(root, 'node_modules/.bin/drizzle-kit'),
      [
        'generate',
        '--dialect',
        dialect,
        '--schema',
        relative('/', join(root, 'src/queue', folder, 'schema.ts')),
        '--out',
        relative('/', out),
      ],
      { cwd: '/' },
    );
    expect(stdout).toMatch(/No schema changes/);
    expect(readdirSync(out).sort()).toEqual(readdirSync(join(root, 'drizzle', folder)).sort());
  });
});
