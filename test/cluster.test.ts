// Scale-out, for real: PostgreSQL, an S3-compatible store, two API instances
// and four worker processes in two pools. Jobs are created on both instances
// (multipart and presigned uploads) and followed from the other one; midway
// one API instance and two workers are killed with SIGKILL, and the instance
// comes back on its port. Every acknowledged job must end DONE, once, and
// both instances must tell the same story.
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { freshDatabase } from './helpers/postgres.ts';
import { freePort } from './helpers/postgresCluster.ts';
import { startS3, type S3Server } from './helpers/s3.ts';
import { startServer, startWorker, wavBytes, type Server } from './helpers/service.ts';

let model: string;
let s3: S3Server;
const cleanup: (() => Promise<void>)[] = [];
beforeAll(async () => {
  model = await generatedModel();
  s3 = await startS3();
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  await s3?.close();
});

const CREATE = `mutation ($input: CreateJobInput!) { createJob(input: $input) { id status } }`;
const FOLLOW = `subscription ($id: ID!) { jobUpdated(id: $id) { id status } }`;
const STATS = `{ queue { pending processing done failed cancelled workers pools { pool pending workers } } }`;

/** Follows a job until it finishes, subscribing again (as a client would) when the instance goes away. */
async function follow(url: () => string, id: string): Promise<string[]> {
  const statuses: string[] = [];
  for (;;) {
    const finished = await new Promise<boolean>((resolve) => {
      const client = createClient({ url: url().replace(/^http/, 'ws'), webSocketImpl: WebSocket, lazy: true, retryAttempts: 0 });
      client.subscribe<{ jobUpdated: { status: string } }>(
        { query: FOLLOW, variables: { id } },
        {
          next: (v) => v.data && statuses.push(v.data.jobUpdated.status),
          error: () => void Promise.resolve(client.dispose()).then(() => resolve(false)),
          complete: () => void Promise.resolve(client.dispose()).then(() => resolve(true)),
        },
      );
    });
    if (finished && statuses.at(-1) === 'DONE') return statuses;
    await new Promise((r) => setTimeout(r, 300));
  }
}

