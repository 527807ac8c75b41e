// The worker protocol's work, as ingest.ts is createJob's: what each worker
// mutation does past its schema (schema/worker.ts declares the fields): the
// queue call, the metrics it feeds, the log line it writes and the audio it
// deletes. Only callers holding the worker token get here.
import { randomUUID } from 'node:crypto';
import { isJobErrorCode } from '../errors.ts';
import type { Job, Lease, Pool } from '../queue/jobQueue.ts';
import { claimWhenReady } from '../queue/longPoll.ts';
import type { Transcript } from '../transcript/transcript.ts';
import { requireWorker } from './auth.ts';
import type { Context } from './context.ts';
import { ApiError } from './errors.ts';

export interface ClaimRequest {
  workerId: string;
  pool?: Pool | null;
  provider?: string | null;
  host?: string | null;
  maxJobs: number;
  maxSeconds: number;
  maxJobSeconds?: number | null;
  waitSeconds?: number | null;
  batchWindowMs?: number | null;
}

/** A batch of pending jobs under a lease (long-polling up to waitSeconds), each with the URL of its audio. */
export async function claimJobs(ctx: Context, input: ClaimRequest): Promise<(Lease & { audioUrl: string })[]> {
  requireWorker(ctx);
  if (input.maxJobs < 1) throw new ApiError('BAD_USER_INPUT', 'maxJobs must be at least 1');
  const waitMs = Math.min(60, Math.max(0, input.waitSeconds ?? 0)) * 1000;
  const worker = { id: input.workerId, pool: (input.pool ?? 'cpu') as Pool, provider: input.provider, host: input.host };
  // Heard from when the claim starts and when it ends: a long-poll (≤ 60 s) stays within the liveness window.
  await ctx.queue.touchWorker(worker);
  // A stopping instance hands out no work: its waiting claims end empty-handed, and workers ask elsewhere.
  if (ctx.draining.aborted) return [];
  const leases = await claimWhenReady(ctx.queue, {
    workerId: worker.id,
    pool: worker.pool,
    maxJobs: input.maxJobs,
    maxSeconds: input.maxSeconds,
    maxJobSeconds: input.maxJobSeconds ?? undefined,
    waitMs,
    batchWindowMs: input.batchWindowMs ?? ctx.config.batchWindowMs,
    signal: ctx.signal ? AbortSignal.any([ctx.signal, ctx.draining]) : ctx.draining,
  });
  if (!ctx.signal?.aborted) await ctx.queue.touchWorker(worker);
  if (leases.length) {
    ctx.metrics.batchSize.observe(leases.length);
    for (const l of leases) if (l.job.attempts === 1) ctx.metrics.queueWait.observe((l.job.startedAt! - l.job.createdAt) / 1000);
  }
  if (leases.length) {
    const jobIds = leases.map((l) => l.job.id);
    ctx.log.info(
      { event: 'jobs.claimed', workerId: input.workerId, pool: worker.pool, jobIds },
      `worker ${input.workerId} (${worker.pool}) claimed ${leases.length} job(s): ${jobIds.join(', ')}`,
    );
  }
  // Audio straight from the blob store when it can hand out a URL (S3), else through the API's worker-only route.
  return Promise.all(
    leases.map(async (l) => ({ ...l, audioUrl: (await ctx.store.presignGet(l.job.blobKey)) ?? `${ctx.origin}/audio/${l.job.id}` })),
  );
}

/** Extends the leases and records progress; the answer says which jobs to drop. */
export async function heartbeat(
  ctx: Context,
  args: {
    workerId: string;
    pool?: Pool | null;
    provider?: string | null;
    leases: { jobId: string | number; leaseToken: number; progress?: number | null; partial?: Transcript | null }[];
  },
) {
  requireWorker(ctx);
  await ctx.queue.touchWorker({ id: args.workerId, pool: (args.pool ?? 'cpu') as Pool, provider: args.provider });
  return ctx.queue.heartbeat(
    args.leases.map((l) => ({ jobId: String(l.jobId), leaseToken: l.leaseToken, progress: l.progress, partial: l.partial })),
  );
}

/** Stores the transcript, then deletes the audio (a done job needs only its transcript). */
export async function completeJob(ctx: Context, args: { jobId: string | number; leaseToken: number; result: Transcript }): Promise<Job> {
  requireWorker(ctx);
  const job = await ctx.queue.complete(String(args.jobId), args.leaseToken, args.result);
  ctx.metrics.processing.observe((job.finishedAt! - job.startedAt!) / 1000);
  // A finished job's transcript is all anyone needs; failed and cancelled ones keep their audio for retryJob.
  // Deleted before answering; an instance that dies in between leaves it to the sweep at the next start.
  ctx.log.info(
    { event: 'job.done', jobId: job.id, workerId: job.workerId, seconds: (job.finishedAt! - job.startedAt!) / 1000 },
    `job ${job.id} done`,
  );
  await ctx.store
    .delete(job.blobKey)
    .catch((err) =>
      ctx.log.error(
        { event: 'audio.delete_failed', jobId: job.id, key: job.blobKey, err },
        `could not delete the audio of job ${job.id}: ${err.message}`,
      ),
    );
  return job;
}

/** A retryable failure backs off and runs again; a permanent one fails the job. Codes clients do not know are masked. */
export async function failJob(
  ctx: Context,
  args: { jobId: string | number; leaseToken: number; code: string; message: string; retryable: boolean },
): Promise<Job> {
  requireWorker(ctx);
  // A code clients know passes as it is; anything else (a crash, an onnxruntime error) reaches them as
  // INTERNAL_SERVER_ERROR with a reference, and its details stay in this log.
  let { code, message } = args;
  if (!isJobErrorCode(code)) {
    const reference = randomUUID();
    ctx.log.error(
      { event: 'job.worker_error', jobId: args.jobId, reference, code, message },
      `job ${args.jobId}: worker error ${reference}: ${code}: ${message}`,
    );
    [code, message] = ['INTERNAL_SERVER_ERROR', `the worker failed unexpectedly (reference ${reference})`];
  }
  const job = await ctx.queue.fail(String(args.jobId), args.leaseToken, { code, message, retryable: args.retryable });
  const again = job.status === 'PENDING';
  ctx.log[again ? 'info' : 'warn'](
    { event: 'job.failed', jobId: job.id, workerId: job.workerId, code, attempts: job.attempts, willRetry: again },
    `job ${job.id} failed (${code}${again ? ', will retry' : ''})`,
  );
  // The masked code: a label per worker-sent string would grow without bound.
  ctx.metrics.failures.inc({ code });
  return job;
}

/** The job back unfinished (its worker is stopping), the attempt not counted. */
export async function releaseJob(ctx: Context, args: { jobId: string | number; leaseToken: number }): Promise<Job> {
  requireWorker(ctx);
  const job = await ctx.queue.release(String(args.jobId), args.leaseToken);
  ctx.log.info({ event: 'job.released', jobId: job.id }, `job ${job.id} handed back unfinished`);
  return job;
}

/** The worker is exiting and holds no leases. */
export async function signOff(ctx: Context, workerId: string): Promise<boolean> {
  requireWorker(ctx);
  await ctx.queue.removeWorker(workerId);
  return true;
}
