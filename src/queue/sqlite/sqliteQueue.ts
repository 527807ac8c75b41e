// The queue on SQLite: the embedded default, one API process on one machine.
//
// better-sqlite3 is synchronous, so each operation is one synchronous
// transaction (an async callback would commit at its first await), and claims
// run under BEGIN IMMEDIATE so two claimers never read the same rows. Events
// come straight from the committing call: only this process writes the file.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { and, asc, count, desc, eq, gt, gte, inArray, lt, lte, min, sql, sum, type SQL } from 'drizzle-orm';
import type { Transcript } from '../../transcript/transcript.ts';
import { QueueError } from '../errors.ts';
import {
  leaseLostMessage,
  POOLS,
  retryDelayMs,
  sizesFor,
  storedTranscript,
  type Job,
  type JobFailure,
  type JobQueue,
  type JobStatus,
  type Lease,
  type LeaseState,
  type NewJob,
  type Page,
  type Pool,
  type QueueOptions,
  type QueueStats,
  type WorkerInfo,
} from '../jobQueue.ts';
import type { Db } from './database.ts';
import { jobCounts, jobs, workers } from './schema.ts';

export class SqliteQueue implements JobQueue {
  readonly events = new EventEmitter<{ job: [Job]; work: [] }>();
  private readonly now: () => number;

  constructor(
    private readonly db: Db,
    readonly options: QueueOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.events.setMaxListeners(0);
  }

  async create(input: NewJob): Promise<{ job: Job; created: boolean }> {
    const now = this.now();
    const result = this.db.transaction(
      (tx) => {
        if (input.idempotencyKey) {
          const existing = tx.select().from(jobs).where(eq(jobs.idempotencyKey, input.idempotencyKey)).get();
          if (existing) return { job: existing, created: false };
        }
        const job = tx
          .insert(jobs)
          .values({
            id: input.id ?? randomUUID(),
            status: 'PENDING',
            priority: input.priority ?? 0,
            idempotencyKey: input.idempotencyKey ?? null,
            language: input.language ?? null,
            task: input.task ?? 'transcribe',
            timestamps: input.timestamps ?? false,
            filename: input.filename,
            bytes: input.bytes,
            durationSeconds: input.durationSeconds,
            format: input.format,
            sampleRate: input.sampleRate,
            channels: input.channels,
            blobKey: input.blobKey,
            maxAttempts: this.options.maxAttempts,
            runAfter: now,
            createdAt: now,
            updatedAt: now,
          })
          .returning()
          .get();
        return { job, created: true };
      },
      { behavior: 'immediate' },
    );
    if (result.created) this.changed([result.job], true);
    return result;
  }

  async get(id: string): Promise<Job | undefined> {
    return this.db.select().from(jobs).where(eq(jobs.id, id)).get();
  }

  async findByIdempotencyKey(key: string): Promise<Job | undefined> {
    return this.db.select().from(jobs).where(eq(jobs.idempotencyKey, key)).get();
  }

  async findByBlobKey(key: string): Promise<Job | undefined> {
    return this.db.select().from(jobs).where(eq(jobs.blobKey, key)).get();
  }

  async list(options: { status?: JobStatus; first: number; afterSeq?: number }): Promise<Page> {
    const rows = this.db
      .select()
      .from(jobs)
      .where(and(options.status ? eq(jobs.status, options.status) : undefined, options.afterSeq !== undefined ? lt(jobs.seq, options.afterSeq) : undefined))
      .orderBy(desc(jobs.seq))
      .limit(options.first + 1)
      .all();
    return { jobs: rows.slice(0, options.first), hasNextPage: rows.length > options.first };
  }

  async cancel(id: string): Promise<Job> {
    const job = this.db.transaction(
      (tx) => {
        const job = tx.select().from(jobs).where(eq(jobs.id, id)).get();
        if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
        if (job.status === 'CANCELLED') return undefined;
        if (job.status === 'DONE' || job.status === 'FAILED') throw new QueueError('NOT_CANCELLABLE', `job ${id} is already ${job.status}`);
        const now = this.now();
        return tx.update(jobs).set({ status: 'CANCELLED', finishedAt: now, updatedAt: now, leaseExpiresAt: null }).where(eq(jobs.id, id)).returning().get();
      },
      { behavior: 'immediate' },
    );
    if (job) this.changed([job]);
    return job ?? (await this.get(id))!;
  }

  async retry(id: string): Promise<Job> {
    const job = this.db.transaction(
      (tx) => {
        const job = tx.select().from(jobs).where(eq(jobs.id, id)).get();
        if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
        if (job.status !== 'FAILED' && job.status !== 'CANCELLED') throw new QueueError('NOT_RETRYABLE', `job ${id} is ${job.status}; only FAILED and CANCELLED jobs can be retried`);
        const now = this.now();
        return tx
          .update(jobs)
          .set({ status: 'PENDING', attempts: 0, progress: 0, runAfter: now, errorCode: null, errorMessage: null, result: null, startedAt: null, finishedAt: null, workerId: null, updatedAt: now })
          .where(eq(jobs.id, id))
          .returning()
          .get();
      },
      { behavior: 'immediate' },
    );
    this.changed([job], true);
    return job;
  }

