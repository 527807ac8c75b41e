// The queue on SQLite: the embedded default, one API process on one machine.
//
// better-sqlite3 is synchronous, so each operation is one synchronous
// transaction (an async callback would commit at its first await), and claims
// run under BEGIN IMMEDIATE so two claimers never read the same rows. Events
// come straight from the committing call: only this process writes the file.
import { randomUUID } from 'node:crypto';
import { and, asc, count, desc, eq, inArray, min, sql, sum, type SQL } from 'drizzle-orm';
import type { Transcript } from '../../transcript/transcript.ts';
import { QueueError } from '../errors.ts';
import {
  POOLS,
  sizesFor,
  type Job,
  type JobFailure,
  type JobQueue,
  type JobLimits,
  type JobStatus,
  type KeyUsage,
  type Lease,
  type LeaseState,
  type NewJob,
  type Page,
  type Pool,
  type QueueOptions,
  type QueueStats,
  type Reservation,
  type WorkerInfo,
} from '../jobQueue.ts';
import { DEFAULT_TENANT } from '../../auth/keys.ts';
import { SqliteKeys } from './sqliteKeys.ts';
import * as step from '../transitions.ts';
import * as where from '../conditions.ts';
import { QueueEventEmitter } from '../events.ts';
import type { Logger } from '../../log.ts';
import type { Db } from './database.ts';
import { jobCounts, jobs, keyReservations, settings, workers } from './schema.ts';

const IMMEDIATE = { behavior: 'immediate' } as const;

export class SqliteQueue implements JobQueue {
  readonly events: QueueEventEmitter;
  readonly keys: SqliteKeys;
  private readonly now: () => number;

  constructor(
    private readonly db: Db,
    readonly options: QueueOptions,
    log?: Logger,
  ) {
    this.now = options.now ?? Date.now;
    this.keys = new SqliteKeys(db, this.now);
    this.events = new QueueEventEmitter(log);
  }

  async create(input: NewJob): Promise<{ job: Job; created: boolean }> {
    const result = this.db.transaction((tx) => {
      if (input.reservation) tx.delete(keyReservations).where(eq(keyReservations.id, input.reservation)).run();
      if (input.idempotencyKey) {
        const existing = tx
          .select()
          .from(jobs)
          .where(and(eq(jobs.tenant, input.tenant ?? DEFAULT_TENANT), eq(jobs.idempotencyKey, input.idempotencyKey)))
          .get();
        if (existing) return { job: existing, created: false };
      }
      if (tx.select({ id: jobs.id }).from(jobs).where(eq(jobs.blobKey, input.blobKey)).get()) throw step.blobTaken(input.blobKey);
      return {
        job: tx
          .insert(jobs)
          .values(step.newJob(input, this.options, randomUUID(), this.now()))
          .returning()
          .get(),
        created: true,
      };
    }, IMMEDIATE);
    if (result.created) this.changed([result.job], true);
    return result;
  }

  async get(id: string, tenant?: string): Promise<Job | undefined> {
    return this.db
      .select()
      .from(jobs)
      .where(where.byId(jobs, id, tenant))
      .get();
  }

  async findByIdempotencyKey(key: string, tenant: string): Promise<Job | undefined> {
    return this.db
      .select()
      .from(jobs)
      .where(and(eq(jobs.tenant, tenant), eq(jobs.idempotencyKey, key)))
      .get();
  }

  async findByBlobKey(key: string): Promise<Job | undefined> {
    return this.db.select().from(jobs).where(eq(jobs.blobKey, key)).get();
  }

  async list(options: { status?: JobStatus; first: number; afterSeq?: number; tenant?: string }): Promise<Page> {
    const rows = this.db
      .select()
      .from(jobs)
      .where(where.listed(jobs, options))
      .orderBy(desc(jobs.seq))
      .limit(options.first + 1)
      .all();
    return { jobs: rows.slice(0, options.first), hasNextPage: rows.length > options.first };
  }

