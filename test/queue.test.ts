import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/queue/database.ts';
import { claimWhenReady } from '../src/queue/longPoll.ts';
import { JobQueue, type NewJob, type QueueOptions } from '../src/queue/queue.ts';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup(options: Partial<QueueOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'murmur-queue-'));
  dirs.push(dir);
  const clock = { now: 1_000_000 };
  const open = () => {
    const db = openDatabase(join(dir, 'murmur.sqlite'));
    return { db, queue: new JobQueue(db, { leaseMs: 10_000, maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 60_000, now: () => clock.now, ...options }) };
  };
  return { clock, open, ...open() };
}

const job = (n: number, extra: Partial<NewJob> = {}): NewJob => ({ filename: `a${n}.wav`, bytes: 100, durationSeconds: 10, format: 'wav', sampleRate: 16000, channels: 1, blobKey: `k${n}`, ...extra });

describe('claims', () => {
  it('take up to N jobs and S seconds of audio, highest priority first, then oldest', () => {
    const { queue } = setup();
    const ids = [0, 1, 2, 3, 4].map((n) => queue.create(job(n, { priority: n === 3 ? 5 : 0 })).job.id);
    const first = queue.claim('w1', 3, 1000);
    expect(first.map((l) => l.job.id)).toEqual([ids[3], ids[0], ids[1]]);
    expect(first.every((l) => l.job.status === 'PROCESSING' && l.job.attempts === 1)).toBe(true);
    // 10 s each: 25 s of room takes two jobs
    expect(queue.claim('w2', 10, 25).map((l) => l.job.id)).toEqual([ids[2], ids[4]]);
    expect(queue.claim('w3', 10, 25)).toEqual([]);
  });

  it('always take one job, even one longer than the audio limit', () => {
    const { queue } = setup();
    queue.create(job(0, { durationSeconds: 500 }));
    expect(queue.claim('w', 4, 60)).toHaveLength(1);
  });

  it('a job whose lease expired goes back to the queue and counts an attempt', () => {
    const { queue, clock } = setup();
    const { id } = queue.create(job(0)).job;
    const [first] = queue.claim('w1', 1, 60);
    clock.now += 5_000;
    expect(queue.heartbeat([{ jobId: id, leaseToken: first.leaseToken, progress: 0.5 }])).toEqual([{ jobId: id, state: 'ACTIVE' }]);
    clock.now += 9_000; // heartbeat extended the lease to +15 s
    expect(queue.expireLeases()).toBe(0);
    clock.now += 2_000;
    expect(queue.expireLeases()).toBe(1);
    const back = queue.get(id)!;
    expect(back).toMatchObject({ status: 'PENDING', attempts: 1, progress: 0, errorCode: 'LEASE_EXPIRED' });
    const [second] = queue.claim('w2', 1, 60);
    expect(second.job.attempts).toBe(2);
    expect(second.leaseToken).toBeGreaterThan(first.leaseToken);
  });

  it('a job out of attempts fails with the last error', () => {
    const { queue, clock } = setup({ maxAttempts: 2 });
    const { id } = queue.create(job(0)).job;
    for (let i = 0; i < 2; i++) {
      queue.claim('w', 1, 60);
      clock.now += 11_000;
      queue.expireLeases();
    }
    expect(queue.get(id)).toMatchObject({ status: 'FAILED', attempts: 2, errorCode: 'LEASE_EXPIRED' });
    expect(queue.claim('w', 1, 60)).toEqual([]);
  });

  it('a stale lease token is refused: the older attempt cannot overwrite the newer one', () => {
    const { queue, clock } = setup();
    const { id } = queue.create(job(0)).job;
    const [old] = queue.claim('w1', 1, 60);
    clock.now += 11_000;
    queue.expireLeases();
    const [current] = queue.claim('w2', 1, 60);
    const result = { text: 'x', language: 'en', model: 'm', segments: [] };
    expect(() => queue.complete(id, old.leaseToken, result)).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
    expect(() => queue.fail(id, old.leaseToken, { code: 'E', message: 'm', retryable: false })).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
    expect(queue.heartbeat([{ jobId: id, leaseToken: old.leaseToken }])).toEqual([{ jobId: id, state: 'LOST' }]);
    expect(queue.complete(id, current.leaseToken, result)).toMatchObject({ status: 'DONE', progress: 1, result });
    expect(() => queue.complete(id, current.leaseToken, result)).toThrow(expect.objectContaining({ code: 'LEASE_LOST' }));
  });
});

