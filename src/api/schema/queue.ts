// The queue at a glance, for dashboards and autoscalers.
import { builder } from '../builder.ts';

const QueueStats = builder
  .objectRef<{ pending: number; processing: number; done: number; failed: number; cancelled: number; oldestPendingAgeSeconds: number | null; workers: number }>('QueueStats')
  .implement({
    fields: (t) => ({
      pending: t.exposeInt('pending'),
      processing: t.exposeInt('processing'),
      done: t.exposeInt('done'),
      failed: t.exposeInt('failed'),
      cancelled: t.exposeInt('cancelled'),
      oldestPendingAgeSeconds: t.exposeFloat('oldestPendingAgeSeconds', { nullable: true, description: 'null when nothing waits' }),
      workers: t.exposeInt('workers', { description: 'workers alive: heard from recently or waiting for work' }),
    }),
  });

builder.queryField('queue', (t) =>
  t.field({
    type: QueueStats,
    resolve: (_root, _args, ctx) => ({ ...ctx.queue.stats(), workers: ctx.workers.live() }),
  }),
);
