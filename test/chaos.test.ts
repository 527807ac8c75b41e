// Chaos: 100 jobs submitted while workers and the API are SIGKILLed at random
// moments (20 workers, 3 API restarts on the same data and port). Every job the
// API acknowledged ends DONE exactly once, none twice, retries are counted in
// attempts, and nothing is left behind: no stored audio, no download folders,
// no worker processes.
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generatedModel } from './helpers/models.ts';
import { freePort } from './helpers/postgresCluster.ts';
import { alive, startServer, startWorker, wavBytes, type Server } from './helpers/service.ts';

const JOBS = 100;
const WORKER_KILLS = 20;
const API_KILLS = 3;

let server: Server | undefined;
const workers: ReturnType<typeof startWorker>[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop('SIGKILL')));
  await server?.stop('SIGKILL');
});

// A seeded generator: a failing run can be replayed.
let seed = Number(process.env.MURMUR_CHAOS_SEED ?? Date.now() % 100_000);
const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('chaos', () => {
  it(`${JOBS} jobs through ${WORKER_KILLS} worker kills and ${API_KILLS} API kills: each DONE exactly once, nothing left behind`, async () => {
    console.log(`chaos seed ${seed} (MURMUR_CHAOS_SEED replays it)`);
    const model = await generatedModel();
    const port = await freePort();
    const env = {
      PORT: String(port),
      MURMUR_MAX_WORKERS: '0',
      MURMUR_MAX_ATTEMPTS: '50',
      MURMUR_LEASE_SECONDS: '1.5',
      MURMUR_SHUTDOWN_SECONDS: '1',
    };
    server = await startServer(env);
    const { dataDir, url } = server;
    const spawnWorker = () => {
      const w = startWorker(url, model, ['--max-jobs', '4', '--poll', '2']);
      workers.push(w);
      return w;
    };
    let pool = [spawnWorker(), spawnWorker(), spawnWorker()];

    // Clients: each job sent until acknowledged, with its idempotency key, across API deaths.
    const acknowledged = new Map<number, string>();
    let refusedSends = 0;
    const send = async (i: number) => {
      const bytes = wavBytes(new Float32Array(Math.round(16000 * (0.5 + random()))).map((_, k) => 0.3 * Math.sin(k / (5 + (i % 7)))));
      for (;;) {
        try {
          const res = await server!.upload(bytes, `chaos-${i}.wav`, { idempotencyKey: `chaos-${i}` }, 'id');
          if (res.data?.createJob?.id) return void acknowledged.set(i, res.data.createJob.id);
        } catch {
          // connection refused or reset: the API is down
        }
        refusedSends++;
        await sleep(100);
      }
    };
    const submitting = (async () => {
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < JOBS; i++) {
        inFlight.push(send(i));
        await sleep(40 + random() * 120);
      }
      await Promise.all(inFlight);
    })();

    // Kills at random moments while the jobs come and go.
    const killedWorkerPids: number[] = [];
    const apiKillsAt = new Set(Array.from({ length: API_KILLS }, (_, k) => Math.floor(((k + 1) * WORKER_KILLS) / (API_KILLS + 1))));
    for (let k = 0; k < WORKER_KILLS; k++) {
      await sleep(200 + random() * 600);
      const victim = pool[Math.floor(random() * pool.length)];
      killedWorkerPids.push(victim.process.pid!);
      await victim.stop('SIGKILL');
      pool = pool.filter((w) => w !== victim).concat(spawnWorker());
      if (apiKillsAt.has(k)) {
        await server.stop('SIGKILL');
        await sleep(random() * 500);
        server = await startServer(env, dataDir);
      }
    }
    await submitting;

    // Everything acknowledged finishes.
    const ids = [...acknowledged.values()];
    const deadline = Date.now() + 120_000;
    let states: { id: string; status: string; attempts: number }[];
    for (;;) {
      const page = await server.gql(
        `{ jobs(first: 100) { nodes { id status attempts } pageInfo { hasNextPage } } queue { done pending processing failed cancelled } }`,
      );
      states = page.data.jobs.nodes;
      if (states.length === ids.length && states.every((s) => s.status === 'DONE')) break;
      if (Date.now() > deadline) throw new Error(`not all done: ${JSON.stringify(page.data.queue)}`);
      await sleep(250);
    }
    const stats = (await server.gql(`{ queue { done pending processing failed cancelled } }`)).data.queue;
    // One job per key (no duplicates from resent requests), each DONE once: the finished count is exactly the jobs.
    expect(acknowledged.size).toBe(JOBS);
    expect(new Set(ids).size).toBe(JOBS);
    expect(states.map((s) => s.id).sort()).toEqual([...ids].sort());
    expect(stats).toEqual({ done: JOBS, pending: 0, processing: 0, failed: 0, cancelled: 0 });
    const attempts = states.map((s) => s.attempts);
    expect(Math.min(...attempts)).toBeGreaterThanOrEqual(1);
    // Workers died holding jobs: those jobs ran again, and each run was counted.
    expect(attempts.filter((a) => a > 1).length).toBeGreaterThan(0);

    // Nothing left behind: stop the survivors; one more worker start clears the download folders of the killed ones.
    await Promise.all(pool.map((w) => w.stop('SIGTERM')));
    const sweeper = spawnWorker();
    await sleep(3000);
    await sweeper.stop('SIGTERM');
    const uploads = join(dataDir, 'blobs', 'uploads');
    expect(existsSync(uploads) ? readdirSync(uploads) : []).toEqual([]);
    const pids = workers.map((w) => w.process.pid!);
    expect(pids.filter(alive)).toEqual([]);
    expect(readdirSync(tmpdir()).filter((n) => pids.some((p) => n.startsWith(`murmur-audio-${p}-`)))).toEqual([]);

    const summary = {
      jobs: JOBS,
      workerKills: WORKER_KILLS,
      apiKills: API_KILLS,
      resentRequests: refusedSends,
      attempts: attempts.reduce((a, b) => a + b, 0),
      jobsRunMoreThanOnce: attempts.filter((a) => a > 1).length,
      mostAttempts: Math.max(...attempts),
    };
    console.log(`chaos: ${JSON.stringify(summary)}`);
  });
});
