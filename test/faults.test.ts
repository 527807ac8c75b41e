// A database or blob store that is wrong, not up yet, or goes away: the
// program stops at start naming the variable when waiting cannot help, waits
// when it can, reports itself unready while a dependency is down, refuses new
// work with a typed code meanwhile, loses nothing it acknowledged, and
// recovers by itself.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { freshDatabase } from './helpers/postgres.ts';
import { freePort, startPostgresCluster, type PostgresCluster } from './helpers/postgresCluster.ts';
import { startS3, type S3Server } from './helpers/s3.ts';
import { collect, startServer, wavBytes, type Server } from './helpers/service.ts';

const BIN = new URL('../src/cli/bin.js', import.meta.url).pathname;
let model: string;
const servers: Server[] = [];
const clusters: PostgresCluster[] = [];
const s3s: S3Server[] = [];
const children: ChildProcess[] = [];
beforeAll(async () => {
  model = await generatedModel();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')));
  children.forEach((c) => c.kill('SIGKILL'));
  clusters.forEach((c) => c.remove());
  await Promise.all(s3s.map((s) => s.close()));
});

/** `murmur serve` that is expected to stop at start: its exit code and what it said. */
async function serveFails(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  const err = await promisify(execFile)(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MURMUR_MODEL_DIR: model, MURMUR_MAX_WORKERS: '0', ...env },
    timeout: 60_000,
  }).catch((e) => e);
  return { code: err.code, stderr: String(err.stderr) };
}

const ready = async (server: Server) => {
  const res = await fetch(server.url.replace('/graphql', '/readyz'));
  return { status: res.status, body: await res.text() };
};

describe('at start', () => {
  it('a database that refuses us (no such database), or a URL that is not PostgreSQL, stops the program naming MURMUR_DATABASE_URL', async () => {
    const url = new URL(await freshDatabase());
    url.pathname = '/no_such_database';
    const missing = await serveFails({ MURMUR_DATABASE_URL: url.toString() });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/CONFIG_INVALID: MURMUR_DATABASE_URL: cannot use .*no_such_database.*does not exist/);
    const wrong = await serveFails({ MURMUR_DATABASE_URL: 'mysql://localhost/murmur' });
    expect(wrong.stderr).toMatch(/CONFIG_INVALID: .*MURMUR_DATABASE_URL: must be a postgres:\/\/ URL/);
  });

  it('a bucket that does not exist stops the program naming MURMUR_S3_BUCKET', async () => {
    const s3 = await startS3();
    s3s.push(s3);
    const failed = await serveFails({ ...s3.env, MURMUR_S3_BUCKET: 'no-such-bucket' });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/CONFIG_INVALID: MURMUR_S3_BUCKET: cannot use s3:\/\/no-such-bucket/);
  });

  it('a database that does not answer is waited for: named once the wait is over, used as soon as it is up', async () => {
    const nobody = await freePort();
    const gaveUp = await serveFails({
      MURMUR_DATABASE_URL: `postgres://postgres@127.0.0.1:${nobody}/postgres`,
      MURMUR_DATABASE_WAIT_SECONDS: '1',
    });
    expect(gaveUp.code).toBe(1);
    expect(gaveUp.stderr).toMatch(
      /CONFIG_INVALID: MURMUR_DATABASE_URL: cannot use postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres: .*ECONNREFUSED/,
    );

    const cluster = await startPostgresCluster();
    clusters.push(cluster);
    cluster.stop();
    // Started by hand: the test must see the server waiting before it brings the database up.
    const child = spawn(process.execPath, [BIN, 'serve'], {
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        MURMUR_DATABASE_URL: cluster.url,
        MURMUR_DATABASE_WAIT_SECONDS: '60',
        MURMUR_MODEL_DIR: model,
        MURMUR_MAX_WORKERS: '0',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async (pattern: RegExp) => {
      for (let l = await lines.next(); !l.done; l = await lines.next()) if (pattern.test(l.value)) return l.value;
      throw new Error(`the server ended without saying ${pattern}`);
    };
    expect(await next(/does not answer/)).toMatch(
      /PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres does not answer .*; waiting up to 60 s/,
    );
    cluster.start();
    const url = (await next(/murmur listening on/)).match(/on (\S+)/)![1];
    expect((await fetch(url.replace('/graphql', '/readyz'))).status).toBe(200);
  });
});

