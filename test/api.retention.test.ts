// Deleting: deleteJob takes a job's row, transcript and audio; MURMUR_RETENTION_DAYS
// removes finished jobs (and the audio of failed and cancelled ones) once they are that old.
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { collect, startServer, wavBytes, type Server } from './helpers/service.ts';

let server: Server;
const audio = wavBytes(new Float32Array(16000).map((_, i) => 0.3 * Math.sin(i / 7)));
const stored = () => {
  const dir = join(server.dataDir, 'blobs', 'uploads');
  return existsSync(dir) ? readdirSync(dir) : [];
};
const jobOf = async (id: string) => (await server.gql(`query ($id: ID!) { job(id: $id) { status } }`, { id })).data.job;
const create = async () => (await server.upload(audio, 'a.wav')).data.createJob.id as string;

beforeAll(async () => {
  // 2 s of retention (swept every 0.5 s, at least once a second).
  server = await startServer({ MURMUR_MAX_WORKERS: '0', MURMUR_RETENTION_DAYS: String(2 / 86400) });
});
afterAll(() => server?.stop());

describe('deletion', () => {
  it('deleteJob removes the job and its audio, whatever its state; its subscribers are told by the end of the stream', async () => {
    const id = await create();
    expect(stored()).toHaveLength(1);
    const client = server.ws();
    const followed = collect<{ jobUpdated: { status: string } }>(client, `subscription ($id: ID!) { jobUpdated(id: $id) { status } }`, {
      id,
    });
    await new Promise((r) => setTimeout(r, 300));
    const res = await server.gql(`mutation ($id: ID!) { deleteJob(id: $id) }`, { id });
    expect(res.data.deleteJob).toBe(id);
    expect(await jobOf(id)).toBeNull();
    expect(stored()).toEqual([]);
    expect((await followed).map((u) => u.jobUpdated.status)).toEqual(['PENDING']);
    await client.dispose();
    expect((await server.gql(`mutation ($id: ID!) { deleteJob(id: $id) }`, { id })).errors?.[0]?.extensions?.code).toBe('JOB_NOT_FOUND');
  }, 30_000);

  it('retention removes finished jobs with their audio, and leaves unfinished ones', async () => {
    const waiting = await create();
    const cancelled = await create();
    const done = await create();
    await server.gql(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: cancelled });
    // Finish one by the worker protocol.
    const claim = await server.worker(
      `mutation { claimJobs(input: { workerId: "w", maxJobs: 5, maxSeconds: 60 }) { leaseToken job { id } } }`,
    );
    for (const lease of claim.data.claimJobs) {
      if (lease.job.id === done)
        await server.worker(
          `mutation ($id: ID!, $t: Int!) { completeJob(jobId: $id, leaseToken: $t, result: { text: "x", language: "en", model: "m", segments: [] }) { id } }`,
          { id: done, t: lease.leaseToken },
        );
      else
        await server.worker(`mutation ($id: ID!, $t: Int!) { releaseJob(jobId: $id, leaseToken: $t) { id } }`, {
          id: lease.job.id,
          t: lease.leaseToken,
        });
    }
    expect(await jobOf(done)).toEqual({ status: 'DONE' });
    const deadline = Date.now() + 15_000;
    while ((await jobOf(cancelled)) !== null || (await jobOf(done)) !== null) {
      if (Date.now() > deadline) throw new Error('retention did not remove the finished jobs');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await jobOf(waiting)).toEqual({ status: 'PENDING' });
    // Only the waiting job's audio is left (the done job's went at completion, the cancelled one's with its row).
    await new Promise((r) => setTimeout(r, 300));
    expect(stored()).toHaveLength(1);
  });
});

describe('what a killed instance left', () => {
  it('an instance alone on its data (SQLite, local audio) removes at start the uploads no job took, and keeps the ones jobs hold', async () => {
    const { dataDir } = server;
    const kept = stored();
    expect(kept).toHaveLength(1); // the waiting job's
    // an upload whose request died with the instance, before its job was written
    writeFileSync(join(dataDir, 'blobs', 'uploads', randomUUID()), audio);
    await server.stop('SIGKILL');
    server = await startServer({ MURMUR_MAX_WORKERS: '0' }, dataDir);
    await vi.waitFor(() => expect(stored()).toEqual(kept), { timeout: 5000 });
  });
});