  async cancel(id: string, tenant?: string): Promise<Job> {
    const job = this.db.transaction((tx) => {
      const job = step.checkCancellable(
        this.found(
          tx
            .select()
            .from(jobs)
            .where(where.byId(jobs, id, tenant))
            .get(),
          id,
        ),
      );
      return job && tx.update(jobs).set(step.cancelled(this.now())).where(eq(jobs.id, id)).returning().get();
    }, IMMEDIATE);
    if (job) this.changed([job]);
    return job ?? (await this.get(id))!;
  }

  async retry(id: string, tenant?: string): Promise<Job> {
    const job = this.db.transaction((tx) => {
      step.checkRetryable(
        this.found(
          tx
            .select()
            .from(jobs)
            .where(where.byId(jobs, id, tenant))
            .get(),
          id,
        ),
      );
      return tx.update(jobs).set(step.retried(this.now())).where(eq(jobs.id, id)).returning().get();
    }, IMMEDIATE);
    this.changed([job], true);
    return job;
  }

  async delete(id: string, tenant?: string): Promise<Job> {
    const job = this.found(
      this.db
        .delete(jobs)
        .where(where.byId(jobs, id, tenant))
        .returning()
        .get(),
      id,
    );
    this.events.emit('deleted', job.id);
    return job;
  }

  async purgeFinished(before: number, limit: number): Promise<Job[]> {
    const gone = this.db.transaction((tx) => {
      const ids = tx
        .select({ id: jobs.id })
        .from(jobs)
        .where(where.finishedBefore(jobs, before))
        .limit(limit)
        .all()
        .map((r) => r.id);
      return ids.length ? tx.delete(jobs).where(inArray(jobs.id, ids)).returning().all() : [];
    }, IMMEDIATE);
    for (const job of gone) this.events.emit('deleted', job.id);
    return gone;
  }

  async claimWebhooks(now: number, limit: number, holdMs: number): Promise<Job[]> {
    return this.db.transaction((tx) => {
      const ids = tx
        .select({ id: jobs.id })
        .from(jobs)
        .where(where.webhookDueAt(jobs, now))
        .orderBy(asc(jobs.webhookNextAt))
        .limit(limit)
        .all()
        .map((r) => r.id);
      return ids.length
        ? tx
            .update(jobs)
            .set({ webhookNextAt: now + holdMs })
            .where(inArray(jobs.id, ids))
            .returning()
            .all()
        : [];
    }, IMMEDIATE);
  }

  async recordWebhook(id: string, o: { status: number; delivered: boolean; nextAt: number | null; at: number }): Promise<Job | undefined> {
    return this.db
      .update(jobs)
      .set({
        webhookAttempts: sql`webhook_attempts + 1`,
        webhookStatus: o.status,
        webhookNextAt: o.nextAt,
        ...(o.delivered && { webhookDeliveredAt: o.at }),
      })
      .where(eq(jobs.id, id))
      .returning()
      .get();
  }

  async setting(name: string, initial: () => string): Promise<string> {
    this.db.insert(settings).values({ name, value: initial() }).onConflictDoNothing().run();
    return this.db.select().from(settings).where(eq(settings.name, name)).get()!.value;
  }

  async usage(apiKeyId: string, since: number): Promise<KeyUsage> {
    const recent = this.db
      .select({ created: count(), seconds: sum(jobs.durationSeconds), first: min(jobs.createdAt) })
      .from(jobs)
      .where(where.createdBy(jobs, apiKeyId, since))
      .get()!;
    const open = this.db.select({ n: count() }).from(jobs).where(where.unfinishedOf(jobs, apiKeyId)).get()!;
    return { created: recent.created, seconds: Number(recent.seconds ?? 0), firstCreatedAt: recent.first, pending: open.n };
  }

