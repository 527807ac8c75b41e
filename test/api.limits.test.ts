// Per-key limits (jobs a minute, jobs not finished, audio hours a day) and the
// GraphQL abuse limits, against a real server with real keys.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from './helpers/postgres.ts';
import { murmur, startServer, wavBytes, type Server } from './helpers/service.ts';

let server: Server;
const keys: Record<string, string> = {};
const clip = (seconds: number) => wavBytes(new Float32Array(Math.round(16000 * seconds)).map((_, i) => 0.3 * Math.sin(i / 9)));

beforeAll(async () => {
  server = await startServer({
    MURMUR_AUTH: 'keys',
    MURMUR_MAX_WORKERS: '0',
    MURMUR_KEY_JOBS_PER_MINUTE: '4',
    MURMUR_KEY_MAX_PENDING: '3',
    MURMUR_KEY_AUDIO_HOURS_PER_DAY: String(3.6 / 3600), // 3.6 s
  });
  const env = { MURMUR_DATA_DIR: server.dataDir };
  keys.admin = (await server.waitForLine(/export MURMUR_API_KEY=(\S+)/))[1];
  for (const name of ['k1', 'k2']) keys[name] = (await murmur(['keys', 'create', '--name', name], env)).trim();
}, 120_000);

afterAll(() => server?.stop());

async function create(key: string, seconds: number, input: Record<string, unknown> = {}, url = server.url) {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({
      query: `mutation ($input: CreateJobInput!) { createJob(input: $input) { id } }`,
      variables: { input: { ...input, file: null } },
    }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.input.file'] }));
  form.set('0', new Blob([new Uint8Array(clip(seconds))]), 'clip.wav');
  const res = await fetch(url, { method: 'POST', body: form, headers: { 'graphql-preflight': '1', authorization: `Bearer ${key}` } });
  const body = (await res.json()) as any;
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    id: body.data?.createJob?.id as string | undefined,
    error: body.errors?.[0],
  };
}

async function jobCount(): Promise<number> {
  const res = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.admin}` },
    body: JSON.stringify({ query: '{ queue { pending cancelled } }' }),
  });
  const { data } = (await res.json()) as any;
  return data.queue.pending + data.queue.cancelled;
}

describe('per-key limits', () => {
  it('pending jobs, then jobs a minute: RATE_LIMITED (429) with retryAfterSeconds, nothing stored; idempotent repeats pass', async () => {
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await create(keys.k1, 0.5, { idempotencyKey: `k1-${i}` });
      expect(r.error).toBeUndefined();
      made.push(r.id!);
    }
    const before = await jobCount();
    const pending = await create(keys.k1, 0.5);
    expect(pending.status).toBe(429);
    expect(pending.error.extensions).toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 10 });
    expect(pending.retryAfter).toBe('10');
    expect(await jobCount()).toBe(before);
    // Sending an accepted job again is no new work: it answers with the job.
    expect((await create(keys.k1, 0.5, { idempotencyKey: 'k1-0' })).id).toBe(made[0]);
    // Another key has its own allowance.
    expect((await create(keys.k2, 0.5)).error).toBeUndefined();

    const cancel = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.k1}` },
      body: JSON.stringify({ query: `mutation { cancelJob(id: "${made[0]}") { status } }` }),
    });
    expect(((await cancel.json()) as any).data.cancelJob.status).toBe('CANCELLED');
    expect((await create(keys.k1, 0.5)).error).toBeUndefined();
    const perMinute = await create(keys.k1, 0.5);
    expect(perMinute.status).toBe(429);
    expect(perMinute.error.message).toMatch(/in the last minute/);
    expect(perMinute.error.extensions.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(perMinute.error.extensions.retryAfterSeconds).toBeLessThanOrEqual(60);
  });

  it('audio hours a day: the job that would pass the limit is refused', async () => {
    const k2 = keys.k2; // 0.5 s queued by the test above
    expect((await create(k2, 2)).error).toBeUndefined();
    const over = await create(k2, 2);
    expect(over.status).toBe(429);
    expect(over.error.extensions.code).toBe('RATE_LIMITED');
    expect(over.error.message).toMatch(/h of audio in the last 24 h/);
    expect(over.error.extensions.retryAfterSeconds).toBeGreaterThan(80_000);
    expect((await create(k2, 0.5)).error).toBeUndefined();
  });
});