  async claimable(pool: Pool): Promise<number> {
    return this.db
      .select({ n: count() })
      .from(jobs)
      .where(and(eq(jobs.status, 'PENDING'), lte(jobs.runAfter, this.now()), this.sizeFilter(pool)))
      .get()!.n;
  }

  async nextRunAfter(pool: Pool): Promise<number | null> {
    return this.db
      .select({ at: min(jobs.runAfter) })
      .from(jobs)
      .where(and(eq(jobs.status, 'PENDING'), this.sizeFilter(pool)))
      .get()!.at;
  }

  async claim(worker: { id: string; pool: Pool }, maxJobs: number, maxSeconds: number): Promise<Lease[]> {
    const now = this.now();
    const expiresAt = now + this.options.leaseMs;
    const claimed = this.db.transaction(
      (tx) => {
        const candidates = tx
          .select({ id: jobs.id, durationSeconds: jobs.durationSeconds })
          .from(jobs)
          .where(and(eq(jobs.status, 'PENDING'), lte(jobs.runAfter, now), this.sizeFilter(worker.pool)))
          .orderBy(desc(jobs.priority), asc(jobs.seq))
          .limit(maxJobs)
          .all();
        const ids: string[] = [];
        let seconds = 0;
        for (const c of candidates) {
          if (ids.length > 0 && seconds + c.durationSeconds > maxSeconds) break;
          ids.push(c.id);
          seconds += c.durationSeconds;
        }
        if (ids.length === 0) return [];
        return tx
          .update(jobs)
          .set({
            status: 'PROCESSING',
            attempts: sql`${jobs.attempts} + 1`,
            leaseToken: sql`${jobs.leaseToken} + 1`,
            leaseExpiresAt: expiresAt,
            workerId: worker.id,
            progress: 0,
            startedAt: now,
            updatedAt: now,
          })
          .where(inArray(jobs.id, ids))
          .returning()
          .all();
      },
      { behavior: 'immediate' },
    );
    claimed.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    this.changed(claimed);
    return claimed.map((job) => ({ job, leaseToken: job.leaseToken, leaseExpiresAt: expiresAt }));
  }

  async heartbeat(leases: { jobId: string; leaseToken: number; progress?: number | null }[]): Promise<{ jobId: string; state: LeaseState }[]> {
    const now = this.now();
    const changed: Job[] = [];
    const states = this.db.transaction(
      (tx) =>
        leases.map(({ jobId, leaseToken, progress }) => {
          const job = tx.select().from(jobs).where(eq(jobs.id, jobId)).get();
          if (!job || job.leaseToken !== leaseToken) return { jobId, state: 'LOST' as const };
          if (job.status === 'CANCELLED') return { jobId, state: 'CANCELLED' as const };
          if (job.status !== 'PROCESSING') return { jobId, state: 'LOST' as const };
          const next = progress == null ? job.progress : Math.min(1, Math.max(0, progress));
          const updated = tx
            .update(jobs)
            .set({ leaseExpiresAt: now + this.options.leaseMs, progress: next, ...(next !== job.progress && { updatedAt: now }) })
            .where(eq(jobs.id, jobId))
            .returning()
            .get();
          if (next !== job.progress) changed.push(updated);
          return { jobId, state: 'ACTIVE' as const };
        }),
      { behavior: 'immediate' },
    );
    this.changed(changed);
    return states;
  }

  async complete(jobId: string, leaseToken: number, transcript: Transcript): Promise<Job> {
    const now = this.now();
    const job = this.db.transaction(
      (tx) => {
        this.holding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
        return tx
          .update(jobs)
          .set({ status: 'DONE', result: storedTranscript(transcript), progress: 1, finishedAt: now, updatedAt: now, leaseExpiresAt: null, errorCode: null, errorMessage: null })
          .where(eq(jobs.id, jobId))
          .returning()
          .get();
      },
      { behavior: 'immediate' },
    );
    this.changed([job]);
    return job;
  }

  async fail(jobId: string, leaseToken: number, error: JobFailure): Promise<Job> {
    const now = this.now();
    const job = this.db.transaction(
      (tx) => {
        const job = this.holding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
        const again = error.retryable && job.attempts < job.maxAttempts;
        return tx
          .update(jobs)
          .set({
            status: again ? 'PENDING' : 'FAILED',
            runAfter: again ? now + retryDelayMs(this.options, job.attempts) : job.runAfter,
            errorCode: error.code,
            errorMessage: error.message,
            finishedAt: again ? null : now,
            leaseExpiresAt: null,
            updatedAt: now,
          })
          .where(eq(jobs.id, jobId))
          .returning()
          .get();
      },
      { behavior: 'immediate' },
    );
    this.changed([job], job.status === 'PENDING');
    return job;
  }