  async reserve(apiKeyId: string, limits: JobLimits, now: number, expiresAt: number): Promise<Reservation> {
    // Under BEGIN IMMEDIATE no other writer runs between the count and the insert.
    return this.db.transaction((tx) => {
      tx.delete(keyReservations)
        .where(where.lapsedFor(keyReservations, apiKeyId, now))
        .run();
      const since = now - limits.windowMs;
      const held = tx
        .select({ n: count(), first: min(keyReservations.createdAt) })
        .from(keyReservations)
        .where(where.heldFor(keyReservations, apiKeyId))
        .get()!;
      const recent = tx
        .select({ n: count(), first: min(jobs.createdAt) })
        .from(jobs)
        .where(where.createdBy(jobs, apiKeyId, since))
        .get()!;
      const open = tx.select({ n: count() }).from(jobs).where(where.unfinishedOf(jobs, apiKeyId)).get()!;
      const usage = step.heldUsage(recent, open.n, held);
      if (step.overLimits(usage, limits)) return { refused: usage };
      const id = randomUUID();
      tx.insert(keyReservations).values({ id, apiKeyId, createdAt: now, expiresAt }).run();
      return { id };
    }, IMMEDIATE);
  }

  async unreserve(reservation: string): Promise<void> {
    this.db.delete(keyReservations).where(eq(keyReservations.id, reservation)).run();
  }

  async claimable(pool: Pool, maxJobSeconds?: number): Promise<number> {
    return this.db
      .select({ n: count() })
      .from(jobs)
      .where(where.claimableAt(jobs, this.now(), this.sizeFilter(pool, maxJobSeconds)))
      .get()!.n;
  }

  async nextRunAfter(pool: Pool, maxJobSeconds?: number): Promise<number | null> {
    return this.db
      .select({ at: min(jobs.runAfter) })
      .from(jobs)
      .where(where.pendingOf(jobs, this.sizeFilter(pool, maxJobSeconds)))
      .get()!.at;
  }

  async claim(worker: { id: string; pool: Pool }, maxJobs: number, maxSeconds: number, maxJobSeconds?: number): Promise<Lease[]> {
    const now = this.now();
    const expiresAt = now + this.options.leaseMs;
    const claimed = this.db.transaction((tx) => {
      const candidates = tx
        .select({ id: jobs.id, durationSeconds: jobs.durationSeconds })
        .from(jobs)
        .where(where.claimableAt(jobs, now, this.sizeFilter(worker.pool, maxJobSeconds)))
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
        .set(step.claimed(worker.id, now, expiresAt))
        .where(inArray(jobs.id, ids))
        .returning()
        .all();
    }, IMMEDIATE);
    claimed.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    this.changed(claimed);
    return claimed.map((job) => ({ job, leaseToken: job.leaseToken, leaseExpiresAt: expiresAt }));
  }

  async heartbeat(
    leases: { jobId: string; leaseToken: number; progress?: number | null; partial?: Transcript | null }[],
  ): Promise<{ jobId: string; state: LeaseState }[]> {
    const now = this.now();
    const changed: Job[] = [];
    const states = this.db.transaction(
      (tx) =>
        leases.map(({ jobId, leaseToken, progress, partial }) => {
          const job = tx.select().from(jobs).where(eq(jobs.id, jobId)).get();
          const beat = step.heartbeatOf(job, leaseToken, progress, now, this.options, partial);
          if (beat.state === 'ACTIVE') {
            const updated = tx.update(jobs).set(beat.patch).where(eq(jobs.id, jobId)).returning().get();
            if (beat.moved) changed.push(updated);
          }
          return { jobId, state: beat.state };
        }),
      IMMEDIATE,
    );
    this.changed(changed);
    return states;
  }

  async complete(jobId: string, leaseToken: number, transcript: Transcript): Promise<Job> {
    const job = this.db.transaction((tx) => {
      step.checkHolding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
      return tx.update(jobs).set(step.completed(transcript, this.now())).where(eq(jobs.id, jobId)).returning().get();
    }, IMMEDIATE);
    this.changed([job]);
    return job;
  }

  async fail(jobId: string, leaseToken: number, error: JobFailure): Promise<Job> {
    const job = this.db.transaction((tx) => {
      const held = step.checkHolding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
      return tx
        .update(jobs)
        .set(step.failed(held, error, this.options, this.now()))
        .where(eq(jobs.id, jobId))
        .returning()
        .get();
    }, IMMEDIATE);
    this.changed([job], job.status === 'PENDING');
    return job;
  }

