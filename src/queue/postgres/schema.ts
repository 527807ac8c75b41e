// The PostgreSQL tables: the same columns as sqlite/schema.ts, in PostgreSQL's
// types (times as epoch-ms bigints read as numbers, the transcript as jsonb),
// so both dialects hand the rest of murmur the same Job.
import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import type { DecodingOptions } from '../../transcript/transcript.ts';
import { JOB_STATUSES, TASKS, type SameAsJob } from '../jobQueue.ts';

const ms = (name: string) => bigint(name, { mode: 'number' });

export const jobs = pgTable(
  'jobs',
  {
    seq: bigserial('seq', { mode: 'number' }).primaryKey(),
    id: text('id').notNull().unique(),
    status: text('status', { enum: JOB_STATUSES }).notNull(),
    priority: integer('priority').notNull().default(0),
    idempotencyKey: text('idempotency_key'),
    tenant: text('tenant').notNull().default('default'),
    apiKeyId: text('api_key_id'),

    language: text('language'),
    task: text('task', { enum: TASKS }).notNull(),
    timestamps: boolean('timestamps').notNull(),
    /** Prompt, temperatures, …: null for greedy decoding without a prompt. */
    decoding: jsonb('decoding').$type<DecodingOptions>(),

    filename: text('filename').notNull(),
    bytes: bigint('bytes', { mode: 'number' }).notNull(),
    durationSeconds: doublePrecision('duration_seconds').notNull(),
    format: text('format').notNull().default('wav'),
    sampleRate: integer('sample_rate').notNull().default(16000),
    channels: integer('channels').notNull().default(1),
    blobKey: text('blob_key').notNull(),

    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    progress: doublePrecision('progress').notNull().default(0),
    runAfter: ms('run_after').notNull(),
    leaseToken: integer('lease_token').notNull().default(0),
    leaseExpiresAt: ms('lease_expires_at'),
    workerId: text('worker_id'),

    result: jsonb('result'),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),

    /** Where to POST the job's end (createJob's callbackUrl), and how that went. */
    webhookUrl: text('webhook_url'),
    webhookAttempts: integer('webhook_attempts').notNull().default(0),
    /** The last answer's HTTP status; 0: no answer (refused, timed out). */
    webhookStatus: integer('webhook_status'),
    webhookDeliveredAt: ms('webhook_delivered_at'),
    /** When a delivery is due (epoch ms); null: none is. A sender holds it by moving it ahead while it tries. */
    webhookNextAt: ms('webhook_next_at'),

    createdAt: ms('created_at').notNull(),
    startedAt: ms('started_at'),
    finishedAt: ms('finished_at'),
    updatedAt: ms('updated_at').notNull(),
  },
  (t) => [
    index('jobs_claim_order').on(t.status, t.priority.desc(), t.seq),
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

export const workers = pgTable('workers', {
  id: text('id').primaryKey(),
  pool: text('pool', { enum: ['cpu', 'gpu'] }).notNull(),
  provider: text('provider'),
  host: text('host'),
  lastSeenAt: ms('last_seen_at').notNull(),
});

/**
 * Finished jobs counted by status, kept by triggers (see the migration that made this table), so
 * `queue` stats do not count every job ever run. Each change lands on one of 16 shards, so
 * concurrent completions do not queue on one row; a status's count is the sum of its shards.
 */
export const jobCounts = pgTable(
  'job_counts',
  {
    status: text('status').notNull(),
    shard: integer('shard').notNull(),
    n: bigint('n', { mode: 'number' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.status, t.shard] })],
);

export const apiKeys = pgTable('api_keys', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  tenant: text('tenant').notNull(),
  role: text('role', { enum: ['client', 'admin'] }).notNull(),
  hash: text('hash').notNull().unique(),
  prefix: text('prefix').notNull(),
  createdAt: ms('created_at').notNull(),
  revokedAt: ms('revoked_at'),
  lastUsedAt: ms('last_used_at'),
});

/** A place under a key's job limits while its createJob reads the audio (sqlite/schema.ts tells more). */
export const keyReservations = pgTable(
  'key_reservations',
  {
    id: text('id').primaryKey(),
    apiKeyId: text('api_key_id').notNull(),
    createdAt: ms('created_at').notNull(),
    expiresAt: ms('expires_at').notNull(),
  },
  (t) => [index('key_reservations_key').on(t.apiKeyId, t.expiresAt)],
);

/** Values every instance shares, made once (the webhook signing secret). */
export const settings = pgTable('settings', {
  name: text('name').primaryKey(),
  value: text('value').notNull(),
});
