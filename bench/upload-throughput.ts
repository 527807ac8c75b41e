// createJob with the audio through the API (a multipart request) against
// presigned uploads (createUpload, a PUT straight to the store, createJob with
// the key), the same files, against `murmur serve` in a child process with its
// audio in S3 (s3rver on this machine) and no workers. Prints jobs a second
// and latency at a fixed concurrency.
//
//   npm run bench:upload         (or: npx tsx bench/upload-throughput.ts [--jobs 200] [--concurrency 8])
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import wav from 'node-wav';
import { syntheticShape, writeSyntheticModel } from '../src/whisper/synthetic/index.ts';
import { startS3 } from '../test/helpers/s3.ts';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '200' }, concurrency: { type: 'string', default: '8' } } });
const JOBS = Number(values.jobs);
const CONCURRENCY = Number(values.concurrency);

const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-upload-'));
await writeSyntheticModel(join(dir, 'model'), syntheticShape('test'), 1);
const s3 = await startS3();
const server = spawn(process.execPath, [new URL('../src/cli/bin.js', import.meta.url).pathname, 'serve'], {
  env: {
    ...process.env,
    ...s3.env,
    PORT: '0',
    HOST: '127.0.0.1',
    MURMUR_DATA_DIR: join(dir, 'data'),
    MURMUR_MODEL_DIR: join(dir, 'model'),
    MURMUR_MAX_WORKERS: '0',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const url = await new Promise<string>((resolve) =>
  createInterface({ input: server.stdout! }).on('line', (line) => {
    const m = line.match(/murmur listening on (\S+)/);
    if (m) resolve(m[1]);
  }),
);

const wavOf = (seconds: number) =>
  Buffer.from(
    wav.encode([Float32Array.from({ length: 16000 * seconds }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / 16000))], {
      sampleRate: 16000,
      float: false,
      bitDepth: 16,
    }),
  );
const gql = async (query: string, variables: Record<string, unknown>) => {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
};

const multipart = async (audio: Buffer) => {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({ query: 'mutation ($f: File!) { createJob(input: { file: $f }) { id } }', variables: { f: null } }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.f'] }));
  form.set('0', new Blob([new Uint8Array(audio)]), 'a.wav');
  const body = (await (await fetch(url, { method: 'POST', body: form, headers: { 'graphql-preflight': '1' } })).json()) as {
    errors?: unknown[];
  };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
};
const presigned = async (audio: Buffer) => {
  const { createUpload } = await gql('mutation { createUpload(input: { filename: "a.wav" }) { key url } }', {});
  const put = await fetch(createUpload.url, { method: 'PUT', body: new Uint8Array(audio) });
  if (!put.ok) throw new Error(`PUT ${put.status}`);
  await gql('mutation ($k: String!) { createJob(input: { uploadKey: $k }) { id } }', { k: createUpload.key });
};

async function run(create: (audio: Buffer) => Promise<void>, audio: Buffer) {
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < JOBS) {
        const t = performance.now();
        await create(audio);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const wall = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { rate: JOBS / wall, p50: latencies[latencies.length >> 1], p99: latencies[Math.floor(latencies.length * 0.99)] };
}

console.log(`createJob, ${JOBS} jobs at concurrency ${CONCURRENCY}, audio in S3 (s3rver), SQLite queue, no workers`);
for (const seconds of [1, 60]) {
  const audio = wavOf(seconds);
  for (const [name, create] of [
    ['multipart', multipart],
    ['presigned', presigned],
  ] as const) {
    const r = await run(create, audio);
    console.log(
      `  ${String(seconds).padStart(3)} s WAV (${(audio.length / 1e6).toFixed(2)} MB) ${name.padEnd(9)}: ${r.rate.toFixed(1).padStart(6)} jobs/s, p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms`,
    );
  }
}
server.kill();
await s3.close();
