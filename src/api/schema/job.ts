// Jobs as clients see them: the Job type, the queries that read jobs, the
// mutations that create, cancel and retry them, and the jobUpdated subscription.
import { JOB_STATUSES, isTerminal, type Job } from '../../queue/jobQueue.ts';
import type { Transcript, Word } from '../../transcript/transcript.ts';
import { QueueError } from '../../queue/errors.ts';
import { toSrt, toVtt, wordCues } from '../../transcript/formats.ts';
import { builder } from '../builder.ts';
import { ownerOf, tenantOf } from '../auth.ts';
import { ERROR_CODES, JOB_ERROR_CODES, SHOWN_CODES, isJobErrorCode, type ShownCode } from '../../errors.ts';
import { ApiError } from '../errors.ts';
import { createJob } from '../ingest.ts';
import { tenantSecret } from '../../webhooks/webhooks.ts';
import { followJob } from '../follow.ts';

export const JobStatus = builder.enumType('JobStatus', {
  values: JOB_STATUSES,
});

export const Task = builder.enumType('Task', {
  values: { TRANSCRIBE: { value: 'transcribe' }, TRANSLATE: { value: 'translate', description: 'into English' } } as const,
});

export const JobRef = builder.objectRef<Job>('Job');
const InputRef = builder.objectRef<Job>('JobInput');
const OptionsRef = builder.objectRef<Job>('JobOptions');
const TranscriptRef = builder.objectRef<Transcript & { partial: boolean }>('Transcript');
const SegmentRef = builder.objectRef<Transcript['segments'][number]>('Segment');
const WordRef = builder.objectRef<Word>('Word').implement({
  description: "A word and when it was said (openai/whisper's word timings: cross-attention aligned to the audio)",
  fields: (t) => ({
    word: t.exposeString('word', { description: 'as Whisper writes it: with its leading space, punctuation merged in (" Hello,")' }),
    start: t.exposeFloat('start', { description: 'seconds from the start of the audio' }),
    end: t.exposeFloat('end'),
    probability: t.exposeFloat('probability', { description: 'the mean probability of its tokens' }),
  }),
});
const ErrorRef = builder.objectRef<{ code: string; message: string }>('JobError');
const WebhookRef = builder.objectRef<Job>('Webhook').implement({
  description: "The delivery of the job's end to its callbackUrl",
  fields: (t) => ({
    url: t.string({ resolve: (j) => j.webhookUrl! }),
    attempts: t.exposeInt('webhookAttempts'),
    lastStatus: t.exposeInt('webhookStatus', {
      nullable: true,
      description: "the last answer's HTTP status; 0: none came (refused, timed out)",
    }),
    deliveredAt: t.field({ type: 'DateTime', nullable: true, resolve: (j) => j.webhookDeliveredAt }),
    nextAttemptAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'when it is tried (again); null: delivered, given up, or the job has not ended',
      resolve: (j) => j.webhookNextAt,
    }),
  }),
});

InputRef.implement({
  description: 'What was uploaded',
  fields: (t) => ({
    filename: t.exposeString('filename'),
    bytes: t.exposeInt('bytes'),
    format: t.exposeString('format', { description: 'the container as probed: wav, flac, mp3, ogg, opus, m4a, aac, webm' }),
    durationSeconds: t.exposeFloat('durationSeconds'),
    sampleRate: t.exposeInt('sampleRate', { description: 'of the upload, before resampling to 16 kHz' }),
    channels: t.exposeInt('channels'),
  }),
});

