// The service's log: JSON lines a machine reads, each entry naming its event
// and the request, job and worker it concerns; readable lines on a terminal;
// MURMUR_LOG_LEVEL obeyed.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relayLine } from '../src/log.ts';
import { POCKETSPHINX, RECORDINGS, speech } from './helpers/audio.ts';
import { recordingLogger } from './helpers/log.ts';
import { generatedModel } from './helpers/models.ts';
import { collect, startServer, wavBytes, type Server } from './helpers/service.ts';

const run = promisify(execFile);
const BIN = 'src/cli/bin.js';
let model: string;
let server: Server;

beforeAll(async () => {
  model = await generatedModel();
  server = await startServer({ MURMUR_MODEL_DIR: model, MURMUR_MAX_WORKERS: '1', MURMUR_LOG_LEVEL: 'debug' });
});
afterAll(() => server?.stop());

const FOLLOW = `subscription ($id: ID!) { jobUpdated(id: $id) { id status } }`;

describe('the service log', () => {
  it("names the request of each line written for it, as the answer's x-request-id does, and never logs a query string", async () => {
    const form = new FormData();
    form.set(
      'operations',
      JSON.stringify({
        query: 'mutation ($input: CreateJobInput!) { createJob(input: $input) { id } }',
        variables: { input: { file: null } },
      }),
    );
    form.set('map', JSON.stringify({ 0: ['variables.input.file'] }));
    form.set('0', new Blob([new Uint8Array(wavBytes(speech('a request to follow')))]), 'follow.wav');
    const res = await fetch(server.url, {
      method: 'POST',
      body: form,
      headers: { 'graphql-preflight': '1', 'x-request-id': 'logs-test-1' },
    });
    expect(res.headers.get('x-request-id')).toBe('logs-test-1');
    const { data } = (await res.json()) as { data: { createJob: { id: string } } };
    const created = await server.waitForEvent('job.created', (e) => e.jobId === data.createJob.id);
    expect(created).toMatchObject({ requestId: 'logs-test-1', level: 30, tenant: 'default', format: 'wav' });
    const line = await server.waitForEvent('request', (e) => e.requestId === 'logs-test-1');
    expect(line).toMatchObject({ method: 'POST', path: '/graphql', status: 200, level: 30 });

    // A request of our own id (none sent): the answer's id is the one in the log.
    const graphiql = await fetch(`${server.url}?key=mk_not-for-the-log`, { headers: { accept: 'text/html' } });
    expect(graphiql.status).toBe(200);
    await graphiql.text(); // the request ends when its answer has been read
    const id = graphiql.headers.get('x-request-id')!;
    expect(await server.waitForEvent('request', (e) => e.requestId === id)).toMatchObject({ method: 'GET', path: '/graphql', status: 200 });
    expect(server.events.some((e) => JSON.stringify(e).includes('mk_not-for-the-log'))).toBe(false);
  });

  it('follows a job by its id from creation to done, with the id and pid of the worker that ran it', async () => {
    const created = await server.upload(wavBytes(speech('one job in the log')), 'one.wav');
    const jobId = created.data.createJob.id as string;
    const client = server.ws();
    await collect(client, FOLLOW, { id: jobId });
    await client.dispose();
    const done = await server.waitForEvent('job.done', (e) => e.jobId === jobId);
    const claimed = server.events.find((e) => e.event === 'jobs.claimed' && (e.jobIds as string[]).includes(jobId))!;
    expect(claimed.workerId).toBe(done.workerId);
    // What the worker process wrote, relayed by the server with its pid: the same worker id.
    const batch = await server.waitForEvent('batch.done', (e) => (e.jobIds as string[]).includes(jobId));
    expect(batch).toMatchObject({ workerId: done.workerId, workerPid: expect.any(Number), peakMiB: expect.any(Number) });
    const started = server.events.filter((e) => e.event === 'worker.started').map((e) => e.workerPid);
    expect(started).toContain(batch.workerPid);
    // The worker's own entries keep the level it gave them, not the relay's.
    expect(server.events.find((e) => e.event === 'batch.started' && e.workerPid === batch.workerPid)?.level).toBe(30);
    // Workers' polls and heartbeats are debug lines (shown here: MURMUR_LOG_LEVEL=debug), marked as a worker's.
    expect(server.events.some((e) => e.event === 'request' && e.worker === true && e.level === 20)).toBe(true);
  });
});

describe("a program's log", () => {
  const transcribe = (env: Record<string, string>) =>
    run(process.execPath, [BIN, 'transcribe', join(POCKETSPHINX, RECORDINGS[0]), '--model', model, '--segmentation', 'fixed'], {
      env: { ...process.env, ...env },
    });

  it('writes JSON entries on stderr when it is not a terminal, at MURMUR_LOG_LEVEL and above', async () => {
    const entries = (stderr: string) =>
      stderr
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    const all = entries((await transcribe({})).stderr);
    expect(all.map((e) => e.event)).toEqual(expect.arrayContaining(['model.provider', 'model.synthetic']));
    const warnings = entries((await transcribe({ MURMUR_LOG_LEVEL: 'warn' })).stderr);
    expect(warnings.map((e) => e.event)).toEqual(['model.synthetic']);
  });

  it('writes readable lines on a terminal', async () => {
    const command = `${process.execPath} ${BIN} transcribe ${join(POCKETSPHINX, RECORDINGS[0])} --model ${model} --segmentation fixed`;
    const { stdout } = await run('script', ['-qefc', command, '/dev/null'], { env: { ...process.env, TERM: 'xterm' } });
    const text = stdout.replace(/\x1b\[[0-9;]*m/g, '');
    expect(text).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: this model has random weights.*"event":"model.synthetic"/m);
    expect(text).not.toMatch(/^\{"level"/m);
  });

  it('refuses a level it does not know, naming the variable', async () => {
    const refused = await run(process.execPath, [BIN, 'serve'], {
      env: { ...process.env, MURMUR_LOG_LEVEL: 'loud', HOST: '127.0.0.1' },
    }).catch((err) => err);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFIG_INVALID: .*MURMUR_LOG_LEVEL/);
  });
});

describe("relaying a worker's line", () => {
  it('keeps its level, fields and message, adds the bindings, and keeps a line that is not an entry as child.output', () => {
    const { log, entries } = recordingLogger();
    relayLine(
      log,
      JSON.stringify({ level: 50, time: 1, pid: 7, event: 'job.not_recorded', jobId: 'j1', workerId: 'w1', msg: 'not recorded' }),
      { workerPid: 7 },
    );
    relayLine(log, 'onnxruntime: a native warning', { workerPid: 7 });
    relayLine(log, '', { workerPid: 7 });
    expect(entries).toHaveLength(2);
    expect(entries[0]).toMatchObject({
      level: 50,
      event: 'job.not_recorded',
      jobId: 'j1',
      workerId: 'w1',
      workerPid: 7,
      msg: 'not recorded',
    });
    expect(entries[0].time).not.toBe(1);
    expect(entries[1]).toMatchObject({ level: 40, event: 'child.output', workerPid: 7, msg: 'onnxruntime: a native warning' });
  });
});
