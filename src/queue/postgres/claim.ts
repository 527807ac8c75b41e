// Which rows a claim takes, in one subquery of the claim's UPDATE. The inner
// SELECT locks the first `maxJobs` claimable rows with FOR UPDATE SKIP LOCKED,
// so concurrent claimers (from any API instance) pass over each other's rows
// instead of queueing on them; a running sum over those rows keeps the batch
// under `maxSeconds` of audio (the first row always goes). The claim-order
// index (status, priority DESC, seq) serves the scan.
import { sql, type SQL } from 'drizzle-orm';
import { jobs } from './schema.ts';

export function claimedIds(o: { maxJobs: number; maxSeconds: number; now: number; size: SQL | undefined }): SQL {
  const claimable = sql`${jobs.status} = 'PENDING' AND ${jobs.runAfter} <= ${o.now}${o.size ? sql` AND ${o.size}` : sql``}`;
  return sql`
    SELECT id FROM (
      SELECT id, row_number() OVER w AS n, sum(duration_seconds) OVER w AS running
      FROM (
        SELECT id, priority, seq, duration_seconds FROM ${jobs}
        WHERE ${claimable}
        ORDER BY priority DESC, seq
        LIMIT ${o.maxJobs}
        FOR UPDATE SKIP LOCKED
      ) locked
      WINDOW w AS (ORDER BY priority DESC, seq ROWS UNBOUNDED PRECEDING)
    ) batch
    WHERE n = 1 OR running <= ${o.maxSeconds}`;
}
