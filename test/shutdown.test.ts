// Stopping on SIGTERM: new work is refused with SHUTTING_DOWN while requests
// already in flight finish; embedded and remote workers finish their batch or
// hand their jobs back (pending again, the attempt not counted); nothing is
// left running and no download is left on disk.
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { alive, collect, startServer, startWorker, wavBytes, type Server } from './helpers/service.ts';
import { generatedModel } from './helpers/models.ts';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop('SIGKILL')));
});

const speechLike = (seconds: number) =>
  new Float32Array(Math.round(16000 * seconds)).map((_, i) => 0.3 * Math.sin(i / 7) * Math.sin(i / 3000));
const downloadsOf = (pid: number) => readdirSync(tmpdir()).filter((n) => n.startsWith(`murmur-audio-${pid}-`));

async function processing(server: Server, id: string): Promise<{ workerId: string }> {
  for (;;) {
    const { data } = await server.gql(`query ($id: ID!) { job(id: $id) { status workerId } }`, { id });
    if (data.job.status === 'PROCESSING') return data.job;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('graceful shutdown', () => {
  it('refuses new work at once, lets a request in flight finish, and hands an unfinished job back', async () => {
    const server = await startServer({ MURMUR_SHUTDOWN_SECONDS: '3', MURMUR_SEGMENTATION: 'fixed', MURMUR_MAX_WORKERS: '1' });
    servers.push(server);
    // Ten minutes of audio: far more than the synthetic model transcribes in 3 s on this machine.
    const long = await server.upload(wavBytes(speechLike(600)), 'long.wav');
    const id = long.data.createJob.id;
    const { workerId } = await processing(server, id);
    const workerPid = Number(workerId.split('-').at(-1));
    expect(alive(workerPid)).toBe(true);

    // An upload under way when the signal comes: its body is still being sent.
    const { port } = new URL(server.url);
    const body = new TransformStream<Uint8Array, Uint8Array>();
    const writer = body.writable.getWriter();
    const form = new FormData();
    form.set(
      'operations',
      JSON.stringify({ query: 'mutation ($file: File!) { createJob(input: { file: $file }) { id status } }', variables: { file: null } }),
    );
    form.set('map', JSON.stringify({ 0: ['variables.file'] }));
    form.set('0', new Blob([new Uint8Array(wavBytes(speechLike(1)))]), 'late.wav');
    const encoded = new Response(form);
    const bytes = new Uint8Array(await encoded.arrayBuffer());
    const inFlight = fetch(server.url, {
      method: 'POST',
      body: body.readable,
      headers: { 'content-type': encoded.headers.get('content-type')!, 'graphql-preflight': '1' },
      duplex: 'half',
    } as RequestInit);
    await writer.write(bytes.subarray(0, 1000));
    await new Promise((r) => setTimeout(r, 200));

    const exited = new Promise<number | null>((resolve) => server.process.once('exit', (code) => resolve(code)));
    server.process.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    const refused = await server.upload(wavBytes(speechLike(1)), 'new.wav');
    expect(refused.errors?.[0]?.extensions?.code).toBe('SHUTTING_DOWN');
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(503);

    await writer.write(bytes.subarray(1000));
    await writer.close();
    const finished = (await (await inFlight).json()) as any;
    expect(finished.data.createJob.status).toBe('PENDING');

    expect(await exited).toBe(0);
    expect(alive(workerPid)).toBe(false);
    expect(downloadsOf(workerPid)).toEqual([]);

    // On the same data, with no workers: the long job waits again, its attempt not counted.
    const again = await startServer({ MURMUR_MAX_WORKERS: '0' }, server.dataDir);
    servers.push(again);
    const { data } = await again.gql(`query ($a: ID!, $b: ID!) { a: job(id: $a) { status attempts } b: job(id: $b) { status } }`, {
      a: id,
      b: finished.data.createJob.id,
    });
    expect(data).toEqual({ a: { status: 'PENDING', attempts: 0 }, b: { status: 'PENDING' } });
  });

  it('a remote worker told to stop finishes a batch it can finish in time', async () => {
    const server = await startServer({ MURMUR_MAX_WORKERS: '0' });
    servers.push(server);
    const model = await generatedModel();
    const worker = startWorker(server.url, model, ['--shutdown-seconds', '60']);
    const { id } = (await server.upload(wavBytes(speechLike(3)), 'short.wav')).data.createJob;
    const client = server.ws();
    const updates = collect<{ jobUpdated: { status: string; attempts: number } }>(
      client,
      `subscription ($id: ID!) { jobUpdated(id: $id) { status attempts } }`,
      { id },
    );
    await processing(server, id);
    await worker.stop('SIGTERM');
    const last = (await updates).at(-1)!.jobUpdated;
    expect(last).toEqual({ status: 'DONE', attempts: 1 });
    await client.dispose();
  });

  it('a remote worker out of time hands its jobs back: pending at once, not after the lease', async () => {
    const server = await startServer({ MURMUR_MAX_WORKERS: '0', MURMUR_LEASE_SECONDS: '600' });
    servers.push(server);
    const model = await generatedModel();
    const worker = startWorker(server.url, model, ['--shutdown-seconds', '0.5']);
    const { id } = (await server.upload(wavBytes(speechLike(600)), 'long.wav')).data.createJob;
    await processing(server, id);
    const pid = worker.process.pid!;
    await worker.stop('SIGTERM');
    const { data } = await server.gql(`query ($id: ID!) { job(id: $id) { status attempts workerId } }`, { id });
    expect(data.job).toMatchObject({ status: 'PENDING', attempts: 0 });
    expect(downloadsOf(pid)).toEqual([]);
    expect(existsSync(join(tmpdir(), `murmur-audio-${pid}`))).toBe(false);
  });
});
