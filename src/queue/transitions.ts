// What each step of a job's life writes into its row, the same on every
// backend: the backends decide how rows are found and locked, this file what
// they become. Rows are returned as plain objects for drizzle's insert/update.
import { sql } from 'drizzle-orm';
import { DEFAULT_TENANT } from '../auth/keys.ts';
import type { Transcript } from '../transcript/transcript.ts';
import { QueueError } from './errors.ts';
import {
  POOLS,
  retryDelayMs,
  type Job,
  type JobFailure,
  type JobLimits,
  type JobStatus,
  type KeyUsage,
  type LeaseState,
  type NewJob,
  type PoolStats,
  type QueueOptions,
  type QueueStats,
  type WorkerInfo,
} from './jobQueue.ts';

export function newJob(input: NewJob, options: QueueOptions, id: string, now: number) {
  return {
    id: input.id ?? id,
    status: 'PENDING' as const,
    priority: input.priority ?? 0,
    idempotencyKey: input.idempotencyKey ?? null,
    tenant: input.tenant ?? DEFAULT_TENANT,
    apiKeyId: input.apiKeyId ?? null,
    webhookUrl: input.webhookUrl ?? null,
    language: input.language ?? null,
    task: input.task ?? 'transcribe',
    timestamps: input.timestamps ?? false,
    decoding: input.decoding ?? null,
    filename: input.filename,
    bytes: input.bytes,
    durationSeconds: input.durationSeconds,
    format: input.format,
    sampleRate: input.sampleRate,
    channels: input.channels,
    blobKey: input.blobKey,
    maxAttempts: options.maxAttempts,
    runAfter: now,
    createdAt: now,
    updatedAt: now,
  };
}

/** Taken by a claim: one more attempt, a new fencing token, a fresh lease. */
export const claimed = (workerId: string, now: number, leaseExpiresAt: number) => ({
  status: 'PROCESSING' as const,
  attempts: sql`attempts + 1`,
  leaseToken: sql`lease_token + 1`,
  leaseExpiresAt,
  workerId,
  progress: 0,
  startedAt: now,
  updatedAt: now,
});

export const cancelled = (now: number) => ({
  status: 'CANCELLED' as const,
  finishedAt: now,
  updatedAt: now,
  leaseExpiresAt: null,
  webhookNextAt: webhookDue(now),
});

export const retried = (now: number) => ({
  status: 'PENDING' as const,
  attempts: 0,
  progress: 0,
  runAfter: now,
  errorCode: null,
  errorMessage: null,
  result: null,
  startedAt: null,
  finishedAt: null,
  workerId: null,
  updatedAt: now,
  // It will end again, and tell again.
  webhookAttempts: 0,
  webhookStatus: null,
  webhookDeliveredAt: null,
  webhookNextAt: null,
});

/** Refuses to cancel a finished job; null when it is already cancelled (nothing to write). */
export function checkCancellable(job: Job): Job | null {
  if (job.status === 'CANCELLED') return null;
  if (job.status === 'DONE' || job.status === 'FAILED') throw new QueueError('NOT_CANCELLABLE', `job ${job.id} is already ${job.status}`);
  return job;
}

export function checkRetryable(job: Job): void {
  if (job.status !== 'FAILED' && job.status !== 'CANCELLED')
    throw new QueueError('NOT_RETRYABLE', `job ${job.id} is ${job.status}; only FAILED and CANCELLED jobs can be retried`);
}

/** What a heartbeat with this token means for the job, and the progress to record when the lease holds. */
export function heartbeatOf(
  job: Job | undefined,
  leaseToken: number,
  progress: number | null | undefined,
  now: number,
  options: QueueOptions,
  partial?: Transcript | null,
): { state: Exclude<LeaseState, 'ACTIVE'> } | { state: 'ACTIVE'; patch: Partial<Job>; moved: boolean } {
  if (!job || job.leaseToken !== leaseToken) return { state: 'LOST' };
  if (job.status === 'CANCELLED') return { state: 'CANCELLED' };
  if (job.status !== 'PROCESSING') return { state: 'LOST' };
  const next = progress == null ? job.progress : Math.min(1, Math.max(0, progress));
  // The lease is extended; a job whose progress moved is a change subscribers hear of (updatedAt moves with it).
  const moved = next !== job.progress || partial != null;
  return {
    state: 'ACTIVE',
    moved,
    patch: { leaseExpiresAt: now + options.leaseMs, progress: next, ...(partial && { result: partial }), ...(moved && { updatedAt: now }) },
  };
}

/** The job, if this token still holds its lease; otherwise the refusal the worker acts on. */
export function checkHolding(job: Job | undefined, jobId: string, leaseToken: number): Job {
  if (!job) throw new QueueError('JOB_NOT_FOUND', `no job with id ${jobId}`);
  if (job.status === 'CANCELLED' && job.leaseToken === leaseToken) throw new QueueError('JOB_CANCELLED', `job ${jobId} was cancelled`);
  if (job.leaseToken !== leaseToken)
    throw new QueueError(
      'LEASE_LOST',
      `lease token ${leaseToken} of job ${jobId} is stale; the current attempt holds token ${job.leaseToken}`,
    );
  if (job.status !== 'PROCESSING') throw new QueueError('LEASE_LOST', `job ${jobId} is ${job.status}, no longer held by this lease`);
  return job;
}

