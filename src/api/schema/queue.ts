// The queue at a glance, for dashboards and autoscalers: the same answer from every API instance.
import type { PoolStats, QueueStats as Stats, WorkerInfo } from '../../queue/jobQueue.ts';
import { requireAdmin } from '../auth.ts';
import { builder } from '../builder.ts';

export const PoolEnum = builder.enumType('Pool', {
  values: {
    CPU: { value: 'cpu', description: 'takes jobs up to MURMUR_SMALL_JOB_SECONDS long (and longer ones while no gpu worker is live)' },
    GPU: { value: 'gpu', description: 'takes longer jobs (and short ones while no cpu worker is live)' },
  } as const,
});

const PoolStatsRef = builder.objectRef<PoolStats>('PoolStats').implement({
  fields: (t) => ({
    pool: t.field({ type: PoolEnum, resolve: (p) => p.pool }),
    pending: t.exposeInt('pending', { description: "pending jobs of this pool's size" }),
    pendingSeconds: t.exposeFloat('pendingSeconds', { description: 'their audio, in seconds' }),
    oldestPendingAgeSeconds: t.exposeFloat('oldestPendingAgeSeconds', { nullable: true }),
    workers: t.exposeInt('workers', { description: 'live workers of this pool' }),
  }),
});

const WorkerRef = builder.objectRef<WorkerInfo>('Worker').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    pool: t.field({ type: PoolEnum, resolve: (w) => w.pool }),
    provider: t.exposeString('provider', {
      nullable: true,
      description: 'the execution provider its model runs on; null until it has loaded one',
    }),
    device: t.string({
      nullable: true,
      description: 'what that provider runs on: CPU or GPU (coreml: the Apple Neural Engine or GPU); null until it has loaded a model',
      // Every provider but onnxruntime's own CPU one runs on an accelerator.
      resolve: (w) => (w.provider === null ? null : w.provider === 'cpu' ? 'CPU' : 'GPU'),
    }),
    host: t.exposeString('host', { nullable: true }),
    lastSeenAt: t.field({ type: 'DateTime', resolve: (w) => w.lastSeenAt }),
  }),
});

const QueueStats = builder.objectRef<Stats>('QueueStats').implement({
  fields: (t) => ({
    pending: t.exposeInt('pending'),
    processing: t.exposeInt('processing'),
    done: t.exposeInt('done'),
    failed: t.exposeInt('failed'),
    cancelled: t.exposeInt('cancelled'),
    oldestPendingAgeSeconds: t.exposeFloat('oldestPendingAgeSeconds', { nullable: true, description: 'null when nothing waits' }),
    workers: t.int({ description: 'workers alive: heard from recently or waiting for work', resolve: (s) => s.liveWorkers.length }),
    liveWorkers: t.field({ type: [WorkerRef], resolve: (s) => s.liveWorkers }),
    pools: t.field({ type: [PoolStatsRef], resolve: (s) => s.pools }),
  }),
});

builder.queryField('queue', (t) =>
  t.field({
    type: QueueStats,
    description: 'admin keys only',
    resolve: (_root, _args, ctx) => {
      requireAdmin(ctx);
      return ctx.queue.stats();
    },
  }),
);
