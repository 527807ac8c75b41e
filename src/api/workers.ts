// Which workers are alive, as the API sees them: a worker counts while it has
// been heard from (a claim, a heartbeat) within the liveness window or is
// waiting in a long-poll claim, until it signs off.

export class WorkerRegistry {
  private readonly workers = new Map<string, { lastSeen: number; polling: number }>();

  constructor(private readonly windowMs: number) {}

  touch(id: string): void {
    const w = this.workers.get(id) ?? { lastSeen: 0, polling: 0 };
    w.lastSeen = Date.now();
    this.workers.set(id, w);
  }

  async polling<T>(id: string, wait: () => Promise<T>): Promise<T> {
    this.touch(id);
    const w = this.workers.get(id)!;
    w.polling++;
    try {
      return await wait();
    } finally {
      w.polling--;
      w.lastSeen = Date.now();
    }
  }

  leave(id: string): void {
    this.workers.delete(id);
  }

  live(): number {
    const since = Date.now() - this.windowMs;
    let n = 0;
    for (const [id, w] of this.workers) {
      if (w.polling > 0 || w.lastSeen >= since) n++;
      else this.workers.delete(id);
    }
    return n;
  }
}
