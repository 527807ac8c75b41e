// "Follow one job until it ends": jobUpdated streams every state, the OpenAI
// route waits for the last one. One function, fed by the queue's events, read
// again after a resync (events may have been missed) and once after listening
// (a change between the caller's first read and now is not missed).
import { isTerminal, type Job } from '../queue/jobQueue.ts';
import type { Services } from './context.ts';
import { Stream } from './streams.ts';

/**
 * Puts each new state of job `id` into `stream` (never an older one, nor the same twice), ends it
 * when the job finishes, is deleted (`deleted` is called first) or the instance drains.
 */
export function followJob(
  { queue, draining }: Pick<Services, 'queue' | 'draining'>,
  id: string,
  stream: Stream<Job>,
  deleted?: () => void,
): Stream<Job> {
  let last: Job | null = null;
  const forward = (job: Job | undefined) => {
    if (
      !job ||
      (last &&
        (job.updatedAt < last.updatedAt ||
          (job.updatedAt === last.updatedAt && job.status === last.status && job.progress === last.progress)))
    )
      return;
    last = job;
    stream.put(id, job);
    if (isTerminal(job)) stream.end();
  };
  const onJob = (job: Job) => job.id === id && forward(job);
  const onResync = () => void queue.get(id).then(forward, () => {});
  const onDeleted = (gone: string) => {
    if (gone !== id) return;
    deleted?.();
    stream.end();
  };
  // A stopping instance ends its subscriptions: clients subscribe again elsewhere (or here once restarted).
  const onDrain = () => stream.end();
  queue.events.on('job', onJob);
  queue.events.on('resync', onResync);
  queue.events.on('deleted', onDeleted);
  draining.addEventListener('abort', onDrain, { once: true });
  stream.onClose(() => {
    queue.events.off('job', onJob);
    queue.events.off('resync', onResync);
    queue.events.off('deleted', onDeleted);
    draining.removeEventListener('abort', onDrain);
  });
  if (draining.aborted) onDrain();
  onResync();
  return stream;
}
