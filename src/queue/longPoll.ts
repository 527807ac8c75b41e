// Claims that wait: a worker asking for work when there is none is answered
// when a job arrives (woken by the queue's `work` event, not by polling), or
// empty-handed when its wait runs out. Once work is there, the claim lingers
// up to a short batching window for more, so a burst of jobs lands in one
// batch instead of the first job running alone (Triton's max-queue-delay).
import type { JobQueue, Lease, Pool } from './jobQueue.ts';

export interface LongPollClaim {
  workerId: string;
  pool: Pool;
  maxJobs: number;
  maxSeconds: number;
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
  while (!c.signal?.aborted) {
    if ((await queue.claimable(c.pool)) > 0) {
      const windowEnd = Date.now() + c.batchWindowMs;
      while ((await queue.claimable(c.pool)) < c.maxJobs && Date.now() < windowEnd && !c.signal?.aborted) await wake(queue, windowEnd, c.signal);
      if (c.signal?.aborted) break;
      const leases = await queue.claim(worker, c.maxJobs, c.maxSeconds);
      if (leases.length > 0) return leases;
      continue; // another worker took them first
    }
    if (Date.now() >= deadline) break;
    const retryAt = await queue.nextRunAfter(c.pool);
    const until = Math.min(deadline, Date.now() + RECHECK_MS, retryAt !== null && retryAt > Date.now() ? retryAt : Infinity);
    await wake(queue, until, c.signal);
  }
  return [];
}

/** Resolves on the queue's next `work` event, at `until` (epoch ms), or on abort. */
function wake(queue: JobQueue, until: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      queue.events.off('work', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, until - Date.now()));
    queue.events.on('work', done);
    signal?.addEventListener('abort', done);
  });
}