describe('failures', () => {
  it('a retryable failure waits an exponential, jittered delay, then runs again', () => {
    const { queue, clock } = setup({ retryBaseMs: 4000 });
    const { id } = queue.create(job(0)).job;
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [lease] = queue.claim('w', 1, 60);
      const failed = queue.fail(id, lease.leaseToken, { code: 'WORKER_ERROR', message: 'out of memory', retryable: true });
      expect(failed).toMatchObject({ status: 'PENDING', errorCode: 'WORKER_ERROR' });
      const delay = failed.runAfter - clock.now;
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(4000 * 2 ** (attempt - 1));
      delays.push(delay);
      if (delay > 0) expect(queue.claim('w', 1, 60)).toEqual([]);
      clock.now += delay;
    }
    const [last] = queue.claim('w', 1, 60);
    expect(queue.fail(id, last.leaseToken, { code: 'WORKER_ERROR', message: 'again', retryable: true })).toMatchObject({ status: 'FAILED', attempts: 3, errorMessage: 'again' });
  });

  it('a permanent failure fails at once', () => {
    const { queue } = setup();
    const { id } = queue.create(job(0)).job;
    const [lease] = queue.claim('w', 1, 60);
    expect(queue.fail(id, lease.leaseToken, { code: 'AUDIO_UNDECODABLE', message: 'bad', retryable: false })).toMatchObject({ status: 'FAILED', attempts: 1 });
  });
});

describe('jobs', () => {
  it('an idempotency key returns the same job instead of a second one', () => {
    const { queue } = setup();
    const a = queue.create(job(0, { idempotencyKey: 'upload-7' }));
    const b = queue.create(job(1, { idempotencyKey: 'upload-7' }));
    expect(a.created).toBe(true);
    expect(b).toEqual({ job: a.job, created: false });
    expect(queue.stats().pending).toBe(1);
  });

  it('cancel works on pending and processing jobs; the worker learns it at its heartbeat', () => {
    const { queue } = setup();
    const pending = queue.create(job(0)).job;
    const held = queue.create(job(1)).job;
    expect(queue.cancel(pending.id).status).toBe('CANCELLED');
    const [lease] = queue.claim('w', 5, 60);
    expect(lease.job.id).toBe(held.id);
    expect(queue.cancel(held.id).status).toBe('CANCELLED');
    expect(queue.heartbeat([{ jobId: held.id, leaseToken: lease.leaseToken }])).toEqual([{ jobId: held.id, state: 'CANCELLED' }]);
    expect(() => queue.complete(held.id, lease.leaseToken, { text: '', language: 'en', model: 'm', segments: [] })).toThrow(expect.objectContaining({ code: 'JOB_CANCELLED' }));
    expect(queue.retry(held.id)).toMatchObject({ status: 'PENDING', attempts: 0 });
  });

  it('finished jobs cannot be cancelled, unfinished ones cannot be retried, unknown ids are named', () => {
    const { queue } = setup();
    const { id } = queue.create(job(0)).job;
    expect(() => queue.retry(id)).toThrow(expect.objectContaining({ code: 'NOT_RETRYABLE' }));
    const [lease] = queue.claim('w', 1, 60);
    queue.complete(id, lease.leaseToken, { text: '', language: 'en', model: 'm', segments: [] });
    expect(() => queue.cancel(id)).toThrow(expect.objectContaining({ code: 'NOT_CANCELLABLE' }));
    expect(() => queue.cancel('nope')).toThrow(expect.objectContaining({ code: 'JOB_NOT_FOUND' }));
  });

  it('lists newest first, page by page', () => {
    const { queue } = setup();
    const ids = [0, 1, 2, 3, 4].map((n) => queue.create(job(n)).job.id);
    const one = queue.list({ first: 2 });
    expect(one.jobs.map((j) => j.id)).toEqual([ids[4], ids[3]]);
    expect(one.hasNextPage).toBe(true);
    const two = queue.list({ first: 3, afterSeq: one.jobs[1].seq });
    expect(two.jobs.map((j) => j.id)).toEqual([ids[2], ids[1], ids[0]]);
    expect(two.hasNextPage).toBe(false);
    queue.cancel(ids[1]);
    expect(queue.list({ first: 10, status: 'CANCELLED' }).jobs.map((j) => j.id)).toEqual([ids[1]]);
  });

  it('every acknowledged job is still there after the database is reopened', () => {
    const s = setup();
    const ids = [0, 1, 2].map((n) => s.queue.create(job(n)).job.id);
    s.db.$client.close();
    const reopened = s.open();
    expect(ids.map((id) => reopened.queue.get(id)?.status)).toEqual(['PENDING', 'PENDING', 'PENDING']);
  });
});

describe('long-poll claims', () => {
  it('a waiting claim is woken by a new job and gathers a burst into one batch', async () => {
    const { queue } = setup({ now: Date.now });
    const claim = claimWhenReady(queue, { workerId: 'w', maxJobs: 4, maxSeconds: 1000, waitMs: 10_000, batchWindowMs: 300 });
    await new Promise((r) => setTimeout(r, 100));
    for (let n = 0; n < 3; n++) queue.create(job(n));
    const leases = await claim;
    expect(leases).toHaveLength(3);
  });

  it('an aborted claim takes nothing', async () => {
    const { queue } = setup({ now: Date.now });
    const abort = new AbortController();
    const claim = claimWhenReady(queue, { workerId: 'w', maxJobs: 4, maxSeconds: 1000, waitMs: 10_000, batchWindowMs: 5000, signal: abort.signal });
    queue.create(job(0));
    setTimeout(() => abort.abort(), 100);
    expect(await claim).toEqual([]);
    expect(queue.stats().pending).toBe(1);
  });
});
