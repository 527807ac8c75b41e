// Events between API instances over PostgreSQL's LISTEN/NOTIFY. A transaction
// that changes jobs sends one notice per changed job, carrying the row as it
// committed; PostgreSQL delivers them to every listening instance on commit
// (never for a rolled-back change), in commit order, so every instance sees
// every state of every job. A row too large for a notice (payloads stop at
// 8000 bytes: a long transcript) goes without its transcript, and the
// listener reads it back. One dedicated connection per instance listens, and
// reconnects when the server goes away.
import pg from 'pg';
import { sql, type SQL } from 'drizzle-orm';
import type { Job } from '../jobQueue.ts';
import type { Logger } from '../../log.ts';

export const CHANNEL = 'murmur_jobs';
const MAX_PAYLOAD = 7900;

export type Notice =
  | { work: true }
  | { deleted: string }
  /** `partial`: the row came without its transcript; read it back. */
  | { job: Job; partial?: true };

/** One statement that announces the changed jobs (and, with `work`, that a claim may find something), to run inside their transaction. */
export function notices(changed: Job[], work: boolean): SQL {
  const payloads = changed.map((job) => {
    const whole = JSON.stringify({ job } satisfies Notice);
    return whole.length <= MAX_PAYLOAD ? whole : JSON.stringify({ job: { ...job, result: null }, partial: true } satisfies Notice);
  });
  if (work) payloads.push(JSON.stringify({ work: true } satisfies Notice));
  // WITH ORDINALITY keeps the notices in the order given.
  return sql`SELECT pg_notify(${CHANNEL}, p) FROM unnest(${sql.param(payloads)}::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`;
}

/** Announces deleted jobs, inside the transaction that deletes them. */
export function deletions(ids: string[]): SQL {
  const payloads = ids.map((id) => JSON.stringify({ deleted: id } satisfies Notice));
  return sql`SELECT pg_notify(${CHANNEL}, p) FROM unnest(${sql.param(payloads)}::text[]) AS t(p)`;
}

export class Listener {
  private client: pg.Client | null = null;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly on: { notice: (n: Notice) => void; reconnected: () => void; log: Logger },
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, keepAlive: true });
    client.on('notification', (m) => {
      if (m.channel !== CHANNEL || !m.payload) return;
      this.on.notice(JSON.parse(m.payload) as Notice);
    });
    const lost = (why: string) => {
      if (this.client !== client) return;
      this.client = null;
      client.end().catch(() => {});
      if (this.closed) return;
      this.on.log.warn({ event: 'database.listener_lost', reason: why }, `PostgreSQL listener lost (${why}); reconnecting`);
      void this.reconnect();
    };
    client.on('error', (err) => lost(err.message));
    client.on('end', () => lost('connection ended'));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    this.client = client;
  }

  private async reconnect(): Promise<void> {
    for (let delay = 250; !this.closed; delay = Math.min(delay * 2, 5000)) {
      await new Promise((r) => setTimeout(r, delay));
      try {
        await this.connect();
        this.on.log.info({ event: 'database.listener_reconnected' }, 'PostgreSQL listener reconnected');
        // Changes made while nobody listened sent no notice here: let everyone look again.
        this.on.reconnected();
        return;
      } catch {
        // still down; try again
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => {});
  }
}
