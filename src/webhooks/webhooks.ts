// Webhooks: when a job with a callbackUrl ends (done, failed, cancelled), its
// outcome is POSTed there, signed as the Standard Webhooks specification says
// (webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of
// "id.timestamp.body">). What is owed lives in the jobs table (webhook_next_at),
// not in memory: a delivery survives a restart, and any instance may send it.
// Each instance sweeps for due deliveries, holds them while it tries, sends a
// few at a time (p-queue), past the same address guard as audio URLs, and
// backs off on failures until MURMUR_WEBHOOK_RETRY_HOURS after the job ended.
import { AsyncResource } from 'node:async_hooks';
import { createHmac, randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import { postChecked } from '../api/urlFetch.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Job, JobQueue } from '../queue/jobQueue.ts';
import { isTerminal } from '../queue/jobQueue.ts';
import type { Transcript } from '../transcript/transcript.ts';

/** The master secret every instance signs with: MURMUR_WEBHOOK_SECRET, or one made once and kept in the database. */
export async function webhookMaster(queue: JobQueue, config: Config): Promise<string> {
  return config.webhookSecret ?? (await queue.setting('webhook-master', () => randomBytes(32).toString('base64')));
}

/** A tenant's signing secret (whsec_…): derived from the master, so tenants cannot sign for each other. */
export function tenantSecret(master: string, tenant: string): string {
  return `whsec_${createHmac('sha256', master).update(`webhook-tenant:${tenant}`).digest('base64')}`;
}

/** Standard Webhooks' signature header value. */
export function sign(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** What is POSTed: the event type and the job as it ended. */
export function payloadOf(job: Job, now: number): { type: string; timestamp: string; data: Record<string, unknown> } {
  const result = job.status === 'DONE' ? (job.result as Transcript) : null;
  return {
    type: `job.${job.status.toLowerCase()}`,
    timestamp: new Date(now).toISOString(),
    data: {
      id: job.id,
      status: job.status,
      filename: job.filename,
      durationSeconds: job.durationSeconds,
      createdAt: new Date(job.createdAt).toISOString(),
      finishedAt: job.finishedAt === null ? null : new Date(job.finishedAt).toISOString(),
      error: job.errorCode ? { code: job.errorCode, message: job.errorMessage } : null,
      result: result && { text: result.text, language: result.language, segments: result.segments },
    },
  };
}

export class WebhookSender {
  private readonly sending: PQueue;
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;
  // Bound to the context it was made in (the service's start): the event comes inside the request that
  // ended the job, and the deliveries it starts are not that request's (log.ts: requestId).
  private readonly onJob = AsyncResource.bind((job: Job) => {
    if (job.webhookUrl && isTerminal(job)) void this.sweep();
  });

  constructor(
    private readonly queue: JobQueue,
    private readonly config: Config,
    private readonly master: string,
    private readonly log: Logger,
  ) {
    this.sending = new PQueue({ concurrency: config.webhook.concurrency });
  }

  start(): void {
    this.timer = setInterval(() => void this.sweep(), 1000);
    this.queue.events.on('job', this.onJob);
    void this.sweep();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.queue.events.off('job', this.onJob);
    this.sending.clear();
    await this.sending.onIdle();
  }

  /** Takes the due deliveries this instance has room for and sends them. */
  async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const room = this.config.webhook.concurrency * 2 - this.sending.size - this.sending.pending;
      if (room <= 0) return;
      // Held twice the timeout: a delivery in flight is not picked up by another instance meanwhile.
      const due = await this.queue.claimWebhooks(Date.now(), room, this.config.webhook.timeoutSeconds * 2000 + 1000);
      for (const job of due) void this.sending.add(() => this.deliver(job));
    } catch (err) {
      this.log.error({ event: 'webhook.sweep_failed', err }, `webhook sweep failed: ${(err as Error).message}`);
    } finally {
      this.sweeping = false;
    }
  }

  private async deliver(job: Job): Promise<void> {
    const now = Date.now();
    // The same id on every try of one message (receivers drop repeats); a job retried and ended again sends a new one.
    const id = `msg_${job.id}_${job.finishedAt ?? now}`;
    const timestamp = Math.floor(now / 1000);
    const body = JSON.stringify(payloadOf(job, now));
    const headers = {
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': sign(tenantSecret(this.master, job.tenant), id, timestamp, body),
    };
    let status = 0;
    try {
      status = await postChecked(job.webhookUrl!, body, headers, {
        timeoutMs: this.config.webhook.timeoutSeconds * 1000,
        allowPrivate: this.config.allowPrivateUrls,
      });
    } catch (err) {
      this.log.warn(
        { event: 'webhook.failed', jobId: job.id, url: job.webhookUrl, err },
        `job ${job.id}: webhook to ${job.webhookUrl} failed: ${(err as Error).message}`,
      );
    }
    const delivered = status >= 200 && status < 300;
    const attempts = job.webhookAttempts + 1;
    const giveUpAt = (job.finishedAt ?? now) + this.config.webhook.retryHours * 3_600_000;
    const delay = Math.min(this.config.retryMaxSeconds * 1000, this.config.retryBaseSeconds * 1000 * 2 ** (attempts - 1));
    const nextAt = delivered || now + delay > giveUpAt ? null : now + delay;
    if (delivered) this.log.info({ event: 'webhook.delivered', jobId: job.id, status, attempts }, `job ${job.id}: webhook delivered`);
    else if (nextAt === null)
      this.log.warn(
        { event: 'webhook.given_up', jobId: job.id, status, attempts },
        `job ${job.id}: webhook given up after ${attempts} attempt(s) (last answer: ${status || 'none'})`,
      );
    await this.queue
      .recordWebhook(job.id, { status, delivered, nextAt, at: Date.now() })
      .catch((err) =>
        this.log.error(
          { event: 'webhook.not_recorded', jobId: job.id, err },
          `job ${job.id}: webhook outcome not recorded: ${err.message}`,
        ),
      );
  }
}
