// What the OpenAI-compatible route adds over GraphQL: the same file sent
// through both, one request at a time, alternating, to `murmur serve` in a
// child process with its workers and a small generated model; the GraphQL job
// asks for the temperatures the route's default (temperature 0) means, so both
// are the same job. GraphQL's time
// is createJob (multipart) until jobUpdated reports DONE over graphql-ws and
// the transcript is read; the OpenAI route's is the one request. Prints the
// latency percentiles of each and the difference of their medians.
//
//   npx tsx bench/openai-route.ts [--requests 40]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import wav from 'node-wav';
import WebSocket from 'ws';
import { syntheticShape, writeSyntheticModel } from '../src/whisper/synthetic/index.ts';
import { speechSegments } from './whisperSetup.ts';
import { startBenchServer } from './benchServer.ts';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '40' } } });
const requests = Number(values.requests);

const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-openai-'));
await writeSyntheticModel(join(dir, 'model'), syntheticShape('test'), 1);
const server = await startBenchServer({ MURMUR_MODEL_DIR: join(dir, 'model'), MURMUR_MAX_WORKERS: '1', MURMUR_BATCH_WINDOW_MS: '0' });
const { url } = server;
const base = url.replace(/\/graphql$/, '');

// Three seconds of recorded speech: the worker's time is the same through either route.
const [samples] = speechSegments(1, 3);
const audio = new Blob([new Uint8Array(wav.encode([samples], { sampleRate: 16000, float: false, bitDepth: 16 }))], { type: 'audio/wav' });
const ws = createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket });

async function viaGraphql(): Promise<string> {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({
      query:
        'mutation ($file: File!) { createJob(input: { file: $file, language: "en", temperatures: [0, 0.2, 0.4, 0.6, 0.8, 1] }) { id } }',
      variables: { file: null },
    }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.file'] }));
  form.set('0', audio, 'tone.wav');
  const created = await fetch(url, { method: 'POST', headers: { 'graphql-preflight': '1' }, body: form }).then((r) => r.json());
  const id = created.data.createJob.id;
  let text = '';
  await new Promise<void>((resolve, reject) => {
    ws.subscribe<{ jobUpdated: { status: string; result: { text: string } | null } }>(
      { query: 'subscription ($id: ID!) { jobUpdated(id: $id) { status result { text } } }', variables: { id } },
      { next: ({ data }) => data?.jobUpdated.result && (text = data.jobUpdated.result.text), error: reject, complete: resolve },
    );
  });
  return text;
}

async function viaOpenAi(): Promise<string> {
  const form = new FormData();
  form.set('model', 'whisper-1');
  form.set('language', 'en');
  form.set('file', audio, 'tone.wav');
  const res = await fetch(`${base}/v1/audio/transcriptions`, { method: 'POST', body: form });
  return ((await res.json()) as { text: string }).text;
}

// warm-up: the worker loads the model
await viaOpenAi();
await viaGraphql();
const times: Record<'graphql' | 'openai', number[]> = { graphql: [], openai: [] };
for (let i = 0; i < requests; i++) {
  for (const [name, call] of (i % 2
    ? [
        ['openai', viaOpenAi],
        ['graphql', viaGraphql],
      ]
    : [
        ['graphql', viaGraphql],
        ['openai', viaOpenAi],
      ]) as ['graphql' | 'openai', () => Promise<string>][]) {
    const start = performance.now();
    const text = await call();
    if (!text) throw new Error(`${name}: no text`);
    times[name].push(performance.now() - start);
  }
}
await ws.dispose();
await server.stop();

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
console.log(
  `\n${requests} requests each, alternating, one at a time; 3 s of recorded speech, a small generated model, one embedded worker`,
);
console.log('route      p50 ms   p90 ms   max ms');
for (const [name, xs] of Object.entries(times))
  console.log(
    `${name.padEnd(8)} ${pct(xs, 50).toFixed(1).padStart(8)} ${pct(xs, 90).toFixed(1).padStart(8)} ${Math.max(...xs)
      .toFixed(1)
      .padStart(8)}`,
  );
console.log(`the OpenAI route adds ${(pct(times.openai, 50) - pct(times.graphql, 50)).toFixed(1)} ms at p50`);
