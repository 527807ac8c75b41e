// The SQLite tables. The jobs table is the queue: one row a job, its status
// and its lease; the workers table lists who was heard from, and when.
// postgres/schema.ts declares the same tables for PostgreSQL.
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import type { DecodingOptions } from '../../transcript/transcript.ts';
import { JOB_STATUSES, TASKS, type SameAsJob } from '../jobQueue.ts';

export const jobs = sqliteTable(
  'jobs',
  {
    /** Insertion order: the tie-break between equal priorities, and the list cursor. */
    seq: integer('seq').primaryKey({ autoIncrement: true }),
    id: text('id').notNull().unique(),
    status: text('status', { enum: JOB_STATUSES }).notNull(),
    priority: integer('priority').notNull().default(0),
    /** Unique within the tenant. */
    idempotencyKey: text('idempotency_key'),
    /** Whose job it is: the tenant of the API key that created it ('default' without keys). */
    tenant: text('tenant').notNull().default('default'),
    /** The key that created it (rate limits count per key); null without keys. */
    apiKeyId: text('api_key_id'),

    language: text('language'),
    task: text('task', { enum: TASKS }).notNull(),
    timestamps: integer('timestamps', { mode: 'boolean' }).notNull(),
    /** Prompt, temperatures, …: null for greedy decoding without a prompt. */
    decoding: text('decoding', { mode: 'json' }).$type<DecodingOptions>(),

    filename: text('filename').notNull(),
    bytes: integer('bytes').notNull(),
    durationSeconds: real('duration_seconds').notNull(),
    /** The upload as probed: container format, its own sample rate and channel count. */
    format: text('format').notNull().default('wav'),
    sampleRate: integer('sample_rate').notNull().default(16000),
    channels: integer('channels').notNull().default(1),
    blobKey: text('blob_key').notNull(),

    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    progress: real('progress').notNull().default(0),
    /** Epoch ms before which a job waiting on a retry is not claimed. */
    runAfter: integer('run_after').notNull(),
    /** The fencing token: raised by every claim, so a worker holding an older one is refused. */
    leaseToken: integer('lease_token').notNull().default(0),
    leaseExpiresAt: integer('lease_expires_at'),
    workerId: text('worker_id'),

    result: text('result', { mode: 'json' }),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),

    /** Where to POST the job's end (createJob's callbackUrl), and how that went. */
    webhookUrl: text('webhook_url'),
    webhookAttempts: integer('webhook_attempts').notNull().default(0),
    /** The last answer's HTTP status; 0: no answer (refused, timed out). */
    webhookStatus: integer('webhook_status'),
    webhookDeliveredAt: integer('webhook_delivered_at'),
    /** When a delivery is due (epoch ms); null: none is. A sender holds it by moving it ahead while it tries. */
    webhookNextAt: integer('webhook_next_at'),

    createdAt: integer('created_at').notNull(),
    startedAt: integer('started_at'),
    finishedAt: integer('finished_at'),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [
    index('jobs_claim_order').on(t.status, t.priority, t.seq),
    index('jobs_lease_expiry').on(t.status, t.leaseExpiresAt),
    index('jobs_blob_key').on(t.blobKey),
    uniqueIndex('jobs_tenant_idempotency_key').on(t.tenant, t.idempotencyKey),
    index('jobs_tenant_seq').on(t.tenant, t.seq),
    index('jobs_key_created').on(t.apiKeyId, t.createdAt),
    index('jobs_webhook_due').on(t.webhookNextAt),
  ],
);

/** The row is the contract's Job (a column added here and not there fails the type check). */
export type JobRow = SameAsJob<typeof jobs.$inferSelect>;
export type NewJobRow = typeof jobs.$inferInsert;

export const workers = sqliteTable('workers', {
  id: text('id').primaryKey(),
  pool: text('pool', { enum: ['cpu', 'gpu'] }).notNull(),
  provider: text('provider'),
  host: text('host'),
  /** Epoch ms of the last claim or heartbeat. */
  lastSeenAt: integer('last_seen_at').notNull(),
});

/**
 * Finished jobs counted by status, kept by triggers (see the migration that made this table), so
 * `queue` stats do not count every job ever run. Rows are summed per status; `shard` spreads
 * concurrent writers over rows on PostgreSQL and is always 0 here.
 */
export const jobCounts = sqliteTable(
  'job_counts',
  {
    status: text('status').notNull(),
    shard: integer('shard').notNull(),
    n: integer('n').notNull(),
  },
  (t) => [primaryKey({ columns: [t.status, t.shard] })],
);

/** API keys: only a hash of each secret is kept; the secret is shown once, when the key is made. */
export const apiKeys = sqliteTable('api_keys', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  tenant: text('tenant').notNull(),
  role: text('role', { enum: ['client', 'admin'] }).notNull(),
  /** SHA-256 of the secret, hex. */
  hash: text('hash').notNull().unique(),
  /** The secret's first characters, to tell keys apart in `murmur keys list`. */
  prefix: text('prefix').notNull(),
  createdAt: integer('created_at').notNull(),
  revokedAt: integer('revoked_at'),
  lastUsedAt: integer('last_used_at'),
});

/**
 * A place under a key's job limits, taken before a createJob reads its audio and given up when the job
 * is stored (in the same transaction) or refused; one the request's crash left behind lapses at `expires_at`.
 */
export const keyReservations = sqliteTable(
  'key_reservations',
  {
    id: text('id').primaryKey(),
    apiKeyId: text('api_key_id').notNull(),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [index('key_reservations_key').on(t.apiKeyId, t.expiresAt)],
);

/** Values every instance shares, made once (the webhook signing secret). */
export const settings = sqliteTable('settings', {
  name: text('name').primaryKey(),
  value: text('value').notNull(),
});