OptionsRef.implement({
  fields: (t) => ({
    language: t.exposeString('language', { nullable: true, description: 'null: detected from the audio' }),
    task: t.field({ type: Task, resolve: (j) => j.task }),
    timestamps: t.exposeBoolean('timestamps'),
    priority: t.exposeInt('priority'),
    prompt: t.string({ nullable: true, resolve: (j) => j.decoding?.prompt ?? null }),
    conditionOnPreviousText: t.boolean({ resolve: (j) => j.decoding?.conditionOnPreviousText ?? false }),
    temperatures: t.floatList({
      description: "tried in turn; more than one: openai/whisper's temperature fallback",
      resolve: (j) => j.decoding?.temperatures ?? [0],
    }),
    seed: t.int({ description: 'of the sampler above temperature 0', resolve: (j) => j.decoding?.seed ?? 0 }),
    beamSize: t.int({ nullable: true, description: 'null: greedy', resolve: (j) => j.decoding?.beamSize ?? null }),
    patience: t.float({ nullable: true, resolve: (j) => j.decoding?.patience ?? null }),
    lengthPenalty: t.float({ nullable: true, resolve: (j) => j.decoding?.lengthPenalty ?? null }),
    wordTimestamps: t.boolean({ resolve: (j) => j.decoding?.wordTimestamps ?? false }),
  }),
});

SegmentRef.implement({
  fields: (t) => ({
    start: t.exposeFloat('start', { description: 'seconds from the start of the audio' }),
    end: t.exposeFloat('end'),
    text: t.exposeString('text'),
    tokens: t.intList({
      nullable: true,
      description: 'the token ids it was read from, its timestamp tokens included',
      resolve: (s) => s.tokens ?? null,
    }),
    seek: t.int({
      nullable: true,
      description: "where its window starts in the audio, in 10 ms frames (openai/whisper's seek)",
      resolve: (s) => s.seek ?? null,
    }),
    avgLogprob: t.float({
      nullable: true,
      description: "the average log-probability of the window's tokens (openai/whisper's avg_logprob); below -1: unsure",
      resolve: (s) => s.avgLogprob ?? null,
    }),
    compressionRatio: t.float({
      nullable: true,
      description: "of the window's text under zlib; above 2.4: likely a repetition loop",
      resolve: (s) => s.compressionRatio ?? null,
    }),
    noSpeechProb: t.float({
      nullable: true,
      description: 'the probability the window holds no speech',
      resolve: (s) => s.noSpeechProb ?? null,
    }),
    temperature: t.float({
      nullable: true,
      description: "the temperature the window's text was decoded at",
      resolve: (s) => s.temperature ?? null,
    }),
    words: t.field({
      type: [WordRef],
      nullable: true,
      description: 'null unless the job asked for wordTimestamps',
      resolve: (s) => s.words ?? null,
    }),
  }),
});

TranscriptRef.implement({
  fields: (t) => ({
    partial: t.exposeBoolean('partial', {
      description: 'the job still runs: these are the windows done so far, from the start; more follow',
    }),
    text: t.exposeString('text'),
    language: t.exposeString('language'),
    model: t.exposeString('model', {
      description: 'the model that wrote it; says so when the model is the synthetic one and the text is meaningless',
    }),
    segments: t.field({ type: [SegmentRef], resolve: (r) => r.segments }),
    windows: t.int({
      nullable: true,
      description: "while partial: the recording's windows (30 s, or speech chunks) done so far, from its start",
      resolve: (r) => (r.partial ? (r.windows ?? null) : null),
    }),
    words: t.field({
      type: [WordRef],
      nullable: true,
      description: "every segment's words in order; null unless the job asked for wordTimestamps",
      resolve: (r) => (r.segments.some((s) => s.words) ? r.segments.flatMap((s) => s.words ?? []) : null),
    }),
    ...Object.fromEntries(
      (
        [
          ['srt', 'SubRip subtitles', toSrt],
          ['vtt', 'WebVTT subtitles', toVtt],
        ] as const
      ).map(([name, description, format]) => [
        name,
        t.string({
          description,
          args: { wordLevel: t.arg.boolean({ description: 'one cue a word (needs wordTimestamps)', defaultValue: false }) },
          resolve: (r, { wordLevel }) => format(cueSegments(r, wordLevel ?? false)),
        }),
      ]),
    ),
  }),
});

/** The cues of a subtitle file: the segments, or one a word. */
function cueSegments(r: Transcript, wordLevel: boolean) {
  if (!wordLevel) return r.segments;
  if (!r.segments.some((s) => s.words))
    throw new ApiError('BAD_USER_INPUT', 'word-level subtitles need a job created with wordTimestamps: true');
  return wordCues(r.segments);
}

