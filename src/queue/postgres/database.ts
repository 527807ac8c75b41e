// PostgreSQL for many API instances: a connection pool, migrated at start-up
// from drizzle/postgres under an advisory lock (instances starting together
// take turns). A server that refuses the credentials or the database stops the
// program at once; one that is not up yet is waited for, then named.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { ConfigError } from '../../config.ts';
import type { Logger } from '../../log.ts';
import * as schema from './schema.ts';

export type PgDb = NodePgDatabase<typeof schema> & { $client: pg.Pool };

const MIGRATIONS = join(dirname(fileURLToPath(import.meta.url)), '../../../drizzle/postgres');
/** pg_advisory_lock key for migrations: any constant the application owns ("murmur" in ASCII). */
const MIGRATION_LOCK = 0x6d75726d7572;
/** SQLSTATEs that waiting will not cure: bad password, no such role or database, bad parameters. */
const FATAL = new Set(['28P01', '28000', '3D000', '42501', '08004']);

export interface PostgresOptions {
  /** How long to wait at start for a server that does not answer. */
  waitMs: number;
  log: Logger;
}

export async function openPostgres(url: string, o: PostgresOptions): Promise<PgDb> {
  const where = redact(url);
  const deadline = Date.now() + o.waitMs;
  for (let attempt = 1; ; attempt++) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      try {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
        await migrate(drizzle(client), { migrationsFolder: MIGRATIONS });
      } finally {
        await client.end().catch(() => {});
      }
      break;
    } catch (err) {
      await client.end().catch(() => {});
      const e = err as Error & { code?: string };
      if ((e.code && FATAL.has(e.code)) || Date.now() > deadline || e instanceof TypeError) {
        throw new ConfigError(`MURMUR_DATABASE_URL: cannot use ${where}: ${e.message}`);
      }
      if (attempt === 1)
        o.log.warn(
          { event: 'database.waiting', database: where, err: e },
          `PostgreSQL at ${where} does not answer (${e.message}); waiting up to ${Math.round(o.waitMs / 1000)} s`,
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 5000 });
  // An idle connection the server dropped: the pool replaces it; without a listener the error would crash the process.
  pool.on('error', (err) => o.log.warn({ event: 'database.connection_lost', err }, `PostgreSQL connection lost: ${err.message}`));
  return drizzle(pool, { schema }) as PgDb;
}

const DOWN_CODES = new Set([
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08006',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
]);
const DOWN_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|connection error|Connection refused/i;

/** The database could not be reached or went away mid-query (anywhere in the error's cause chain): worth trying again later. */
export function postgresOutage(err: unknown): boolean {
  for (
    let e = err as (Error & { code?: string; cause?: unknown }) | undefined, depth = 0;
    e && depth < 5;
    e = e.cause as typeof e, depth++
  ) {
    if ((e.code && DOWN_CODES.has(e.code)) || DOWN_MESSAGES.test(e.message ?? '')) return true;
  }
  return false;
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the configured URL';
  }
}
