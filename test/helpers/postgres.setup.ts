// vitest globalSetup: a real PostgreSQL for the tests. MURMUR_TEST_DATABASE_URL
// points at one already running; otherwise a throwaway cluster is made with
// Debian's initdb in a temporary folder (as the `postgres` user when running as
// root: PostgreSQL refuses root) and removed afterwards.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}

function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const version = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a))[0] : undefined;
  if (!version) throw new Error('PostgreSQL is not installed (Debian: apt-get install postgresql), and MURMUR_TEST_DATABASE_URL is not set');
  return join(root, version, 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export default async function setup(project: TestProject) {
  if (process.env.MURMUR_TEST_DATABASE_URL) {
    project.provide('postgresUrl', process.env.MURMUR_TEST_DATABASE_URL);
    return;
  }
  const bin = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), 'murmur-pg-'));
  const root = userInfo().uid === 0;
  const pgUser = root ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : null;
  if (pgUser) chownSync(dir, pgUser.uid, pgUser.gid);
  const run = (cmd: string, args: string[]) => execFileSync(join(bin, cmd), args, { stdio: 'pipe', ...(pgUser && { uid: pgUser.uid, gid: pgUser.gid }) });
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  // No fsync: the tests kill API processes, never the database server, and each fsync costs 2 cores dearly.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`;
  run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start']);
  project.provide('postgresUrl', `postgres://postgres@127.0.0.1:${port}/postgres`);
  return () => {
    try {
      run('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