builder.enumType('ErrorCode', {
  description: "Every code an error's `extensions.code` may carry",
  values: Object.fromEntries(SHOWN_CODES.map((code) => [code, { description: ERROR_CODES[code].about }])) as Record<
    ShownCode,
    { description: string }
  >,
});

const JobErrorCodeEnum = builder.enumType('JobErrorCode', { values: JOB_ERROR_CODES });

ErrorRef.implement({
  fields: (t) => ({
    code: t.field({
      type: JobErrorCodeEnum,
      description: 'why: the audio, the language or options, a worker that kept disappearing (LEASE_EXPIRED), or INTERNAL_SERVER_ERROR',
      // Codes workers sent that are not in the list were stored as INTERNAL_SERVER_ERROR; older rows are read the same way.
      resolve: (e) => (isJobErrorCode(e.code) ? e.code : 'INTERNAL_SERVER_ERROR'),
    }),
    message: t.exposeString('message'),
  }),
});

JobRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    tenant: t.exposeString('tenant', { description: 'whose job: the tenant of the API key that created it' }),
    status: t.field({ type: JobStatus, resolve: (j) => j.status }),
    attempts: t.exposeInt('attempts', { description: 'claims by workers so far' }),
    workerId: t.exposeString('workerId', { nullable: true, description: 'the worker that holds the job, or held it last' }),
    maxAttempts: t.exposeInt('maxAttempts'),
    progress: t.exposeFloat('progress', { description: '0 to 1' }),
    createdAt: t.field({ type: 'DateTime', resolve: (j) => j.createdAt }),
    startedAt: t.field({ type: 'DateTime', nullable: true, resolve: (j) => j.startedAt }),
    finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (j) => j.finishedAt }),
    input: t.field({ type: InputRef, resolve: (j) => j }),
    options: t.field({ type: OptionsRef, resolve: (j) => j }),
    result: t.field({
      type: TranscriptRef,
      nullable: true,
      description: 'the transcript once done; while the job runs, the windows done so far (partial: true)',
      resolve: (j) =>
        j.status === 'DONE' || (j.status === 'PROCESSING' && j.result)
          ? { ...(j.result as Transcript), partial: j.status !== 'DONE' }
          : null,
    }),
    webhook: t.field({
      type: WebhookRef,
      nullable: true,
      description: 'null without a callbackUrl',
      resolve: (j) => (j.webhookUrl ? j : null),
    }),
    error: t.field({
      type: ErrorRef,
      nullable: true,
      description: 'the last error: why a job failed, or why its last attempt did',
      resolve: (j) => (j.errorCode ? { code: j.errorCode, message: j.errorMessage ?? '' } : null),
    }),
  }),
});

const PageInfo = builder.objectRef<{ hasNextPage: boolean; endCursor: string | null }>('PageInfo').implement({
  fields: (t) => ({ hasNextPage: t.exposeBoolean('hasNextPage'), endCursor: t.exposeString('endCursor', { nullable: true }) }),
});
const JobEdge = builder.objectRef<Job>('JobEdge').implement({
  fields: (t) => ({ cursor: t.string({ resolve: (j) => cursorOf(j) }), node: t.field({ type: JobRef, resolve: (j) => j }) }),
});
const JobConnection = builder.objectRef<{ jobs: Job[]; hasNextPage: boolean }>('JobConnection').implement({
  fields: (t) => ({
    edges: t.field({ type: [JobEdge], resolve: (p) => p.jobs }),
    nodes: t.field({ type: [JobRef], resolve: (p) => p.jobs }),
    pageInfo: t.field({
      type: PageInfo,
      resolve: (p) => ({ hasNextPage: p.hasNextPage, endCursor: p.jobs.length ? cursorOf(p.jobs.at(-1)!) : null }),
    }),
  }),
});

const cursorOf = (job: Job) => Buffer.from(`job:${job.seq}`).toString('base64url');
function seqOf(cursor: string): number {
  const seq = Number(/^job:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString())?.[1]);
  if (!Number.isSafeInteger(seq)) throw new ApiError('BAD_USER_INPUT', `not a jobs cursor: ${cursor}`);
  return seq;
}

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});

