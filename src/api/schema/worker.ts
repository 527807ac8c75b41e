// The worker protocol: the only mutations a worker needs, and only for callers
// holding the worker token. Workers never touch the database.
import type { Lease, Pool } from '../../queue/jobQueue.ts';
import { claimWhenReady } from '../../queue/longPoll.ts';
import { builder } from '../builder.ts';
import { randomUUID } from 'node:crypto';
import { requireWorker } from '../auth.ts';
import { isJobErrorCode } from '../../errors.ts';
import { ApiError } from '../errors.ts';
import { JobRef } from './job.ts';
import { PoolEnum } from './queue.ts';

const LeaseRef = builder.objectRef<Lease & { audioUrl: string }>('Lease').implement({
  fields: (t) => ({
    job: t.field({ type: JobRef, resolve: (l) => l.job }),
    leaseToken: t.exposeInt('leaseToken', { description: 'the fencing token: progress, complete and fail must present it' }),
    leaseExpiresAt: t.field({ type: 'DateTime', resolve: (l) => l.leaseExpiresAt }),
    leaseSeconds: t.float({ description: 'how long a lease lasts without a heartbeat: heartbeat well within it (the worker\'s clock need not agree with leaseExpiresAt)', resolve: (_l, _args, ctx) => ctx.config.leaseSeconds }),
    audioUrl: t.exposeString('audioUrl', { description: 'GET it: with the worker token from the API, as it is from a presigned store URL' }),
    maxDurationSeconds: t.float({
      description: 'decode no more than this (MURMUR_MAX_DURATION_SECONDS now): longer audio fails the job with AUDIO_TOO_LONG',
      resolve: (_l, _args, ctx) => ctx.config.maxDurationSeconds,
    }),
  }),
});

const LeaseState = builder.enumType('LeaseState', {
  values: {
    ACTIVE: { description: 'extended: carry on' },
    CANCELLED: { description: 'the job was cancelled: drop it' },
    LOST: { description: 'another attempt holds the job now: drop it' },
  } as const,
});

const LeaseStatus = builder.objectRef<{ jobId: string; state: 'ACTIVE' | 'CANCELLED' | 'LOST' }>('LeaseStatus').implement({
  fields: (t) => ({ jobId: t.exposeID('jobId'), state: t.field({ type: LeaseState, resolve: (s) => s.state }) }),
});

const ClaimInput = builder.inputType('ClaimInput', {
  fields: (t) => ({
    workerId: t.string({ required: true }),
    pool: t.field({ type: PoolEnum, description: 'which jobs to route here (default CPU)' }),
    provider: t.string({ description: 'the execution provider the worker\'s model runs on, once loaded' }),
    host: t.string(),
    maxJobs: t.int({ required: true }),
    maxSeconds: t.float({ required: true, description: 'audio seconds in the batch (the first job is taken whatever its length)' }),
    waitSeconds: t.float({ description: 'long-poll: wait up to this long for work (default 0, at most 60)' }),
    batchWindowMs: t.int({ description: 'once there is work, wait up to this long for a fuller batch (default: the server\'s MURMUR_BATCH_WINDOW_MS)' }),
  }),
});

const LeaseProgressInput = builder.inputType('LeaseProgressInput', {
  fields: (t) => ({
    jobId: t.id({ required: true }),
    leaseToken: t.int({ required: true }),
    progress: t.float({ description: '0 to 1' }),
  }),
});

const WordInput = builder.inputType('WordInput', {
  fields: (t) => ({ word: t.string({ required: true }), start: t.float({ required: true }), end: t.float({ required: true }), probability: t.float({ required: true }) }),
});

const SegmentInput = builder.inputType('SegmentInput', {
  fields: (t) => ({
    start: t.float({ required: true }),
    end: t.float({ required: true }),
    text: t.string({ required: true }),
    tokens: t.intList(),
    seek: t.int(),
    avgLogprob: t.float(),
    compressionRatio: t.float(),
    noSpeechProb: t.float(),
    temperature: t.float(),
    words: t.field({ type: [WordInput] }),
  }),
});

const TranscriptInput = builder.inputType('TranscriptInput', {
  fields: (t) => ({
    text: t.string({ required: true }),
    language: t.string({ required: true }),
    model: t.string({ required: true }),
    segments: t.field({ type: [SegmentInput], required: true }),
  }),
});

