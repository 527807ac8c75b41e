// The queue on PostgreSQL: any number of API instances share one database.
// Claims take their batch in one statement (claim.ts); every other change is
// a short transaction that locks the rows it reads (FOR UPDATE) and announces
// itself with NOTIFY, so each instance's `events` carry every change, whichever
// instance made it: a subscriber on one instance sees what a worker reported
// to another, and a long-poll claim is woken by a job created anywhere.
import { randomUUID } from 'node:crypto';
import { and, asc, count, desc, eq, inArray, min, sql, sum, type SQL } from 'drizzle-orm';
import type { Transcript } from '../../transcript/transcript.ts';
import { silentLogger, type Logger } from '../../log.ts';
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
import { PostgresKeys } from './postgresKeys.ts';
import * as step from '../transitions.ts';
import * as where from '../conditions.ts';
import { QueueEventEmitter } from '../events.ts';
import { claimedIds } from './claim.ts';
import { openPostgres, type PgDb } from './database.ts';
import { Listener, deletions, notices, type Notice } from './notifications.ts';
import { jobCounts, jobs, keyReservations, settings, workers } from './schema.ts';

type Tx = Parameters<Parameters<PgDb['transaction']>[0]>[0];

/** A transaction-long lock on one API key's limits. */
const lockKey = (tx: Tx, apiKeyId: string) =>
  tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${'murmur.key:' + apiKeyId}, 0))`);

export class PostgresQueue implements JobQueue {
  readonly events: QueueEventEmitter;
  readonly keys: PostgresKeys;
  private readonly now: () => number;
  private readonly listener: Listener;
  /** Emits in the order the notices came, including those that wait for a read-back. */
  private emitting: Promise<void> = Promise.resolve();

  static async open(url: string, options: QueueOptions & { waitMs: number; log?: Logger }): Promise<PostgresQueue> {
    const log = options.log ?? silentLogger;
    const db = await openPostgres(url, { waitMs: options.waitMs, log });
    const queue = new PostgresQueue(db, url, options, log);
    await queue.listener.start();
    return queue;
  }

  private constructor(
    private readonly db: PgDb,
    url: string,
    readonly options: QueueOptions,
    private readonly log: Logger,
  ) {
    this.now = options.now ?? Date.now;
    this.keys = new PostgresKeys(db, this.now);
    this.events = new QueueEventEmitter(log);
    this.listener = new Listener(url, {
      notice: (n) => this.noticed(n),
      reconnected: () => {
        this.events.emit('work');
        this.events.emit('resync');
      },
      log,
    });
  }

  async create(input: NewJob): Promise<{ job: Job; created: boolean }> {
    return this.db.transaction(async (tx) => {
      if (input.reservation) {
        // Under the key's lock, so a reserve counting at the same time sees the place and the job it becomes as one.
        await lockKey(tx, input.apiKeyId!);
        await tx.delete(keyReservations).where(eq(keyReservations.id, input.reservation));
      }
      // ON CONFLICT DO NOTHING: two instances creating with the same key at once get one job; the loser reads the winner's.
      // The blob's lock: two requests that name one presigned upload make one job.
      await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${'murmur.blob:' + input.blobKey}, 0))`);
      if (input.idempotencyKey) {
        const existing = await this.findByIdempotencyKey(input.idempotencyKey, input.tenant ?? DEFAULT_TENANT, tx);
        if (existing) return { job: existing, created: false };
      }
      if ((await tx.select({ id: jobs.id }).from(jobs).where(eq(jobs.blobKey, input.blobKey)).limit(1)).length)
        throw step.blobTaken(input.blobKey);
      const [job] = await tx
        .insert(jobs)
        .values(step.newJob(input, this.options, randomUUID(), this.now()))
        .onConflictDoNothing({ target: [jobs.tenant, jobs.idempotencyKey] })
        .returning();
      if (!job)
        return { job: (await this.findByIdempotencyKey(input.idempotencyKey!, input.tenant ?? DEFAULT_TENANT, tx))!, created: false };
      await this.announce(tx, [job], true);
      return { job, created: true };
    });
  }

  async get(id: string, tenant?: string): Promise<Job | undefined> {
    const [job] = await this.db
      .select()
      .from(jobs)
      .where(where.byId(jobs, id, tenant));
    return job;
  }

  async findByIdempotencyKey(key: string, tenant: string, tx: Tx | PgDb = this.db): Promise<Job | undefined> {
    const [job] = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.tenant, tenant), eq(jobs.idempotencyKey, key)));
    return job;
  }

  async findByBlobKey(key: string): Promise<Job | undefined> {
    const [job] = await this.db.select().from(jobs).where(eq(jobs.blobKey, key)).limit(1);
    return job;
  }

  async list(options: { status?: JobStatus; first: number; afterSeq?: number; tenant?: string }): Promise<Page> {
    const rows = await this.db
      .select()
      .from(jobs)
      .where(where.listed(jobs, options))
      .orderBy(desc(jobs.seq))
      .limit(options.first + 1);
    return { jobs: rows.slice(0, options.first), hasNextPage: rows.length > options.first };
  }

  async cancel(id: string, tenant?: string): Promise<Job> {
    return this.db.transaction(async (tx) => {
      const job = await this.locked(tx, id, tenant);
      if (!step.checkCancellable(job)) return job;
      const [updated] = await tx.update(jobs).set(step.cancelled(this.now())).where(eq(jobs.id, id)).returning();
      await this.announce(tx, [updated]);
      return updated;
    });
  }

  async retry(id: string, tenant?: string): Promise<Job> {
    return this.db.transaction(async (tx) => {
      step.checkRetryable(await this.locked(tx, id, tenant));
      const [updated] = await tx.update(jobs).set(step.retried(this.now())).where(eq(jobs.id, id)).returning();
      await this.announce(tx, [updated], true);
      return updated;
    });
  }

  async delete(id: string, tenant?: string): Promise<Job> {
    return this.db.transaction(async (tx) => {
      const [job] = await tx
        .delete(jobs)
        .where(where.byId(jobs, id, tenant))
        .returning();
      if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
      await tx.execute(deletions([job.id]));
      return job;
    });
  }

  async purgeFinished(before: number, limit: number): Promise<Job[]> {
    const doomed = this.db
      .select({ id: jobs.id })
      .from(jobs)
      .where(where.finishedBefore(jobs, before))
      .limit(limit)
      .for('update', { skipLocked: true });
    return this.db.transaction(async (tx) => {
      const gone = await tx.delete(jobs).where(inArray(jobs.id, doomed)).returning();
      if (gone.length) await tx.execute(deletions(gone.map((j) => j.id)));
      return gone;
    });
  }

  async claimWebhooks(now: number, limit: number, holdMs: number): Promise<Job[]> {
    // SKIP LOCKED: instances sweeping at once each take different deliveries.
    const due = this.db
      .select({ id: jobs.id })
      .from(jobs)
      .where(where.webhookDueAt(jobs, now))
      .orderBy(asc(jobs.webhookNextAt))
      .limit(limit)
      .for('update', { skipLocked: true });
    return this.db
      .update(jobs)
      .set({ webhookNextAt: now + holdMs })
      .where(inArray(jobs.id, due))
      .returning();
  }

  async recordWebhook(id: string, o: { status: number; delivered: boolean; nextAt: number | null; at: number }): Promise<Job | undefined> {
    const [job] = await this.db
      .update(jobs)
      .set({
        webhookAttempts: sql`webhook_attempts + 1`,
        webhookStatus: o.status,
        webhookNextAt: o.nextAt,
        ...(o.delivered && { webhookDeliveredAt: o.at }),
      })
      .where(eq(jobs.id, id))
      .returning();
    return job;
  }

  async setting(name: string, initial: () => string): Promise<string> {
    await this.db.insert(settings).values({ name, value: initial() }).onConflictDoNothing();
    const [row] = await this.db.select().from(settings).where(eq(settings.name, name));
    return row.value;
  }

  async usage(apiKeyId: string, since: number): Promise<KeyUsage> {
    const [recent] = await this.db
      .select({ created: count(), seconds: sum(jobs.durationSeconds), first: min(jobs.createdAt) })
      .from(jobs)
      .where(where.createdBy(jobs, apiKeyId, since));
    const [open] = await this.db.select({ n: count() }).from(jobs).where(where.unfinishedOf(jobs, apiKeyId));
    return {
      created: recent.created,
      seconds: Number(recent.seconds ?? 0),
      firstCreatedAt: recent.first === null ? null : Number(recent.first),
      pending: open.n,
    };
  }

  async reserve(apiKeyId: string, limits: JobLimits, now: number, expiresAt: number): Promise<Reservation> {
    // The key's advisory lock orders the reserves (and fills) of one key across instances; other keys do not wait.
    return this.db.transaction(async (tx) => {
      await lockKey(tx, apiKeyId);
      await tx.delete(keyReservations).where(where.lapsedFor(keyReservations, apiKeyId, now));
      const since = now - limits.windowMs;
      const [held] = await tx
        .select({ n: count(), first: min(keyReservations.createdAt) })
        .from(keyReservations)
        .where(where.heldFor(keyReservations, apiKeyId));
      const [recent] = await tx
        .select({ n: count(), first: min(jobs.createdAt) })
        .from(jobs)
        .where(where.createdBy(jobs, apiKeyId, since));
      const [open] = await tx.select({ n: count() }).from(jobs).where(where.unfinishedOf(jobs, apiKeyId));
      const usage = step.heldUsage(recent, open.n, held);
      if (step.overLimits(usage, limits)) return { refused: usage };
      const id = randomUUID();
      await tx.insert(keyReservations).values({ id, apiKeyId, createdAt: now, expiresAt });
      return { id };
    });
  }

  async unreserve(reservation: string): Promise<void> {
    await this.db.delete(keyReservations).where(eq(keyReservations.id, reservation));
  }

  async claimable(pool: Pool, maxJobSeconds?: number): Promise<number> {
    const [{ n }] = await this.db
      .select({ n: count() })
      .from(jobs)
      .where(where.claimableAt(jobs, this.now(), await this.sizeFilter(pool, maxJobSeconds)));
    return n;
  }

  async nextRunAfter(pool: Pool, maxJobSeconds?: number): Promise<number | null> {
    const [{ at }] = await this.db
      .select({ at: min(jobs.runAfter) })
      .from(jobs)
      .where(where.pendingOf(jobs, await this.sizeFilter(pool, maxJobSeconds)));
    return at === null ? null : Number(at);
  }

  async claim(worker: { id: string; pool: Pool }, maxJobs: number, maxSeconds: number, maxJobSeconds?: number): Promise<Lease[]> {
    const now = this.now();
    const expiresAt = now + this.options.leaseMs;
    const size = await this.sizeFilter(worker.pool, maxJobSeconds);
    const claimed = await this.db.transaction(async (tx) => {
      const rows = await tx
        .update(jobs)
        .set(step.claimed(worker.id, now, expiresAt))
        .where(sql`${jobs.id} IN (${claimedIds({ maxJobs, maxSeconds, now, size })})`)
        .returning();
      if (rows.length) await this.announce(tx, rows);
      return rows;
    });
    claimed.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    return claimed.map((job) => ({ job, leaseToken: job.leaseToken, leaseExpiresAt: expiresAt }));
  }

  async heartbeat(
    leases: { jobId: string; leaseToken: number; progress?: number | null; partial?: Transcript | null }[],
  ): Promise<{ jobId: string; state: LeaseState }[]> {
    if (leases.length === 0) return [];
    const now = this.now();
    return this.db.transaction(async (tx) => {
      const rows = await tx
        .select()
        .from(jobs)
        .where(
          inArray(
            jobs.id,
            leases.map((l) => l.jobId),
          ),
        )
        .for('update');
      const byId = new Map(rows.map((r) => [r.id, r]));
      const changed: Job[] = [];
      const states: { jobId: string; state: LeaseState }[] = [];
      for (const { jobId, leaseToken, progress, partial } of leases) {
        const job = byId.get(jobId);
        const beat = step.heartbeatOf(job, leaseToken, progress, now, this.options, partial);
        if (beat.state === 'ACTIVE') {
          const [updated] = await tx.update(jobs).set(beat.patch).where(eq(jobs.id, jobId)).returning();
          if (beat.moved) changed.push(updated);
        }
        states.push({ jobId, state: beat.state });
      }
      await this.announce(tx, changed);
      return states;
    });
  }

  async complete(jobId: string, leaseToken: number, transcript: Transcript): Promise<Job> {
    const now = this.now();
    return this.db.transaction(async (tx) => {
      step.checkHolding(await this.lockedOrNone(tx, jobId), jobId, leaseToken);
      const [job] = await tx.update(jobs).set(step.completed(transcript, now)).where(eq(jobs.id, jobId)).returning();
      await this.announce(tx, [job]);
      return job;
    });
  }

  async fail(jobId: string, leaseToken: number, error: JobFailure): Promise<Job> {
    const now = this.now();
    return this.db.transaction(async (tx) => {
      const held = step.checkHolding(await this.lockedOrNone(tx, jobId), jobId, leaseToken);
      const [job] = await tx
        .update(jobs)
        .set(step.failed(held, error, this.options, now))
        .where(eq(jobs.id, jobId))
        .returning();
      await this.announce(tx, [job], job.status === 'PENDING');
      return job;
    });
  }

  async release(jobId: string, leaseToken: number): Promise<Job> {
    return this.db.transaction(async (tx) => {
      step.checkHolding(await this.lockedOrNone(tx, jobId), jobId, leaseToken);
      const [job] = await tx.update(jobs).set(step.released(this.now())).where(eq(jobs.id, jobId)).returning();
      await this.announce(tx, [job], true);
      return job;
    });
  }

  async expireLeases(): Promise<number> {
    const now = this.now();
    return this.db.transaction(async (tx) => {
      // SKIP LOCKED: every instance sweeps; rows another sweeper or a late heartbeat holds are theirs to settle.
      const rows = await tx.select().from(jobs).where(where.leaseExpiredAt(jobs, now)).for('update', { skipLocked: true });
      const expired: Job[] = [];
      for (const job of rows) {
        const [updated] = await tx.update(jobs).set(step.expired(job, now)).where(eq(jobs.id, job.id)).returning();
        expired.push(updated);
      }
      await this.announce(
        tx,
        expired,
        expired.some((j) => j.status === 'PENDING'),
      );
      return expired.length;
    });
  }

  async touchWorker(worker: { id: string; pool: Pool; provider?: string | null; host?: string | null }): Promise<void> {
    const row = {
      id: worker.id,
      pool: worker.pool,
      lastSeenAt: this.now(),
      ...(worker.provider && { provider: worker.provider }),
      ...(worker.host && { host: worker.host }),
    };
    await this.db.insert(workers).values(row).onConflictDoUpdate({ target: workers.id, set: row });
  }

  async removeWorker(id: string): Promise<void> {
    await this.db.delete(workers).where(eq(workers.id, id));
  }

  async liveWorkers(): Promise<WorkerInfo[]> {
    return this.db
      .select()
      .from(workers)
      .where(where.seenSince(workers, this.now() - this.options.workerWindowMs))
      .orderBy(asc(workers.id));
  }

  async forgetQuietWorkers(): Promise<number> {
    return (await this.db.delete(workers).where(where.quietSince(workers, this.now() - this.options.workerWindowMs))).rowCount ?? 0;
  }

  async stats(): Promise<QueueStats> {
    // Unfinished jobs are counted through the status index; finished ones are kept counted by triggers (job_counts).
    const [active, finished, live, ...perPool] = await Promise.all([
      this.db.select({ status: jobs.status, n: count() }).from(jobs).where(where.unfinished(jobs)).groupBy(jobs.status),
      this.db
        .select({ status: jobCounts.status, n: sum(jobCounts.n) })
        .from(jobCounts)
        .groupBy(jobCounts.status),
      this.liveWorkers(),
      ...POOLS.map((pool) =>
        this.db
          .select({ n: count(), seconds: sum(jobs.durationSeconds), oldest: min(jobs.createdAt) })
          .from(jobs)
          .where(where.pendingOf(jobs, where.ofSize(jobs, pool, this.options.smallJobSeconds)))
          .then(([p]) => [pool, p] as const),
      ),
    ]);
    return step.statsOf([...active, ...finished], Object.fromEntries(perPool), live, this.now());
  }

  async ping(): Promise<void> {
    await this.db.execute(sql`SELECT 1`);
  }

  async close(): Promise<void> {
    await this.listener.close();
    await this.db.$client.end();
  }

  private async sizeFilter(pool: Pool, maxJobSeconds?: number): Promise<SQL | undefined> {
    const since = this.now() - this.options.workerWindowMs;
    const live = await this.db.selectDistinct({ pool: workers.pool }).from(workers).where(where.seenSince(workers, since));
    const { small, large } = sizesFor(pool, new Set(live.map((w) => w.pool)));
    return and(
      small && large ? undefined : where.ofSize(jobs, small ? 'cpu' : 'gpu', this.options.smallJobSeconds),
      where.upTo(jobs, maxJobSeconds),
    );
  }

  private async lockedOrNone(tx: Tx, id: string, tenant?: string): Promise<Job | undefined> {
    const [job] = await tx
      .select()
      .from(jobs)
      .where(where.byId(jobs, id, tenant))
      .for('update');
    return job;
  }

  private async locked(tx: Tx, id: string, tenant?: string): Promise<Job> {
    const job = await this.lockedOrNone(tx, id, tenant);
    if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
    return job;
  }

  /** NOTIFY every instance (this one too) of the changed jobs, on commit. */
  private async announce(tx: Tx, changed: Job[], work = false): Promise<void> {
    if (changed.length === 0 && !work) return;
    await tx.execute(notices(changed, work));
  }

  private noticed(notice: Notice): void {
    this.emitting = this.emitting.then(async () => {
      if ('work' in notice) return void this.events.emit('work');
      if ('deleted' in notice) return void this.events.emit('deleted', notice.deleted);
      let job: Job | undefined = notice.job;
      // The transcript did not fit the notice: read it back, only when someone here follows jobs.
      if (notice.partial && this.events.listenerCount('job') > 0) {
        job = await this.get(job.id).catch(
          (err) =>
            void this.log.error(
              { event: 'job.read_back_failed', jobId: notice.job.id, err },
              `could not read job ${notice.job.id} back: ${err.message}`,
            ),
        );
      }
      if (job) this.events.emit('job', job);
    });
  }
}
