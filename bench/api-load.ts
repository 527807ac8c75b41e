// Load on the API alone: createJob with a small WAV (multipart) and job(id)
// queries, from autocannon against `murmur serve` in a child process (no
// workers, so the numbers are the API's and the queue's). Prints requests per
// second and latency percentiles. Needs ffmpeg for the MP3 case.
//
//   npm run bench:api            (or: npx tsx bench/api-load.ts [--seconds 10] [--connections 10])
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import wav from 'node-wav';
import { syntheticShape, writeSyntheticModel } from '../src/whisper/synthetic/index.ts';
import { startBenchServer } from './benchServer.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, connections: { type: 'string', default: '10' } } });
const duration = Number(values.seconds);
const connections = Number(values.connections);

const dir = mkdtempSync(join(tmpdir(), 'murmur-bench-api-'));
await writeSyntheticModel(join(dir, 'model'), syntheticShape('test'), 1);
// Keys off (loopback): the numbers are the API's and the queue's.
const server = await startBenchServer({ MURMUR_MODEL_DIR: join(dir, 'model'), MURMUR_MAX_WORKERS: '0' });
const { url } = server;

// One second of a 440 Hz tone: 32 kB of 16-bit PCM.
const samples = Float32Array.from({ length: 16000 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / 16000));
const audio = Buffer.from(wav.encode([samples], { sampleRate: 16000, float: false, bitDepth: 16 }));
const boundary = 'murmurbenchboundary';
const part = (name: string, body: Buffer | string, filename?: string) =>
  Buffer.concat([
    Buffer.from(
      `--${boundary}\r\ncontent-disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n${filename ? 'content-type: audio/wav\r\n' : ''}\r\n`,
    ),
    Buffer.isBuffer(body) ? body : Buffer.from(body),
    Buffer.from('\r\n'),
  ]);
const multipartOf = (file: Buffer, name: string) =>
  Buffer.concat([
    part(
      'operations',
      JSON.stringify({ query: 'mutation ($file: File!) { createJob(input: { file: $file }) { id status } }', variables: { file: null } }),
    ),
    part('map', JSON.stringify({ 0: ['variables.file'] })),
    part('0', file, name),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
const multipart = multipartOf(audio, 'tone.wav');
// The same second as MP3: compressed uploads are probed by ffprobe and decoded whole by ffmpeg (two processes each).
writeFileSync(join(dir, 'tone.wav'), audio);
execFileSync('ffmpeg', ['-v', 'error', '-i', join(dir, 'tone.wav'), '-b:a', '64k', join(dir, 'tone.mp3')]);
const mp3 = readFileSync(join(dir, 'tone.mp3'));

const first = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'graphql-preflight': '1' },
  body: multipart,
}).then((r) => r.json());
const id = first.data.createJob.id;

async function load(title: string, opts: Omit<autocannon.Options, 'url'>) {
  const r = await autocannon({ ...opts, url, connections, duration, method: 'POST' });
  console.log(
    `${title.padEnd(34)} ${r.requests.average.toFixed(0).padStart(6)} req/s   latency p50 ${r.latency.p50} ms  p90 ${r.latency.p90} ms  p99 ${r.latency.p99} ms   ` +
      `errors ${r.errors + r.non2xx} of ${r.requests.total}`,
  );
}

console.log(`murmur API on ${url}: ${connections} connections, ${duration} s each, 2 cores shared by server and load generator`);
await load('createJob (1 s WAV, 32 kB)', {
  headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'graphql-preflight': '1' },
  body: multipart,
});
await load(`createJob (1 s MP3, ${(mp3.length / 1000).toFixed(0)} kB)`, {
  headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'graphql-preflight': '1' },
  body: multipartOf(mp3, 'tone.mp3'),
});
// GraphQL errors travel with status 200: count the jobs that really exist.
const stats = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ query: '{ queue { pending } }' }),
}).then((r) => r.json());
console.log(`${''.padEnd(34)} jobs in the queue afterwards: ${stats.data.queue.pending}`);
await load('job(id) query', {
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ query: `{ job(id: "${id}") { id status progress input { durationSeconds } } }` }),
});
await load('queue stats', {
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ query: '{ queue { pending processing done failed workers } }' }),
});
await server.stop();
