// The service end to end against its own runtime, in one run on one machine:
// jobs sent at once to `murmur serve` with one embedded worker (fixed 30 s
// windows, the whisper-tiny-sized generated model, 100 tokens a window), timed
// from the first upload to the last job DONE; then, with --runtime, the
// runtime alone (the same recordings through transcribeMany, batch 16) with
// the same thread count.
//
// The burst (default): 48 × 20 s of recorded speech. Prints audio-seconds per
// wall-second, the first and median job's time to DONE, rows busy per decoder
// step and the worker's peak memory.
//
// --mixed: 4 × 10-minute and 40 × 5-second jobs at once (the long ones sent
// first). Prints whether every short job was done before any long one, the
// short jobs' median and p95 time to DONE against one short job alone on the
// idle server, the time from a long job's claim to its first partial segment,
// and the total throughput.
//
// --varied gives the jobs windows of different lengths (see below).
//
//   npx tsx bench/service-burst.ts [--mixed] [--varied] [--jobs 48] [--seconds 20] [--threads N] [--root <a murmur checkout>] [--runtime]
//
// --root runs another checkout's server (an older commit, for a before/after in the same run);
// --threads is passed as MURMUR_THREADS (unset: the server's default).
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import wav from 'node-wav';
import { WhisperModel } from '../src/whisper/index.ts';
import { transcribeMany } from '../src/whisper/longAudio.ts';
import { speechSegments, writeTinyModel } from './whisperSetup.ts';
import { startBenchServer } from './benchServer.ts';

const { values } = parseArgs({
  options: {
    mixed: { type: 'boolean', default: false },
    varied: { type: 'boolean', default: false },
    jobs: { type: 'string', default: '48' },
    seconds: { type: 'string', default: '20' },
    threads: { type: 'string' },
    root: { type: 'string', default: resolve(import.meta.dirname, '..') },
    runtime: { type: 'boolean', default: false },
    model: { type: 'string', default: join(tmpdir(), 'murmur-bench-whisper-tiny') },
  },
});
await writeTinyModel(values.model, 100);
interface Work {
  samples: Float32Array;
  name: string;
  long: boolean;
  prompt?: string;
}
const work: Work[] = values.mixed
  ? [
      ...speechSegments(4, 600).map((samples, i) => ({ samples, name: `long-${i}.wav`, long: true })),
      ...speechSegments(40, 5).map((samples, i) => ({ samples, name: `short-${i}.wav`, long: false })),
    ]
  : speechSegments(Number(values.jobs), Number(values.seconds)).map((samples, i) => ({ samples, name: `burst-${i}.wav`, long: false }));
// --varied: each job carries a prompt of 0 to 17 words (5 tokens each here). The generated model ends a window at
// a fixed position (100 tokens in), so a longer prompt leaves fewer tokens to decode: windows of 100 down to 15
// tokens, as real speech gives windows of different lengths.
if (values.varied) work.forEach((w, i) => (w.prompt = 'word '.repeat((i * 7) % 18).trim()));
const audioSeconds = work.reduce((t, w) => t + w.samples.length / 16000, 0);

const events: (Record<string, unknown> & { receivedAt: number })[] = [];
const server = await startBenchServer(
  {
    MURMUR_MODEL_DIR: values.model,
    MURMUR_MAX_WORKERS: '1',
    MURMUR_SEGMENTATION: 'fixed',
    ...(values.threads !== undefined && { MURMUR_THREADS: values.threads }),
  },
  { root: values.root, onEvent: (entry) => events.push({ ...entry, receivedAt: performance.now() }) },
);
const { url } = server;
const gql = async (query: string, variables = {}) =>
  (
    (await (
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) })
    ).json()) as any
  ).data;

async function upload(samples: Float32Array, name: string, prompt?: string): Promise<string> {
  const form = new FormData();
  form.set(
    'operations',
    JSON.stringify({
      query: 'mutation ($f: File!, $p: String) { createJob(input: { file: $f, language: "en", prompt: $p }) { id } }',
      variables: { f: null, p: prompt || null },
    }),
  );
  form.set('map', JSON.stringify({ 0: ['variables.f'] }));
  form.set('0', new Blob([new Uint8Array(wav.encode([samples], { sampleRate: 16000, float: false, bitDepth: 16 }))]), name);
  const body = (await (await fetch(url, { method: 'POST', body: form, headers: { 'graphql-preflight': '1' } })).json()) as any;
  return body.data.createJob.id;
}
async function untilDone(id: string): Promise<void> {
  while ((await gql(`{ job(id: "${id}") { status } }`)).job.status !== 'DONE') await new Promise((r) => setTimeout(r, 50));
}
// A first job loads the model, so what follows measures work, not start-up; a second, on the idle server, is the
// time one short job takes alone.
await untilDone(await upload(work[work.length - 1].samples.subarray(0, 16000 * 5), 'warm.wav'));
const aloneStarted = performance.now();
await untilDone(await upload(work[work.length - 1].samples, 'alone.wav'));
const alone = (performance.now() - aloneStarted) / 1000;
// With --mixed, the short jobs first go alone, at once: the fair baseline for their latency in the mix.
let shortOnly: number[] = [];
if (values.mixed) {
  const t0 = performance.now();
  const shorts = work.filter((w) => !w.long);
  shortOnly = await Promise.all(
    shorts.map(async (w) => {
      await untilDone(await upload(w.samples, w.name, w.prompt));
      return (performance.now() - t0) / 1000;
    }),
  );
  shortOnly.sort((a, b) => a - b);
}
const engineBefore = lastEngine();

