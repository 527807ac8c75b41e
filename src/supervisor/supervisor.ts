// The embedded server's workers: real child processes running the same worker
// program that runs on other machines, speaking HTTP to this API. One starts
// when jobs wait and none is alive; more start as the queue grows, up to
// `maxWorkers`. Workers leave by themselves when idle. A crashed worker is
// logged; its jobs come back through lease expiry. Each worker's JSON log lines
// are written again through this process's log with its `workerPid`.
import { AsyncResource } from 'node:async_hooks';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { relayLine, type Logger } from '../log.ts';
import type { JobQueue, Pool } from '../queue/jobQueue.ts';

export interface SupervisorOptions {
  queue: JobQueue;
  /** The pool its workers join: they are started for the jobs that pool may claim. */
  pool: Pool;
  maxWorkers: number;
  /** Jobs one worker takes a batch; the queue depth per extra worker. */
  batchJobs: number;
  /** Argument list for the worker program (after `node`). */
  workerArgs: () => string[];
  workerEnv: NodeJS.ProcessEnv;
  log: Logger;
}

export class Supervisor {
  private readonly children = new Set<ChildProcess>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private checking = false;
  // Bound to the context it was made in: the event comes inside the request that queued the job, and
  // the workers it starts are not that request's (log.ts: requestId).
  private readonly onWork = AsyncResource.bind(() => void this.check());

  constructor(private readonly o: SupervisorOptions) {}

  get running(): number {
    return this.children.size;
  }

  /** Process ids of the running workers. */
  get pids(): number[] {
    return [...this.children].map((c) => c.pid!).filter(Boolean);
  }

  start(): void {
    if (this.o.maxWorkers === 0) return;
    this.o.queue.events.on('work', this.onWork);
    // Jobs on a retry delay, or left by a crashed worker, wake no event: look every second.
    this.timer = setInterval(this.onWork, 1000);
    void this.check();
  }

  async check(): Promise<void> {
    if (this.closed || this.checking) return;
    this.checking = true;
    try {
      const waiting = await this.o.queue.claimable(this.o.pool);
      if (waiting === 0 || this.closed) return;
      const { processing } = await this.o.queue.stats();
      const wanted = Math.min(this.o.maxWorkers, Math.max(1, Math.ceil((waiting + processing) / this.o.batchJobs)));
      while (this.children.size < wanted && !this.closed) this.spawn(waiting);
    } catch (err) {
      this.o.log.error({ event: 'supervisor.queue_unreadable', err }, `supervisor: cannot read the queue: ${(err as Error).message}`);
    } finally {
      this.checking = false;
    }
  }

  private spawn(waiting: number): void {
    const child = spawn(process.execPath, this.o.workerArgs(), { env: this.o.workerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    const workerPid = child.pid;
    const log = this.o.log.child({ workerPid });
    log.info(
      { event: 'worker.started', waiting, running: this.children.size },
      `worker ${workerPid} started: ${waiting} job(s) waiting, ${this.children.size} worker(s) running`,
    );
    for (const stream of [child.stdout!, child.stderr!])
      createInterface({ input: stream }).on('line', (line) => relayLine(this.o.log, line, { workerPid }));
    child.on('exit', (code, signal) => {
      this.children.delete(child);
      if (code === 0) log.info({ event: 'worker.exited' }, `worker ${workerPid} exited`);
      else
        log.warn(
          { event: 'worker.died', code, signal },
          `worker ${workerPid} died (${signal ?? `exit code ${code}`}); its jobs go back to the queue when their leases expire`,
        );
      setImmediate(() => void this.check());
    });
  }

  /**
   * Asks every worker to stop (SIGTERM: finish the batch in hand or hand it back within their
   * shutdown time, which is `graceMs` too) and waits for them; one still there 5 s after that is killed.
   */
  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    this.o.queue.events.off('work', this.onWork);
    if (this.timer) clearInterval(this.timer);
    await Promise.all(
      [...this.children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), graceMs + 5000).unref();
          }),
      ),
    );
  }
}