/** A job that ends owes its webhook, when it has one: due now. */
const webhookDue = (now: number) => sql`CASE WHEN webhook_url IS NOT NULL THEN CAST(${now} AS BIGINT) END`;

/** Handed back by its worker (shutting down) before it finished: pending again, and the attempt does not count. */
export const released = (now: number) => ({
  status: 'PENDING' as const,
  attempts: sql`attempts - 1`,
  progress: 0,
  runAfter: now,
  leaseExpiresAt: null,
  startedAt: null,
  updatedAt: now,
});

export const completed = (transcript: Transcript, now: number) => ({
  status: 'DONE' as const,
  // Copied field by field: GraphQL input objects have no prototype, which drizzle cannot serialise.
  result: {
    text: transcript.text,
    language: transcript.language,
    model: transcript.model,
    segments: transcript.segments.map(
      ({ start, end, text, tokens, seek, avgLogprob, compressionRatio, noSpeechProb, temperature, words }) => ({
        start,
        end,
        text,
        ...(tokens && { tokens: [...tokens] }),
        seek,
        avgLogprob,
        compressionRatio,
        noSpeechProb,
        temperature,
        ...(words && { words: words.map(({ word, start, end, probability }) => ({ word, start, end, probability })) }),
      }),
    ),
  },
  progress: 1,
  finishedAt: now,
  updatedAt: now,
  leaseExpiresAt: null,
  errorCode: null,
  errorMessage: null,
  webhookNextAt: webhookDue(now),
});

/** A retryable failure with attempts left goes back after a jittered delay; anything else fails the job. */
export function failed(job: Job, error: JobFailure, options: QueueOptions, now: number) {
  const again = error.retryable && job.attempts < job.maxAttempts;
  return {
    status: again ? ('PENDING' as const) : ('FAILED' as const),
    runAfter: again ? now + retryDelayMs(options, job.attempts) : job.runAfter,
    errorCode: error.code,
    errorMessage: error.message,
    finishedAt: again ? null : now,
    leaseExpiresAt: null,
    updatedAt: now,
    ...(!again && { webhookNextAt: webhookDue(now) }),
  };
}

/** A lease that ran out: back to the queue, counting the attempt, or failed once out of attempts. */
export function expired(job: Job, now: number) {
  const again = job.attempts < job.maxAttempts;
  return {
    status: again ? ('PENDING' as const) : ('FAILED' as const),
    runAfter: now,
    leaseExpiresAt: null,
    progress: 0,
    errorCode: 'LEASE_EXPIRED',
    errorMessage: `worker ${job.workerId} stopped renewing its lease (attempt ${job.attempts} of ${job.maxAttempts})`,
    finishedAt: again ? null : now,
    updatedAt: now,
    ...(!again && { webhookNextAt: webhookDue(now) }),
  };
}

/** The stats from per-status counts, per-pool pending rows and the live workers. */
export function statsOf(
  counts: { status: string; n: number | string | null }[],
  pending: Record<string, { n: number; seconds: number | string | null; oldest: number | string | null }>,
  live: WorkerInfo[],
  now: number,
): QueueStats {
  const of = (s: JobStatus) => counts.filter((c) => c.status === s).reduce((t, c) => t + Number(c.n ?? 0), 0);
  const pools: PoolStats[] = POOLS.map((pool) => ({
    pool,
    pending: pending[pool].n,
    pendingSeconds: Number(pending[pool].seconds ?? 0),
    oldestPendingAgeSeconds: pending[pool].oldest === null ? null : (now - Number(pending[pool].oldest)) / 1000,
    workers: live.filter((w) => w.pool === pool).length,
  }));
  const ages = pools.map((p) => p.oldestPendingAgeSeconds).filter((a) => a !== null);
  return {
    pending: of('PENDING'),
    processing: of('PROCESSING'),
    done: of('DONE'),
    failed: of('FAILED'),
    cancelled: of('CANCELLED'),
    oldestPendingAgeSeconds: ages.length ? Math.max(...ages) : null,
    pools,
    liveWorkers: live,
  };
}

/** A key's usage for its job limits: its jobs, and the places other requests hold (each counts as a job created now, not finished). */
export function heldUsage(recent: { n: number; first: number | null }, open: number, held: { n: number; first: number | null }): KeyUsage {
  const firsts = [recent.first, held.first].filter((t): t is number => t !== null).map(Number);
  return { created: recent.n + held.n, seconds: 0, firstCreatedAt: firsts.length ? Math.min(...firsts) : null, pending: open + held.n };
}

export function overLimits(usage: KeyUsage, limits: JobLimits): boolean {
  return (limits.perWindow > 0 && usage.created >= limits.perWindow) || (limits.maxPending > 0 && usage.pending >= limits.maxPending);
}

export const blobTaken = (blobKey: string) => new QueueError('UPLOAD_ALREADY_USED', `the upload ${blobKey} belongs to another job`);
