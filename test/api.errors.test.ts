// Bad input gets a typed error and disturbs nothing: no job, no stored bytes,
// and the server keeps serving.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { startServer, wavBytes, type Server } from './helpers/service.ts';

let server: Server;
let good: Uint8Array;

beforeAll(async () => {
  server = await startServer({
    MURMUR_MODEL_DIR: await generatedModel(),
    MURMUR_MAX_WORKERS: '0',
    MURMUR_MAX_UPLOAD_BYTES: '500000',
    MURMUR_MAX_DURATION_SECONDS: '12',
  });
  good = wavBytes(speech('a good file'));
});
afterAll(() => server?.stop());

// Uploads no job kept are deleted once the response is out: give that a moment.
const storedFiles = async () => {
  await new Promise((r) => setTimeout(r, 200));
  try {
    return readdirSync(join(server.dataDir, 'blobs', 'uploads'));
  } catch {
    return [];
  }
};
const jobCount = async () => (await server.gql(`{ queue { pending } }`)).data.queue.pending as number;

describe('refused uploads', () => {
  const cases: [string, () => Uint8Array, string, Record<string, unknown>?][] = [
    ['a file that is not audio', () => new TextEncoder().encode('%PDF-1.7 this is not a recording at all'), 'AUDIO_UNDECODABLE'],
    ['an empty file', () => new Uint8Array(0), 'AUDIO_EMPTY'],
    ['a WAV with a header and no samples', () => wavBytes(new Float32Array(0)), 'AUDIO_EMPTY'],
    ['an upload over the size limit', () => wavBytes(new Float32Array(16000 * 20)), 'INPUT_TOO_LARGE'],
    ['audio over the duration limit', () => wavBytes(new Float32Array(8000 * 26)), 'AUDIO_TOO_LONG'],
    ['an unknown language', () => good, 'UNKNOWN_LANGUAGE', { language: 'klingon' }],
  ];
  for (const [what, bytes, code, input] of cases) {
    it(`${what}: ${code}, no job, nothing stored`, async () => {
      const before = await jobCount();
      const res = await server.upload(bytes(), 'upload.wav', input);
      expect(res.errors?.[0].extensions?.code).toBe(code);
      expect(res.errors?.[0].message).not.toBe('Unexpected error.');
      expect(res.data?.createJob ?? null).toBeNull();
      expect(await jobCount()).toBe(before);
      expect(await storedFiles()).toEqual([]);
    });
  }

  it('createJob without a file: BAD_USER_INPUT', async () => {
    const res = await server.gql(`mutation { createJob(input: { language: "en" }) { id } }`);
    expect(res.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('refused requests', () => {
  it('worker mutations without the worker token: UNAUTHENTICATED', async () => {
    const claims = await server.gql(`mutation { claimJobs(input: { workerId: "x", maxJobs: 1, maxSeconds: 30 }) { leaseToken } }`);
    expect(claims.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const wrong = await server.gql(`mutation { signOff(workerId: "x") }`, {}, { authorization: 'Bearer not-the-token-at-all-000' });
    expect(wrong.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const audio = await fetch(server.url.replace('/graphql', '/audio/anything'));
    expect(audio.status).toBe(401);
  });

  it('an unknown job id: null from job, JOB_NOT_FOUND from mutations and the subscription', async () => {
    expect((await server.gql(`{ job(id: "no-such-job") { id } }`)).data.job).toBeNull();
    for (const m of ['cancelJob', 'retryJob']) {
      const res = await server.gql(`mutation { ${m}(id: "no-such-job") { id } }`);
      expect(res.errors?.[0].extensions?.code).toBe('JOB_NOT_FOUND');
    }
    const client = server.ws();
    const error = await new Promise<any>((resolve) =>
      client.subscribe(
        { query: `subscription { jobUpdated(id: "no-such-job") { id } }` },
        { next: (v) => resolve(v.errors), error: resolve, complete: () => resolve(null) },
      ),
    );
    await client.dispose();
    expect(error?.[0]?.extensions?.code).toBe('JOB_NOT_FOUND');
  });

  it('a bad cursor or page size: BAD_USER_INPUT', async () => {
    expect((await server.gql(`{ jobs(after: "garbage") { nodes { id } } }`)).errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect((await server.gql(`{ jobs(first: 1000) { nodes { id } } }`)).errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('after all that, a good upload is accepted and stored', async () => {
    const res = await server.upload(good, 'good.wav');
    expect(res.data.createJob.status).toBe('PENDING');
    expect(await storedFiles()).toHaveLength(1);
  });
});

describe('GraphiQL', () => {
  it('is served self-contained (no CDN) with example operations', async () => {
    const res = await fetch(server.url, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toMatch(/graphiql/i);
    expect(html).not.toMatch(/<script[^>]+src="https?:\/\//);
    expect(html).not.toMatch(/unpkg\.com|jsdelivr|esm\.sh/);
    for (const op of ['createJob', 'subscription Follow', 'jobUpdated', 'queue {']) expect(html).toContain(op);
  });
});

describe('errors that tell nothing they should not', () => {
  it('an unexpected server error is INTERNAL_SERVER_ERROR with the request id, and no details', async () => {
    // A transcript the database holds in a shape no code wrote: formatting its subtitles throws a TypeError.
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(join(server.dataDir, 'murmur.sqlite'));
    const now = Date.now();
    db.prepare(
      `INSERT INTO jobs (id, status, task, timestamps, filename, bytes, duration_seconds, blob_key, max_attempts, run_after, created_at, updated_at, finished_at, result)
       VALUES ('broken-job', 'DONE', 'transcribe', 1, 'x.wav', 1, 1, 'uploads/none', 3, ?, ?, ?, ?, ?)`,
    ).run(now, now, now, now, JSON.stringify({ text: 'x', language: 'en', model: 'm', segments: 'not a list' }));
    db.close();
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-42' },
      body: JSON.stringify({ query: '{ job(id: "broken-job") { id result { srt } } }' }),
    });
    expect(res.headers.get('x-request-id')).toBe('req-42');
    const body = (await res.json()) as any;
    expect(body.errors[0].extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR', requestId: 'req-42' });
    expect(body.errors[0].message).toBe('Unexpected error.');
    expect(JSON.stringify(body)).not.toMatch(/TypeError|map|segments is|at /);
    // A request without an id of its own gets one.
    const other = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ job(id: "broken-job") { result { srt } } }' }),
    });
    const id = other.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(((await other.json()) as any).errors[0].extensions.requestId).toBe(id);
  });

  it("a worker's unexpected failure reaches the client as INTERNAL_SERVER_ERROR with a reference; known codes pass as they are", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push((await server.upload(good, `w${i}.wav`)).data.createJob.id);
    const claim = await server.worker(
      `mutation { claimJobs(input: { workerId: "w", maxJobs: 5, maxSeconds: 600 }) { leaseToken job { id } } }`,
    );
    const token = (id: string) => claim.data.claimJobs.find((l: any) => l.job.id === id).leaseToken;
    const fail = (id: string, code: string, message: string) =>
      server.worker(
        `mutation ($id: ID!, $t: Int!, $c: String!, $m: String!) { failJob(jobId: $id, leaseToken: $t, code: $c, message: $m, retryable: false) { error { code message } } }`,
        { id, t: token(id), c: code, m: message },
      );
    const odd = await fail(
      ids[0],
      'ORT_RUNTIME_EXCEPTION',
      'Non-zero status code returned while running Conv node at /srv/models/secret-path',
    );
    expect(odd.data.failJob.error.code).toBe('INTERNAL_SERVER_ERROR');
    expect(odd.data.failJob.error.message).toMatch(/^the worker failed unexpectedly \(reference [0-9a-f-]{36}\)$/);
    const known = await fail(ids[1], 'AUDIO_UNDECODABLE', 'w1.wav is cut short');
    expect(known.data.failJob.error).toEqual({ code: 'AUDIO_UNDECODABLE', message: 'w1.wav is cut short' });
    // The schema publishes the lists clients switch on.
    const schema = await server.gql(
      `{ e: __type(name: "ErrorCode") { enumValues { name } } j: __type(name: "JobErrorCode") { enumValues { name } } }`,
    );
    const names = (t: { enumValues: { name: string }[] }) => t.enumValues.map((v) => v.name);
    expect(names(schema.data.e)).toEqual(
      expect.arrayContaining(['RATE_LIMITED', 'JOB_NOT_FOUND', 'AUDIO_UNDECODABLE', 'INTERNAL_SERVER_ERROR', 'QUERY_TOO_COMPLEX']),
    );
    expect(names(schema.data.j)).toContain('INTERNAL_SERVER_ERROR');
  });
});
