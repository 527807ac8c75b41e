// The row conditions both backends share. drizzle's operators (eq, and, lte…)
// are dialect-neutral and both schemas name their columns alike, so each
// condition is written once for either dialect's tables; a backend keeps only
// what differs between them: locking, transactions and its own SQL.
import { and, eq, gt, gte, inArray, lt, lte, type SQL } from 'drizzle-orm';
import { TERMINAL, type JobStatus, type Pool } from './jobQueue.ts';
import type * as pg from './postgres/schema.ts';
import type * as sqlite from './sqlite/schema.ts';

type Jobs = typeof sqlite.jobs | typeof pg.jobs;
type Workers = typeof sqlite.workers | typeof pg.workers;
type Reservations = typeof sqlite.keyReservations | typeof pg.keyReservations;

const UNFINISHED: JobStatus[] = ['PENDING', 'PROCESSING'];

/** One job, within a tenant when one is given (another tenant's job is not found). */
export const byId = (t: Jobs, id: string, tenant: string | undefined): SQL | undefined =>
  and(eq(t.id, id), tenant !== undefined ? eq(t.tenant, tenant) : undefined);

/** The jobs a pool's workers take when each pool has live workers: short ones for cpu, long ones for gpu. */
export const ofSize = (t: Jobs, pool: Pool, smallJobSeconds: number): SQL =>
  pool === 'cpu' ? lte(t.durationSeconds, smallJobSeconds) : gt(t.durationSeconds, smallJobSeconds);

/** Jobs of at most `maxJobSeconds` of audio; no condition when absent. */
export const upTo = (t: Jobs, maxJobSeconds: number | undefined): SQL | undefined =>
  maxJobSeconds === undefined ? undefined : lte(t.durationSeconds, maxJobSeconds);

/** Waiting and due (no retry delay ahead), of the sizes given. */
export const claimableAt = (t: Jobs, now: number, size: SQL | undefined): SQL | undefined =>
  and(eq(t.status, 'PENDING'), lte(t.runAfter, now), size);

export const pendingOf = (t: Jobs, size: SQL | undefined): SQL | undefined => and(eq(t.status, 'PENDING'), size);

/** A page of the list: newest first, after the cursor's `seq`. */
export const listed = (t: Jobs, o: { status?: JobStatus; afterSeq?: number; tenant?: string }): SQL | undefined =>
  and(
    o.tenant !== undefined ? eq(t.tenant, o.tenant) : undefined,
    o.status ? eq(t.status, o.status) : undefined,
    o.afterSeq !== undefined ? lt(t.seq, o.afterSeq) : undefined,
  );

export const finishedBefore = (t: Jobs, before: number): SQL | undefined => and(inArray(t.status, [...TERMINAL]), lt(t.finishedAt, before));

export const unfinished = (t: Jobs): SQL => inArray(t.status, UNFINISHED);

/** For a key's limits: the jobs it created since a moment, and those not finished. */
export const createdBy = (t: Jobs, apiKeyId: string, since: number): SQL | undefined =>
  and(eq(t.apiKeyId, apiKeyId), gte(t.createdAt, since));
export const unfinishedOf = (t: Jobs, apiKeyId: string): SQL | undefined => and(eq(t.apiKeyId, apiKeyId), unfinished(t));

export const leaseExpiredAt = (t: Jobs, now: number): SQL | undefined => and(eq(t.status, 'PROCESSING'), lt(t.leaseExpiresAt, now));

export const webhookDueAt = (t: Jobs, now: number): SQL => lte(t.webhookNextAt, now);

/** Workers heard from since a moment (live), or not (quiet). */
export const seenSince = (w: Workers, since: number): SQL => gte(w.lastSeenAt, since);
export const quietSince = (w: Workers, since: number): SQL => lt(w.lastSeenAt, since);

/** A key's places under its limits, and those that lapsed. */
export const heldFor = (r: Reservations, apiKeyId: string): SQL => eq(r.apiKeyId, apiKeyId);
export const lapsedFor = (r: Reservations, apiKeyId: string, now: number): SQL | undefined =>
  and(eq(r.apiKeyId, apiKeyId), lte(r.expiresAt, now));
