// The server's configuration: read from the environment and validated in one
// place at start-up. A bad value stops the program with a message naming the variable.
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { basename, resolve } from 'node:path';
import { z } from 'zod';
import { CodedError } from './errors.ts';
import { LOG_LEVELS, type LogSettings } from './log.ts';

const seconds = z.coerce.number().nonnegative();

/** Read by every program (readConfig for the server, readLogSettings for the commands that read nothing else). */
const logVariables = {
  MURMUR_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  MURMUR_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
};

const count = z.coerce.number().int().nonnegative();

const schema = z.object({
  ...logVariables,
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: z.string().default('0.0.0.0'),
  MURMUR_DATA_DIR: z.string().default('./data'),
  MURMUR_MODEL_DIR: z.string().optional(),
  MURMUR_MODEL_NAME: z
    .string()
    .regex(/^[\w.:-]{1,100}$/, 'letters, digits and . _ : - only')
    .optional(),
  MURMUR_WORKER_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  MURMUR_MAX_WORKERS: count.default(2),
  MURMUR_WORKER_UNLOAD_AFTER: seconds.default(60),
  MURMUR_WORKER_EXIT_AFTER: seconds.default(300),
  MURMUR_LEASE_SECONDS: z.coerce.number().positive().default(30),
  MURMUR_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(3),
  MURMUR_RETRY_BASE_SECONDS: seconds.default(2),
  MURMUR_RETRY_MAX_SECONDS: seconds.default(300),
  MURMUR_BATCH_JOBS: z.coerce.number().int().min(1).default(16),
  MURMUR_BATCH_SECONDS: z.coerce.number().positive().default(480),
  MURMUR_BATCH_WINDOW_MS: count.default(200),
  MURMUR_MAX_UPLOAD_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(200 * 1024 * 1024),
  MURMUR_MAX_DURATION_SECONDS: z.coerce
    .number()
    .positive()
    .default(4 * 3600),
  MURMUR_PROVIDERS: z.string().default('cpu'),
  MURMUR_DTYPE: z.string().default('fp32'),
  MURMUR_THREADS: count.default(0),
  MURMUR_SEGMENTATION: z.enum(['vad', 'fixed']).default('vad'),
  MURMUR_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL (leave it unset for the SQLite file in MURMUR_DATA_DIR)')
    .optional(),
  MURMUR_DATABASE_WAIT_SECONDS: seconds.default(30),
  MURMUR_SMALL_JOB_SECONDS: seconds.default(120),
  MURMUR_WORKER_POOL: z.enum(['cpu', 'gpu']).default('cpu'),
  MURMUR_S3_BUCKET: z.string().optional(),
  MURMUR_S3_ENDPOINT: z.string().url('must be a URL such as http://minio:9000').optional(),
  MURMUR_S3_FORCE_PATH_STYLE: z.enum(['0', '1', 'true', 'false']).default('false'),
  MURMUR_S3_PREFIX: z.string().default(''),
  MURMUR_UPLOAD_EXPIRY_SECONDS: z.coerce.number().int().min(60).default(3600),
  MURMUR_UPLOAD_IDLE_SECONDS: z.coerce.number().positive().default(30),
  MURMUR_REQUEST_TIMEOUT_SECONDS: z.coerce.number().positive().default(900),
  MURMUR_MAX_REQUEST_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(1 << 20),
  MURMUR_ALLOW_PRIVATE_URLS: z.enum(['0', '1', 'true', 'false']).default('0'),
  MURMUR_URL_TIMEOUT_SECONDS: z.coerce.number().positive().default(30),
  MURMUR_SHUTDOWN_SECONDS: seconds.default(30),
  MURMUR_SYNC_TIMEOUT_SECONDS: z.coerce.number().positive().default(600),
  MURMUR_RETENTION_DAYS: seconds.default(0),
  MURMUR_WEBHOOK_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  MURMUR_WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).default(8),
  MURMUR_WEBHOOK_TIMEOUT_SECONDS: z.coerce.number().positive().default(10),
  MURMUR_WEBHOOK_RETRY_HOURS: z.coerce.number().nonnegative().default(24),
  MURMUR_AUTH: z.enum(['keys', 'none']).default('keys'),
  MURMUR_KEY_JOBS_PER_MINUTE: count.default(600),
  MURMUR_KEY_MAX_PENDING: count.default(10_000),
  MURMUR_KEY_AUDIO_HOURS_PER_DAY: seconds.default(0),
  MURMUR_SUBSCRIBER_BACKLOG: z.coerce.number().int().min(1).default(1000),
  MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION: z.coerce.number().int().min(1).default(100),
  MURMUR_MAX_SUBSCRIPTIONS_PER_KEY: z.coerce.number().int().min(1).default(500),
  MURMUR_STREAM_RECHECK_SECONDS: z.coerce.number().positive().default(5),
  MURMUR_WS_AUTH_TIMEOUT_SECONDS: z.coerce.number().positive().default(30),
  MURMUR_CORS_ORIGINS: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((o) => o.trim())
        .filter(Boolean),
    )
    .refine(
      (list) => list.every((o) => o === '*' || /^https?:\/\/[^/]+$/.test(o)),
      'a comma-separated list of origins such as https://app.example.com, or *',
    ),
});

