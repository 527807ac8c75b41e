// What a hostile or careless client must not break (issue 23): a subscriber
// that stops reading, a key revoked under open streams, WAVs written to a
// pipe, one upload handed to two jobs, a bad path. One server with keys and no
// embedded workers: the test itself runs the worker protocol, so hundreds of
// jobs are claimed and completed in seconds.
import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { murmur, startServer, wavBytes, WORKER_TOKEN, type Server } from './helpers/service.ts';

let server: Server;
const secret: Record<string, string> = {};
let env: Record<string, string>;
const audio = wavBytes(new Float32Array(16000).map((_, i) => Math.sin(i / 10) * 0.3));
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

beforeAll(async () => {
  server = await startServer({
    MURMUR_AUTH: 'keys',
    MURMUR_MAX_WORKERS: '0',
    MURMUR_SUBSCRIBER_BACKLOG: '50',
    MURMUR_STREAM_RECHECK_SECONDS: '0.5',
    MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION: '3',
    MURMUR_WS_AUTH_TIMEOUT_SECONDS: '1',
  });
  env = { MURMUR_DATA_DIR: server.dataDir };
  secret.admin = (await server.waitForLine(/export MURMUR_API_KEY=(\S+)/))[1];
  for (const name of ['busy', 'revoked-ws', 'revoked-sse'])
    secret[name] = (await murmur(['keys', 'create', '--name', name, '--tenant', name], env)).trim();
}, 120_000);

afterAll(() => server?.stop());

