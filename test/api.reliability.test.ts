// What the queue promises, checked through the real server with real worker
// processes: cancellation, crashed workers, stale leases, restarts, idle exit.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { speech, tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { collect, startServer, wavBytes, type Server } from './helpers/service.ts';

let fast: string;
let slow: string; // ~1.3 s a 30 s window on 2 cores: long enough to act on a batch mid-run
const servers: Server[] = [];
const start = async (...args: Parameters<typeof startServer>) => {
  const s = await startServer(...args);
  servers.push(s);
  return s;
};
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

beforeAll(async () => {
  fast = await generatedModel();
  slow = await generatedModel({ dModel: 256, encoderLayers: 4, decoderLayers: 4, heads: 4, tokensPerWindow: 300 });
});

// A tone, not speech: these servers decode fixed 30 s windows, so every job costs the same.
const long = () => wavBytes(tone(220, 30, 0.2).map((v, i) => v + 0.05 * Math.sin(i * 0.37)));
const JOB = `query ($id: ID!) { job(id: $id) { id status attempts progress error { code message } result { text } } }`;
const FOLLOW = `subscription ($id: ID!) { jobUpdated(id: $id) { id status attempts } }`;

async function finalStates(server: Server, ids: string[]) {
  const client = server.ws();
  const finals = await Promise.all(ids.map((id) => collect<{ jobUpdated: any }>(client, FOLLOW, { id }).then((u) => u.at(-1)!.jobUpdated)));
  await client.dispose();
  return finals;
}

const claimAs = (server: Server, workerId: string) =>
  server.worker(`mutation ($input: ClaimInput!) { claimJobs(input: $input) { leaseToken job { id attempts } } }`, {
    input: { workerId, maxJobs: 10, maxSeconds: 1000 },
  });
const complete = (server: Server, jobId: string, leaseToken: number) =>
  server.worker(
    `mutation ($jobId: ID!, $t: Int!) { completeJob(jobId: $jobId, leaseToken: $t, result: { text: "t", language: "en", model: "m", segments: [] }) { status } }`,
    { jobId, t: leaseToken },
  );