  async release(jobId: string, leaseToken: number): Promise<Job> {
    const job = this.db.transaction((tx) => {
      step.checkHolding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
      return tx.update(jobs).set(step.released(this.now())).where(eq(jobs.id, jobId)).returning().get();
    }, IMMEDIATE);
    this.changed([job], true);
    return job;
  }

  async expireLeases(): Promise<number> {
    const now = this.now();
    const expired = this.db.transaction((tx) => {
      const rows = tx.select().from(jobs).where(where.leaseExpiredAt(jobs, now)).all();
      return rows.map((job) => tx.update(jobs).set(step.expired(job, now)).where(eq(jobs.id, job.id)).returning().get());
    }, IMMEDIATE);
    this.changed(
      expired,
      expired.some((j) => j.status === 'PENDING'),
    );
    return expired.length;
  }

  async touchWorker(worker: { id: string; pool: Pool; provider?: string | null; host?: string | null }): Promise<void> {
    const row = {
      id: worker.id,
      pool: worker.pool,
      lastSeenAt: this.now(),
      ...(worker.provider && { provider: worker.provider }),
      ...(worker.host && { host: worker.host }),
    };
    this.db.insert(workers).values(row).onConflictDoUpdate({ target: workers.id, set: row }).run();
  }

  async removeWorker(id: string): Promise<void> {
    this.db.delete(workers).where(eq(workers.id, id)).run();
  }

  async liveWorkers(): Promise<WorkerInfo[]> {
    return this.db
      .select()
      .from(workers)
      .where(where.seenSince(workers, this.now() - this.options.workerWindowMs))
      .orderBy(asc(workers.id))
      .all();
  }

  async forgetQuietWorkers(): Promise<number> {
    return this.db
      .delete(workers)
      .where(where.quietSince(workers, this.now() - this.options.workerWindowMs))
      .run().changes;
  }

  async stats(): Promise<QueueStats> {
    // Unfinished jobs are counted through the status index; finished ones are kept counted by triggers (job_counts).
    const active = this.db.select({ status: jobs.status, n: count() }).from(jobs).where(where.unfinished(jobs)).groupBy(jobs.status).all();
    const finished = this.db
      .select({ status: jobCounts.status, n: sum(jobCounts.n) })
      .from(jobCounts)
      .groupBy(jobCounts.status)
      .all();
    const pending = Object.fromEntries(
      POOLS.map((pool) => [
        pool,
        this.db
          .select({ n: count(), seconds: sum(jobs.durationSeconds), oldest: min(jobs.createdAt) })
          .from(jobs)
          .where(where.pendingOf(jobs, where.ofSize(jobs, pool, this.options.smallJobSeconds)))
          .get()!,
      ]),
    );
    return step.statsOf([...active, ...finished], pending, await this.liveWorkers(), this.now());
  }

  async ping(): Promise<void> {
    this.db.run(sql`SELECT 1`);
  }

  async close(): Promise<void> {
    this.db.$client.close();
  }

  /** The job sizes a worker of `pool` may take now (see sizesFor). */
  private sizeFilter(pool: Pool, maxJobSeconds?: number): SQL | undefined {
    const since = this.now() - this.options.workerWindowMs;
    const livePools = new Set(
      this.db
        .selectDistinct({ pool: workers.pool })
        .from(workers)
        .where(where.seenSince(workers, since))
        .all()
        .map((w) => w.pool),
    );
    const { small, large } = sizesFor(pool, livePools);
    return and(
      small && large ? undefined : where.ofSize(jobs, small ? 'cpu' : 'gpu', this.options.smallJobSeconds),
      where.upTo(jobs, maxJobSeconds),
    );
  }

  private found(job: Job | undefined, id: string): Job {
    if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
    return job;
  }

  private changed(changed: Job[], work = false): void {
    for (const job of changed) this.events.emit('job', job);
    if (work) this.events.emit('work');
  }
}