  async expireLeases(): Promise<number> {
    const now = this.now();
    const expired = this.db.transaction(
      (tx) => {
        const rows = tx
          .select()
          .from(jobs)
          .where(and(eq(jobs.status, 'PROCESSING'), lt(jobs.leaseExpiresAt, now)))
          .all();
        return rows.map((job) => {
          const again = job.attempts < job.maxAttempts;
          return tx
            .update(jobs)
            .set({
              status: again ? 'PENDING' : 'FAILED',
              runAfter: now,
              leaseExpiresAt: null,
              progress: 0,
              errorCode: 'LEASE_EXPIRED',
              errorMessage: `worker ${job.workerId} stopped renewing its lease (attempt ${job.attempts} of ${job.maxAttempts})`,
              finishedAt: again ? null : now,
              updatedAt: now,
            })
            .where(eq(jobs.id, job.id))
            .returning()
            .get();
        });
      },
      { behavior: 'immediate' },
    );
    this.changed(expired, expired.some((j) => j.status === 'PENDING'));
    return expired.length;
  }

  async touchWorker(worker: { id: string; pool: Pool; provider?: string | null; host?: string | null }): Promise<void> {
    const row = { id: worker.id, pool: worker.pool, lastSeenAt: this.now(), ...(worker.provider && { provider: worker.provider }), ...(worker.host && { host: worker.host }) };
    this.db.insert(workers).values(row).onConflictDoUpdate({ target: workers.id, set: row }).run();
  }

  async removeWorker(id: string): Promise<void> {
    this.db.delete(workers).where(eq(workers.id, id)).run();
  }

  async liveWorkers(): Promise<WorkerInfo[]> {
    const since = this.now() - this.options.workerWindowMs;
    this.db.delete(workers).where(lt(workers.lastSeenAt, since)).run();
    return this.db.select().from(workers).where(gte(workers.lastSeenAt, since)).orderBy(asc(workers.id)).all();
  }

  async stats(): Promise<QueueStats> {
    // Unfinished jobs are counted through the status index; finished ones are kept counted by triggers (job_counts).
    const active = this.db.select({ status: jobs.status, n: count() }).from(jobs).where(inArray(jobs.status, ['PENDING', 'PROCESSING'])).groupBy(jobs.status).all();
    const finished = this.db.select({ status: jobCounts.status, n: sum(jobCounts.n) }).from(jobCounts).groupBy(jobCounts.status).all();
    const of = (s: JobStatus) => Number([...active, ...finished].find((c) => c.status === s)?.n ?? 0);
    const live = await this.liveWorkers();
    const now = this.now();
    const pools = POOLS.map((pool) => {
      const size = pool === 'cpu' ? lte(jobs.durationSeconds, this.options.smallJobSeconds) : gt(jobs.durationSeconds, this.options.smallJobSeconds);
      const p = this.db
        .select({ n: count(), seconds: sum(jobs.durationSeconds), oldest: min(jobs.createdAt) })
        .from(jobs)
        .where(and(eq(jobs.status, 'PENDING'), size))
        .get()!;
      return {
        pool,
        pending: p.n,
        pendingSeconds: Number(p.seconds ?? 0),
        oldestPendingAgeSeconds: p.oldest === null ? null : (now - p.oldest) / 1000,
        workers: live.filter((w) => w.pool === pool).length,
      };
    });
    const ages = pools.map((p) => p.oldestPendingAgeSeconds).filter((a) => a !== null);
    return {
      pending: of('PENDING'),
      processing: of('PROCESSING'),
      done: of('DONE'),
      failed: of('FAILED'),
      cancelled: of('CANCELLED'),
      oldestPendingAgeSeconds: ages.length ? Math.max(...ages) : null,
      pools,
    };
  }

  async ping(): Promise<void> {
    this.db.run(sql`SELECT 1`);
  }

  async close(): Promise<void> {
    this.db.$client.close();
  }

  /** The job sizes a worker of `pool` may take now (see sizesFor). */
  private sizeFilter(pool: Pool): SQL | undefined {
    const since = this.now() - this.options.workerWindowMs;
    const livePools = new Set(this.db.selectDistinct({ pool: workers.pool }).from(workers).where(gte(workers.lastSeenAt, since)).all().map((w) => w.pool));
    const { small, large } = sizesFor(pool, livePools);
    if (small && large) return undefined;
    return small ? lte(jobs.durationSeconds, this.options.smallJobSeconds) : gt(jobs.durationSeconds, this.options.smallJobSeconds);
  }

  private holding(job: Job | undefined, jobId: string, leaseToken: number): Job {
    if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${jobId}`);
    if (job.status === 'CANCELLED' && job.leaseToken === leaseToken) throw new QueueError('JOB_CANCELLED', `job ${jobId} was cancelled`);
    if (job.leaseToken !== leaseToken || job.status !== 'PROCESSING') throw new QueueError('LEASE_LOST', leaseLostMessage(jobId, leaseToken, job));
    return job;
  }

  private changed(changed: Job[], work = false): void {
    for (const job of changed) this.events.emit('job', job);
    if (work) this.events.emit('work');
  }
}
