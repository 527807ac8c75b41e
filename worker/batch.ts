// One claimed batch in a worker's hands: its leases are kept alive by
// heartbeats (three a lease) until each job is reported, done or failed, or
// dropped because the API says it was cancelled or its lease was lost. Each
// job is reported once; after a hand-back nothing is.
import type { Logger } from '../src/log.ts';
import { CodedError } from '../src/errors.ts';
import type { Transcript } from '../src/transcript/transcript.ts';
import type { ApiClient, LeaseFields, LeaseState } from './apiClient.ts';

/** Failures that retrying cannot cure: the job fails at once. */
const permanent = (err: unknown) => err instanceof CodedError && err.permanent;

export interface Holder {
  workerId: string;
  pool: 'CPU' | 'GPU';
  provider?: string;
}

export class Batch {
  private readonly progress: Map<string, number>;
  /** Transcripts of the windows done so far, not yet sent. */
  private readonly partials = new Map<string, Transcript>();
  /** Jobs the API took away: cancelled, or their lease lost. */
  private readonly dropped = new Map<string, LeaseState>();
  /** Jobs reported (done or failed), or being reported; `recorded` once the API took the report. */
  private readonly reported = new Set<string>();
  private readonly recorded = new Set<string>();
  private beating: Promise<void> | null = null;
  private lastBeat = 0;
  private readonly timer: NodeJS.Timeout;
  /** Handed back (the worker is out of time): nothing more is reported. */
  private handedBack = false;

  constructor(
    readonly leases: LeaseFields[],
    private readonly api: ApiClient,
    private readonly holder: () => Holder,
    private readonly log: Logger,
  ) {
    this.progress = new Map(leases.map((l) => [l.job.id, 0]));
    // Timed by the lease's length rather than its expiry: the clocks of a remote worker and the API need not agree.
    this.timer = setInterval(() => this.beat(), Math.max(100, (Math.min(...leases.map((l) => l.leaseSeconds)) * 1000) / 3));
  }

  /** The API took the job away (cancelled, or its lease lost): its work is wanted no more. */
  isDropped(jobId: string): boolean {
    return this.dropped.has(jobId);
  }

  /** The leases still held and not reported. */
  live(): LeaseFields[] {
    return this.leases.filter((l) => !this.dropped.has(l.job.id) && !this.reported.has(l.job.id));
  }

  /** How far a job has got (0 to 1); subscribers hear of it at once, at most twice a second, not only at the next renewal. */
  advance(jobId: string, fraction: number): void {
    this.progress.set(jobId, fraction);
    if (Date.now() - this.lastBeat > 500) this.beat();
  }

  /** A job's windows done so far, from its start: the API has them with the next heartbeat (at most twice a second). */
  partial(jobId: string, transcript: Transcript): void {
    this.partials.set(jobId, transcript);
    if (Date.now() - this.lastBeat > 500) this.beat();
  }

  async complete(lease: LeaseFields, result: Parameters<ApiClient['complete']>[2]): Promise<void> {
    await this.report(lease, () => this.api.complete(lease.job.id, lease.leaseToken, result));
  }

  async fail(lease: LeaseFields, err: unknown): Promise<void> {
    const e = err as Error & { code?: string };
    const code = e.code ?? 'WORKER_ERROR';
    const retryable = !permanent(err);
    this.log[retryable ? 'warn' : 'info'](
      { event: 'job.error', jobId: lease.job.id, code, retryable, err: e },
      `job ${lease.job.id} failed (${code}${retryable ? ', will retry' : ''}): ${e.message}`,
    );
    await this.report(lease, () => this.api.fail(lease.job.id, lease.leaseToken, { code, message: e.message, retryable }));
  }

  /** The leases still held, which the caller gives back; from now on the batch reports nothing. */
  handBack(): LeaseFields[] {
    const held = this.held();
    this.handedBack = true;
    this.end();
    return held;
  }

  end(): void {
    clearInterval(this.timer);
  }

  /** Leases the API has not taken away and whose report it has not taken yet (they are heartbeated, and handed back). */
  private held(): LeaseFields[] {
    return this.leases.filter((l) => !this.dropped.has(l.job.id) && !this.recorded.has(l.job.id));
  }

  private takePartial(jobId: string): { partial?: Transcript } {
    const partial = this.partials.get(jobId);
    this.partials.delete(jobId);
    return partial ? { partial } : {};
  }

  private beat(): void {
    this.lastBeat = Date.now();
    this.beating ??= this.api
      .heartbeat(
        this.holder(),
        this.held().map((l) => ({
          jobId: l.job.id,
          leaseToken: l.leaseToken,
          progress: this.progress.get(l.job.id)!,
          ...this.takePartial(l.job.id),
        })),
      )
      .then((states) => {
        for (const s of states) {
          if (s.state === 'ACTIVE') continue;
          if (!this.dropped.has(s.jobId))
            this.log.info(
              { event: 'job.dropped', jobId: s.jobId, state: s.state },
              `dropping job ${s.jobId} (${s.state === 'CANCELLED' ? 'cancelled' : 'lease lost'})`,
            );
          this.dropped.set(s.jobId, s.state);
        }
      })
      .catch((err) => this.log.warn({ event: 'worker.heartbeat_failed', err }, `heartbeat failed: ${err.message}`))
      .finally(() => (this.beating = null));
  }

  private async report(lease: LeaseFields, outcome: () => Promise<unknown>): Promise<void> {
    const id = lease.job.id;
    if (this.handedBack || this.dropped.has(id) || this.reported.has(id)) return;
    this.reported.add(id);
    // A heartbeat in flight may say the job was cancelled meanwhile: then there is nothing to report.
    await this.beating;
    if (this.handedBack || this.dropped.has(id)) return;
    try {
      await outcome();
      this.recorded.add(id);
    } catch (err) {
      // Cancelled or taken over between the last heartbeat and the report: the API's answer, not a failure here.
      const code = (err as { code?: string }).code;
      if (code === 'JOB_CANCELLED' || code === 'LEASE_LOST') {
        this.dropped.set(id, code === 'JOB_CANCELLED' ? 'CANCELLED' : 'LOST');
        this.log.info({ event: 'job.dropped', jobId: id, state: this.dropped.get(id) }, `dropping job ${id} (${code})`);
        return;
      }
      this.log.error(
        { event: 'job.not_recorded', jobId: lease.job.id, err },
        `job ${lease.job.id} not recorded: ${(err as Error).message}`,
      );
    }
  }
}
