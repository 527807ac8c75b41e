// The worker as a pipeline: its threads fit the machine, the next batch is
// claimed and decoded while the model runs the current one, and a job is
// reported as soon as its own windows are done. One server, one embedded
// worker on the small generated model, fixed 30 s windows.
import { availableParallelism } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { startServer, wavBytes, type Server } from './helpers/service.ts';

let server: Server;

beforeAll(async () => {
  server = await startServer({
    // 100 tokens a window: decoder batches long enough to tell one job's end from another's.
    MURMUR_MODEL_DIR: await generatedModel({ tokensPerWindow: 100 }),
    MURMUR_MAX_WORKERS: '1',
    MURMUR_SEGMENTATION: 'fixed',
    MURMUR_BATCH_JOBS: '2',
    MURMUR_BATCH_SECONDS: '10000',
    // Jobs created one after another go in one claim.
    MURMUR_BATCH_WINDOW_MS: '1500',
    // Heartbeats every 0.67 s (a third of the lease): a cancelled job's worker hears of it before its rounds end.
    MURMUR_LEASE_SECONDS: '2',
  });
}, 120_000);
afterAll(() => server?.stop());

const statusOf = async (id: string) => (await server.gql(`{ job(id: "${id}") { status } }`)).data.job.status as string;
const create = async (seconds: number, name: string) =>
  (await server.upload(wavBytes(tone(300, seconds)), name)).data.createJob.id as string;

describe('the worker pipeline', () => {
  it('runs each session on the cores the embedded workers share (model.loaded, murmur_worker_threads)', async () => {
    const id = await create(1, 'threads.wav');
    await expect.poll(() => statusOf(id), { timeout: 60_000 }).toBe('DONE');
    const loaded = await server.waitForEvent('model.loaded');
    const expected = Math.max(1, availableParallelism());
    expect(loaded.threads).toBe(expected);
    const metrics = await (await fetch(server.url.replace('/graphql', '/metrics'))).text();
    expect(metrics).toMatch(new RegExp(`^murmur_worker_threads ${expected}$`, 'm'));
  });

  it('reports a job as soon as its own windows are done: a short job in a batch with a long one is DONE first', async () => {
    // 48 windows of the long job and the short one's: the shortest job goes first, so the runtime's first 16 rows
    // hold its window and the long job's first 15, and the long job has three batches of rows to go.
    const long = await create(48 * 30 - 5, 'long.wav');
    const short = await create(2, 'short.wav');
    await expect.poll(() => statusOf(short), { timeout: 120_000, interval: 50 }).toBe('DONE');
    expect(await statusOf(long)).toBe('PROCESSING');
    await expect.poll(() => statusOf(long), { timeout: 120_000 }).toBe('DONE');
    // They ran in one batch.
    const started = server.events.filter((e) => e.event === 'batch.started' && (e.jobIds as string[]).includes(short));
    expect(started.map((e) => [...(e.jobIds as string[])].sort())).toEqual([[short, long].sort()]);
  });

  it('shows the windows done so far while a job runs: Job.result is partial, grows from the start, then is the final transcript', async () => {
    const id = await create(48 * 30 - 5, 'growing.wav');
    const seen: { status: string; partial: boolean; segments: number; firstStart: number }[] = [];
    for (;;) {
      const { job } = (await server.gql(`{ job(id: "${id}") { status result { partial text segments { start } } } }`)).data;
      if (job.result)
        seen.push({
          status: job.status,
          partial: job.result.partial,
          segments: job.result.segments.length,
          firstStart: job.result.segments[0]?.start ?? 0,
        });
      if (job.status === 'DONE') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const partial = seen.filter((s) => s.partial);
    const final = seen.at(-1)!;
    expect(final).toMatchObject({ status: 'DONE', partial: false });
    expect(partial.length).toBeGreaterThan(0);
    expect(
      partial.every((s) => s.status === 'PROCESSING' && s.segments > 0 && s.segments < final.segments && s.firstStart === final.firstStart),
    ).toBe(true);
    // It only grows.
    expect(partial.map((s) => s.segments)).toEqual([...partial.map((s) => s.segments)].sort((a, b) => a - b));
  });

  it('stops decoding a job cancelled mid-run: its windows left are not decoded', async () => {
    const id = await create(48 * 30 - 5, 'cancelled.wav');
    await expect
      .poll(async () => (await server.gql(`{ job(id: "${id}") { result { windows } } }`)).data.job.result?.windows ?? 0, {
        timeout: 120_000,
        interval: 50,
      })
      .toBeGreaterThanOrEqual(16);
    expect((await server.gql(`mutation { cancelJob(id: "${id}") { status } }`)).data.cancelJob.status).toBe('CANCELLED');
    const done = await server.waitForEvent('batch.done', (e) => (e.jobIds as string[]).includes(id), 120_000);
    expect(done.windows).toBeGreaterThanOrEqual(16);
    expect(done.windows).toBeLessThan(48);
    expect(await statusOf(id)).toBe('CANCELLED');
  });

  it('claims and decodes the next batch while the model runs the current one; one cancelled meanwhile never runs', async () => {
    const first = [await create(60, 'a.wav'), await create(60, 'b.wav')];
    const second = [await create(1, 'c.wav'), await create(1, 'd.wav')];
    await expect
      .poll(() => server.events.some((e) => e.event === 'batch.started' && (e.jobIds as string[]).includes(second[0])), {
        timeout: 60_000,
        interval: 20,
      })
      .toBe(true);
    // Claimed ahead, while the first batch is still running.
    expect(await statusOf(first[0])).toBe('PROCESSING');
    const cancelled = await server.gql(`mutation { cancelJob(id: "${second[1]}") { status } }`);
    expect(cancelled.data.cancelJob.status).toBe('CANCELLED');
    for (const id of [...first, second[0]]) await expect.poll(() => statusOf(id), { timeout: 120_000 }).toBe('DONE');
    await server.waitForEvent('batch.done', (e) => (e.jobIds as string[]).includes(first[0]));
    const index = (event: string, id: string) => server.events.findIndex((e) => e.event === event && (e.jobIds as string[]).includes(id));
    expect(index('batch.started', second[0])).toBeLessThan(index('batch.done', first[0]));
    expect(await statusOf(second[1])).toBe('CANCELLED');
    expect(server.events.filter((e) => e.level >= 50)).toEqual([]);
  });
});