/** A raw HTTP client that opens an SSE subscription, reads the response headers, then reads nothing more. */
function stalledSse(query: string, key: string): Promise<Socket> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(
        `GET ${url.pathname}?query=${encodeURIComponent(query)} HTTP/1.1\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${key}\r\n\r\n`,
      );
    });
    socket.once('data', (chunk) => {
      if (!chunk.toString().startsWith('HTTP/1.1 200')) reject(new Error(`SSE refused: ${chunk.toString().slice(0, 200)}`));
      socket.pause();
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function runAsWorker(jobs: number): Promise<{ errors: unknown[] }> {
  const errors: unknown[] = [];
  const call = async (query: string, variables: Record<string, unknown>) => {
    const res = (await (
      await fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${WORKER_TOKEN}` },
        body: JSON.stringify({ query, variables }),
      })
    ).json()) as any;
    if (res.errors) errors.push(...res.errors);
    return res.data;
  };
  let done = 0;
  while (done < jobs) {
    const data = await call('mutation ($input: ClaimInput!) { claimJobs(input: $input) { leaseToken job { id } } }', {
      input: { workerId: 'test-worker', maxJobs: 16, maxSeconds: 1000, waitSeconds: 1, batchWindowMs: 0 },
    });
    const leases = (data?.claimJobs ?? []) as { leaseToken: number; job: { id: string } }[];
    if (leases.length === 0 && errors.length) break;
    await Promise.all(
      leases.map((l) =>
        call(
          'mutation ($jobId: ID!, $leaseToken: Int!, $result: TranscriptInput!) { completeJob(jobId: $jobId, leaseToken: $leaseToken, result: $result) { id } }',
          { jobId: l.job.id, leaseToken: l.leaseToken, result: { text: 'x', language: 'en', model: 'test', segments: [] } },
        ),
      ),
    );
    done += leases.length;
  }
  return { errors };
}

describe('a subscriber that stops reading', () => {
  it('is dropped once it falls behind, and claims, completions and other tenants go on without an error', async () => {
    const prompt = 'p'.repeat(3900);
    // ~120 KB an event: the socket's buffers fill after a few dozen, and the rest wait in the server.
    const heavy = `subscription { jobsChanged { id status ${Array.from({ length: 30 }, (_, i) => `o${i}: options { prompt }`).join(' ')} } }`;
    const reader = await stalledSse(heavy, secret.admin);
    const closed = new Promise<void>((resolve) => reader.once('close', () => resolve()));
    reader.on('error', () => {});
    const jobs = 400;
    const made = await Promise.all(
      Array.from({ length: jobs }, (_, i) => server.upload(audio, `j${i}.wav`, { prompt }, 'id', bearer(secret.busy))),
    );
    expect(made.filter((r) => r.errors).map((r) => r.errors)).toEqual([]);
    const { errors } = await runAsWorker(jobs);
    expect(errors).toEqual([]);
    const counts = await server.gql('{ queue { pending processing done } }', {}, bearer(secret.admin));
    expect(counts.data.queue).toMatchObject({ pending: 0, processing: 0, done: jobs });
    const dropped = await server.waitForEvent('subscription.dropped', (e) => e.reason === 'slow', 10_000);
    expect(dropped.kind).toBe('jobsChanged');
    // The server ended the connection: what it had sent is read, then the socket closes.
    reader.resume();
    await closed;
    expect(server.events.filter((e) => e.level >= 50)).toEqual([]);
  }, 60_000);
});

describe('revoking a key', () => {
  it('ends its open graphql-ws subscriptions with UNAUTHENTICATED and closes the socket with 4401', async () => {
    const client = createClient({
      url: server.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: bearer(secret['revoked-ws']),
      retryAttempts: 0,
      lazy: false,
    });
    const closed = new Promise<number>((resolve) => client.on('closed', (e) => resolve((e as CloseEvent).code)));
    const ended = new Promise<any>((resolve) =>
      client.subscribe(
        { query: 'subscription { jobsChanged { id } }' },
        { next: () => {}, error: resolve, complete: () => resolve('complete') },
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    await murmur(['keys', 'revoke', 'revoked-ws'], env);
    const error = await ended;
    expect(error[0]?.extensions?.code ?? error).toBe('UNAUTHENTICATED');
    expect(await closed).toBe(4401);
    await client.dispose();
  });

  it('ends its open SSE subscriptions with an UNAUTHENTICATED event', async () => {
    const res = await fetch(`${server.url}?query=${encodeURIComponent('subscription { jobsChanged { id } }')}`, {
      headers: { accept: 'text/event-stream', ...bearer(secret['revoked-sse']) },
    });
    expect(res.status).toBe(200);
    await murmur(['keys', 'revoke', 'revoked-sse'], env);
    // The stream ends by itself: read it to its end.
    const text = await res.text();
    expect(text).toContain('UNAUTHENTICATED');
  });
});

describe('limits on connections', () => {
  it('a connection holds at most MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION subscriptions (TOO_MANY_SUBSCRIPTIONS past it)', async () => {
    const client = createClient({
      url: server.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: bearer(secret.admin),
      retryAttempts: 0,
    });
    const outcomes = await Promise.all(
      Array.from(
        { length: 5 },
        () =>
          new Promise<string>((resolve) => {
            // A refused subscription is a result with errors (then complete), as GraphQL answers any failed operation.
            client.subscribe(
              { query: 'subscription { jobsChanged { id } }' },
              {
                next: (r: any) => resolve(r.errors?.[0]?.extensions?.code ?? 'data'),
                error: () => resolve('error'),
                complete: () => resolve('complete'),
              },
            );
            setTimeout(() => resolve('open'), 1000);
          }),
      ),
    );
    expect(outcomes.sort()).toEqual(['TOO_MANY_SUBSCRIPTIONS', 'TOO_MANY_SUBSCRIPTIONS', 'open', 'open', 'open']);
    await client.dispose();
  });

  it('a WebSocket that never presents a valid key is closed after MURMUR_WS_AUTH_TIMEOUT_SECONDS', async () => {
    const socket = new WebSocket(server.url.replace(/^http/, 'ws'), 'graphql-transport-ws');
    await new Promise((resolve) => socket.once('open', resolve));
    socket.send(JSON.stringify({ type: 'connection_init', payload: {} }));
    const code = await new Promise<number>((resolve) => socket.once('close', (c) => resolve(c)));
    expect(code).toBe(4401);
  });
});

describe('WAVs written to a pipe', () => {
  const piped = (tool: 'ffmpeg' | 'sox') =>
    tool === 'ffmpeg'
      ? execFileSync('sh', ['-c', 'ffmpeg -loglevel error -f lavfi -i sine=frequency=300:duration=3 -ar 16000 -ac 1 -f wav pipe:1 | cat'])
      : execFileSync('sh', ['-c', 'sox -q -n -r 16000 -c 1 -b 16 -t wav - synth 3 sine 300 | cat']);

  it.each(['ffmpeg', 'sox'] as const)('a %s-piped WAV (sizes it could not fill in) is taken at its real length', async (tool) => {
    const bytes = piped(tool);
    // The header's data size is what a pipe leaves: 0xFFFFFFFF (ffmpeg) or 0x7ffff000 (sox).
    const declared = bytes.readUInt32LE(bytes.indexOf('data') + 4);
    expect(declared).toBe(tool === 'ffmpeg' ? 0xffffffff : 0x7ffff000);
    const res = await server.upload(bytes, `${tool}.wav`, {}, 'id input { durationSeconds }', bearer(secret.admin));
    expect(res.errors).toBeUndefined();
    expect(res.data.createJob.input.durationSeconds).toBeCloseTo(3, 2);
  });

  it('a WAV cut short is taken for what it holds', async () => {
    const cut = audio.subarray(0, 44 + 8000);
    const res = await server.upload(cut, 'cut.wav', {}, 'id input { durationSeconds }', bearer(secret.admin));
    expect(res.errors).toBeUndefined();
    expect(res.data.createJob.input.durationSeconds).toBeCloseTo(0.25, 3);
  });
});

describe('one upload, one job', () => {
  it('a file handed to two createJobs in one request is refused for the second with UPLOAD_ALREADY_USED; one job holds it', async () => {
    const before = (await server.gql('{ queue { pending } }', {}, bearer(secret.admin))).data.queue.pending;
    const form = new FormData();
    form.set(
      'operations',
      JSON.stringify({
        query: 'mutation ($f: File!) { a: createJob(input: { file: $f }) { id } b: createJob(input: { file: $f }) { id } }',
        variables: { f: null },
      }),
    );
    form.set('map', JSON.stringify({ 0: ['variables.f'] }));
    form.set('0', new Blob([Buffer.from(audio)]), 'twice.wav');
    const res = (await (
      await fetch(server.url, { method: 'POST', body: form, headers: { 'graphql-preflight': '1', ...bearer(secret.admin) } })
    ).json()) as any;
    expect(res.errors.map((e: any) => e.extensions.code)).toEqual(['UPLOAD_ALREADY_USED']);
    const after = (await server.gql('{ queue { pending } }', {}, bearer(secret.admin))).data.queue.pending;
    expect(after - before).toBe(1);
  });
});

describe('bad paths', () => {
  it('a chunked JSON body over MURMUR_MAX_REQUEST_BYTES is answered 413 INPUT_TOO_LARGE, not cut off', async () => {
    const url = new URL(server.url);
    const { answer, failed } = await new Promise<{ answer: string; failed?: Error }>((resolve) => {
      let answer = '';
      const socket = connect(Number(url.port), url.hostname, async () => {
        socket.write(
          `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer ${secret.admin}\r\nConnection: close\r\n\r\n`,
        );
        const chunk = Buffer.alloc(64 << 10, 'a');
        const body = [
          Buffer.from('{"query":"{ __typename }","variables":{"x":"'),
          ...Array.from({ length: 48 }, () => chunk),
          Buffer.from('"}}'),
        ];
        for (const part of body) {
          if (socket.destroyed) return;
          if (!socket.write(`${part.length.toString(16)}\r\n`) || !socket.write(part) || !socket.write('\r\n'))
            await new Promise((r) => socket.once('drain', r));
        }
        socket.write('0\r\n\r\n');
      });
      socket.on('data', (d) => (answer += d));
      socket.on('error', (err) => resolve({ answer, failed: err }));
      socket.on('close', () => resolve({ answer }));
    });
    expect(failed).toBeUndefined();
    expect(answer).toMatch(/^HTTP\/1\.1 413/);
    expect(answer).toContain('"INPUT_TOO_LARGE"');
  });

  it('a model name that is not valid percent-encoding is a 400', async () => {
    const res = await fetch(server.url.replace(/\/graphql$/, '/v1/models/%E0%A4%A'), { headers: bearer(secret.admin) });
    expect(res.status).toBe(400);
    expect(server.events.filter((e) => e.level >= 50)).toEqual([]);
  });
});
