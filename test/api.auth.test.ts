// Who may do what: every query, mutation, subscription and HTTP route, asked by
// nobody, by a wrong key, a revoked key, a client key of tenant A, one of tenant
// B, the admin key the first start printed, and the worker token. A real server
// with keys made by `murmur keys`; jobs stay pending (no embedded workers) so
// each answer is the same whatever order the cases run in.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { murmur, startServer, wavBytes, WORKER_TOKEN, type Server } from './helpers/service.ts';

type Who = 'none' | 'wrong' | 'revoked' | 'a' | 'b' | 'admin' | 'worker';
const WHO: Who[] = ['none', 'wrong', 'revoked', 'a', 'b', 'admin', 'worker'];
const UNKNOWN: Who[] = ['none', 'wrong', 'revoked'];

let server: Server;
let env: Record<string, string>;
const secret: Partial<Record<Who, string>> = {};
const jobs: Record<string, string> = {};
const audio = wavBytes(new Float32Array(16000).map((_, i) => 0.3 * Math.sin(i / 7)));

const auth = (who: Who): Record<string, string> => {
  if (who === 'none') return {};
  if (who === 'wrong') return { authorization: 'Bearer mk_' + 'x'.repeat(43) };
  if (who === 'worker') return { authorization: `Bearer ${WORKER_TOKEN}` };
  return { authorization: `Bearer ${secret[who]}` };
};

async function gql(who: Who, query: string, variables: Record<string, unknown> = {}) {
  const res = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth(who) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: { message: string; extensions?: { code?: string } }[] };
  return { status: res.status, code: body.errors?.[0]?.extensions?.code, data: body.data, text: JSON.stringify(body) };
}

beforeAll(async () => {
  server = await startServer({ MURMUR_AUTH: 'keys', MURMUR_MAX_WORKERS: '0' });
  env = { MURMUR_DATA_DIR: server.dataDir };
  // The first start made an admin key and printed it once: that is how a new install is used.
  secret.admin = (await server.waitForLine(/export MURMUR_API_KEY=(\S+)/))[1];
  secret.a = (await murmur(['keys', 'create', '--name', 'app-a', '--tenant', 'tenant-a'], env)).trim();
  secret.b = (await murmur(['keys', 'create', '--name', 'app-b', '--tenant', 'tenant-b'], env)).trim();
  secret.revoked = (await murmur(['keys', 'create', '--name', 'gone', '--tenant', 'tenant-a'], env)).trim();
  await murmur(['keys', 'revoke', 'gone'], env);
  for (const [name, who] of [
    ['a', 'a'],
    ['a2', 'a'],
    ['b', 'b'],
    ['b2', 'b'],
  ] as const) {
    const res = await server.upload(audio, `${name}-private-name.wav`, {}, 'id tenant', auth(who));
    expect(res.errors).toBeUndefined();
    jobs[name] = res.data.createJob.id;
  }
}, 120_000);

afterAll(() => server?.stop());