/** Every variable `readConfig` reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.shape);

export interface Config {
  /** MURMUR_LOG_LEVEL and MURMUR_LOG_FORMAT (log.ts). */
  log: LogSettings;
  port: number;
  host: string;
  dataDir: string;
  /** Unset: the synthetic model is generated into the data directory. */
  modelDir: string | undefined;
  /** What the OpenAI-compatible routes call the model (besides whisper-1): MURMUR_MODEL_NAME, else the model folder's name. */
  modelName: string;
  /** Workers present it as a bearer token; generated at start when not configured. */
  workerToken: string;
  maxWorkers: number;
  workerUnloadAfterSeconds: number;
  workerExitAfterSeconds: number;
  leaseSeconds: number;
  maxAttempts: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  batchJobs: number;
  batchSeconds: number;
  batchWindowMs: number;
  maxUploadBytes: number;
  /** Longer audio is refused at createJob with AUDIO_TOO_LONG. */
  maxDurationSeconds: number;
  providers: string;
  dtype: string;
  /** Intra-op threads a session in each embedded worker: MURMUR_THREADS, or the cores shared among MURMUR_MAX_WORKERS. */
  threads: number;
  segmentation: 'vad' | 'fixed';
  /** PostgreSQL; unset: the SQLite file in the data directory. */
  databaseUrl: string | undefined;
  /** How long to wait at start for a database that does not answer yet. */
  databaseWaitSeconds: number;
  /** Jobs up to this long go to cpu workers; longer ones to gpu workers while any is live. */
  smallJobSeconds: number;
  /** The pool of the workers this instance spawns. */
  workerPool: 'cpu' | 'gpu';
  /** Audio in S3 (set) or in the data directory (unset). */
  s3: { bucket: string; endpoint?: string; forcePathStyle: boolean; prefix: string } | undefined;
  /** How long a presigned upload URL stays valid, and how long an upload no job took is kept. */
  uploadExpirySeconds: number;
  /** An upload that sends nothing for this long is stopped (UPLOAD_STALLED) and removed. */
  uploadIdleSeconds: number;
  /** A request, upload included, must have arrived whole within this (a client trickling bytes cannot hold a connection for ever). */
  requestTimeoutSeconds: number;
  /** JSON request bodies at most. */
  maxRequestBytes: number;
  /** Origins whose pages may call the API from a browser; none: same origin only. */
  corsOrigins: string[];
  /** createJob({ url }) may fetch from loopback and private addresses (tests, private deployments). */
  allowPrivateUrls: boolean;
  /** A URL that does not answer, or pauses this long mid-download, is URL_UNREACHABLE. */
  urlTimeoutSeconds: number;
  /** Signs every webhook (each tenant's secret is derived from it); unset: made once and kept in the database. */
  webhookSecret: string | undefined;
  /** Deliveries at once per instance, each one's timeout, and how long after a job ends its webhook is tried. */
  webhook: { concurrency: number; timeoutSeconds: number; retryHours: number };
  /** Finished jobs (and their audio) are deleted this long after they finish; 0 keeps them. */
  retentionDays: number;
  /** How long the OpenAI-compatible routes wait for their job before answering 504 with its id. */
  syncTimeoutSeconds: number;
  /** On SIGTERM/SIGINT: how long requests in flight and workers' batches get to finish (workers then hand their jobs back). */
  shutdownSeconds: number;
  /** `keys`: every client request needs an API key. `none`: nobody is asked (loopback only). */
  auth: 'keys' | 'none';
  /**
   * Subscriptions: jobs one may hold unsent before its reader is dropped, how many a connection and a key
   * (on one instance) may hold, how often their keys are checked again, and how long a WebSocket may stay
   * open without a valid key.
   */
  streams: { backlog: number; perConnection: number; perKey: number; recheckSeconds: number; wsAuthTimeoutSeconds: number };
  /** Per API key; 0 = no limit. */
  keyLimits: { jobsPerMinute: number; maxPending: number; audioHoursPerDay: number };
}

