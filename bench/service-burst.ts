// The service end to end against its own runtime, in one run on one machine:
// a burst of jobs (48 × 20 s of recorded speech by default) sent at once to
// `murmur serve` with one embedded worker (fixed 30 s windows, the
// whisper-tiny-sized generated model, 100 tokens a window), timed from the
// first upload to the last job DONE; then the runtime alone
// (WhisperModel.transcribe, batch 16) on 16 of the same recordings with the
// same thread count. Prints audio-seconds per wall-second for both, their
// ratio, the first and median job's time to DONE and the worker's peak memory.
//
//   npx tsx bench/service-burst.ts [--jobs 48] [--seconds 20] [--threads N] [--root <a murmur checkout>] [--runtime]
//
// --root runs another checkout's server (an older commit, for a before/after in the same run);
// --threads is passed as MURMUR_THREADS (unset: the server's default); --runtime also times the runtime alone.
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import wav from 'node-wav';
import { WhisperModel } from '../src/whisper/index.ts';
import { speechSegments, writeTinyModel } from './whisperSetup.ts';
import { startBenchServer } from './benchServer.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '48' },
    seconds: { type: 'string', default: '20' },
    threads: { type: 'string' },
    root: { type: 'string', default: resolve(import.meta.dirname, '..') },
    runtime: { type: 'boolean', default: false },
    model: { type: 'string', default: join(tmpdir(), 'murmur-bench-whisper-tiny') },
  },
});
const jobs = Number(values.jobs);
const seconds = Number(values.seconds);
await writeTinyModel(values.model, 100);
const audios = speechSegments(jobs, seconds);

const events: Record<string, unknown>[] = [];
const server = await startBenchServer(
  {
    MURMUR_MODEL_DIR: values.model,
    MURMUR_MAX_WORKERS: '1',
    MURMUR_SEGMENTATION: 'fixed',
    ...(values.threads !== undefined && { MURMUR_THREADS: values.threads }),
  },
  { root: values.root, onEvent: (entry) => events.push(entry) },
);
const { url } = server;
const gql = async (query: string, variables = {}) =>
  (
    (await (
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) })
    ).json()) as any
  ).data;

// A first job loads the model, so the burst measures work, not start-up.
async function upload(samples: Float32Array, name: string): Promise<string> {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({ query: 'mutation ($f: File!) { createJob(input: { file: $f, language: "en" }) { id } }', variables: { f: null } }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.f'] }));
  form.set('0', new Blob([new Uint8Array(wav.encode([samples], { sampleRate: 16000, float: false, bitDepth: 16 }))]), name);
  const body = (await (await fetch(url, { method: 'POST', body: form, headers: { 'graphql-preflight': '1' } })).json()) as any;
  return body.data.createJob.id;
}
const warm = await upload(audios[0].subarray(0, 16000 * 5), 'warm.wav');
while ((await gql(`{ job(id: "${warm}") { status } }`)).job.status !== 'DONE') await new Promise((r) => setTimeout(r, 200));

const started = performance.now();
const ids = await Promise.all(audios.map((a, i) => upload(a, `burst-${i}.wav`)));
const doneAt = new Map<string, number>();
while (doneAt.size < ids.length) {
  const { jobs: page } = await gql(`{ jobs(first: 100, status: DONE) { nodes { id } } }`);
  for (const { id } of page.nodes) if (ids.includes(id) && !doneAt.has(id)) doneAt.set(id, (performance.now() - started) / 1000);
  await new Promise((r) => setTimeout(r, 100));
}
const wall = (performance.now() - started) / 1000;
const times = [...doneAt.values()].sort((a, b) => a - b);
const threads = (events.find((e) => e.event === 'model.loaded') as { threads?: number } | undefined)?.threads ?? '(not logged)';
const peak = Math.max(0, ...events.filter((e) => e.event === 'batch.done').map((e) => Number(e.peakMiB)));
const service = (jobs * seconds) / wall;
console.log(
  `service (${values.root}): ${jobs} × ${seconds} s in ${wall.toFixed(1)} s = ${service.toFixed(1)} audio-s/s; first done ${times[0].toFixed(1)} s, median ${times[Math.floor(times.length / 2)].toFixed(1)} s; worker threads ${threads}; worker peak ${peak} MiB`,
);
await server.stop();

if (values.runtime) {
  const t = values.threads !== undefined ? Number(values.threads) : undefined;
  const model = await WhisperModel.load(values.model, { ...(t !== undefined && { threads: t }) });
  const batch = audios.slice(0, 16).map((audio) => ({ audio, language: 'en' }));
  await model.transcribe(batch.slice(0, 2), { batchSize: 2 });
  const t0 = performance.now();
  await model.transcribe(batch, { batchSize: 16 });
  const runtime = (16 * seconds) / ((performance.now() - t0) / 1000);
  console.log(
    `runtime alone, batch 16, threads ${t ?? 'default'}: ${runtime.toFixed(1)} audio-s/s; service / runtime = ${((100 * service) / runtime).toFixed(0)}%`,
  );
  await model.dispose();
}
process.exit(0);
