// A soak: `murmur serve` (one embedded worker on the small generated model)
// under mixed load for a long time, with a subscriber that stops reading (a
// raw SSE socket, paused, opened again whenever the server drops it) and one
// that reconnects every 20 s over graphql-ws. Prints, every interval, the
// server's memory, the jobs created and finished, the subscribers dropped
// and the error-level log lines; the run is good when the error count stays 0,
// every job finishes and the memory stays flat.
//
//   npx tsx bench/soak.ts [--minutes 30] [--interval 60]
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import wav from 'node-wav';
import WebSocket from 'ws';
import { syntheticShape, writeSyntheticModel } from '../src/whisper/synthetic/index.ts';
import { startBenchServer } from './benchServer.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, interval: { type: 'string', default: '60' } } });
const endAt = Date.now() + Number(values.minutes) * 60_000;
const intervalMs = Number(values.interval) * 1000;

const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-soak-'));
await writeSyntheticModel(join(dir, 'model'), syntheticShape('test'), 1);
const counts = { errorLines: 0, dropped: 0, created: 0, refused: 0, cancelled: 0, requestErrors: 0, reconnects: 0, stalledOpened: 0 };
const errorSamples: string[] = [];
const server = await startBenchServer(
  {
    MURMUR_MODEL_DIR: join(dir, 'model'),
    MURMUR_MAX_WORKERS: '1',
    MURMUR_SUBSCRIBER_BACKLOG: '200',
    MURMUR_RETENTION_DAYS: String(60 / 86_400), // finished jobs go after a minute: the database stays the size of the load
  },
  {
    onEvent: (entry) => {
      if (Number(entry.level) >= 50) {
        counts.errorLines++;
        if (errorSamples.length < 5) errorSamples.push(JSON.stringify(entry).slice(0, 300));
      }
      if (entry.event === 'subscription.dropped') {
        counts.dropped++;
        // A paused socket may not hear its end: the next stalled reader starts once the server says it dropped this one.
        stalled?.destroy();
        if (Date.now() < endAt) setTimeout(stalledReader, 1000);
      }
    },
  },
);
const { url } = server;
const { host, pathname } = new URL(url);

const samples = Float32Array.from({ length: 16000 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / 16000));
const audio = Buffer.from(wav.encode([samples], { sampleRate: 16000, float: false, bitDepth: 16 }));
async function gql(query: string, variables: Record<string, unknown> = {}): Promise<any> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return res.json();
}
/** 4,000 characters: 30 aliases of it make an event of about 120 kB for the stalled reader. */
const PROMPT = 'soak '.repeat(800);
async function createJob(): Promise<string | undefined> {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({
      query: 'mutation ($f: File!, $p: String) { createJob(input: { file: $f, prompt: $p }) { id } }',
      variables: { f: null, p: PROMPT },
    }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.f'] }));
  form.set('0', new Blob([audio]), 'soak.wav');
  const body = (await (await fetch(url, { method: 'POST', body: form, headers: { 'graphql-preflight': '1' } })).json()) as any;
  if (body.errors) counts.refused++;
  else counts.created++;
  return body.data?.createJob?.id;
}

// The subscriber that stops reading: a large selection per event, then a paused socket.
const heavy = `subscription { jobsChanged { ${Array.from({ length: 30 }, (_, i) => `a${i}: options { prompt }`).join(' ')} id status } }`;
let stalled: Socket | undefined;
function stalledReader(): void {
  const [hostname, port] = host.split(':');
  const socket: Socket = (stalled = connect(Number(port), hostname, () => {
    counts.stalledOpened++;
    socket.write(`GET ${pathname}?query=${encodeURIComponent(heavy)} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`);
  }));
  socket.once('data', () => socket.pause());
  socket.on('error', () => {});
}
stalledReader();

// The subscriber that reconnects: a graphql-ws client, closed and opened again every 20 s.
const followed = { events: 0 };
let reconnecting = true;
(async () => {
  while (reconnecting) {
    const client = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    client.subscribe(
      { query: 'subscription { jobsChanged { id status progress } }' },
      { next: () => void followed.events++, error: () => {}, complete: () => {} },
    );
    await new Promise((r) => setTimeout(r, 20_000));
    await client.dispose();
    counts.reconnects++;
  }
})();

// Mixed load: a job every 250 ms, one in ten cancelled, a read of each and a page of the list.
const ids: string[] = [];
let loading = true;
const load = (async () => {
  for (let i = 0; loading; i++) {
    try {
      const id = await createJob();
      if (id) ids.push(id);
      if (id && i % 10 === 0) {
        const r = await gql('mutation ($id: ID!) { cancelJob(id: $id) { status } }', { id });
        if (r.data?.cancelJob) counts.cancelled++;
      }
      if (id) await gql('query ($id: ID!) { job(id: $id) { status progress result { text } } }', { id });
      if (i % 5 === 0) await gql('{ jobs(first: 20) { edges { node { id status } } } queue { pending processing done } }');
    } catch {
      counts.requestErrors++;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
})();

const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.process.pid}/status`, 'utf8'))![1]) / 1024;
const started = Date.now();
const rows: { minute: number; rss: number }[] = [];
console.log(`soak of ${values.minutes} min on ${url}`);
console.log(
  'minute  server RSS MiB  created  refused  cancelled  pending  processing  done  dropped  stalled opened  reconnects  error lines  request errors',
);
async function report(): Promise<void> {
  const { data } = await gql('{ queue { pending processing done } }');
  const minute = (Date.now() - started) / 60_000;
  const rss = rssMiB();
  rows.push({ minute, rss });
  const q = data.queue;
  console.log(
    [
      minute.toFixed(1).padStart(6),
      rss.toFixed(0).padStart(14),
      counts.created,
      counts.refused,
      counts.cancelled,
      q.pending,
      q.processing,
      q.done,
      counts.dropped,
      counts.stalledOpened,
      counts.reconnects,
      counts.errorLines,
      counts.requestErrors,
    ]
      .map(String)
      .join('  '),
  );
}
while (Date.now() < endAt) {
  await new Promise((r) => setTimeout(r, Math.min(intervalMs, endAt - Date.now())));
  await report();
}
loading = false;
reconnecting = false;
await load;
// Let the queue empty, then the last reading.
for (let i = 0; i < 120; i++) {
  const { data } = await gql('{ queue { pending processing } }');
  if (data.queue.pending + data.queue.processing === 0) break;
  await new Promise((r) => setTimeout(r, 1000));
}
await report();
const settled = rows.filter((r) => r.minute >= Math.min(5, Number(values.minutes) / 3));
const [a, b] = [settled[0], settled.at(-1)!];
console.log(
  `RSS after warm-up ${a.rss.toFixed(0)} MiB → ${b.rss.toFixed(0)} MiB at the end (${(((b.rss - a.rss) / Math.max(1e-9, b.minute - a.minute)) * 10).toFixed(1)} MiB per 10 min); peak ${Math.max(...rows.map((r) => r.rss)).toFixed(0)} MiB`,
);
console.log(
  `events followed by the reconnecting subscriber: ${followed.events}; error-level lines: ${counts.errorLines}${errorSamples.length ? `\n${errorSamples.join('\n')}` : ''}`,
);
await server.stop();
process.exit(0);
