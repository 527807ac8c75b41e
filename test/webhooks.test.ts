// Webhooks against a local receiver: Standard Webhooks signatures checked with
// the `standardwebhooks` package, retries after 500s and timeouts, a delivery
// owed across an API restart, and an address the guard refuses.
import { createServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startServer, wavBytes, type Server } from './helpers/service.ts';

type Reply = number | 'hang';
interface Receiver {
  url: string;
  seen: { headers: IncomingHttpHeaders; body: string }[];
  replies: Reply[];
  close(): Promise<void>;
}

async function receiver(replies: Reply[], port = 0): Promise<Receiver> {
  const seen: Receiver['seen'] = [];
  const http: HttpServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      const reply = r.replies.shift() ?? 200;
      if (reply !== 'hang') res.writeHead(reply).end();
    });
  });
  await new Promise<void>((resolve) => http.listen(port, '127.0.0.1', () => resolve()));
  const r: Receiver = {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/hooks`,
    seen,
    replies,
    close: () => new Promise((resolve) => (http.closeAllConnections(), http.close(() => resolve()))),
  };
  return r;
}

const servers: Server[] = [];
const receivers: Receiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

const audio = wavBytes(new Float32Array(16000).map((_, i) => 0.3 * Math.sin(i / 7)));
const ENV = { MURMUR_MAX_WORKERS: '0', MURMUR_ALLOW_PRIVATE_URLS: '1', MURMUR_WEBHOOK_TIMEOUT_SECONDS: '1' };
const JOB = `query ($id: ID!) { job(id: $id) { status webhook { url attempts lastStatus deliveredAt nextAttemptAt } } }`;

async function finish(server: Server, id: string): Promise<void> {
  const claim = await server.worker(
    `mutation { claimJobs(input: { workerId: "w", maxJobs: 1, maxSeconds: 60 }) { leaseToken job { id } } }`,
  );
  const lease = claim.data.claimJobs[0];
  expect(lease.job.id).toBe(id);
  await server.worker(
    `mutation ($id: ID!, $t: Int!) { completeJob(jobId: $id, leaseToken: $t, result: { text: "hello there", language: "en", model: "m", segments: [{ start: 0, end: 1, text: "hello there" }] }) { id } }`,
    { id, t: lease.leaseToken },
  );
}

async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`not reached: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('webhooks', () => {
  it('are signed as Standard Webhooks says, and tried again after a 500 and a timeout', async () => {
    const server = await startServer(ENV);
    servers.push(server);
    const hooks = await receiver([500, 'hang', 200]);
    receivers.push(hooks);
    const { id } = (await server.upload(audio, 'a.wav', { callbackUrl: hooks.url })).data.createJob;
    expect((await server.gql(JOB, { id })).data.job.webhook).toMatchObject({
      url: hooks.url,
      attempts: 0,
      deliveredAt: null,
      nextAttemptAt: null,
    });
    await finish(server, id);
    const job = await until(
      async () => (await server.gql(JOB, { id })).data.job,
      (j) => j.webhook.deliveredAt !== null,
    );
    expect(job.webhook).toMatchObject({ attempts: 3, lastStatus: 200, nextAttemptAt: null });
    expect(hooks.seen).toHaveLength(3);

    const secret = (await server.gql('{ webhookSecret }')).data.webhookSecret;
    expect(secret).toMatch(/^whsec_/);
    const verifier = new Webhook(secret);
    for (const { headers, body } of hooks.seen) {
      const payload = verifier.verify(body, headers as Record<string, string>) as any;
      expect(payload).toMatchObject({ type: 'job.done', data: { id, status: 'DONE', result: { text: 'hello there', language: 'en' } } });
    }
    // One message, tried three times: one id (receivers drop repeats by it).
    expect(new Set(hooks.seen.map((s) => s.headers['webhook-id'])).size).toBe(1);
    // The check can fail: another secret, or a changed body, is refused.
    expect(() =>
      new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`).verify(
        hooks.seen[2].body,
        hooks.seen[2].headers as Record<string, string>,
      ),
    ).toThrow();
    expect(() => verifier.verify(hooks.seen[2].body.replace('hello', 'HELLO'), hooks.seen[2].headers as Record<string, string>)).toThrow();
  });

  it('tell of a cancelled job too', async () => {
    const server = servers[0];
    const hooks = await receiver([]);
    receivers.push(hooks);
    const { id } = (await server.upload(audio, 'b.wav', { callbackUrl: hooks.url })).data.createJob;
    await server.gql(`mutation ($id: ID!) { cancelJob(id: $id) { status } }`, { id });
    await until(
      async () => hooks.seen.length,
      (n) => n > 0,
    );
    expect(JSON.parse(hooks.seen[0].body)).toMatchObject({ type: 'job.cancelled', data: { id, status: 'CANCELLED', result: null } });
  });

  it('a delivery owed when the API stops is sent after it starts again', async () => {
    const server = await startServer(ENV);
    // Nobody listens on the receiver's port yet: connections are refused.
    const probe = await receiver([]);
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const url = `http://127.0.0.1:${port}/hooks`;
    const { id } = (await server.upload(audio, 'c.wav', { callbackUrl: url })).data.createJob;
    await finish(server, id);
    const failing = await until(
      async () => (await server.gql(JOB, { id })).data.job,
      (j) => j.webhook.attempts >= 1,
    );
    expect(failing.webhook).toMatchObject({ lastStatus: 0, deliveredAt: null });
    await server.stop();

    const hooks = await receiver([], port);
    receivers.push(hooks);
    const again = await startServer(ENV, server.dataDir);
    servers.push(again);
    const job = await until(
      async () => (await again.gql(JOB, { id })).data.job,
      (j) => j.webhook.deliveredAt !== null,
    );
    expect(job.webhook.lastStatus).toBe(200);
    expect(hooks.seen).toHaveLength(1);
  });

  it('go only where audio URLs may: a private address is refused at createJob', async () => {
    const server = await startServer({ MURMUR_MAX_WORKERS: '0' });
    servers.push(server);
    const res = await server.upload(audio, 'd.wav', { callbackUrl: 'http://127.0.0.1:9/hooks' });
    expect(res.errors?.[0]?.extensions?.code).toBe('URL_FORBIDDEN');
    const bad = await server.upload(audio, 'd.wav', { callbackUrl: 'ftp://example.com/x' });
    expect(bad.errors?.[0]?.extensions?.code).toBe('URL_FORBIDDEN');
  });
});
