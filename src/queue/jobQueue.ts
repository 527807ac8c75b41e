// The queue: what the jobs table promises, whichever database holds it. Two
// implementations, one contract (test/queue.conformance.test.ts runs the same
// suite against both): SQLite for one machine (sqlite/), PostgreSQL for many
// API instances (postgres/). Everything in the API that touches the database
// goes through this interface.
//
// Glossary
//   claim     a worker takes up to N pending jobs (and S seconds of audio) at once
//   lease     a claim's hold on a job, until `leaseExpiresAt`; heartbeats extend it
//   token     the fencing token: `leaseToken` rises with every claim, and only the
//             current token may report progress, complete or fail the job
//   attempt   one claim; `attempts` counts them, `maxAttempts` bounds them
//   pool      the kind of worker: `cpu` takes short jobs, `gpu` long ones; either
//             takes the other's jobs while no worker of the other pool is live
//   live      a worker heard from (claim, heartbeat) within the liveness window
//   tenant    whose job it is: the tenant of the API key that created it; a
//             `tenant` argument limits a read or change to that tenant's jobs
//             (another tenant's job is not found), none means every tenant
import type { EventEmitter } from 'node:events';
import type { KeyStore } from '../auth/keys.ts';
import type { DecodingOptions, Transcript } from '../transcript/transcript.ts';