describe('a cluster', () => {
  it('two API instances on PostgreSQL and S3, workers in two pools, survive SIGKILLs: every job DONE once, the same answers everywhere', async () => {
    const database = await freshDatabase();
    const ports = [await freePort(), await freePort()];
    const env = (port: number) => ({
      ...s3.env,
      PORT: String(port),
      MURMUR_DATABASE_URL: database,
      MURMUR_MODEL_DIR: model,
      MURMUR_MAX_WORKERS: '0',
      MURMUR_SMALL_JOB_SECONDS: '1.5',
      MURMUR_BATCH_JOBS: '8',
    });
    const servers: Server[] = [await startServer(env(ports[0])), await startServer(env(ports[1]))];
    cleanup.push(() => Promise.all(servers.map((s) => s.stop())).then(() => {}));
    const urls = () => servers.map((s) => s.url);

    const workers = [
      startWorker(urls()[0], model, ['--pool', 'cpu', '--max-jobs', '8']),
      startWorker(urls()[1], model, ['--pool', 'cpu', '--max-jobs', '8']),
      startWorker(urls()[1], model, ['--pool', 'gpu', '--max-jobs', '8']),
      startWorker(urls()[0], model, ['--pool', 'gpu', '--max-jobs', '8']),
    ];
    cleanup.push(() => Promise.all(workers.map((w) => w.stop())).then(() => {}));

    // Every worker has been heard from (and so every pool is live) before the first job: routing is then strict.
    await expect.poll(async () => (await servers[1].gql(`{ queue { workers } }`)).data.queue.workers, { timeout: 60_000 }).toBe(4);
    const { liveWorkers } = (await servers[0].gql(`{ queue { liveWorkers { id pool } } }`)).data.queue;
    const poolOf = new Map<string, string>(liveWorkers.map((w: { id: string; pool: string }) => [w.id, w.pool]));

    const short = wavBytes(tone(330, 1));
    const long = wavBytes(tone(440, 2));
    const created: { id: string; on: number }[] = [];
    const follows: Promise<string[]>[] = [];
    for (let n = 0; n < 100; n++) {
      const on = n % 2;
      const server = servers[on];
      const audio = n % 4 < 2 ? short : long;
      let result;
      if (n % 3 === 0) {
        // Presigned: the bytes go straight to the store, the job takes the key.
        const up = await server.gql(`mutation ($f: String!) { createUpload(input: { filename: $f }) { key url headers { name value } } }`, {
          f: `p${n}.wav`,
        });
        const { key, url, headers } = up.data.createUpload;
        const put = await fetch(url, {
          method: 'PUT',
          body: Buffer.from(audio),
          headers: Object.fromEntries(headers.map((h: any) => [h.name, h.value])),
        });
        expect(put.status).toBe(200);
        result = await server.gql(CREATE, { input: { uploadKey: key } });
      } else {
        result = await server.upload(audio, `m${n}.wav`);
      }
      expect(result.errors).toBeUndefined();
      const id = result.data.createJob.id;
      created.push({ id, on });
      const other = 1 - on;
      follows.push(follow(() => urls()[other], id));
      if (n === 60) {
        // Midway: instance 0 and two workers (one of each pool) die at once.
        await servers[0].stop('SIGKILL');
        await workers[0].stop('SIGKILL');
        await workers[2].stop('SIGKILL');
        servers[0] = await startServer(env(ports[0]));
      }
    }

    const seen = await Promise.all(follows);
    for (const statuses of seen) {
      expect(statuses.at(-1)).toBe('DONE');
      expect(statuses.filter((s) => s === 'DONE')).toHaveLength(1);
    }
    const [a, b] = await Promise.all(servers.map((s) => s.gql(STATS)));
    expect(a.data.queue).toEqual(b.data.queue);
    expect(a.data.queue).toMatchObject({ pending: 0, processing: 0, done: 100, failed: 0, cancelled: 0 });
    // Short jobs were done by cpu workers, long ones by gpu workers.
    const byPool: Record<string, number> = {};
    for (const id of created.map((c) => c.id)) {
      const { job } = (await servers[0].gql(`query ($id: ID!) { job(id: $id) { status workerId input { durationSeconds } } }`, { id }))
        .data;
      expect(job.status).toBe('DONE');
      const pool = poolOf.get(job.workerId);
      expect(pool).toBe(job.input.durationSeconds <= 1.5 ? 'CPU' : 'GPU');
      byPool[pool!] = (byPool[pool!] ?? 0) + 1;
    }
    expect(byPool).toEqual({ CPU: 50, GPU: 50 });
    // The surviving workers report the provider they loaded: this machine has no GPU, so cpu for both pools.
    const survivors = (await servers[1].gql(`{ queue { liveWorkers { id pool provider device } } }`)).data.queue.liveWorkers.filter(
      (w: { id: string }) => [workers[1], workers[3]].some((x) => w.id.endsWith(`-${x.process.pid}`)),
    );
    expect(survivors.map((w: { pool: string; provider: string; device: string }) => [w.pool, w.provider, w.device]).sort()).toEqual([
      ['CPU', 'cpu', 'CPU'],
      ['GPU', 'cpu', 'CPU'],
    ]);
    const metrics = await Promise.all(ports.map((p) => fetch(`http://127.0.0.1:${p}/metrics`).then((r) => r.text())));
    for (const m of metrics) {
      expect(m).toMatch(/^murmur_jobs\{status="DONE"\} 100$/m);
      expect(m).toMatch(/^murmur_pending_jobs\{pool="gpu"\} 0$/m);
    }
    expect(metrics[0].match(/^murmur_live_workers.*$/gm)).toEqual(metrics[1].match(/^murmur_live_workers.*$/gm));
  });
});