describe.each(['sqlite', 'postgres'])('per-key limits under racing requests on %s', (backend) => {
  it('50 parallel createJob at a limit of 10 jobs a minute create 10 (two API instances on PostgreSQL)', async () => {
    const env = {
      MURMUR_AUTH: 'keys',
      MURMUR_MAX_WORKERS: '0',
      MURMUR_KEY_JOBS_PER_MINUTE: '10',
      ...(backend === 'postgres' && { MURMUR_DATABASE_URL: await freshDatabase() }),
    };
    const first = await startServer(env);
    const instances = backend === 'postgres' ? [first, await startServer(env)] : [first];
    try {
      const key = (await murmur(['keys', 'create', '--name', 'racer'], { ...env, MURMUR_DATA_DIR: first.dataDir })).trim();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => create(key, 0.5, {}, instances[i % instances.length].url)));
      const made = results.filter((r) => r.id);
      expect(made).toHaveLength(10);
      expect(results.filter((r) => r.status === 429 && r.error?.extensions?.code === 'RATE_LIMITED')).toHaveLength(40);
      const listed = await first.gql(`{ jobs(first: 100) { edges { node { id } } } }`, {}, { authorization: `Bearer ${key}` });
      expect(listed.data.jobs.edges.map((e: any) => e.node.id).sort()).toEqual(made.map((r) => r.id).sort());
    } finally {
      await Promise.all(instances.map((s) => s.stop()));
    }
  });
});

describe('GraphQL limits', () => {
  async function ask(query: string) {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.admin}` },
      body: JSON.stringify({ query }),
    });
    const body = (await res.json()) as any;
    return {
      status: res.status,
      code: body.errors?.[0]?.extensions?.code as string | undefined,
      message: body.errors?.[0]?.message as string | undefined,
      data: body.data,
    };
  }
  const aliases = (n: number, field = '__typename') => `{ ${Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ')} }`;

  it('20,000 aliases of one field are refused before anything runs, quickly', async () => {
    const started = performance.now();
    const r = await ask(aliases(20_000));
    expect(r.code).toBe('QUERY_TOO_COMPLEX');
    expect(r.message).toMatch(/Token limit/);
    console.log(`20,000 aliases refused in ${(performance.now() - started).toFixed(0)} ms`);
  });

  it("aliases, directives and cost each have a limit; GraphiQL's introspection passes", async () => {
    expect((await ask(aliases(30, 'queue { pending }'))).code).toBeUndefined();
    expect(await ask(aliases(31, 'queue { pending }'))).toMatchObject({ code: 'QUERY_TOO_COMPLEX' });
    const directives = (n: number) => aliases(n, '__typename @include(if: true)');
    expect((await ask(directives(20))).code).toBeUndefined();
    expect(await ask(directives(21))).toMatchObject({ code: 'QUERY_TOO_COMPLEX', message: expect.stringMatching(/Directives limit/) });
    // Depth: the schema has no cycles and its deepest path is 6 fields, so the limit (10) guards future types; the deepest passes.
    expect((await ask(`{ jobs { edges { node { result { segments { text } } } } } }`)).code).toBeUndefined();
    const costly = aliases(
      25,
      'jobs(first: 100) { edges { cursor node { id status attempts progress createdAt input { filename bytes format durationSeconds } options { language task } result { text srt vtt segments { start end text } } } } }',
    );
    expect(await ask(costly)).toMatchObject({ code: 'QUERY_TOO_COMPLEX', message: expect.stringMatching(/Query Cost limit/) });
    const { getIntrospectionQuery } = await import('graphql');
    const introspection = await ask(getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, inputValueDeprecation: true }));
    expect(introspection.code).toBeUndefined();
    expect(introspection.data.__schema.queryType.name).toBe('Query');
  });

  it('a batch of operations in one request is refused', async () => {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.admin}` },
      body: JSON.stringify([{ query: '{ __typename }' }, { query: '{ __typename }' }]),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
  });

  it('the same limits hold on graphql-ws', async () => {
    const client = server.ws({ authorization: `Bearer ${keys.admin}` });
    const errors = await new Promise<any[]>((resolve) => {
      client.subscribe(
        { query: aliases(31, 'queue { pending }') },
        { next: (v) => resolve((v.errors as any[]) ?? []), error: (e) => resolve(e as any[]), complete: () => resolve([]) },
      );
    });
    expect(errors[0]?.extensions?.code).toBe('QUERY_TOO_COMPLEX');
    await client.dispose();
  });
});

describe('slow clients', () => {
  it('an upload trickled a byte at a time is cut off at MURMUR_REQUEST_TIMEOUT_SECONDS, though no pause is long', async () => {
    const slow = await startServer({ MURMUR_REQUEST_TIMEOUT_SECONDS: '3', MURMUR_UPLOAD_IDLE_SECONDS: '2', MURMUR_MAX_WORKERS: '0' });
    try {
      const { port, hostname } = new URL(slow.url);
      const { connect } = await import('node:net');
      const socket = connect(Number(port), hostname);
      socket.write(
        `POST /graphql HTTP/1.1\r\nhost: x\r\ngraphql-preflight: 1\r\ncontent-type: multipart/form-data; boundary=b\r\ncontent-length: 100000\r\n\r\n--b\r\n`,
      );
      const drip = setInterval(() => socket.write('x'), 500);
      const started = Date.now();
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (d) => (text += d));
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(text));
      });
      clearInterval(drip);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      console.log(`trickled upload cut off after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect((await fetch(slow.url.replace('/graphql', '/healthz'))).status).toBe(200);
    } finally {
      await slow.stop();
    }
  });
});