export const JOB_STATUSES = ['PENDING', 'PROCESSING', 'DONE', 'FAILED', 'CANCELLED'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
/** A job in one of these is over: nothing changes it but retryJob and deletion. */
export const TERMINAL: readonly JobStatus[] = ['DONE', 'FAILED', 'CANCELLED'];
export const TASKS = ['transcribe', 'translate'] as const;
export type Task = (typeof TASKS)[number];

/** A job, as every backend stores it (each schema.ts checks that its row is one). Times are epoch ms. */
export interface Job {
  /** Insertion order: the tie-break between equal priorities, and the list cursor. */
  seq: number;
  id: string;
  status: JobStatus;
  priority: number;
  /** Unique within the tenant. */
  idempotencyKey: string | null;
  /** Whose job it is: the tenant of the API key that created it ('default' without keys). */
  tenant: string;
  /** The key that created it (rate limits count per key); null without keys. */
  apiKeyId: string | null;
  language: string | null;
  task: Task;
  timestamps: boolean;
  /** Prompt, temperatures, …: null for greedy decoding without a prompt. */
  decoding: DecodingOptions | null;
  filename: string;
  bytes: number;
  durationSeconds: number;
  /** The upload as probed: container format, its own sample rate and channel count. */
  format: string;
  sampleRate: number;
  channels: number;
  blobKey: string;
  attempts: number;
  maxAttempts: number;
  progress: number;
  /** Before this a job waiting on a retry is not claimed. */
  runAfter: number;
  /** The fencing token: raised by every claim, so a worker holding an older one is refused. */
  leaseToken: number;
  leaseExpiresAt: number | null;
  workerId: string | null;
  /** The transcript (a Transcript) once done. */
  result: unknown;
  errorCode: string | null;
  errorMessage: string | null;
  /** Where to POST the job's end (createJob's callbackUrl), and how that went. */
  webhookUrl: string | null;
  webhookAttempts: number;
  /** The last answer's HTTP status; 0: no answer (refused, timed out). */
  webhookStatus: number | null;
  webhookDeliveredAt: number | null;
  /** When a delivery is due; null: none is. A sender holds it by moving it ahead while it tries. */
  webhookNextAt: number | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  updatedAt: number;
}

/** A type-level check each backend's schema.ts makes: its row is a Job, and a Job its row (no column more, none less). */
export type SameAsJob<Row extends Job & Record<Exclude<keyof Row, keyof Job>, never>> = Row;
export type Pool = 'cpu' | 'gpu';
export const POOLS: readonly Pool[] = ['cpu', 'gpu'];

/** What creating a job takes: its input as probed, and the options the client chose (defaults for the rest). */
export type NewJob = Pick<Job, 'filename' | 'bytes' | 'durationSeconds' | 'format' | 'sampleRate' | 'channels' | 'blobKey'> &
  Partial<
    Pick<Job, 'language' | 'task' | 'timestamps' | 'decoding' | 'priority' | 'idempotencyKey' | 'tenant' | 'apiKeyId' | 'webhookUrl' | 'id'>
  > & {
    /** The key's reservation (`reserve`) this job fills: given up in the transaction that stores the job. */
    reservation?: string | null;
  };

/** A key's job limits (0: none). */
export interface JobLimits {
  /** Jobs created in the last `windowMs`. */
  perWindow: number;
  windowMs: number;
  /** Jobs pending or processing. */
  maxPending: number;
}

/** A place taken under a key's limits, or the usage that refused it (each count includes the places others hold). */
export type Reservation = { id: string } | { refused: KeyUsage };

export interface Lease {
  job: Job;
  leaseToken: number;
  leaseExpiresAt: number;
}

export type LeaseState = 'ACTIVE' | 'CANCELLED' | 'LOST';

/** A worker as the queue knows it: who, which pool, on what, and when it was last heard from. */
export interface WorkerInfo {
  id: string;
  pool: Pool;
  /** The execution provider its model runs on (`cpu`, `cuda`, …); null until it has loaded one. */
  provider: string | null;
  host: string | null;
  lastSeenAt: number;
}

export interface QueueOptions {
  /** How long a claim holds a job without a heartbeat. */
  leaseMs: number;
  maxAttempts: number;
  /** First retry delay; each further attempt doubles it, up to retryMaxMs, with full jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Jobs up to this long go to the cpu pool, longer ones to the gpu pool. */
  smallJobSeconds: number;
  /** A worker not heard from for this long is no longer live (longer than the longest long-poll claim). */
  workerWindowMs: number;
  now?: () => number;
}

export interface PoolStats {
  pool: Pool;
  /** Pending jobs of this pool's size (claimable or waiting on a retry delay). */
  pending: number;
  pendingSeconds: number;
  oldestPendingAgeSeconds: number | null;
  workers: number;
}

export interface QueueStats {
  pending: number;
  processing: number;
  done: number;
  failed: number;
  cancelled: number;
  oldestPendingAgeSeconds: number | null;
  pools: PoolStats[];
  liveWorkers: WorkerInfo[];
}

export interface Page {
  jobs: Job[];
  hasNextPage: boolean;
}

export interface JobFailure {
  code: string;
  message: string;
  retryable: boolean;
}

export type QueueEvents = { job: [Job]; work: []; resync: []; deleted: [string] };

/** What one API key has queued: jobs created since a moment, their audio, and its jobs not finished yet. */
export interface KeyUsage {
  created: number;
  seconds: number;
  /** When the oldest job counted in `created` was created (for how long until the window frees a place). */
  firstCreatedAt: number | null;
  pending: number;
}

export interface JobQueue {
  /**
   * `job` after every committed change of a job (from any API instance); `deleted` when one is gone;
   * `work` when a job may have become claimable; `resync` when changes may have been missed (a lost
   * connection): read again.
   */
  readonly events: EventEmitter<QueueEvents>;
  readonly options: QueueOptions;
  /** The API keys, in the same database. */
  readonly keys: KeyStore;

  /**
   * Creates a job, or returns the one its tenant already created with the same idempotency key (`created` false).
   * Durable when it resolves. UPLOAD_ALREADY_USED when another job has its blob (one blob, one job).
   */
  create(input: NewJob): Promise<{ job: Job; created: boolean }>;
  get(id: string, tenant?: string): Promise<Job | undefined>;
  findByIdempotencyKey(key: string, tenant: string): Promise<Job | undefined>;
  findByBlobKey(key: string): Promise<Job | undefined>;
  /** Newest first; `afterSeq` is the `seq` of the last job of the previous page. */
  list(options: { status?: JobStatus; first: number; afterSeq?: number; tenant?: string }): Promise<Page>;
  /** A pending job is cancelled at once; a processing one too, and its worker drops it at its next heartbeat. */
  cancel(id: string, tenant?: string): Promise<Job>;
  /** A failed or cancelled job goes back to the queue with its attempts reset. */
  retry(id: string, tenant?: string): Promise<Job>;
  /** Deletes the job's row (its transcript with it) and returns what it was; JOB_NOT_FOUND when there is none (for this tenant). */
  delete(id: string, tenant?: string): Promise<Job>;
  /** Deletes up to `limit` finished jobs (done, failed, cancelled) that finished before `before` (epoch ms); returns them. */
  purgeFinished(before: number, limit: number): Promise<Job[]>;
  /**
   * Webhooks due by `now`, up to `limit`, held for `holdMs` (their next try is moved that far ahead, so
   * another instance does not send them meanwhile).
   */
  claimWebhooks(now: number, limit: number, holdMs: number): Promise<Job[]>;
  /** Records a delivery attempt's outcome: delivered (2xx), or tried again at `nextAt` (null: given up). */
  recordWebhook(id: string, outcome: { status: number; delivered: boolean; nextAt: number | null; at: number }): Promise<Job | undefined>;
  /** A value every instance shares: the stored one, or `initial` stored now by whichever instance comes first. */
  setting(name: string, initial: () => string): Promise<string>;
  /** For rate limits: what the key created since `since` (epoch ms), and how many of its jobs are pending or processing. */
  usage(apiKeyId: string, since: number): Promise<KeyUsage>;
  /**
   * Takes one place under the key's limits until `expiresAt` (or until `create` fills it or `unreserve` gives it up),
   * counting its jobs and the places other requests hold, atomically across API instances: N requests racing at a
   * limit of L get at most L places.
   */
  reserve(apiKeyId: string, limits: JobLimits, now: number, expiresAt: number): Promise<Reservation>;
  /** Gives a place back (the request was refused); nothing when it was filled or has lapsed. */
  unreserve(reservation: string): Promise<void>;

  /** Jobs a worker of `pool` could claim now. */
  claimable(pool: Pool, maxJobSeconds?: number): Promise<number>;
  /** When the earliest job waiting on a retry delay becomes claimable (epoch ms), if any. */
  nextRunAfter(pool: Pool, maxJobSeconds?: number): Promise<number | null>;
  /**
   * Takes up to `maxJobs` claimable jobs for a worker of `pool`, highest priority
   * first, then oldest, stopping before `maxSeconds` of audio (the first job is
   * always taken, however long). With `maxJobSeconds`, only jobs of at most that
   * much audio are taken (and counted by claimable and nextRunAfter): a worker
   * whose model is full of long work takes short jobs, which go ahead of it.
   */
  claim(worker: { id: string; pool: Pool }, maxJobs: number, maxSeconds: number, maxJobSeconds?: number): Promise<Lease[]>;
  /** Extends the leases still held and records progress; tells the worker which jobs to drop. */
  /**
   * Extends the leases; records progress and, where given, the transcript of the windows done so far (`Job.result`
   * while the job runs, replaced by the final one at completion).
   */
  heartbeat(
    leases: { jobId: string; leaseToken: number; progress?: number | null; partial?: Transcript | null }[],
  ): Promise<{ jobId: string; state: LeaseState }[]>;
  complete(jobId: string, leaseToken: number, transcript: Transcript): Promise<Job>;
  /**
   * A retryable failure goes back to the queue after an exponential delay with
   * full jitter, until the job runs out of attempts; a permanent one fails at once.
   */
  fail(jobId: string, leaseToken: number, error: JobFailure): Promise<Job>;
  /** The worker gives the job back unfinished (it is shutting down): pending again at once, without counting the attempt. */
  release(jobId: string, leaseToken: number): Promise<Job>;
  /** Jobs whose lease ran out go back to the queue, or fail once out of attempts. Returns how many. */
  expireLeases(): Promise<number>;

  /** Records that a worker was heard from. */
  touchWorker(worker: { id: string; pool: Pool; provider?: string | null; host?: string | null }): Promise<void>;
  /** The worker signed off. */
  removeWorker(id: string): Promise<void>;
  liveWorkers(): Promise<WorkerInfo[]>;
  /** Deletes workers not heard from within the liveness window (the list's own housekeeping). Returns how many. */
  forgetQuietWorkers(): Promise<number>;

  stats(): Promise<QueueStats>;
  /** Throws when the database cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function isTerminal(job: Job): boolean {
  return TERMINAL.includes(job.status);
}

/** Full jitter (AWS's "exponential backoff and jitter"): anywhere in [0, base·2^(attempt-1)], capped. */
export function retryDelayMs(options: QueueOptions, attempts: number): number {
  const ceiling = Math.min(options.retryMaxMs, options.retryBaseMs * 2 ** (attempts - 1));
  return Math.round(Math.random() * ceiling);
}

/**
 * Which job sizes a worker of `pool` may take, given which pools have live workers:
 * its own size, and the other pool's while that pool has nobody to run them.
 */
export function sizesFor(pool: Pool, livePools: ReadonlySet<Pool>): { small: boolean; large: boolean } {
  const other: Pool = pool === 'cpu' ? 'gpu' : 'cpu';
  const takesOther = !livePools.has(other);
  return pool === 'cpu' ? { small: true, large: takesOther } : { small: takesOther, large: true };
}
