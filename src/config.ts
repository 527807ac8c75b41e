// The server's configuration: read from the environment and validated in one
// place at start-up. A bad value stops the program with a message naming the variable.
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { z } from 'zod';

const seconds = z.coerce.number().nonnegative();
const count = z.coerce.number().int().nonnegative();

const schema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: z.string().default('0.0.0.0'),
  MURMUR_DATA_DIR: z.string().default('./data'),
  MURMUR_MODEL_DIR: z.string().optional(),
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
  MURMUR_MAX_UPLOAD_BYTES: z.coerce.number().int().positive().default(200 * 1024 * 1024),
  MURMUR_MAX_DURATION_SECONDS: z.coerce.number().positive().default(4 * 3600),
  MURMUR_PROVIDERS: z.string().default('cpu'),
  MURMUR_DTYPE: z.string().default('fp32'),
  MURMUR_THREADS: count.default(0),
  MURMUR_SEGMENTATION: z.enum(['vad', 'fixed']).default('vad'),
});

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** Unset: the synthetic model is generated into the data directory. */
  modelDir: string | undefined;
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
  threads: number;
  segmentation: 'vad' | 'fixed';
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`bad configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: resolve(e.MURMUR_DATA_DIR),
    modelDir: e.MURMUR_MODEL_DIR && resolve(e.MURMUR_MODEL_DIR),
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
    threads: e.MURMUR_THREADS,
    segmentation: e.MURMUR_SEGMENTATION,
  };
}