describe('during the run', () => {
  it('PostgreSQL goes away and comes back: unready meanwhile, new work refused with DATABASE_UNAVAILABLE, acknowledged jobs finish afterwards, events flow again', async () => {
    const cluster = await startPostgresCluster();
    clusters.push(cluster);
    const server = await startServer({
      MURMUR_DATABASE_URL: cluster.url,
      MURMUR_MODEL_DIR: model,
      MURMUR_MAX_WORKERS: '1',
      MURMUR_SEGMENTATION: 'fixed',
      MURMUR_WORKER_EXIT_AFTER: '600',
    });
    servers.push(server);
    const audio = wavBytes(tone(300, 1));
    const before = (await server.upload(audio, 'before.wav')).data.createJob.id;

    cluster.stop();
    await expect.poll(async () => (await ready(server)).status, { timeout: 10_000 }).toBe(503);
    expect((await ready(server)).body).toMatch(/database: /);
    const refused = await server.upload(audio, 'during.wav');
    expect(refused.errors?.[0]?.extensions?.code).toBe('DATABASE_UNAVAILABLE');

    cluster.start();
    await expect.poll(async () => (await ready(server)).status, { timeout: 30_000 }).toBe(200);
    const after = (await server.upload(audio, 'after.wav')).data.createJob.id;
    const client = server.ws();
    const finals = await Promise.all(
      [before, after].map((id) =>
        collect<{ jobUpdated: { status: string } }>(client, `subscription ($id: ID!) { jobUpdated(id: $id) { status } }`, { id }).then(
          (u) => u.at(-1)!.jobUpdated.status,
        ),
      ),
    );
    await client.dispose();
    expect(finals).toEqual(['DONE', 'DONE']);
    // The server lived through it: the same process answered before, during and after.
    expect(server.process.exitCode).toBeNull();
  });

  it('a subscription open through a PostgreSQL outage sees its job finish, even when it finished before the instance listened again', async () => {
    const cluster = await startPostgresCluster();
    clusters.push(cluster);
    // A lease that outlasts the outage: this test is about the subscription, not about expiry.
    const server = await startServer({
      MURMUR_DATABASE_URL: cluster.url,
      MURMUR_MODEL_DIR: model,
      MURMUR_MAX_WORKERS: '0',
      MURMUR_LEASE_SECONDS: '120',
    });
    servers.push(server);
    const { id } = (await server.upload(wavBytes(tone(300, 1)), 'through.wav')).data.createJob;
    const client = server.ws();
    const followed = collect<{ jobUpdated: { status: string } }>(client, `subscription ($id: ID!) { jobUpdated(id: $id) { status } }`, {
      id,
    });
    const [lease] = (await server.worker(`mutation { claimJobs(input: { workerId: "w", maxJobs: 1, maxSeconds: 100 }) { leaseToken } }`))
      .data.claimJobs;

    // Down long enough for the listener's reconnection backoff to stretch; completed as soon as queries work again.
    cluster.stop();
    await new Promise((r) => setTimeout(r, 4000));
    cluster.start();
    await expect.poll(async () => (await ready(server)).status, { timeout: 30_000, interval: 50 }).toBe(200);
    const done = await server.worker(
      `mutation ($id: ID!, $t: Int!) { completeJob(jobId: $id, leaseToken: $t, result: { text: "t", language: "en", model: "m", segments: [] }) { status } }`,
      { id, t: lease.leaseToken },
    );
    expect(done.data.completeJob.status).toBe('DONE');
    expect((await followed).at(-1)!.jobUpdated.status).toBe('DONE');
    await client.dispose();
  });

  it('the S3 store goes away and comes back: unready meanwhile, uploads refused with BLOB_STORE_UNAVAILABLE, then accepted again', async () => {
    const s3 = await startS3();
    s3s.push(s3);
    const server = await startServer({
      ...s3.env,
      MURMUR_DATABASE_URL: await freshDatabase(),
      MURMUR_MODEL_DIR: model,
      MURMUR_MAX_WORKERS: '0',
    });
    servers.push(server);
    const audio = wavBytes(tone(300, 1));
    expect((await server.upload(audio, 'before.wav')).errors).toBeUndefined();

    await s3.stop();
    expect(await ready(server)).toMatchObject({ status: 503, body: expect.stringMatching(/blob store s3:\/\/murmur/) });
    const refused = await server.upload(audio, 'during.wav');
    expect(refused.errors?.[0]?.extensions?.code).toBe('BLOB_STORE_UNAVAILABLE');

    await s3.start();
    expect((await ready(server)).status).toBe(200);
    expect((await server.upload(audio, 'after.wav')).errors).toBeUndefined();
    expect((await server.gql(`{ queue { pending } }`)).data.queue.pending).toBe(2);
  });

  it('the model folder loses a file: unready, naming it, until it is back', async () => {
    const dir = await generatedModel();
    const server = await startServer({ MURMUR_MODEL_DIR: dir, MURMUR_MAX_WORKERS: '0' });
    servers.push(server);
    expect(await ready(server)).toMatchObject({ status: 200, body: expect.stringContaining('model folder: ok') });
    const decoder = join(dir, 'onnx', 'decoder_model_merged.onnx');
    renameSync(decoder, `${decoder}.away`);
    expect(await ready(server)).toMatchObject({ status: 503, body: expect.stringContaining('onnx/decoder_model_merged.onnx is missing') });
    renameSync(`${decoder}.away`, decoder);
    expect((await ready(server)).status).toBe(200);
  });
});