describe('reliability', () => {
  it('a worker killed with SIGKILL mid-batch: its jobs finish on a new worker with attempts 2, none twice', async () => {
    const server = await start({ MURMUR_MODEL_DIR: slow, MURMUR_MAX_WORKERS: '1', MURMUR_SEGMENTATION: 'fixed' });
    const audio = long();
    const ids = (await Promise.all([0, 1, 2, 3].map((i) => server.upload(audio, `long-${i}.wav`)))).map(
      (r) => r.data.createJob.id as string,
    );
    const batch = await server.waitForEvent('batch.started', (e) => (e.jobIds as string[]).length === 4);
    process.kill(batch.workerPid as number, 'SIGKILL');
    await server.waitForEvent('worker.died', (e) => e.workerPid === batch.workerPid && e.signal === 'SIGKILL');
    const finals = await finalStates(server, ids);
    expect(finals.map((j) => [j.status, j.attempts])).toEqual(ids.map(() => ['DONE', 2]));
    // The killed worker completed nothing; each job was completed once, by the second worker.
    const done = server.events.filter((e) => e.event === 'job.done');
    for (const id of ids) expect(done.filter((e) => e.jobId === id).map((e) => e.workerId === batch.workerId)).toEqual([false]);
    const claims = server.events.filter((e) => e.event === 'jobs.claimed').flatMap((e) => e.jobIds as string[]);
    for (const id of ids) expect(claims.filter((c) => c === id)).toHaveLength(2);
  });

  it('cancel works on a pending job and on one a worker is processing', async () => {
    const server = await start({ MURMUR_MODEL_DIR: slow, MURMUR_MAX_WORKERS: '1', MURMUR_BATCH_JOBS: '2', MURMUR_SEGMENTATION: 'fixed' });
    const audio = long();
    const ids = (await Promise.all([0, 1, 2].map((i) => server.upload(audio, `c-${i}.wav`)))).map((r) => r.data.createJob.id as string);
    await server.waitForEvent('batch.started', (e) => (e.jobIds as string[]).length === 2);
    const states = await Promise.all(ids.map((id) => server.gql(JOB, { id }).then((r) => r.data.job)));
    const processing = states.find((j) => j.status === 'PROCESSING')!;
    const pending = states.find((j) => j.status === 'PENDING')!;
    const cancelled = await Promise.all(
      [processing, pending].map((j) => server.gql(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: j.id })),
    );
    expect(cancelled.map((c) => c.data.cancelJob.status)).toEqual(['CANCELLED', 'CANCELLED']);
    await server.waitForEvent('job.dropped', (e) => e.jobId === processing.id && e.state === 'CANCELLED');
    const finals = await finalStates(server, ids);
    const byId = new Map(finals.map((j) => [j.id, j]));
    expect(byId.get(processing.id)!.status).toBe('CANCELLED');
    expect(byId.get(pending.id)).toMatchObject({ status: 'CANCELLED', attempts: 0 });
    const other = ids.find((id) => id !== processing.id && id !== pending.id)!;
    expect(byId.get(other)!.status).toBe('DONE');
    // A finished job cannot be cancelled; a cancelled one can be retried.
    const late = await server.gql(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: other });
    expect(late.errors?.[0].extensions?.code).toBe('NOT_CANCELLABLE');
    const retried = await server.gql(`mutation ($id: ID!) { retryJob(id: $id) { status attempts } }`, { id: pending.id });
    expect(retried.data.retryJob).toEqual({ status: 'PENDING', attempts: 0 });
  });

  it('a stale lease token is refused', async () => {
    const server = await start({ MURMUR_MODEL_DIR: fast, MURMUR_MAX_WORKERS: '0' });
    const { data } = await server.upload(wavBytes(speech('stale')), 'stale.wav');
    const id = data.createJob.id;
    const first = (await claimAs(server, 'w-1')).data.claimJobs[0];
    expect(first.job.attempts).toBe(1);
    // No heartbeat: the 2 s lease expires and the job is claimable again.
    let second: any;
    for (let i = 0; i < 50 && !second; i++) {
      await new Promise((r) => setTimeout(r, 200));
      second = (await claimAs(server, 'w-2')).data.claimJobs[0];
    }
    expect(second.job.attempts).toBe(2);
    const refused = await complete(server, id, first.leaseToken);
    expect(refused.errors?.[0].extensions?.code).toBe('LEASE_LOST');
    const beat = await server.worker(`mutation ($l: [LeaseProgressInput!]!) { heartbeat(workerId: "w-1", leases: $l) { jobId state } }`, {
      l: [{ jobId: id, leaseToken: first.leaseToken }],
    });
    expect(beat.data.heartbeat).toEqual([{ jobId: id, state: 'LOST' }]);
    const accepted = await complete(server, id, second.leaseToken);
    expect(accepted.errors).toBeUndefined();
    expect(accepted.data.completeJob.status).toBe('DONE');
  });

  it('a restarted server still has every job it acknowledged', async () => {
    const first = await start({ MURMUR_MODEL_DIR: fast, MURMUR_MAX_WORKERS: '0' });
    const audio = wavBytes(speech('kept'));
    const ids = (await Promise.all([0, 1, 2].map((i) => first.upload(audio, `kept-${i}.wav`)))).map((r) => r.data.createJob.id as string);
    await first.gql(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: ids[2] });
    await first.stop('SIGKILL'); // no chance to flush anything
    const second = await start({ MURMUR_MODEL_DIR: fast, MURMUR_MAX_WORKERS: '1' }, first.dataDir);
    const finals = await finalStates(second, ids);
    expect(finals.map((j) => j.status)).toEqual(['DONE', 'DONE', 'CANCELLED']);
  });

  it('workers unload the model and exit when idle, and come back when work arrives', async () => {
    const server = await start({
      MURMUR_MODEL_DIR: fast,
      MURMUR_MAX_WORKERS: '1',
      MURMUR_WORKER_UNLOAD_AFTER: '0.5',
      MURMUR_WORKER_EXIT_AFTER: '2',
    });
    const audio = wavBytes(speech('idle'));
    const one = (await server.upload(audio, 'one.wav')).data.createJob.id;
    await finalStates(server, [one]);
    const { workerPid } = await server.waitForEvent('model.unloaded', (e) => e.reason === 'idle');
    await server.waitForEvent('worker.exited', (e) => e.workerPid === workerPid);
    expect((await server.gql(`{ queue { workers processing pending } }`)).data.queue).toEqual({ workers: 0, processing: 0, pending: 0 });
    const two = (await server.upload(audio, 'two.wav')).data.createJob.id;
    const [final] = await finalStates(server, [two]);
    expect(final.status).toBe('DONE');
    expect(server.events.filter((e) => e.event === 'worker.started')).toHaveLength(2);
  });
});
