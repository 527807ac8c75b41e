// The worker protocol: the only mutations a worker needs, and only for callers
// holding the worker token. Workers never touch the database.
import type { Lease } from '../../queue/queue.ts';
import { claimWhenReady } from '../../queue/longPoll.ts';
import { builder } from '../builder.ts';
import type { Context } from '../context.ts';
import { ApiError } from '../errors.ts';
import { JobRef } from './job.ts';

function requireWorker(ctx: Context): void {
  if (!ctx.isWorker) throw new ApiError('UNAUTHENTICATED', 'worker operations need the worker token (Authorization: Bearer …)');
}

const LeaseRef = builder.objectRef<Lease & { audioUrl: string }>('Lease').implement({
  fields: (t) => ({
    job: t.field({ type: JobRef, resolve: (l) => l.job }),
    leaseToken: t.exposeInt('leaseToken', { description: 'the fencing token: progress, complete and fail must present it' }),
    leaseExpiresAt: t.field({ type: 'DateTime', resolve: (l) => l.leaseExpiresAt }),
    leaseSeconds: t.float({ description: 'how long a lease lasts without a heartbeat: heartbeat well within it (the worker\'s clock need not agree with leaseExpiresAt)', resolve: (_l, _args, ctx) => ctx.config.leaseSeconds }),
    audioUrl: t.exposeString('audioUrl', { description: 'GET it with the worker token' }),
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

const SegmentInput = builder.inputType('SegmentInput', {
  fields: (t) => ({ start: t.float({ required: true }), end: t.float({ required: true }), text: t.string({ required: true }) }),
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
      const leases = await ctx.workers.polling(input.workerId, () =>
        claimWhenReady(ctx.queue, {
          workerId: input.workerId,
          maxJobs: input.maxJobs,
          maxSeconds: input.maxSeconds,
          waitMs,
          batchWindowMs: input.batchWindowMs ?? ctx.config.batchWindowMs,
          signal: ctx.signal,
        }),
      );
      if (leases.length) ctx.log(`worker ${input.workerId} claimed ${leases.length} job(s): ${leases.map((l) => l.job.id).join(', ')}`);
      return leases.map((l) => ({ ...l, audioUrl: `${ctx.origin}/audio/${l.job.id}` }));
    },
  }),
  heartbeat: t.field({
    type: [LeaseStatus],
    description: 'worker only: extend leases and report progress; the answer says which jobs to drop',
    args: { workerId: t.arg.string({ required: true }), leases: t.arg({ type: [LeaseProgressInput], required: true }) },
    resolve: (_root, args, ctx) => {
      requireWorker(ctx);
      ctx.workers.touch(args.workerId);
      return ctx.queue.heartbeat(args.leases.map((l) => ({ jobId: String(l.jobId), leaseToken: l.leaseToken, progress: l.progress })));
    },
  }),
  completeJob: t.field({
    type: JobRef,
    description: 'worker only: store the transcript; refused (LEASE_LOST, JOB_CANCELLED) when the lease is no longer this worker\'s',
    args: { jobId: t.arg.id({ required: true }), leaseToken: t.arg.int({ required: true }), result: t.arg({ type: TranscriptInput, required: true }) },
    resolve: (_root, args, ctx) => {
      requireWorker(ctx);
      return ctx.queue.complete(String(args.jobId), args.leaseToken, args.result);
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
    resolve: (_root, args, ctx) => {
      requireWorker(ctx);
      return ctx.queue.fail(String(args.jobId), args.leaseToken, { code: args.code, message: args.message, retryable: args.retryable });
    },
  }),
  signOff: t.field({
    type: 'Boolean',
    description: 'worker only: the worker is exiting and holds no leases',
    args: { workerId: t.arg.string({ required: true }) },
    resolve: (_root, { workerId }, ctx) => {
      requireWorker(ctx);
      ctx.workers.leave(workerId);
      return true;
    },
  }),
}));
