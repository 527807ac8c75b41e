// Claims that wait: a worker asking for work when there is none is answered
// when a job arrives (woken by the queue's `work` event, not by polling), or
// empty-handed when its wait runs out. Once work is there, the claim lingers
// up to a short batching window for more, so a burst of jobs lands in one
// batch instead of the first job running alone (Triton's max-queue-delay).
//
// Waiting claims are woken one at a time per pool, not all at once: a claim
// that took a full batch passes the wake-up on to the next one, since more
// may be waiting. With 16 workers on one instance, waking all of them on each
// new job cost 16 count queries and up to 16 claim attempts a job, and PostgreSQL
// throughput fell from 118 to 51 jobs/s (bench/queue-throughput.ts).
import type { JobQueue, Lease, Pool } from './jobQueue.ts';

export interface LongPollClaim {
  workerId: string;
  pool: Pool;
  maxJobs: number;
  maxSeconds: number;
  /** Only jobs of at most this much audio (see JobQueue.claim). */
  maxJobSeconds?: number;
  /** How long to wait for a first job. */
  waitMs: number;
  /** How long to wait for a full batch once one job is there. */
  batchWindowMs: number;
  /** Aborted when the worker hangs up: nothing is claimed for a worker that is gone. */
  signal?: AbortSignal;
}

/** With no event at all, look again this often: a job on a retry delay, or a pool that went away, wakes nobody. */
const RECHECK_MS = 5000;

export async function claimWhenReady(queue: JobQueue, c: LongPollClaim): Promise<Lease[]> {
  const deadline = Date.now() + c.waitMs;
  const worker = { id: c.workerId, pool: c.pool };
  const bell = doorbellOf(queue);
  while (!c.signal?.aborted) {
    if ((await queue.claimable(c.pool, c.maxJobSeconds)) > 0) {
      const windowEnd = Date.now() + c.batchWindowMs;
      // Gathering a batch: first in line for the next wake-up.
      while (Date.now() < windowEnd && !c.signal?.aborted && (await queue.claimable(c.pool, c.maxJobSeconds)) < c.maxJobs)
        await bell.wait(c.pool, windowEnd, c.signal, true);
      if (c.signal?.aborted) break;
      const leases = await queue.claim(worker, c.maxJobs, c.maxSeconds, c.maxJobSeconds);
      if (leases.length >= c.maxJobs) bell.ring(c.pool);
      if (leases.length > 0) return leases;
      continue; // another worker took them first
    }
    if (Date.now() >= deadline) break;
    const retryAt = await queue.nextRunAfter(c.pool, c.maxJobSeconds);
    const until = Math.min(deadline, Date.now() + RECHECK_MS, retryAt !== null && retryAt > Date.now() ? retryAt : Infinity);
    await bell.wait(c.pool, until, c.signal);
  }
  bell.passOn(c.pool);
  return [];
}

/** The waiting claims of one queue, per pool, in line. */
class Doorbell {
  private readonly lines = new Map<Pool, (() => void)[]>();
  /** Rings that found nobody waiting: the next claim to wait is answered at once, so no job is missed between a look and a wait. */
  private readonly unanswered = new Set<Pool>();

  constructor(queue: JobQueue) {
    queue.events.on('work', () => {
      for (const pool of ['cpu', 'gpu'] as const) this.ring(pool);
    });
  }

  ring(pool: Pool): void {
    const next = this.lines.get(pool)?.shift();
    if (next) next();
    else this.unanswered.add(pool);
  }

  /** A claim leaving without work, woken or not: the wake-up it may have held goes to the next in line. */
  passOn(pool: Pool): void {
    if (this.lines.get(pool)?.length) this.ring(pool);
  }

  /** Resolves when rung, at `until` (epoch ms), or on abort. */
  wait(pool: Pool, until: number, signal: AbortSignal | undefined, front = false): Promise<void> {
    if (this.unanswered.delete(pool)) return Promise.resolve();
    const line = this.lines.get(pool) ?? this.lines.set(pool, []).get(pool)!;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        const at = line.indexOf(done);
        if (at >= 0) line.splice(at, 1);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, until - Date.now()));
      if (front) line.unshift(done);
      else line.push(done);
      signal?.addEventListener('abort', done);
    });
  }
}

const doorbells = new WeakMap<JobQueue, Doorbell>();
const doorbellOf = (queue: JobQueue) => doorbells.get(queue) ?? doorbells.set(queue, new Doorbell(queue)).get(queue)!;