export class ConfigError extends CodedError<'CONFIG_INVALID'> {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

/** The variables `shape` reads from `env` (unset when empty), or a ConfigError naming each bad one. */
function parse<T extends z.ZodRawShape>(shape: z.ZodObject<T>, env: NodeJS.ProcessEnv): z.infer<z.ZodObject<T>> {
  const parsed = shape.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success)
    throw new ConfigError(`bad configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export function readLogSettings(env: NodeJS.ProcessEnv = process.env): LogSettings {
  const e = parse(z.object(logVariables), env);
  return { level: e.MURMUR_LOG_LEVEL, format: e.MURMUR_LOG_FORMAT };
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const e = parse(schema, env);
  if (e.MURMUR_AUTH === 'none' && !isLoopback(e.HOST)) {
    throw new ConfigError(
      `MURMUR_AUTH=none turns authentication off, so it is refused unless the server listens on loopback only (HOST=127.0.0.1 or ::1), not on ${e.HOST}`,
    );
  }
  return {
    log: { level: e.MURMUR_LOG_LEVEL, format: e.MURMUR_LOG_FORMAT },
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.MURMUR_DATA_DIR),
    modelDir: e.MURMUR_MODEL_DIR && resolve(e.MURMUR_MODEL_DIR),
    modelName: e.MURMUR_MODEL_NAME ?? (e.MURMUR_MODEL_DIR ? basename(resolve(e.MURMUR_MODEL_DIR)) : 'whisper-synthetic'),
    workerToken: e.MURMUR_WORKER_TOKEN ?? randomBytes(24).toString('base64url'),
    maxWorkers: e.MURMUR_MAX_WORKERS,
    workerUnloadAfterSeconds: e.MURMUR_WORKER_UNLOAD_AFTER,
    workerExitAfterSeconds: e.MURMUR_WORKER_EXIT_AFTER,
    leaseSeconds: e.MURMUR_LEASE_SECONDS,
    maxAttempts: e.MURMUR_MAX_ATTEMPTS,
    retryBaseSeconds: e.MURMUR_RETRY_BASE_SECONDS,
    retryMaxSeconds: e.MURMUR_RETRY_MAX_SECONDS,
    batchJobs: e.MURMUR_BATCH_JOBS,
    batchSeconds: e.MURMUR_BATCH_SECONDS,
    batchWindowMs: e.MURMUR_BATCH_WINDOW_MS,
    maxUploadBytes: e.MURMUR_MAX_UPLOAD_BYTES,
    maxDurationSeconds: e.MURMUR_MAX_DURATION_SECONDS,
    providers: e.MURMUR_PROVIDERS,
    dtype: e.MURMUR_DTYPE,
    // 0 (unset): the cores, shared among the embedded workers, so that all of them busy never oversubscribe the machine.
    threads: e.MURMUR_THREADS || Math.max(1, Math.floor(availableParallelism() / Math.max(1, e.MURMUR_MAX_WORKERS))),
    segmentation: e.MURMUR_SEGMENTATION,
    databaseUrl: e.MURMUR_DATABASE_URL,
    databaseWaitSeconds: e.MURMUR_DATABASE_WAIT_SECONDS,
    smallJobSeconds: e.MURMUR_SMALL_JOB_SECONDS,
    workerPool: e.MURMUR_WORKER_POOL,
    s3: e.MURMUR_S3_BUCKET
      ? {
          bucket: e.MURMUR_S3_BUCKET,
          endpoint: e.MURMUR_S3_ENDPOINT,
          forcePathStyle: ['1', 'true'].includes(e.MURMUR_S3_FORCE_PATH_STYLE),
          prefix: e.MURMUR_S3_PREFIX,
        }
      : undefined,
    uploadExpirySeconds: e.MURMUR_UPLOAD_EXPIRY_SECONDS,
    uploadIdleSeconds: e.MURMUR_UPLOAD_IDLE_SECONDS,
    requestTimeoutSeconds: e.MURMUR_REQUEST_TIMEOUT_SECONDS,
    maxRequestBytes: e.MURMUR_MAX_REQUEST_BYTES,
    corsOrigins: e.MURMUR_CORS_ORIGINS,
    allowPrivateUrls: ['1', 'true'].includes(e.MURMUR_ALLOW_PRIVATE_URLS),
    urlTimeoutSeconds: e.MURMUR_URL_TIMEOUT_SECONDS,
    shutdownSeconds: e.MURMUR_SHUTDOWN_SECONDS,
    syncTimeoutSeconds: e.MURMUR_SYNC_TIMEOUT_SECONDS,
    retentionDays: e.MURMUR_RETENTION_DAYS,
    webhookSecret: e.MURMUR_WEBHOOK_SECRET,
    webhook: {
      concurrency: e.MURMUR_WEBHOOK_CONCURRENCY,
      timeoutSeconds: e.MURMUR_WEBHOOK_TIMEOUT_SECONDS,
      retryHours: e.MURMUR_WEBHOOK_RETRY_HOURS,
    },
    auth: e.MURMUR_AUTH,
    streams: {
      backlog: e.MURMUR_SUBSCRIBER_BACKLOG,
      perConnection: e.MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION,
      perKey: e.MURMUR_MAX_SUBSCRIPTIONS_PER_KEY,
      recheckSeconds: e.MURMUR_STREAM_RECHECK_SECONDS,
      wsAuthTimeoutSeconds: e.MURMUR_WS_AUTH_TIMEOUT_SECONDS,
    },
    keyLimits: {
      jobsPerMinute: e.MURMUR_KEY_JOBS_PER_MINUTE,
      maxPending: e.MURMUR_KEY_MAX_PENDING,
      audioHoursPerDay: e.MURMUR_KEY_AUDIO_HOURS_PER_DAY,
    },
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
