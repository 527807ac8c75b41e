// Prometheus metrics at /metrics (prom-client), for autoscalers such as KEDA or
// a Kubernetes HPA. Queue gauges are read from the database at scrape time, so
// every instance reports the same queue; counters and histograms count what
// this instance saw (Prometheus sums them across instances).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { JobQueue } from '../queue/jobQueue.ts';

export class Metrics {
  readonly registry = new Registry();
  readonly queueWait: Histogram;
  readonly processing: Histogram;
  readonly batchSize: Histogram;
  readonly failures: Counter;

  constructor(queue: JobQueue, embedded: { threads: number }) {
    const registers = [this.registry];
    new Gauge({
      name: 'murmur_worker_threads',
      help: 'intra-op threads a session in each embedded worker (MURMUR_THREADS)',
      registers,
    }).set(embedded.threads);
    let stats: ReturnType<JobQueue['stats']> | null = null;
    // One stats read per scrape, shared by the gauges below.
    const read = () => (stats ??= queue.stats().finally(() => setImmediate(() => (stats = null))));
    new Gauge({
      name: 'murmur_jobs',
      help: 'jobs in the queue by status',
      labelNames: ['status'],
      registers,
      async collect() {
        const s = await read();
        for (const status of ['pending', 'processing', 'done', 'failed', 'cancelled'] as const)
          this.set({ status: status.toUpperCase() }, s[status]);
      },
    });
    const perPool = (name: string, help: string, value: (p: Awaited<ReturnType<JobQueue['stats']>>['pools'][number]) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['pool'],
        registers,
        async collect() {
          for (const p of (await read()).pools) this.set({ pool: p.pool }, value(p) ?? 0);
        },
      });
    perPool('murmur_pending_jobs', "pending jobs of each pool's size (short: cpu, long: gpu)", (p) => p.pending);
    perPool('murmur_pending_audio_seconds', 'audio seconds waiting for each pool', (p) => p.pendingSeconds);
    perPool(
      'murmur_oldest_pending_age_seconds',
      'age of the oldest pending job of each pool (0 when none waits)',
      (p) => p.oldestPendingAgeSeconds,
    );
    perPool('murmur_live_workers', 'workers heard from recently, by pool', (p) => p.workers);
    this.queueWait = new Histogram({
      name: 'murmur_queue_wait_seconds',
      help: 'from creation to first claim',
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
      registers,
    });
    this.processing = new Histogram({
      name: 'murmur_processing_seconds',
      help: 'from the last claim to completion',
      buckets: [0.5, 1, 5, 15, 60, 300, 900, 3600],
      registers,
    });
    this.batchSize = new Histogram({ name: 'murmur_batch_size', help: 'jobs per claim', buckets: [1, 2, 4, 8, 16, 32, 64], registers });
    this.failures = new Counter({
      name: 'murmur_job_failures_total',
      help: 'failed attempts by error code',
      labelNames: ['code'],
      registers,
    });
  }
}