builder.mutationFields((t) => ({
  claimJobs: t.field({
    type: [LeaseRef],
    description: 'worker only: take a batch of pending jobs under a lease',
    args: { input: t.arg({ type: ClaimInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
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
        ctx.log.info({ event: 'jobs.claimed', workerId: input.workerId, pool: worker.pool, jobIds }, `worker ${input.workerId} (${worker.pool}) claimed ${leases.length} job(s): ${jobIds.join(', ')}`);
      }
      // Audio straight from the blob store when it can hand out a URL (S3), else through the API's worker-only route.
      return Promise.all(leases.map(async (l) => ({ ...l, audioUrl: (await ctx.store.presignGet(l.job.blobKey)) ?? `${ctx.origin}/audio/${l.job.id}` })));
    },
  }),
  heartbeat: t.field({
    type: [LeaseStatus],
    description: 'worker only: extend leases and report progress; the answer says which jobs to drop',
    args: {
      workerId: t.arg.string({ required: true }),
      pool: t.arg({ type: PoolEnum }),
      provider: t.arg.string(),
      leases: t.arg({ type: [LeaseProgressInput], required: true }),
    },
    resolve: async (_root, args, ctx) => {
      requireWorker(ctx);
      await ctx.queue.touchWorker({ id: args.workerId, pool: (args.pool ?? 'cpu') as Pool, provider: args.provider });
      return ctx.queue.heartbeat(args.leases.map((l) => ({ jobId: String(l.jobId), leaseToken: l.leaseToken, progress: l.progress })));
    },
  }),
  completeJob: t.field({
    type: JobRef,
    description: 'worker only: store the transcript; refused (LEASE_LOST, JOB_CANCELLED) when the lease is no longer this worker\'s',
    args: { jobId: t.arg.id({ required: true }), leaseToken: t.arg.int({ required: true }), result: t.arg({ type: TranscriptInput, required: true }) },
    resolve: async (_root, args, ctx) => {
      requireWorker(ctx);
      const job = await ctx.queue.complete(String(args.jobId), args.leaseToken, args.result);
      ctx.metrics.processing.observe((job.finishedAt! - job.startedAt!) / 1000);
      // A finished job's transcript is all anyone needs; failed and cancelled ones keep their audio for retryJob.
      // Deleted before answering; an instance that dies in between leaves it to the sweep at the next start.
      ctx.log.info({ event: 'job.done', jobId: job.id, workerId: job.workerId, seconds: (job.finishedAt! - job.startedAt!) / 1000 }, `job ${job.id} done`);
      await ctx.store.delete(job.blobKey).catch((err) => ctx.log.error({ event: 'audio.delete_failed', jobId: job.id, key: job.blobKey, err }, `could not delete the audio of job ${job.id}: ${err.message}`));
      return job;
    },
  }),
  failJob: t.field({
    type: JobRef,
    description: 'worker only: a retryable failure backs off and runs again; a permanent one fails the job',
    args: {
      jobId: t.arg.id({ required: true }),
      leaseToken: t.arg.int({ required: true }),
      code: t.arg.string({ required: true }),
      message: t.arg.string({ required: true }),
      retryable: t.arg.boolean({ required: true }),
    },
    resolve: async (_root, args, ctx) => {
      requireWorker(ctx);
      // A code clients know passes as it is; anything else (a crash, an onnxruntime error) reaches them as
      // INTERNAL_SERVER_ERROR with a reference, and its details stay in this log.
      let { code, message } = args;
      if (!isJobErrorCode(code)) {
        const reference = randomUUID();
        ctx.log.error({ event: 'job.worker_error', jobId: args.jobId, reference, code, message }, `job ${args.jobId}: worker error ${reference}: ${code}: ${message}`);
        [code, message] = ['INTERNAL_SERVER_ERROR', `the worker failed unexpectedly (reference ${reference})`];
      }
      const job = await ctx.queue.fail(String(args.jobId), args.leaseToken, { code, message, retryable: args.retryable });
      const again = job.status === 'PENDING';
      ctx.log[again ? 'info' : 'warn']({ event: 'job.failed', jobId: job.id, workerId: job.workerId, code, attempts: job.attempts, willRetry: again }, `job ${job.id} failed (${code}${again ? ', will retry' : ''})`);
      // The masked code: a label per worker-sent string would grow without bound.
      ctx.metrics.failures.inc({ code });
      return job;
    },
  }),
  releaseJob: t.field({
    type: JobRef,
    description: 'worker only: give a job back unfinished (the worker is stopping): pending again at once, the attempt not counted',
    args: { jobId: t.arg.id({ required: true }), leaseToken: t.arg.int({ required: true }) },
    resolve: async (_root, args, ctx) => {
      requireWorker(ctx);
      const job = await ctx.queue.release(String(args.jobId), args.leaseToken);
      ctx.log.info({ event: 'job.released', jobId: job.id }, `job ${job.id} handed back unfinished`);
      return job;
    },
  }),
  signOff: t.field({
    type: 'Boolean',
    description: 'worker only: the worker is exiting and holds no leases',
    args: { workerId: t.arg.string({ required: true }) },
    resolve: async (_root, { workerId }, ctx) => {
      requireWorker(ctx);
      await ctx.queue.removeWorker(workerId);
      return true;
    },
  }),
}));