builder.queryFields((t) => ({
  job: t.field({
    type: JobRef,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    description: "null for an unknown id, and for another tenant's job",
    resolve: async (_root, { id }, ctx) => (await ctx.queue.get(String(id), tenantOf(ctx))) ?? null,
  }),
  jobByIdempotencyKey: t.field({
    type: JobRef,
    nullable: true,
    args: { key: t.arg.string({ required: true }) },
    description:
      "the job createJob made with this idempotencyKey for the caller's tenant (keys are per tenant), or null: ask before sending a file again",
    resolve: async (_root, { key }, ctx) => (await ctx.queue.findByIdempotencyKey(key, ownerOf(ctx).tenant)) ?? null,
  }),
  webhookSecret: t.string({
    description: "The secret your tenant's webhooks are signed with (whsec_…, as Standard Webhooks libraries take it)",
    resolve: (_root, _args, ctx) => tenantSecret(ctx.webhookMaster, ownerOf(ctx).tenant),
  }),
  jobs: t.field({
    type: JobConnection,
    description: "newest first: the key's tenant's jobs (an admin key: every tenant's)",
    args: { status: t.arg({ type: JobStatus }), first: t.arg.int({ defaultValue: 20 }), after: t.arg.string() },
    resolve: (_root, args, ctx) => {
      const tenant = tenantOf(ctx);
      const first = args.first ?? 20;
      if (first < 0 || first > 100) throw new ApiError('BAD_USER_INPUT', '`first` must be between 0 and 100');
      return ctx.queue.list({ status: args.status ?? undefined, first, afterSeq: args.after ? seqOf(args.after) : undefined, tenant });
    },
  }),
}));

const CreateJobInput = builder.inputType('CreateJobInput', {
  fields: (t) => ({
    file: t.field({
      type: 'File',
      description: 'the audio (WAV, FLAC, MP3, OGG Vorbis, Opus, M4A/AAC, WebM), sent as a GraphQL multipart request',
    }),
    uploadKey: t.string({ description: "instead of `file`: the key of an upload made with createUpload's presigned URL" }),
    url: t.string({
      description:
        'instead of `file`: an http(s) address to fetch the audio from (public addresses only, unless the server allows private ones)',
    }),
    language: t.string({ description: 'a code ("en") or English name ("German"); detected when left out' }),
    task: t.field({ type: Task, description: 'TRANSCRIBE (default) or TRANSLATE into English' }),
    timestamps: t.boolean({ description: 'segment times from the model (default true)' }),
    idempotencyKey: t.string({ description: "a key of the client's: sending it again returns the first job instead of a second one" }),
    priority: t.int({ description: 'higher runs first (default 0)' }),
    prompt: t.string({ description: 'text that comes before the audio, to teach names and spelling (Whisper keeps its last 223 tokens)' }),
    conditionOnPreviousText: t.boolean({
      description:
        "each 30 s window's prompt continues with the text before it (default false; windows of one job then decode one after another)",
    }),
    temperatures: t.floatList({
      description:
        "tried in turn (default [0]: greedy); more than one turns on openai/whisper's fallback: a window whose text compresses above 2.4 or averages a log-probability below -1 is decoded again at the next, and a likely silent one is dropped. [0, 0.2, 0.4, 0.6, 0.8, 1] is openai/whisper's",
    }),
    seed: t.int({ description: "seeds sampling above temperature 0, so a job's result can be reproduced (default 0)" }),
    wordTimestamps: t.boolean({
      description:
        'each segment\'s words with their times and probabilities (openai/whisper\'s word timings; the model needs alignment heads and a decoder that outputs its cross-attentions, as exports "with timestamps" do)',
    }),
    beamSize: t.int({
      description:
        "beam search with this many beams (1 to 16; 5 is faster-whisper's default) at temperature 0; left out: greedy. Slower and heavier: every beam is a row of the batch",
    }),
    patience: t.float({ description: 'beam search goes on until beamSize × patience candidates have ended (1 to 4, default 1)' }),
    lengthPenalty: t.float({
      description:
        'beam search ranks candidates by log-probability over ((5 + length) / 6) ^ lengthPenalty (0 to 2); left out: over the length',
    }),
    callbackUrl: t.string({
      description:
        'POSTed to when the job ends, signed as Standard Webhooks describes (the secret: the webhookSecret query); same address rules as `url`',
    }),
  }),
});