describe('API keys', () => {
  it('the first admin key is printed once: a restart on the same data makes none', async () => {
    const { dataDir } = server;
    const again = await startServer({ MURMUR_AUTH: 'keys', MURMUR_MAX_WORKERS: '0', PORT: '0' }, dataDir);
    try {
      expect(again.lines.some((l) => l.includes('MURMUR_API_KEY='))).toBe(false);
      const list = JSON.parse(await murmur(['keys', 'list', '--json'], env));
      expect(list.map((k: { name: string }) => k.name).sort()).toEqual(['admin', 'app-a', 'app-b', 'gone']);
      expect(list.find((k: { name: string }) => k.name === 'gone').revokedAt).not.toBeNull();
      // Only hashes are kept: no secret appears in the listing.
      for (const s of Object.values(secret)) expect(JSON.stringify(list)).not.toContain(s);
    } finally {
      await again.stop();
    }
  });

  it('jobs belong to the tenant of the key that made them', async () => {
    const res = await gql('admin', `query ($a: ID!, $b: ID!) { a: job(id: $a) { tenant } b: job(id: $b) { tenant } }`, {
      a: jobs.a,
      b: jobs.b,
    });
    expect(res.data).toEqual({ a: { tenant: 'tenant-a' }, b: { tenant: 'tenant-b' } });
  });

  it('MURMUR_AUTH=none is refused unless the server listens on loopback only', async () => {
    await expect(murmur(['serve'], { ...env, MURMUR_AUTH: 'none', HOST: '0.0.0.0', PORT: '0' })).rejects.toThrow(
      /CONFIG_INVALID.*MURMUR_AUTH=none/,
    );
  });

  it('a key revoked while the server runs stops working at once, on HTTP and WebSocket', async () => {
    const fresh = (await murmur(['keys', 'create', '--name', 'short-lived', '--tenant', 'tenant-a'], env)).trim();
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${fresh}` };
    const ask = () => fetch(server.url, { method: 'POST', headers, body: JSON.stringify({ query: '{ jobs { nodes { id } } }' }) });
    expect((await ask()).status).toBe(200);
    const client = server.ws({ authorization: `Bearer ${fresh}` });
    expect(await firstPayload(client, jobs.a)).toMatchObject({ data: { jobUpdated: { id: jobs.a } } });
    await murmur(['keys', 'revoke', 'short-lived'], env);
    expect((await ask()).status).toBe(401);
    expect(await firstPayload(client, jobs.a)).toMatchObject({ errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });
    await client.dispose();
  });
});

/** The first thing a jobUpdated subscription answers: a payload, or the errors it was refused with. */
function firstPayload(client: ReturnType<Server['ws']>, id: string): Promise<{ data?: any; errors?: any[] }> {
  return new Promise((resolve) => {
    const stop = client.subscribe(
      { query: `subscription ($id: ID!) { jobUpdated(id: $id) { id tenant } }`, variables: { id } },
      {
        next: (v) => (stop(), resolve(v as any)),
        error: (e) => resolve({ errors: Array.isArray(e) ? e : [e] }),
        complete: () => {},
      },
    );
  });
}

describe('the authorization matrix', () => {
  // Each case: what it runs as whom, and what it must answer.
  type Answer = { status: number; code?: string; data?: any; text: string };
  const refusedUnknown = (r: Answer) => {
    expect(r.status).toBe(401);
    expect(r.code).toBe('UNAUTHENTICATED');
    expect(r.data ?? null).toBeNull();
  };
  const forbidden = (r: Answer) => expect(r.code).toBe('FORBIDDEN');
  const clientOnly = (who: Who, r: Answer, ok: () => void) => {
    if (UNKNOWN.includes(who)) refusedUnknown(r);
    else if (who === 'worker') forbidden(r);
    else ok();
  };
  const workerOnly = (who: Who, r: Answer) => {
    if (UNKNOWN.includes(who)) refusedUnknown(r);
    else if (who === 'worker') expect(r.code === undefined || !['FORBIDDEN', 'UNAUTHENTICATED'].includes(r.code), r.text).toBe(true);
    else forbidden(r);
  };
  const own = (who: Who) => (who === 'b' ? 'b' : 'a');
  const keyedJobs: Partial<Record<'a' | 'b', Promise<string>>> = {};
  const keyed = (w: 'a' | 'b') =>
    (keyedJobs[w] ??= server
      .upload(audio, `${w}-keyed.wav`, { idempotencyKey: 'matrix-key' }, 'id', auth(w))
      .then((r) => r.data.createJob.id as string));
  const secrets: Record<string, string> = {};
  const other = (who: Who) => (who === 'b' ? 'a' : 'b');

  const fields: Record<string, (who: Who) => Promise<void>> = {
    job: async (who) => {
      const mine = await gql(who, `query ($id: ID!) { job(id: $id) { id input { filename } } }`, { id: jobs[own(who)] });
      const theirs = await gql(who, `query ($id: ID!) { job(id: $id) { id input { filename } } }`, { id: jobs[other(who)] });
      const unknown = await gql(who, `{ job(id: "no-such-job") { id } }`);
      for (const r of [mine, theirs]) clientOnly(who, r, () => {});
      clientOnly(who, mine, () => expect(mine.data.job.id).toBe(jobs[own(who)]));
      // Another tenant's job answers exactly as an unknown id does.
      clientOnly(who, theirs, () => (who === 'admin' ? expect(theirs.data.job.id).toBe(jobs.b) : expect(theirs.text).toBe(unknown.text)));
    },
    jobs: async (who) => {
      const r = await gql(who, `{ jobs(first: 100) { nodes { id tenant } } }`);
      clientOnly(who, r, () => {
        const tenants = new Set(r.data.jobs.nodes.map((n: { tenant: string }) => n.tenant));
        expect([...tenants].sort()).toEqual(who === 'admin' ? ['tenant-a', 'tenant-b'] : [`tenant-${who}`]);
      });
    },
    webhookSecret: async (who) => {
      const r = await gql(who, `{ webhookSecret }`);
      // Each tenant its own: what A verifies with cannot check (or forge) B's.
      clientOnly(who, r, () =>
        expect(r.data.webhookSecret).toBe((secrets[who === 'b' ? 'b' : who === 'a' ? 'a' : 'admin'] ??= r.data.webhookSecret)),
      );
      if (who === 'b' && secrets.a) expect(r.data.webhookSecret).not.toBe(secrets.a);
    },
    queue: async (who) => {
      const r = await gql(who, `{ queue { pending } }`);
      clientOnly(who, r, () => (who === 'admin' ? expect(r.data.queue.pending).toBeGreaterThanOrEqual(4) : forbidden(r)));
    },
    createJob: async (who) => {
      const before = storedFiles();
      const res = await fetch(server.url, { method: 'POST', headers: { 'graphql-preflight': '1', ...auth(who) }, body: uploadForm() });
      const body = (await res.json()) as any;
      const r = { status: res.status, code: body.errors?.[0]?.extensions?.code, data: body.data, text: JSON.stringify(body) };
      clientOnly(who, r, () => expect(r.data.createJob.tenant).toBe(who === 'admin' ? 'default' : `tenant-${who}`));
      // A refused upload leaves nothing behind.
      if (UNKNOWN.includes(who) || who === 'worker') expect(storedFiles()).toEqual(before);
    },
    createUpload: async (who) => {
      const r = await gql(who, `mutation { createUpload(input: { filename: "x.wav" }) { key } }`);
      // The local folder cannot presign: getting that far means the key was accepted.
      clientOnly(who, r, () => expect(r.code).toBe('UPLOADS_UNSUPPORTED'));
    },
    cancelJob: async (who) => {
      const theirs = await gql(who, `mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: jobs[`${other(who)}2`] });
      clientOnly(who, theirs, () =>
        who === 'admin' ? expect(theirs.data.cancelJob.status).toBe('CANCELLED') : expect(theirs.code).toBe('JOB_NOT_FOUND'),
      );
      const mine = await gql(who, `mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: jobs[`${own(who)}2`] });
      clientOnly(who, mine, () => expect(mine.data.cancelJob.status).toBe('CANCELLED'));
    },
    retryJob: async (who) => {
      await gql('admin', `mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id: jobs[`${other(who)}2`] });
      const theirs = await gql(who, `mutation ($id: ID!) { retryJob(id: $id) { status } }`, { id: jobs[`${other(who)}2`] });
      clientOnly(who, theirs, () =>
        who === 'admin' ? expect(theirs.data.retryJob.status).toBe('PENDING') : expect(theirs.code).toBe('JOB_NOT_FOUND'),
      );
      const state = await gql('admin', `query ($id: ID!) { job(id: $id) { status } }`, { id: jobs[`${other(who)}2`] });
      expect(state.data.job.status).toBe(who === 'admin' ? 'PENDING' : 'CANCELLED');
    },
    deleteJob: async (who) => {
      // Each caller gets fresh jobs of both tenants, so the order of the cases does not matter.
      const fresh = async (w: 'a' | 'b') =>
        (await server.upload(audio, `${w}-private-name.wav`, {}, 'id', auth(w))).data.createJob.id as string;
      const [mine, theirs] = [await fresh(own(who) as 'a' | 'b'), await fresh(other(who) as 'a' | 'b')];
      const t = await gql(who, `mutation ($id: ID!) { deleteJob(id: $id) }`, { id: theirs });
      clientOnly(who, t, () => (who === 'admin' ? expect(t.data.deleteJob).toBe(theirs) : expect(t.code).toBe('JOB_NOT_FOUND')));
      const left = await gql('admin', `query ($id: ID!) { job(id: $id) { id } }`, { id: theirs });
      expect(left.data.job).toEqual(who === 'admin' ? null : { id: theirs });
      const m = await gql(who, `mutation ($id: ID!) { deleteJob(id: $id) }`, { id: mine });
      clientOnly(who, m, () => expect(m.data.deleteJob).toBe(mine));
    },
    heartbeat: async (who) => workerOnly(who, await gql(who, `mutation { heartbeat(workerId: "w", leases: []) { jobId } }`)),
    completeJob: async (who) =>
      workerOnly(
        who,
        await gql(
          who,
          `mutation ($id: ID!) { completeJob(jobId: $id, leaseToken: 99, result: { text: "x", language: "en", model: "m", segments: [] }) { id } }`,
          { id: jobs.a },
        ),
      ),
    failJob: async (who) =>
      workerOnly(
        who,
        await gql(who, `mutation ($id: ID!) { failJob(jobId: $id, leaseToken: 99, code: "X", message: "x", retryable: true) { id } }`, {
          id: jobs.a,
        }),
      ),
    releaseJob: async (who) =>
      workerOnly(who, await gql(who, `mutation ($id: ID!) { releaseJob(jobId: $id, leaseToken: 99) { id } }`, { id: jobs.a })),
    signOff: async (who) => workerOnly(who, await gql(who, `mutation { signOff(workerId: "nobody") }`)),
    // maxJobs 0 is refused as BAD_USER_INPUT once the caller is let in: nothing is claimed, so the other cases keep their pending jobs.
    claimJobs: async (who) =>
      workerOnly(
        who,
        await gql(
          who,
          `mutation { claimJobs(input: { workerId: "matrix", pool: CPU, maxJobs: 0, maxSeconds: 30, waitSeconds: 0 }) { leaseToken } }`,
        ),
      ),
    jobByIdempotencyKey: async (who) => {
      // The same key used by both tenants: each its own job, and each sees only its own.
      const made = { a: await keyed('a'), b: await keyed('b') };
      expect(made.a).not.toBe(made.b);
      const r = await gql(who, `{ jobByIdempotencyKey(key: "matrix-key") { id tenant } }`);
      clientOnly(who, r, () =>
        expect(r.data.jobByIdempotencyKey).toEqual(who === 'admin' ? null : { id: made[who as 'a' | 'b'], tenant: `tenant-${who}` }),
      );
    },
    jobsChanged: async (who) => {
      const client = server.ws(auth(who));
      const seen: { id: string; tenant: string }[] = [];
      let refused: string | undefined;
      client.subscribe(
        { query: 'subscription { jobsChanged { id tenant } }' },
        {
          next: (v) => void (v.errors ? (refused = String(v.errors[0].extensions?.code)) : seen.push((v.data as any).jobsChanged)),
          error: (e) => void (refused = String((Array.isArray(e) ? e[0] : (e as any))?.extensions?.code)),
          complete: () => {},
        },
      );
      const make = async (w: 'a' | 'b') => (await server.upload(audio, `${w}-changed.wav`, {}, 'id', auth(w))).data.createJob.id as string;
      try {
        if (UNKNOWN.includes(who) || who === 'worker') {
          await vi.waitFor(() => expect(refused).toBe(who === 'worker' ? 'FORBIDDEN' : 'UNAUTHENTICATED'));
          return;
        }
        // Listening once one of its own new jobs comes through (a subscription is set up asynchronously).
        await vi.waitFor(
          async () => {
            const id = await make(own(who));
            await new Promise((r) => setTimeout(r, 100));
            expect(seen.map((j) => j.id)).toContain(id);
          },
          { timeout: 10_000, interval: 0 },
        );
        // Events come in order: by the time its own next job arrives, the other tenant's made before it would have.
        const theirs = await make(other(who));
        const mine = await make(own(who));
        await vi.waitFor(() => expect(seen.map((j) => j.id)).toContain(mine));
        expect(seen.some((j) => j.id === theirs)).toBe(who === 'admin');
        expect([...new Set(seen.map((j) => j.tenant))].sort()).toEqual(who === 'admin' ? ['tenant-a', 'tenant-b'] : [`tenant-${who}`]);
      } finally {
        await client.dispose();
      }
    },
    jobUpdated: async (who) => {
      const client = server.ws(auth(who));
      try {
        const mine = await firstPayload(client, jobs[own(who)]);
        const theirs = await firstPayload(client, jobs[other(who)]);
        const unknown = await firstPayload(client, 'no-such-job');
        const code = (p: { errors?: any[] }) => p.errors?.[0]?.extensions?.code;
        if (UNKNOWN.includes(who)) expect([code(mine), code(theirs)]).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED']);
        else if (who === 'worker') expect([code(mine), code(theirs)]).toEqual(['FORBIDDEN', 'FORBIDDEN']);
        else {
          expect(mine.data.jobUpdated.id).toBe(jobs[own(who)]);
          if (who === 'admin') expect(theirs.data.jobUpdated.id).toBe(jobs.b);
          else expect(JSON.stringify(theirs).replace(jobs[other(who)], 'ID')).toBe(JSON.stringify(unknown).replace('no-such-job', 'ID'));
        }
      } finally {
        await client.dispose();
      }
    },
  };

  it('covers every root field of the schema', async () => {
    const r = await gql(
      'admin',
      `{ __schema { queryType { fields { name } } mutationType { fields { name } } subscriptionType { fields { name } } } }`,
    );
    const s = r.data.__schema;
    const all = [s.queryType, s.mutationType, s.subscriptionType].flatMap((t: { fields: { name: string }[] }) =>
      t.fields.map((f) => f.name),
    );
    expect(all.sort()).toEqual(Object.keys(fields).sort());
  });

  for (const [field, check] of Object.entries(fields)) {
    it.each(WHO)(`${field} as %s`, async (who) => {
      await check(who);
    });
  }

  it("nothing of tenant B's reaches a tenant A key", async () => {
    const answers = await Promise.all([
      gql('a', `{ jobs(first: 100) { nodes { id input { filename } } } }`),
      gql('a', `query ($id: ID!) { job(id: $id) { id input { filename } } }`, { id: jobs.b }),
      gql('a', `mutation ($id: ID!) { cancelJob(id: $id) { id } }`, { id: jobs.b }),
    ]);
    for (const a of answers) {
      expect(a.text).not.toContain('tenant-b');
      expect(a.text).not.toContain('b-private-name');
    }
    // The one trace of B's job: its id, echoed from A's own question, as for any unknown id.
    expect(answers[0].text).not.toContain(jobs.b);
  });

  it("graphql-ws also takes the key from a subscribe message's extensions.headers, as GraphiQL sends it", async () => {
    const client = server.ws();
    const ask = (extensions?: Record<string, unknown>) =>
      new Promise<{ data?: any; errors?: any[] }>((resolve) => {
        const stop = client.subscribe(
          { query: `subscription ($id: ID!) { jobUpdated(id: $id) { id } }`, variables: { id: jobs.a }, extensions },
          { next: (v) => (stop(), resolve(v as any)), error: (e) => resolve({ errors: Array.isArray(e) ? e : [e] }), complete: () => {} },
        );
      });
    expect((await ask({ headers: { Authorization: `Bearer ${secret.a}` } })).data?.jobUpdated.id).toBe(jobs.a);
    expect((await ask({ headers: { authorization: `Bearer ${secret.b}` } })).errors?.[0]?.extensions?.code).toBe('JOB_NOT_FOUND');
    expect((await ask()).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    await client.dispose();
  });

  it('SSE subscriptions take the key from the Authorization header', async () => {
    const sse = (who: Who) =>
      fetch(
        `${server.url}?query=${encodeURIComponent('subscription ($id: ID!) { jobUpdated(id: $id) { id } }')}&variables=${encodeURIComponent(JSON.stringify({ id: jobs.a }))}`,
        {
          headers: { accept: 'text/event-stream', ...auth(who) },
        },
      );
    const none = await sse('none');
    expect(none.status).toBe(401);
    const a = await sse('a');
    expect(a.status).toBe(200);
    const reader = a.body!.getReader();
    let text = '';
    while (!text.includes(jobs.a)) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    const b = await sse('b');
    const bText = await readUntil(b, 'JOB_NOT_FOUND');
    expect(bText).toContain('JOB_NOT_FOUND');
  });

  it('HTTP routes: /audio only with the worker token; health, readiness, metrics and the GraphiQL page open', async () => {
    const base = server.url.replace(/\/graphql$/, '');
    for (const who of WHO) {
      const res = await fetch(`${base}/audio/${jobs.a}`, { headers: auth(who) });
      expect(res.status, who).toBe(who === 'worker' ? 200 : 401);
      await res.arrayBuffer();
      for (const path of ['/healthz', '/readyz', '/metrics']) expect((await fetch(base + path, { headers: auth(who) })).status).toBe(200);
    }
    const page = await fetch(server.url, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    // The link the first start prints opens GraphiQL with the key in its headers.
    const linked = await (await fetch(`${server.url}?key=${secret.admin}`, { headers: { accept: 'text/html' } })).text();
    expect(linked.includes(`Bearer ${secret.admin}`)).toBe(true);
    expect((await page.text()).includes('Bearer mk_')).toBe(false);
  });
});

async function readUntil(res: Response, marker: string): Promise<string> {
  const reader = res.body!.getReader();
  let text = '';
  while (!text.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await reader.cancel().catch(() => {});
  return text;
}

function uploadForm(): FormData {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({
      query: `mutation ($input: CreateJobInput!) { createJob(input: $input) { id tenant } }`,
      variables: { input: { file: null } },
    }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.input.file'] }));
  form.set('0', new Blob([new Uint8Array(audio)]), 'matrix.wav');
  return form;
}

function storedFiles(): string[] {
  const root = join(server.dataDir, 'blobs');
  try {
    return readdirSync(root, { recursive: true }).map(String).sort();
  } catch {
    return [];
  }
}