const started = performance.now();
const ids = await Promise.all(work.map((w) => upload(w.samples, w.name, w.prompt)));
const doneAt = new Map<string, number>();
const firstPartialAt = new Map<string, number>();
const longIds = ids.filter((_, i) => work[i].long);
while (doneAt.size < ids.length) {
  const { jobs: page } = await gql(`{ jobs(first: 100, status: DONE) { nodes { id } } }`);
  for (const { id } of page.nodes) if (ids.includes(id) && !doneAt.has(id)) doneAt.set(id, (performance.now() - started) / 1000);
  for (const id of longIds.filter((id) => !firstPartialAt.has(id))) {
    const { job } = await gql(`{ job(id: "${id}") { result { partial } } }`);
    if (job.result) firstPartialAt.set(id, performance.now());
  }
  await new Promise((r) => setTimeout(r, 100));
}
const wall = (performance.now() - started) / 1000;
const threads = (events.find((e) => e.event === 'model.loaded') as { threads?: number } | undefined)?.threads ?? '(not logged)';
const peak = Math.max(0, ...events.filter((e) => e.event === 'batch.done').map((e) => Number(e.peakMiB)));
const engineAfter = lastEngine();
const rowsPerStep =
  engineAfter && engineBefore
    ? ((engineAfter.rowSteps - engineBefore.rowSteps) / (engineAfter.steps - engineBefore.steps)).toFixed(1)
    : '(not logged)';
const service = audioSeconds / wall;
const at = (list: number[], q: number) => list[Math.min(list.length - 1, Math.floor(q * list.length))];
const times = (long: boolean) =>
  ids
    .filter((_, i) => work[i].long === long)
    .map((id) => doneAt.get(id)!)
    .sort((a, b) => a - b);
console.log(
  `service (${values.root}): ${work.length} jobs, ${audioSeconds.toFixed(0)} audio-s in ${wall.toFixed(1)} s = ${service.toFixed(1)} audio-s/s; worker threads ${threads}; rows busy per decoder step ${rowsPerStep}; worker peak ${peak} MiB`,
);
if (values.mixed) {
  const short = times(false);
  const long = times(true);
  const claimedAt = (id: string) =>
    events.find((e) => e.event === 'jobs.claimed' && (e.jobIds as string[]).includes(id))?.receivedAt ?? NaN;
  const toPartial = longIds.map((id) => ((firstPartialAt.get(id) ?? NaN) - claimedAt(id)) / 1000);
  console.log(
    `mixed: short jobs done ${short[0].toFixed(1)}–${short.at(-1)!.toFixed(1)} s (median ${at(short, 0.5).toFixed(1)}, p95 ${at(short, 0.95).toFixed(1)} s; one alone ${alone.toFixed(1)} s: p95 ${(at(short, 0.95) / alone).toFixed(1)}×; the 40 alone at once: median ${at(shortOnly, 0.5).toFixed(1)}, p95 ${at(shortOnly, 0.95).toFixed(1)} s); long jobs done ${long.map((t) => t.toFixed(1)).join(', ')} s; every short before any long: ${short.at(-1)! < long[0]}; claim to first partial segment of the long jobs ${toPartial.map((t) => t.toFixed(1)).join(', ')} s`,
  );
} else {
  const all = times(false);
  console.log(`burst: first done ${all[0].toFixed(1)} s, median ${at(all, 0.5).toFixed(1)} s; one alone ${alone.toFixed(1)} s`);
}
await server.stop();

if (values.runtime) {
  const t = values.threads !== undefined ? Number(values.threads) : undefined;
  const model = await WhisperModel.load(values.model, { ...(t !== undefined && { threads: t }) });
  await model.transcribe([{ audio: work[0].samples.subarray(0, 16000 * 5), language: 'en' }]);
  const t0 = performance.now();
  await transcribeMany(
    model,
    work.map((w) => ({ samples: w.samples, language: 'en', prompt: w.prompt })),
    { batchSize: 16 },
  );
  const runtime = audioSeconds / ((performance.now() - t0) / 1000);
  console.log(
    `runtime alone (transcribeMany, batch 16, threads ${t ?? 'default'}) on the same recordings: ${runtime.toFixed(1)} audio-s/s; service / runtime = ${((100 * service) / runtime).toFixed(0)}%`,
  );
  await model.dispose();
}
process.exit(0);

function lastEngine(): { steps: number; rowSteps: number } | undefined {
  return events.filter((e) => e.event === 'batch.done' && e.engine).at(-1)?.engine as { steps: number; rowSteps: number } | undefined;
}