builder.mutationFields((t) => ({
  createJob: t.field({
    type: JobRef,
    description: 'Stores the audio (or takes an upload made with createUpload) and queues a job; answers once both are durable.',
    args: { input: t.arg({ type: CreateJobInput, required: true }) },
    resolve: (_root, { input }, ctx) => createJob(ctx, input),
  }),
  cancelJob: t.field({
    type: JobRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      const job = await ctx.queue.cancel(String(id), tenantOf(ctx));
      ctx.log.info({ event: 'job.cancelled', jobId: job.id }, `job ${job.id} cancelled`);
      return job;
    },
  }),
  deleteJob: t.field({
    type: 'ID',
    description:
      'Deletes the job, its transcript and its audio, whatever its state (a worker holding it drops it at its next heartbeat); answers its id.',
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      const job = await ctx.queue.delete(String(id), tenantOf(ctx));
      ctx.log.info({ event: 'job.deleted', jobId: job.id }, `job ${job.id} deleted`);
      await ctx.store
        .delete(job.blobKey)
        .catch((err) =>
          ctx.log.error(
            { event: 'audio.delete_failed', jobId: job.id, key: job.blobKey, err },
            `job ${job.id} deleted, but not its audio ${job.blobKey}: ${err.message}`,
          ),
        );
      return job.id;
    },
  }),
  retryJob: t.field({
    type: JobRef,
    description: 'Queues a FAILED or CANCELLED job again, with fresh attempts.',
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      const job = await ctx.queue.retry(String(id), tenantOf(ctx));
      ctx.log.info({ event: 'job.retried', jobId: job.id }, `job ${job.id} queued again`);
      return job;
    },
  }),
}));

builder.subscriptionField('jobsChanged', (t) =>
  t.field({
    type: JobRef,
    description:
      "Every job of the key's tenant (an admin key: of every tenant) each time its status changes: created, claimed, finished, cancelled, queued again. " +
      "Progress alone is not sent: follow one job's with jobUpdated. A reader that falls behind gets each job's latest state once, and one that falls over MURMUR_SUBSCRIBER_BACKLOG jobs behind is disconnected. " +
      'Changes made while the connection was down are not replayed: read `jobs` after reconnecting.',
    subscribe: (_root, _args, ctx) => {
      const tenant = tenantOf(ctx);
      const stream = ctx.streams.create<Job>(ctx.caller, ctx.transport, 'jobsChanged');
      // The status last sent for each job not yet finished (a finished job's entry is dropped).
      const sent = new Map<string, Job['status']>();
      const onJob = (job: Job) => {
        if ((tenant !== undefined && job.tenant !== tenant) || sent.get(job.id) === job.status) return;
        if (isTerminal(job)) sent.delete(job.id);
        else sent.set(job.id, job.status);
        stream.put(job.id, job);
      };
      const onDrain = () => stream.end();
      ctx.queue.events.on('job', onJob);
      ctx.draining.addEventListener('abort', onDrain, { once: true });
      stream.onClose(() => {
        ctx.queue.events.off('job', onJob);
        ctx.draining.removeEventListener('abort', onDrain);
      });
      return stream;
    },
    resolve: (job) => job,
  }),
);

builder.subscriptionField('jobUpdated', (t) =>
  t.field({
    type: JobRef,
    description:
      'The job as it is now, then again at every change of status or progress (a reader that falls behind gets the latest state); ends when the job finishes (or is deleted).',
    args: { id: t.arg.id({ required: true }) },
    subscribe: async (_root, { id }, ctx) => {
      const current = await ctx.queue.get(String(id), tenantOf(ctx));
      if (!current) throw new QueueError('JOB_NOT_FOUND', `no job with id ${id}`);
      const stream = followJob(ctx, current.id, ctx.streams.create<Job>(ctx.caller, ctx.transport, 'jobUpdated'));
      return stream;
    },
    resolve: (job) => job,
  }),
);
