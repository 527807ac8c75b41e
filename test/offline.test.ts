// murmur's processes reach nothing outside on their own: the API and a worker
// that loads a model and runs a job make no connection but to loopback. The
// syscalls are watched with strace (-f follows the worker the server starts).
// onnxruntime's Linux library sends telemetry about ten seconds into a
// session unless ORT_DISABLE_TELEMETRY is set, so the watch lasts past that.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generatedModel } from './helpers/models.ts';
import { startServer, wavBytes, type Server } from './helpers/service.ts';

let server: Server | undefined;
afterAll(() => server?.stop());

const LOOPBACK = /sin_addr=inet_addr\("127\.|sin6_addr=inet_pton\(AF_INET6, "::1"\)|inet_pton\(AF_INET6, "::ffff:127\./;

describe('on its own', () => {
  it('neither the API nor a worker running a job connects anywhere but loopback (no telemetry, no lookups)', async () => {
    server = await startServer({ MURMUR_MODEL_DIR: await generatedModel(), MURMUR_MAX_WORKERS: '1', MURMUR_WORKER_UNLOAD_AFTER: '120' });
    const trace = join(mkdtempSync(join(tmpdir(), 'murmur-strace-')), 'connect.txt');
    const strace = spawn('strace', ['-f', '-qq', '-e', 'trace=connect,sendto,sendmsg', '-o', trace, '-p', String(server.process.pid)], {
      stdio: 'ignore',
    });
    const attached = new Promise<void>((resolve, reject) => {
      strace.once('error', reject);
      setTimeout(resolve, 1000);
    });
    await attached;

    const { data } = await server.upload(wavBytes(new Float32Array(16000 * 2).map((_, i) => 0.3 * Math.sin(i / 7))), 'offline.wav');
    const id = data.createJob.id;
    await expect
      .poll(async () => (await server!.gql(`{ job(id: "${id}") { status } }`)).data.job.status, { timeout: 60_000, interval: 250 })
      .toBe('DONE');
    // The worker's sessions stay loaded (MURMUR_WORKER_UNLOAD_AFTER) past the moment onnxruntime's telemetry would go out.
    await new Promise((r) => setTimeout(r, 15_000));
    const ended = new Promise((r) => strace.once('exit', r));
    strace.kill('SIGINT');
    await ended;

    const calls = readFileSync(trace, 'utf8').split('\n');
    const inet = calls.filter((l) => /AF_INET6?\b/.test(l) && /connect\(|sendto\(|sendmsg\(/.test(l));
    // Something was watched: the worker's own calls to the API on loopback.
    expect(inet.filter((l) => LOOPBACK.test(l)).length).toBeGreaterThan(0);
    expect(inet.filter((l) => !LOOPBACK.test(l))).toEqual([]);
  });
});
