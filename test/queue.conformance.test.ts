// The queue's contract, run against both implementations: SQLite (a real file)
// and PostgreSQL (a real server). Each test gets an empty database and a clock
// it moves by hand; the long-poll tests use the real clock and measure waking.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimWhenReady } from '../src/queue/longPoll.ts';
import type { Job, JobQueue, NewJob, QueueOptions } from '../src/queue/jobQueue.ts';
import { PostgresQueue } from '../src/queue/postgres/postgresQueue.ts';
import { openDatabase } from '../src/queue/sqlite/database.ts';
import { SqliteQueue } from '../src/queue/sqlite/sqliteQueue.ts';
import { freshDatabase } from './helpers/postgres.ts';

interface Backend {
  clock: { now: number };
  queue: JobQueue;
  /** Another handle on the same database: another API instance on PostgreSQL; the same queue on SQLite (one process owns the file). */
  peer(): Promise<JobQueue>;
  /** Closes every handle and opens the database again. */
  reopen(): Promise<JobQueue>;
}

const opened: JobQueue[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((q) => q.close().catch(() => {})));
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

const defaults = (clock: { now: number }): QueueOptions => ({
  leaseMs: 10_000,
  maxAttempts: 3,
  retryBaseMs: 1000,
  retryMaxMs: 60_000,
  smallJobSeconds: 120,
  workerWindowMs: 70_000,
  now: () => clock.now,
});

const backends: Record<string, (options: Partial<QueueOptions>) => Promise<Backend>> = {
  sqlite: async (options) => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-queue-'));
    dirs.push(dir);
    const clock = { now: 1_000_000 };
    const open = () => {
      const q = new SqliteQueue(openDatabase(join(dir, 'murmur.sqlite')), { ...defaults(clock), ...options });
      opened.push(q);
      return q;
    };
    const queue = open();
    return {
      clock,
      queue,
      peer: async () => queue,
      reopen: async () => {
        await queue.close();
        return open();
      },
    };
  },
  postgres: async (options) => {
    const url = await freshDatabase();
    const clock = { now: 1_000_000 };
    const open = async () => {
      const q = await PostgresQueue.open(url, { ...defaults(clock), ...options, waitMs: 0 });
      opened.push(q);
      return q;
    };
    const queue = await open();
    return {
      clock,
      queue,
      peer: open,
      reopen: async () => {
        await Promise.all(opened.splice(0).map((q) => q.close()));
        return open();
      },
    };
  },
};

const job = (n: number, extra: Partial<NewJob> = {}): NewJob => ({
  filename: `a${n}.wav`,
  bytes: 100,
  durationSeconds: 10,
  format: 'wav',
  sampleRate: 16000,
  channels: 1,
  blobKey: `k${n}`,
  ...extra,
});
const cpu = (id: string) => ({ id, pool: 'cpu' as const });
const transcript = { text: 'x', language: 'en', model: 'm', segments: [] };

/** Resolves with the first `job` event for `id` that satisfies `ok`. */
const eventFor = (queue: JobQueue, id: string, ok: (j: Job) => boolean) =>
  new Promise<Job>((resolve) => {
    const on = (j: Job) => {
      if (j.id === id && ok(j)) {
        queue.events.off('job', on);
        resolve(j);
      }
    };
    queue.events.on('job', on);
  });

