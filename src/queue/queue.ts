// The queue: every read and write of the jobs table goes through here.
//
// Glossary
//   claim     a worker takes up to N pending jobs (and S seconds of audio) at once
//   lease     a claim's hold on a job, until `leaseExpiresAt`; heartbeats extend it
//   token     the fencing token: `leaseToken` rises with every claim, and only the
//             current token may report progress, complete or fail the job
//   attempt   one claim; `attempts` counts them, `maxAttempts` bounds them
//
// better-sqlite3 is synchronous, so every method here is too: a transaction is
// one synchronous callback (an async one would commit at its first await), and
// claims run under BEGIN IMMEDIATE so two claimers never read the same rows.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { and, asc, count, desc, eq, inArray, lt, lte, min, sql } from 'drizzle-orm';
import type { Db } from './database.ts';
import { QueueError } from './errors.ts';
import { jobs, type JobRow } from './schema.ts';

export type Job = JobRow;
export type JobStatus = JobRow['status'];
export type Task = JobRow['task'];

export interface TranscriptResult {
  text: string;
  language: string;
  model: string;
  segments: { start: number; end: number; text: string }[];
}

export interface NewJob {
  filename: string;
  bytes: number;
  durationSeconds: number;
  format: string;
  sampleRate: number;
  channels: number;
  blobKey: string;
  language?: string | null;
  task?: Task;
  timestamps?: boolean;
  priority?: number;
  idempotencyKey?: string | null;
  /** The id to give the job; the blob is usually stored under it before the job exists. */
  id?: string;
}

export interface Lease {
  job: Job;
  leaseToken: number;
  leaseExpiresAt: number;
}

export type LeaseState = 'ACTIVE' | 'CANCELLED' | 'LOST';

export interface QueueOptions {
  /** How long a claim holds a job without a heartbeat. */
  leaseMs: number;
  maxAttempts: number;
  /** First retry delay; each further attempt doubles it, up to retryMaxMs, with full jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  now?: () => number;
}

export interface QueueStats {
  pending: number;
  processing: number;
  done: number;
  failed: number;
  cancelled: number;
  oldestPendingAgeSeconds: number | null;
}

export interface Page {
  jobs: Job[];
  hasNextPage: boolean;
}

const TERMINAL: readonly JobStatus[] = ['DONE', 'FAILED', 'CANCELLED'];

export class JobQueue {
  /** `job` after every committed change of a job; `work` when a job may have become claimable. */
  readonly events = new EventEmitter<{ job: [Job]; work: [] }>();
  private readonly now: () => number;

  constructor(
    private readonly db: Db,
    readonly options: QueueOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.events.setMaxListeners(0);
  }

