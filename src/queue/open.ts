// Which database holds the queue: PostgreSQL when MURMUR_DATABASE_URL is set,
// otherwise the SQLite file in the data directory.
import { join } from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { JobQueue, QueueOptions } from './jobQueue.ts';
import { sqliteOutage, withOutages } from './outages.ts';
import { postgresOutage } from './postgres/database.ts';
import { PostgresQueue } from './postgres/postgresQueue.ts';
import { openDatabase } from './sqlite/database.ts';
import { SqliteQueue } from './sqlite/sqliteQueue.ts';

export function queueOptions(config: Config): QueueOptions {
  return {
    leaseMs: config.leaseSeconds * 1000,
    maxAttempts: config.maxAttempts,
    retryBaseMs: config.retryBaseSeconds * 1000,
    retryMaxMs: config.retryMaxSeconds * 1000,
    smallJobSeconds: config.smallJobSeconds,
    // A worker is live while it heartbeats (three times a lease) or waits in a long-poll claim (at most 60 s).
    workerWindowMs: config.leaseSeconds * 1000 + 60_000,
  };
}

export async function openQueue(config: Config, log: Logger): Promise<JobQueue> {
  const options = queueOptions(config);
  if (config.databaseUrl) {
    const queue = await PostgresQueue.open(config.databaseUrl, { ...options, waitMs: config.databaseWaitSeconds * 1000, log });
    return withOutages(queue, postgresOutage);
  }
  return withOutages(new SqliteQueue(openDatabase(join(config.dataDir, 'murmur.sqlite')), options, log), sqliteOutage);
}