describe.each(Object.keys(backends))('the queue on %s', (name) => {
  const setup = (options: Partial<QueueOptions> = {}) => backends[name](options);

  describe('claims', () => {
    it('take up to N jobs and S seconds of audio, highest priority first, then oldest', async () => {
      const { queue } = await setup();
      const ids: string[] = [];
      for (const n of [0, 1, 2, 3, 4]) ids.push((await queue.create(job(n, { priority: n === 3 ? 5 : 0 }))).job.id);
      const first = await queue.claim(cpu('w1'), 3, 1000);
      expect(first.map((l) => l.job.id)).toEqual([ids[3], ids[0], ids[1]]);
      expect(first.every((l) => l.job.status === 'PROCESSING' && l.job.attempts === 1 && l.job.workerId === 'w1')).toBe(true);
      // 10 s each: 25 s of room takes two jobs
      expect((await queue.claim(cpu('w2'), 10, 25)).map((l) => l.job.id)).toEqual([ids[2], ids[4]]);
      expect(await queue.claim(cpu('w3'), 10, 25)).toEqual([]);
    });

    it('always take one job, even one longer than the audio limit', async () => {
      const { queue } = await setup();
      await queue.create(job(0, { durationSeconds: 100 }));
      expect(await queue.claim(cpu('w'), 4, 60)).toHaveLength(1);
    });

    it('with maxJobSeconds take, count and wait for only jobs that short, passing over a longer one first in line', async () => {
      const { queue } = await setup();
      const long = (await queue.create(job(0, { durationSeconds: 600 }))).job.id;
      const short = (await queue.create(job(1, { durationSeconds: 5 }))).job.id;
      expect(await queue.claimable('cpu', 30)).toBe(1);
      expect(await queue.nextRunAfter('cpu', 30)).not.toBeNull();
      expect((await queue.claim(cpu('w1'), 4, 1000, 30)).map((l) => l.job.id)).toEqual([short]);
      expect(await queue.claimable('cpu', 30)).toBe(0);
      expect(await queue.nextRunAfter('cpu', 30)).toBeNull();
      expect(await queue.claim(cpu('w2'), 4, 1000, 30)).toEqual([]);
      expect((await queue.claim(cpu('w3'), 4, 1000)).map((l) => l.job.id)).toEqual([long]);
    });

    it('running at the same time from many instances, never take a job twice', async () => {
      const { queue, peer } = await setup();
      for (let n = 0; n < 40; n++) await queue.create(job(n, { durationSeconds: 1 }));
      const handles = [queue, await peer(), await peer(), await peer()];
      const rounds = await Promise.all(handles.flatMap((q, h) => [0, 1, 2].map((i) => q.claim(cpu(`w${h}-${i}`), 5, 1000))));
      const ids = rounds.flat().map((l) => l.job.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(40);
    });

    it('a job whose lease expired goes back to the queue and counts an attempt', async () => {
      const { queue, clock } = await setup();
      const { id } = (await queue.create(job(0))).job;
      const [first] = await queue.claim(cpu('w1'), 1, 60);
      clock.now += 5_000;
      expect(await queue.heartbeat([{ jobId: id, leaseToken: first.leaseToken, progress: 0.5 }])).toEqual([{ jobId: id, state: 'ACTIVE' }]);
      clock.now += 9_000; // heartbeat extended the lease to +15 s
      expect(await queue.expireLeases()).toBe(0);
      clock.now += 2_000;
      expect(await queue.expireLeases()).toBe(1);
      expect(await queue.get(id)).toMatchObject({ status: 'PENDING', attempts: 1, progress: 0, errorCode: 'LEASE_EXPIRED' });
      const [second] = await queue.claim(cpu('w2'), 1, 60);
      expect(second.job.attempts).toBe(2);
      expect(second.leaseToken).toBeGreaterThan(first.leaseToken);
    });

    it('a job out of attempts fails with the last error', async () => {
      const { queue, clock } = await setup({ maxAttempts: 2 });
      const { id } = (await queue.create(job(0))).job;
      for (let i = 0; i < 2; i++) {
        await queue.claim(cpu('w'), 1, 60);
        clock.now += 11_000;
        await queue.expireLeases();
      }
      expect(await queue.get(id)).toMatchObject({ status: 'FAILED', attempts: 2, errorCode: 'LEASE_EXPIRED' });
      expect(await queue.claim(cpu('w'), 1, 60)).toEqual([]);
    });

    it('a stale lease token is refused: the older attempt cannot overwrite the newer one', async () => {
      const { queue, clock } = await setup();
      const { id } = (await queue.create(job(0))).job;
      const [old] = await queue.claim(cpu('w1'), 1, 60);
      clock.now += 11_000;
      await queue.expireLeases();
      const [current] = await queue.claim(cpu('w2'), 1, 60);
      await expect(queue.complete(id, old.leaseToken, transcript)).rejects.toMatchObject({ code: 'LEASE_LOST' });
      await expect(queue.fail(id, old.leaseToken, { code: 'E', message: 'm', retryable: false })).rejects.toMatchObject({
        code: 'LEASE_LOST',
      });
      expect(await queue.heartbeat([{ jobId: id, leaseToken: old.leaseToken }])).toEqual([{ jobId: id, state: 'LOST' }]);
      expect(await queue.complete(id, current.leaseToken, transcript)).toMatchObject({ status: 'DONE', progress: 1, result: transcript });
      await expect(queue.complete(id, current.leaseToken, transcript)).rejects.toMatchObject({ code: 'LEASE_LOST' });
    });
  });

  describe('failures', () => {
    it('a retryable failure waits an exponential, jittered delay, then runs again', async () => {
      const { queue, clock } = await setup({ retryBaseMs: 4000 });
      const { id } = (await queue.create(job(0))).job;
      for (let attempt = 1; attempt <= 2; attempt++) {
        const [lease] = await queue.claim(cpu('w'), 1, 60);
        const failed = await queue.fail(id, lease.leaseToken, { code: 'WORKER_ERROR', message: 'out of memory', retryable: true });
        expect(failed).toMatchObject({ status: 'PENDING', errorCode: 'WORKER_ERROR' });
        const delay = failed.runAfter - clock.now;
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(4000 * 2 ** (attempt - 1));
        if (delay > 0) expect(await queue.claim(cpu('w'), 1, 60)).toEqual([]);
        expect(await queue.nextRunAfter('cpu')).toBe(failed.runAfter);
        clock.now += delay;
      }
      const [last] = await queue.claim(cpu('w'), 1, 60);
      expect(await queue.fail(id, last.leaseToken, { code: 'WORKER_ERROR', message: 'again', retryable: true })).toMatchObject({
        status: 'FAILED',
        attempts: 3,
        errorMessage: 'again',
      });
    });

    it('a permanent failure fails at once', async () => {
      const { queue } = await setup();
      const { id } = (await queue.create(job(0))).job;
      const [lease] = await queue.claim(cpu('w'), 1, 60);
      expect(await queue.fail(id, lease.leaseToken, { code: 'AUDIO_UNDECODABLE', message: 'bad', retryable: false })).toMatchObject({
        status: 'FAILED',
        attempts: 1,
      });
    });
  });

  describe('jobs', () => {
    it('an idempotency key returns the same job instead of a second one, also when both arrive at once', async () => {
      const { queue, peer } = await setup();
      const other = await peer();
      const [a, b] = await Promise.all([
        queue.create(job(0, { idempotencyKey: 'upload-7' })),
        other.create(job(1, { idempotencyKey: 'upload-7' })),
      ]);
      expect([a.created, b.created].sort()).toEqual([false, true]);
      expect(b.job.id).toBe(a.job.id);
      expect((await queue.findByIdempotencyKey('upload-7', 'default'))?.id).toBe(a.job.id);
      expect((await queue.stats()).pending).toBe(1);
    });

    it('cancel works on pending and processing jobs; the worker learns it at its heartbeat', async () => {
      const { queue } = await setup();
      const pending = (await queue.create(job(0))).job;
      const held = (await queue.create(job(1))).job;
      expect((await queue.cancel(pending.id)).status).toBe('CANCELLED');
      const [lease] = await queue.claim(cpu('w'), 5, 60);
      expect(lease.job.id).toBe(held.id);
      expect((await queue.cancel(held.id)).status).toBe('CANCELLED');
      expect(await queue.heartbeat([{ jobId: held.id, leaseToken: lease.leaseToken }])).toEqual([{ jobId: held.id, state: 'CANCELLED' }]);
      await expect(queue.complete(held.id, lease.leaseToken, transcript)).rejects.toMatchObject({ code: 'JOB_CANCELLED' });
      expect(await queue.retry(held.id)).toMatchObject({ status: 'PENDING', attempts: 0 });
    });

    it('finished jobs cannot be cancelled, unfinished ones cannot be retried, unknown ids are named', async () => {
      const { queue } = await setup();
      const { id } = (await queue.create(job(0))).job;
      await expect(queue.retry(id)).rejects.toMatchObject({ code: 'NOT_RETRYABLE' });
      const [lease] = await queue.claim(cpu('w'), 1, 60);
      await queue.complete(id, lease.leaseToken, transcript);
      await expect(queue.cancel(id)).rejects.toMatchObject({ code: 'NOT_CANCELLABLE' });
      await expect(queue.cancel('nope')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
    });

    it('lists newest first, page by page', async () => {
      const { queue } = await setup();
      const ids: string[] = [];
      for (const n of [0, 1, 2, 3, 4]) ids.push((await queue.create(job(n))).job.id);
      const one = await queue.list({ first: 2 });
      expect(one.jobs.map((j) => j.id)).toEqual([ids[4], ids[3]]);
      expect(one.hasNextPage).toBe(true);
      const two = await queue.list({ first: 3, afterSeq: one.jobs[1].seq });
      expect(two.jobs.map((j) => j.id)).toEqual([ids[2], ids[1], ids[0]]);
      expect(two.hasNextPage).toBe(false);
      await queue.cancel(ids[1]);
      expect((await queue.list({ first: 10, status: 'CANCELLED' })).jobs.map((j) => j.id)).toEqual([ids[1]]);
    });

    it('finds a job by its blob', async () => {
      const { queue } = await setup();
      const { id } = (await queue.create(job(0, { blobKey: 'incoming/x/a.wav' }))).job;
      expect((await queue.findByBlobKey('incoming/x/a.wav'))?.id).toBe(id);
      expect(await queue.findByBlobKey('incoming/y/a.wav')).toBeUndefined();
    });

    it('every acknowledged job is still there after the database is reopened', async () => {
      const s = await setup();
      const ids: string[] = [];
      for (const n of [0, 1, 2]) ids.push((await s.queue.create(job(n))).job.id);
      const reopened = await s.reopen();
      expect(await Promise.all(ids.map(async (id) => (await reopened.get(id))?.status))).toEqual(['PENDING', 'PENDING', 'PENDING']);
    });

    it('counts jobs by status and per pool', async () => {
      const { queue, clock } = await setup();
      await queue.create(job(0, { durationSeconds: 30 }));
      await queue.create(job(1, { durationSeconds: 600 }));
      await queue.create(job(2, { durationSeconds: 60 }));
      clock.now += 4000;
      await queue.touchWorker(cpu('w'));
      const [lease] = await queue.claim(cpu('w'), 1, 60);
      await queue.complete(lease.job.id, lease.leaseToken, transcript);
      const stats = await queue.stats();
      expect(stats).toMatchObject({ pending: 2, processing: 0, done: 1, failed: 0, cancelled: 0, oldestPendingAgeSeconds: 4 });
      expect(stats.pools).toEqual([
        { pool: 'cpu', pending: 1, pendingSeconds: 60, oldestPendingAgeSeconds: 4, workers: 1 },
        { pool: 'gpu', pending: 1, pendingSeconds: 600, oldestPendingAgeSeconds: 4, workers: 0 },
      ]);
    });

    it('keeps finished counts right as jobs finish, go back to the queue and finish again', async () => {
      const { queue } = await setup();
      const ids: string[] = [];
      for (const n of [0, 1, 2, 3]) ids.push((await queue.create(job(n, { durationSeconds: 1 }))).job.id);
      const leases = await queue.claim(cpu('w'), 3, 100);
      await queue.complete(leases[0].job.id, leases[0].leaseToken, transcript);
      await queue.fail(leases[1].job.id, leases[1].leaseToken, { code: 'AUDIO_UNDECODABLE', message: 'bad', retryable: false });
      await queue.cancel(leases[2].job.id);
      await queue.cancel(ids[3]);
      expect(await queue.stats()).toMatchObject({ pending: 0, processing: 0, done: 1, failed: 1, cancelled: 2 });
      await queue.retry(leases[1].job.id);
      await queue.retry(ids[3]);
      expect(await queue.stats()).toMatchObject({ pending: 2, processing: 0, done: 1, failed: 0, cancelled: 1 });
      const again = await queue.claim(cpu('w'), 5, 100);
      expect(await queue.stats()).toMatchObject({ pending: 0, processing: 2 });
      for (const l of again) await queue.complete(l.job.id, l.leaseToken, transcript);
      expect(await queue.stats()).toMatchObject({ pending: 0, processing: 0, done: 3, failed: 0, cancelled: 1 });
    });
  });

  describe('hand-back', () => {
    it('a released job is pending again at once, its attempt not counted; a stale token cannot release it', async () => {
      const { queue } = await setup();
      const { id } = (await queue.create(job(0))).job;
      const [first] = await queue.claim(cpu('w1'), 1, 60);
      const back = await queue.release(id, first.leaseToken);
      expect(back).toMatchObject({ status: 'PENDING', attempts: 0, progress: 0, leaseExpiresAt: null });
      expect(await queue.claimable('cpu')).toBe(1);
      await expect(queue.release(id, first.leaseToken)).rejects.toMatchObject({ code: 'LEASE_LOST' });
      const [second] = await queue.claim(cpu('w2'), 1, 60);
      expect(second.job.attempts).toBe(1);
      await expect(queue.release(id, first.leaseToken)).rejects.toMatchObject({ code: 'LEASE_LOST' });
      await queue.cancel(id);
      await expect(queue.release(id, second.leaseToken)).rejects.toMatchObject({ code: 'JOB_CANCELLED' });
    });
  });

  describe('webhooks owed', () => {
    it('a job with a webhook owes one when it ends; claims hold it; outcomes are recorded; a retried job owes afresh', async () => {
      const { queue, clock, peer } = await setup();
      const other = await peer();
      const { id } = (await queue.create(job(0, { webhookUrl: 'https://example.com/hook' }))).job;
      const plain = (await queue.create(job(1))).job;
      expect(await queue.claimWebhooks(clock.now, 10, 1000)).toEqual([]);
      await queue.cancel(id);
      await queue.cancel(plain.id);
      // Two instances sweeping at once: the delivery goes to one of them.
      const [a, b] = await Promise.all([queue.claimWebhooks(clock.now, 10, 5000), other.claimWebhooks(clock.now, 10, 5000)]);
      expect([...a, ...b].map((j) => j.id)).toEqual([id]);
      expect(await queue.claimWebhooks(clock.now + 4000, 10, 5000)).toEqual([]);
      await queue.recordWebhook(id, { status: 500, delivered: false, nextAt: clock.now + 100, at: clock.now });
      clock.now += 200;
      const [again] = await queue.claimWebhooks(clock.now, 10, 5000);
      expect(again).toMatchObject({ id, webhookAttempts: 1, webhookStatus: 500 });
      const done = await queue.recordWebhook(id, { status: 204, delivered: true, nextAt: null, at: clock.now });
      expect(done).toMatchObject({ webhookAttempts: 2, webhookStatus: 204, webhookDeliveredAt: clock.now, webhookNextAt: null });
      const retried = await queue.retry(id);
      expect(retried).toMatchObject({ webhookAttempts: 0, webhookDeliveredAt: null, webhookNextAt: null });
    });

    it('a shared setting is made once, by whichever instance comes first', async () => {
      const { queue, peer } = await setup();
      const other = await peer();
      const [x, y] = await Promise.all([queue.setting('s', () => 'from-a'), other.setting('s', () => 'from-b')]);
      expect(x).toBe(y);
      expect(await queue.setting('s', () => 'later')).toBe(x);
    });
  });

  describe('deletion', () => {
    it('delete removes a job of the tenant asked for, whatever its state; purgeFinished takes finished jobs older than a moment', async () => {
      const { queue, clock, peer } = await setup();
      const other = await peer();
      const a = (await queue.create(job(0, { tenant: 'a' }))).job;
      await expect(queue.delete(a.id, 'b')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
      // Every instance hears of it.
      const heard = new Promise<string>((resolve) => other.events.once('deleted', resolve));
      expect((await queue.delete(a.id, 'a')).id).toBe(a.id);
      expect(await heard).toBe(a.id);
      expect(await queue.get(a.id)).toBeUndefined();
      await expect(queue.delete(a.id)).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });

      const ids: string[] = [];
      for (const n of [1, 2, 3, 4]) ids.push((await queue.create(job(n, { durationSeconds: 1 }))).job.id);
      const leases = await queue.claim(cpu('w'), 2, 100);
      await queue.complete(leases[0].job.id, leases[0].leaseToken, transcript);
      await queue.cancel(ids[2]);
      clock.now += 10_000;
      await queue.fail(leases[1].job.id, leases[1].leaseToken, { code: 'AUDIO_UNDECODABLE', message: 'bad', retryable: false });
      expect(await queue.stats()).toMatchObject({ done: 1, failed: 1, cancelled: 1, pending: 1 });
      // Finished before the failure: the done and the cancelled job; the pending one never goes.
      const purged = await queue.purgeFinished(clock.now - 5_000, 100);
      expect(purged.map((j) => j.id).sort()).toEqual([leases[0].job.id, ids[2]].sort());
      expect(await queue.stats()).toMatchObject({ done: 0, failed: 1, cancelled: 0, pending: 1 });
      expect((await queue.purgeFinished(clock.now + 1, 100)).map((j) => j.id)).toEqual([leases[1].job.id]);
      expect(await queue.purgeFinished(clock.now + 1, 100)).toEqual([]);
    });
  });

  describe('tenants and keys', () => {
    it("a tenant's jobs are not found through another tenant; no tenant means every tenant", async () => {
      const { queue } = await setup();
      const a = (await queue.create(job(0, { tenant: 'a' }))).job;
      const b = (await queue.create(job(1, { tenant: 'b' }))).job;
      expect((await queue.get(a.id, 'a'))?.id).toBe(a.id);
      expect(await queue.get(a.id, 'b')).toBeUndefined();
      expect((await queue.get(a.id))?.tenant).toBe('a');
      expect((await queue.list({ first: 10, tenant: 'a' })).jobs.map((j) => j.id)).toEqual([a.id]);
      expect((await queue.list({ first: 10 })).jobs.map((j) => j.id)).toEqual([b.id, a.id]);
      await expect(queue.cancel(a.id, 'b')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
      expect((await queue.get(a.id))?.status).toBe('PENDING');
      expect((await queue.cancel(a.id, 'a')).status).toBe('CANCELLED');
      await expect(queue.retry(a.id, 'b')).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
      expect((await queue.retry(a.id, 'a')).status).toBe('PENDING');
    });

    it('idempotency keys are per tenant: the same key in two tenants makes two jobs', async () => {
      const { queue } = await setup();
      const a = await queue.create(job(0, { tenant: 'a', idempotencyKey: 'same' }));
      const b = await queue.create(job(1, { tenant: 'b', idempotencyKey: 'same' }));
      const again = await queue.create(job(2, { tenant: 'b', idempotencyKey: 'same' }));
      expect([a.created, b.created, again.created]).toEqual([true, true, false]);
      expect(b.job.id).not.toBe(a.job.id);
      expect(again.job.id).toBe(b.job.id);
      expect((await queue.findByIdempotencyKey('same', 'a'))?.id).toBe(a.job.id);
      expect(await queue.findByIdempotencyKey('same', 'c')).toBeUndefined();
    });

    it("usage counts one key's recent jobs, their audio and its unfinished jobs", async () => {
      const { queue, clock } = await setup();
      await queue.create(job(0, { apiKeyId: 'k1', durationSeconds: 30 }));
      clock.now += 30_000;
      await queue.create(job(1, { apiKeyId: 'k1', durationSeconds: 12 }));
      await queue.create(job(2, { apiKeyId: 'k2', durationSeconds: 99 }));
      const [lease] = await queue.claim(cpu('w'), 1, 100);
      await queue.complete(lease.job.id, lease.leaseToken, transcript);
      expect(await queue.usage('k1', clock.now - 60_000)).toEqual({
        created: 2,
        seconds: 42,
        firstCreatedAt: clock.now - 30_000,
        pending: 1,
      });
      expect(await queue.usage('k1', clock.now - 10_000)).toEqual({ created: 1, seconds: 12, firstCreatedAt: clock.now, pending: 1 });
      expect(await queue.usage('k3', 0)).toEqual({ created: 0, seconds: 0, firstCreatedAt: null, pending: 0 });
    });

    it('one blob, one job: creates racing with one blob key on two instances make one job', async () => {
      const { queue, peer } = await setup();
      const other = await peer();
      const results = await Promise.allSettled([queue, other, queue, other].map((q, i) => q.create(job(i, { blobKey: 'uploads/same' }))));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results.filter((r) => r.status === 'rejected'))
        expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'UPLOAD_ALREADY_USED' });
      // The idempotent repeat of the winner is still the winner's job.
      const won = (await queue.findByBlobKey('uploads/same'))!;
      expect(await other.create(job(9, { blobKey: 'uploads/same', idempotencyKey: 'x' })).catch((e) => e.code)).toBe('UPLOAD_ALREADY_USED');
      expect((await queue.list({ first: 10 })).jobs.map((j) => j.id)).toEqual([won.id]);
    });

    it('reservations: racing requests at a limit get at most its places, across instances; filled, released and lapsed places', async () => {
      const { queue, peer, clock } = await setup();
      const instances = [queue, await peer(), await peer()];
      const limits = { perWindow: 10, windowMs: 60_000, maxPending: 0 };
      const expires = clock.now + 5_000;
      await queue.create(job(0, { apiKeyId: 'k1' }));
      const taken = await Promise.all(Array.from({ length: 50 }, (_, i) => instances[i % 3].reserve('k1', limits, clock.now, expires)));
      const places = taken.flatMap((r) => ('id' in r ? [r.id] : []));
      expect(places).toHaveLength(9);
      expect(taken.find((r) => 'refused' in r)).toEqual({ refused: { created: 10, seconds: 0, firstCreatedAt: clock.now, pending: 10 } });
      // Another key has its own places.
      expect(await queue.reserve('k2', limits, clock.now, expires)).toHaveProperty('id');
      // A filled place becomes the job (still one of the ten); a released one is free again.
      await instances[1].create(job(1, { apiKeyId: 'k1', reservation: places[0] }));
      expect(await queue.reserve('k1', limits, clock.now, expires)).toHaveProperty('refused.created', 10);
      await instances[2].unreserve(places[1]);
      const again = await queue.reserve('k1', limits, clock.now, expires);
      expect(again).toHaveProperty('id');
      // Places left behind lapse (a request's process died); the window moves on past the jobs.
      clock.now = expires;
      expect(await queue.reserve('k1', limits, clock.now, clock.now + 5_000)).toHaveProperty('id');
      // Pending jobs: the two jobs still open and the new place count.
      expect(await queue.reserve('k1', { perWindow: 0, windowMs: 60_000, maxPending: 3 }, clock.now, clock.now + 5_000)).toEqual({
        refused: { created: 3, seconds: 0, firstCreatedAt: 1_000_000, pending: 3 },
      });
    });

    it('keys: made with a secret found by it, listed, revoked; names unique', async () => {
      const { queue, peer } = await setup();
      const { key, secret } = await queue.keys.create({ name: 'app', tenant: 'acme', role: 'client' });
      expect(key).toMatchObject({ name: 'app', tenant: 'acme', role: 'client', revokedAt: null });
      expect(secret.startsWith(key.prefix)).toBe(true);
      expect((await (await peer()).keys.find(secret))?.id).toBe(key.id);
      expect(await queue.keys.find(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'))).toBeUndefined();
      await expect(queue.keys.create({ name: 'app', tenant: 'other', role: 'admin' })).rejects.toMatchObject({ code: 'KEY_NAME_TAKEN' });
      await expect(queue.keys.create({ name: 'bad name', tenant: 'x', role: 'client' })).rejects.toMatchObject({ code: 'KEY_INVALID' });
      expect((await queue.keys.revoke('app')).revokedAt).not.toBeNull();
      expect(await queue.keys.find(secret)).toBeUndefined();
      await expect(queue.keys.revoke('nope')).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
      expect((await queue.keys.list()).map((k) => k.name)).toEqual(['app']);
    });

    it('the first admin key is made once, also when instances start together, and never once any key exists', async () => {
      const { queue, peer } = await setup();
      const others = await Promise.all([peer(), peer(), peer()]);
      const made = await Promise.all([queue, ...others].map((q) => q.keys.createFirst()));
      const winners = made.filter((m) => m !== null);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.key).toMatchObject({ role: 'admin', tenant: 'default' });
      await queue.keys.revoke(winners[0]!.key.id);
      expect(await queue.keys.createFirst()).toBeNull();
    });
  });

  describe('workers and pools', () => {
    it('the live-worker list is shared, and a worker leaves it by signing off or by going quiet', async () => {
      const { queue, clock, peer } = await setup();
      const other = await peer();
      await queue.touchWorker({ id: 'a', pool: 'cpu', host: 'h1' });
      await other.touchWorker({ id: 'b', pool: 'gpu', provider: 'cuda' });
      await queue.touchWorker({ id: 'a', pool: 'cpu', provider: 'cpu' });
      expect(await other.liveWorkers()).toEqual([
        { id: 'a', pool: 'cpu', provider: 'cpu', host: 'h1', lastSeenAt: clock.now },
        { id: 'b', pool: 'gpu', provider: 'cuda', host: null, lastSeenAt: clock.now },
      ]);
      await other.removeWorker('a');
      expect((await queue.liveWorkers()).map((w) => w.id)).toEqual(['b']);
      clock.now += 70_001;
      expect(await queue.liveWorkers()).toEqual([]);
      // The quiet row is still there until the sweep forgets it.
      expect(await other.forgetQuietWorkers()).toBe(1);
      expect(await queue.forgetQuietWorkers()).toBe(0);
    });

    it("short jobs go to cpu workers and long ones to gpu workers; each pool takes the other's while that pool has nobody", async () => {
      const { queue, clock } = await setup();
      const short = (await queue.create(job(0, { durationSeconds: 60 }))).job.id;
      const long = (await queue.create(job(1, { durationSeconds: 600 }))).job.id;
      await queue.touchWorker({ id: 'c', pool: 'cpu' });
      await queue.touchWorker({ id: 'g', pool: 'gpu' });
      expect(await queue.claimable('cpu')).toBe(1);
      expect((await queue.claim(cpu('c'), 10, 10_000)).map((l) => l.job.id)).toEqual([short]);
      expect(await queue.claimable('cpu')).toBe(0);
      expect((await queue.claim({ id: 'g', pool: 'gpu' }, 10, 10_000)).map((l) => l.job.id)).toEqual([long]);

      const long2 = (await queue.create(job(2, { durationSeconds: 600 }))).job.id;
      expect(await queue.claim(cpu('c'), 10, 10_000)).toEqual([]);
      // The gpu worker goes quiet: its jobs fall back to the cpu pool.
      clock.now += 60_000;
      await queue.touchWorker({ id: 'c', pool: 'cpu' });
      clock.now += 10_001;
      expect((await queue.claim(cpu('c'), 10, 10_000)).map((l) => l.job.id)).toEqual([long2]);
      // And with no cpu worker live, a gpu worker takes short jobs.
      const short2 = (await queue.create(job(3, { durationSeconds: 5 }))).job.id;
      clock.now += 70_001;
      await queue.touchWorker({ id: 'g', pool: 'gpu' });
      expect((await queue.claim({ id: 'g', pool: 'gpu' }, 10, 10_000)).map((l) => l.job.id)).toEqual([short2]);
    });
  });

  describe('events and long-poll claims', () => {
    // The waiting claim must be woken by the event: a claim that only looked again after
    // its recheck interval (5 s) or its wait (20 s) would take far longer than this bound.
    const WAKE_BOUND_MS = 1500;

    it('a waiting claim is woken by a new job (created on another instance) and gathers a burst into one batch', async () => {
      const { queue, clock, peer } = await setup();
      const creator = await peer();
      clock.now = Date.now();
      const tick = setInterval(() => (clock.now = Date.now()), 5);
      try {
        const claim = claimWhenReady(queue, {
          workerId: 'w',
          pool: 'cpu',
          maxJobs: 4,
          maxSeconds: 1000,
          waitMs: 20_000,
          batchWindowMs: 300,
        });
        await new Promise((r) => setTimeout(r, 300));
        const created = Date.now();
        for (let n = 0; n < 3; n++) await creator.create(job(n));
        const leases = await claim;
        const latency = Date.now() - created;
        expect(leases).toHaveLength(3);
        expect(latency).toBeLessThan(WAKE_BOUND_MS);
      } finally {
        clearInterval(tick);
      }
    });

    it('one event for many jobs serves every waiting claim: a claim that took a full batch wakes the next', async () => {
      const { queue, clock, peer } = await setup();
      const sweeper = await peer();
      for (let n = 0; n < 6; n++) await queue.create(job(n));
      await queue.claim(cpu('gone'), 6, 1000);
      const claims = [0, 1, 2].map((w) =>
        claimWhenReady(queue, { workerId: `w${w}`, pool: 'cpu', maxJobs: 2, maxSeconds: 1000, waitMs: 20_000, batchWindowMs: 0 }),
      );
      await new Promise((r) => setTimeout(r, 300));
      // The six leases run out together: one sweep, one `work` event.
      clock.now += 11_000;
      const swept = Date.now();
      expect(await sweeper.expireLeases()).toBe(6);
      const batches = await Promise.all(claims);
      expect(Date.now() - swept).toBeLessThan(WAKE_BOUND_MS);
      expect(batches.map((b) => b.length)).toEqual([2, 2, 2]);
    });

    it('an aborted claim takes nothing', async () => {
      const { queue, clock } = await setup();
      clock.now = Date.now();
      const abort = new AbortController();
      const claim = claimWhenReady(queue, {
        workerId: 'w',
        pool: 'cpu',
        maxJobs: 4,
        maxSeconds: 1000,
        waitMs: 10_000,
        batchWindowMs: 5000,
        signal: abort.signal,
      });
      await queue.create(job(0));
      setTimeout(() => abort.abort(), 100);
      expect(await claim).toEqual([]);
      expect((await queue.stats()).pending).toBe(1);
    });

    it("every change of a job reaches the other instances' listeners, in order", async () => {
      const { queue, peer } = await setup();
      const watcher = await peer();
      const seen: string[] = [];
      watcher.events.on('job', (j) => seen.push(`${j.status}:${j.progress}`));
      const { id } = (await queue.create(job(0))).job;
      const done = eventFor(watcher, id, (j) => j.status === 'DONE');
      const [lease] = await queue.claim(cpu('w'), 1, 60);
      await queue.heartbeat([{ jobId: id, leaseToken: lease.leaseToken, progress: 0.5 }]);
      await queue.complete(id, lease.leaseToken, transcript);
      expect((await done).result).toEqual(transcript);
      expect(seen.filter((s, i) => s !== seen[i - 1])).toEqual(['PENDING:0', 'PROCESSING:0', 'PROCESSING:0.5', 'DONE:1']);
    });
  });
});
