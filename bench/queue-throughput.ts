// The queue alone, SQLite vs PostgreSQL on this machine: jobs a second from
// creation to completion through the worker protocol (GraphQL over HTTP, long-
// poll claims, completeJob) with no-op workers, at 1, 4 and 16 workers; then
// how claims and the `queue` stats answer with 10k and 100k finished jobs in
// the table. The API runs in this process; PostgreSQL is a throwaway cluster
// (or MURMUR_BENCH_DATABASE_URL).
//
//   npm run bench:queue          (or: npx tsx bench/queue-throughput.ts [--jobs 1000] [--finished 10000,100000])
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createApiServer } from '../src/api/server.ts';
import { readConfig } from '../src/config.ts';
import type { JobQueue } from '../src/queue/jobQueue.ts';
import { PostgresQueue } from '../src/queue/postgres/postgresQueue.ts';
import { queueOptions } from '../src/queue/open.ts';
import { openDatabase } from '../src/queue/sqlite/database.ts';
import { SqliteQueue } from '../src/queue/sqlite/sqliteQueue.ts';
import { LocalBlobStore } from '../src/storage/localBlobStore.ts';
import { startPostgresCluster } from '../test/helpers/postgresCluster.ts';
import { ApiClient } from '../worker/apiClient.ts';
import { silentLogger } from '../src/log.ts';

const { values } = parseArgs({
  options: { jobs: { type: 'string', default: '1000' }, finished: { type: 'string', default: '10000,100000' } },
});
const JOBS = Number(values.jobs);
const FINISHED = values.finished.split(',').map(Number);
const TOKEN = 'bench-worker-token-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-queue-'));
const config = readConfig({ MURMUR_DATA_DIR: dir, MURMUR_WORKER_TOKEN: TOKEN, MURMUR_BATCH_WINDOW_MS: '0' });
const log = silentLogger;

const cluster = process.env.MURMUR_BENCH_DATABASE_URL ? null : await startPostgresCluster();
const adminUrl = process.env.MURMUR_BENCH_DATABASE_URL ?? cluster!.url;
let n = 0;
async function freshQueue(kind: 'sqlite' | 'postgres'): Promise<JobQueue> {
  n++;
  if (kind === 'sqlite') return new SqliteQueue(openDatabase(join(dir, `q${n}.sqlite`)), queueOptions(config));
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  await client.query(`CREATE DATABASE bench_${process.pid}_${n}`);
  await client.end();
  const url = new URL(adminUrl);
  url.pathname = `/bench_${process.pid}_${n}`;
  return PostgresQueue.open(url.toString(), { ...queueOptions(config), waitMs: 0, log });
}

const job = (i: number) => ({
  filename: `b${i}.wav`,
  bytes: 1,
  durationSeconds: 1,
  format: 'wav',
  sampleRate: 16000,
  channels: 1,
  blobKey: `b${i}`,
});
const transcript = { text: '', language: 'en', model: 'none', segments: [] };

async function throughput(kind: 'sqlite' | 'postgres', workers: number): Promise<{ rate: number; batch: number }> {
  const queue = await freshQueue(kind);
  const api = createApiServer({
    config,
    queue,
    store: new LocalBlobStore(join(dir, 'blobs')),
    log,
    webhookMaster: 'unused',
    modelDir: dir,
  });
  await new Promise<void>((r) => api.http.listen(0, '127.0.0.1', r));
  const client = new ApiClient(`http://127.0.0.1:${(api.http.address() as AddressInfo).port}/graphql`, TOKEN);
  let done = 0;
  let claims = 0;
  const start = performance.now();
  const running = Array.from({ length: workers }, async (_, w) => {
    while (done < JOBS) {
      const leases = await client.claim({ workerId: `w${w}`, pool: 'CPU', maxJobs: 8, maxSeconds: 1000, waitSeconds: 1 });
      if (leases.length) claims++;
      for (const l of leases) {
        await client.complete(l.job.id, l.leaseToken, transcript);
        done++;
      }
    }
  });
  for (let i = 0; i < JOBS; i++) await queue.create(job(i));
  await Promise.all(running);
  const rate = JOBS / ((performance.now() - start) / 1000);
  await api.close();
  await queue.close();
  return { rate, batch: JOBS / claims };
}

async function fill(kind: 'sqlite' | 'postgres', queue: JobQueue, finished: number): Promise<void> {
  // Straight into the table, 1000 rows a statement: the same rows the queue writes for finished jobs.
  const rows = (from: number, count: number) =>
    Array.from(
      { length: count },
      (_, i) => `('f${from + i}', 'DONE', 0, 'transcribe', ${kind === 'sqlite' ? 0 : 'false'}, 'f.wav', 1, 1, 'f', 1, 3, 0, 0, 0)`,
    ).join(',');
  const insert = (from: number, count: number) =>
    `INSERT INTO jobs (id, status, priority, task, timestamps, filename, bytes, duration_seconds, blob_key, attempts, max_attempts, run_after, created_at, updated_at) VALUES ${rows(from, count)}`;
  const db = (queue as unknown as { db: { $client: { exec?: (s: string) => void; query?: (s: string) => Promise<unknown> } } }).db.$client;
  for (let from = 0; from < finished; from += 1000) {
    const sql = insert(from, Math.min(1000, finished - from));
    if (kind === 'sqlite') db.exec!(sql);
    else await db.query!(sql);
  }
}

async function latencies(kind: 'sqlite' | 'postgres', finished: number): Promise<{ claim: number; stats: number }> {
  const queue = await freshQueue(kind);
  await fill(kind, queue, finished);
  const claim: number[] = [];
  const stats: number[] = [];
  for (let i = 0; i < 200; i++) {
    await queue.create(job(i));
    let t = performance.now();
    const [lease] = await queue.claim({ id: 'w', pool: 'cpu' }, 1, 1000);
    claim.push(performance.now() - t);
    await queue.complete(lease.job.id, lease.leaseToken, transcript);
    t = performance.now();
    await queue.stats();
    stats.push(performance.now() - t);
  }
  await queue.close();
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
  return { claim: median(claim), stats: median(stats) };
}

console.log(`queue throughput: ${JOBS} jobs created → claimed (batches ≤ 8, long-poll) → completed over HTTP, no-op workers`);
for (const kind of ['sqlite', 'postgres'] as const) {
  for (const workers of [1, 4, 16]) {
    const t = await throughput(kind, workers);
    console.log(
      `  ${kind.padEnd(8)} ${String(workers).padStart(2)} worker(s): ${t.rate.toFixed(0).padStart(5)} jobs/s, ${t.batch.toFixed(1)} jobs a claim`,
    );
  }
}
console.log('claim and stats latency (median of 200) with finished jobs in the table');
for (const kind of ['sqlite', 'postgres'] as const) {
  for (const finished of [0, ...FINISHED]) {
    const l = await latencies(kind, finished);
    console.log(
      `  ${kind.padEnd(8)} ${String(finished).padStart(7)} finished: claim ${l.claim.toFixed(2)} ms, stats ${l.stats.toFixed(2)} ms`,
    );
  }
}
cluster?.remove();
