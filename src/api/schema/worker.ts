// The worker protocol: the only mutations a worker needs, and only for callers
// holding the worker token. Workers never touch the database.
import type { Lease, Pool } from '../../queue/jobQueue.ts';
import { builder } from '../builder.ts';
import * as protocol from '../workerProtocol.ts';
import { JobRef } from './job.ts';
import { PoolEnum } from './queue.ts';

const LeaseRef = builder.objectRef<Lease & { audioUrl: string }>('Lease').implement({
  fields: (t) => ({
    job: t.field({ type: JobRef, resolve: (l) => l.job }),
    leaseToken: t.exposeInt('leaseToken', { description: 'the fencing token: progress, complete and fail must present it' }),
    leaseExpiresAt: t.field({ type: 'DateTime', resolve: (l) => l.leaseExpiresAt }),
    leaseSeconds: t.float({
      description:
        "how long a lease lasts without a heartbeat: heartbeat well within it (the worker's clock need not agree with leaseExpiresAt)",
      resolve: (_l, _args, ctx) => ctx.config.leaseSeconds,
    }),
    audioUrl: t.exposeString('audioUrl', {
      description: 'GET it: with the worker token from the API, as it is from a presigned store URL',
    }),
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
    provider: t.string({ description: "the execution provider the worker's model runs on, once loaded" }),
    host: t.string(),
    maxJobs: t.int({ required: true }),
    maxSeconds: t.float({ required: true, description: 'audio seconds in the batch (the first job is taken whatever its length)' }),
    maxJobSeconds: t.float({
      description:
        'only jobs of at most this many seconds of audio (a worker whose model is full of long work takes short jobs, which go ahead of it)',
    }),
    waitSeconds: t.float({ description: 'long-poll: wait up to this long for work (default 0, at most 60)' }),
    batchWindowMs: t.int({
      description: "once there is work, wait up to this long for a fuller batch (default: the server's MURMUR_BATCH_WINDOW_MS)",
    }),
  }),
});

const LeaseProgressInput = builder.inputType('LeaseProgressInput', {
  fields: (t) => ({
    jobId: t.id({ required: true }),
    leaseToken: t.int({ required: true }),
    progress: t.float({ description: '0 to 1' }),
    partial: t.field({
      type: TranscriptInput,
      description: "the transcript of the windows done so far, from the recording's start (the job's result while it runs)",
    }),
  }),
});

const WordInput = builder.inputType('WordInput', {
  fields: (t) => ({
    word: t.string({ required: true }),
    start: t.float({ required: true }),
    end: t.float({ required: true }),
    probability: t.float({ required: true }),
  }),
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
    windows: t.int({ description: "a partial result's: the windows from the recording's start it holds" }),
  }),
});

builder.mutationFields((t) => ({
  claimJobs: t.field({
    type: [LeaseRef],
    description: 'worker only: take a batch of pending jobs under a lease',
    args: { input: t.arg({ type: ClaimInput, required: true }) },
    resolve: (_root, { input }, ctx) => protocol.claimJobs(ctx, { ...input, pool: input.pool as Pool | null | undefined }),
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
    resolve: (_root, args, ctx) => protocol.heartbeat(ctx, { ...args, pool: args.pool as Pool | null | undefined }),
  }),
  completeJob: t.field({
    type: JobRef,
    description: "worker only: store the transcript; refused (LEASE_LOST, JOB_CANCELLED) when the lease is no longer this worker's",
    args: {
      jobId: t.arg.id({ required: true }),
      leaseToken: t.arg.int({ required: true }),
      result: t.arg({ type: TranscriptInput, required: true }),
    },
    resolve: (_root, args, ctx) => protocol.completeJob(ctx, args),
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
    resolve: (_root, args, ctx) => protocol.failJob(ctx, args),
  }),
  releaseJob: t.field({
    type: JobRef,
    description: 'worker only: give a job back unfinished (the worker is stopping): pending again at once, the attempt not counted',
    args: { jobId: t.arg.id({ required: true }), leaseToken: t.arg.int({ required: true }) },
    resolve: (_root, args, ctx) => protocol.releaseJob(ctx, args),
  }),
  signOff: t.field({
    type: 'Boolean',
    description: 'worker only: the worker is exiting and holds no leases',
    args: { workerId: t.arg.string({ required: true }) },
    resolve: (_root, { workerId }, ctx) => protocol.signOff(ctx, workerId),
  }),
}));