  /** Creates a job, or returns the one already created with the same idempotency key (`created` false). */
  create(input: NewJob): { job: Job; created: boolean } {
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

  findByIdempotencyKey(key: string): Job | undefined {
    return this.db.select().from(jobs).where(eq(jobs.idempotencyKey, key)).get();
  }

  get(id: string): Job | undefined {
    return this.db.select().from(jobs).where(eq(jobs.id, id)).get();
  }

  /** Newest first; `afterSeq` is the `seq` of the last job of the previous page. */
  list(options: { status?: JobStatus; first: number; afterSeq?: number }): Page {
    const rows = this.db
      .select()
      .from(jobs)
      .where(and(options.status ? eq(jobs.status, options.status) : undefined, options.afterSeq !== undefined ? lt(jobs.seq, options.afterSeq) : undefined))
      .orderBy(desc(jobs.seq))
      .limit(options.first + 1)
      .all();
    return { jobs: rows.slice(0, options.first), hasNextPage: rows.length > options.first };
  }

  /** A pending job is cancelled at once; a processing one too, and its worker drops it at its next heartbeat. */
  cancel(id: string): Job {
    const job = this.db.transaction(
      (tx) => {
        const job = tx.select().from(jobs).where(eq(jobs.id, id)).get();
        if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
        if (job.status === 'CANCELLED') return undefined;
        if (job.status === 'DONE' || job.status === 'FAILED') throw new QueueError('NOT_CANCELLABLE', `job ${id} is already ${job.status}`);
        const now = this.now();
        return tx
          .update(jobs)
          .set({ status: 'CANCELLED', finishedAt: now, updatedAt: now, leaseExpiresAt: null })
          .where(eq(jobs.id, id))
          .returning()
          .get();
      },
      { behavior: 'immediate' },
    );
    if (job) this.changed([job]);
    return job ?? this.get(id)!;
  }

  /** A failed or cancelled job goes back to the queue with its attempts reset. */
  retry(id: string): Job {
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

  /** Jobs a claim could take now. */
  claimable(): number {
    return this.db
      .select({ n: count() })
      .from(jobs)
      .where(and(eq(jobs.status, 'PENDING'), lte(jobs.runAfter, this.now())))
      .get()!.n;
  }

  /** When the earliest job waiting on a retry delay becomes claimable (epoch ms), if any. */
  nextRunAfter(): number | null {
    return this.db
      .select({ at: min(jobs.runAfter) })
      .from(jobs)
      .where(eq(jobs.status, 'PENDING'))
      .get()!.at;
  }

  /**
   * Takes up to `maxJobs` claimable jobs, highest priority first, then oldest,
   * stopping before `maxSeconds` of audio (the first job is always taken, however long).
   */
  claim(workerId: string, maxJobs: number, maxSeconds: number): Lease[] {
    const now = this.now();
    const expiresAt = now + this.options.leaseMs;
    const claimed = this.db.transaction(
      (tx) => {
        const candidates = tx
          .select({ id: jobs.id, durationSeconds: jobs.durationSeconds })
          .from(jobs)
          .where(and(eq(jobs.status, 'PENDING'), lte(jobs.runAfter, now)))
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
            workerId,
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

  /** Extends the leases still held and records progress; tells the worker which jobs to drop. */
  heartbeat(leases: { jobId: string; leaseToken: number; progress?: number | null }[]): { jobId: string; state: LeaseState }[] {
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

  complete(jobId: string, leaseToken: number, transcript: TranscriptResult): Job {
    const now = this.now();
    // Copied field by field: GraphQL hands over input objects without a prototype, which drizzle cannot serialise.
    const result: TranscriptResult = {
      text: transcript.text,
      language: transcript.language,
      model: transcript.model,
      segments: transcript.segments.map(({ start, end, text }) => ({ start, end, text })),
    };
    const job = this.db.transaction(
      (tx) => {
        this.holding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
        return tx
          .update(jobs)
          .set({ status: 'DONE', result, progress: 1, finishedAt: now, updatedAt: now, leaseExpiresAt: null, errorCode: null, errorMessage: null })
          .where(eq(jobs.id, jobId))
          .returning()
          .get();
      },
      { behavior: 'immediate' },
    );
    this.changed([job]);
    return job;
  }

  /**
   * A retryable failure goes back to the queue after an exponential delay with
   * full jitter, until the job runs out of attempts; a permanent one fails at once.
   */
  fail(jobId: string, leaseToken: number, error: { code: string; message: string; retryable: boolean }): Job {
    const now = this.now();
    const job = this.db.transaction(
      (tx) => {
        const job = this.holding(tx.select().from(jobs).where(eq(jobs.id, jobId)).get(), jobId, leaseToken);
        const again = error.retryable && job.attempts < job.maxAttempts;
        const ceiling = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** (job.attempts - 1));
        return tx
          .update(jobs)
          .set({
            status: again ? 'PENDING' : 'FAILED',
            runAfter: again ? now + Math.round(Math.random() * ceiling) : job.runAfter,
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

  /**
   * Jobs whose lease ran out (their worker stopped heartbeating) go back to the
   * queue, or fail once they have used all their attempts. Returns how many.
   */
  expireLeases(): number {
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

  stats(): QueueStats {
    const counts = this.db.select({ status: jobs.status, n: count() }).from(jobs).groupBy(jobs.status).all();
    const of = (s: JobStatus) => counts.find((c) => c.status === s)?.n ?? 0;
    const oldest = this.db.select({ at: min(jobs.createdAt) }).from(jobs).where(eq(jobs.status, 'PENDING')).get()!.at;
    return {
      pending: of('PENDING'),
      processing: of('PROCESSING'),
      done: of('DONE'),
      failed: of('FAILED'),
      cancelled: of('CANCELLED'),
      oldestPendingAgeSeconds: oldest === null ? null : (this.now() - oldest) / 1000,
    };
  }

  isTerminal(job: Job): boolean {
    return TERMINAL.includes(job.status);
  }

  private holding(job: Job | undefined, jobId: string, leaseToken: number): Job {
    if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${jobId}`);
    if (job.leaseToken !== leaseToken) throw new QueueError('LEASE_LOST', `lease token ${leaseToken} of job ${jobId} is stale; the current attempt holds token ${job.leaseToken}`);
    if (job.status === 'CANCELLED') throw new QueueError('JOB_CANCELLED', `job ${jobId} was cancelled`);
    if (job.status !== 'PROCESSING') throw new QueueError('LEASE_LOST', `job ${jobId} is ${job.status}, no longer held by this lease`);
    return job;
  }

  private changed(changed: Job[], work = false): void {
    for (const job of changed) this.events.emit('job', job);
    if (work) this.events.emit('work');
  }
}
