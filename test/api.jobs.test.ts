// A job's life over the real API: HTTP, multipart upload, graphql-ws and SSE
// subscriptions, with real worker child processes and a generated model.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { collect, startServer, wavBytes, type Server } from './helpers/service.ts';

let model: string;
let server: Server;
const hello = () => wavBytes(speech('hello from the job service'));

beforeAll(async () => {
  model = await generatedModel();
  server = await startServer({ MURMUR_MODEL_DIR: model, MURMUR_MAX_WORKERS: '2', MURMUR_BATCH_JOBS: '8' });
});
afterAll(() => server?.stop());

const FOLLOW = `subscription ($id: ID!) { jobUpdated(id: $id) { id status progress attempts result { text language model segments { start end text } srt vtt } } }`;

describe('a job', () => {
  it('goes PENDING → PROCESSING → DONE, and a graphql-ws subscription sees each step', async () => {
    const created = await server.upload(hello(), 'hello.wav', { language: 'en' });
    expect(created.errors).toBeUndefined();
    const job = created.data.createJob;
    expect(job).toMatchObject({
      status: 'PENDING',
      attempts: 0,
      input: { filename: 'hello.wav', format: 'wav', sampleRate: 16000, channels: 1 },
    });
    expect(job.input.durationSeconds).toBeGreaterThan(0.5);

    const client = server.ws();
    const updates = await collect<{ jobUpdated: any }>(client, FOLLOW, { id: job.id });
    await client.dispose();
    const statuses = updates.map((u) => u.jobUpdated.status);
    // The first update is the job as it was when the subscription started; a fast worker may have taken it already.
    expect(statuses.at(-1)).toBe('DONE');
    expect(statuses).toContain('PROCESSING');
    expect(statuses.indexOf('PROCESSING')).toBeLessThan(statuses.indexOf('DONE'));
    const done = updates.at(-1)!.jobUpdated;
    expect(done).toMatchObject({ attempts: 1, progress: 1 });
    expect(done.result.language).toBe('en');
    expect(done.result.text.length).toBeGreaterThan(0);
    expect(done.result.model).toMatch(/synthetic.*meaningless/);
    expect(done.result.segments.length).toBeGreaterThan(0);
    expect(done.result.srt).toMatch(/^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n/);
    expect(done.result.vtt).toMatch(/^WEBVTT\n\n(1\n)?\d\d:\d\d:\d\d\.\d{3} --> /);

    const read = await server.gql(`query ($id: ID!) { job(id: $id) { status result { text } startedAt finishedAt } }`, { id: job.id });
    expect(read.data.job).toMatchObject({ status: 'DONE', result: { text: done.result.text } });
    expect(Date.parse(read.data.job.finishedAt)).toBeGreaterThanOrEqual(Date.parse(read.data.job.startedAt));
    // The audio of a finished job is deleted (it was the only job); the transcript stays.
    await vi.waitFor(() => expect(readdirSync(join(server.dataDir, 'blobs', 'uploads'))).toEqual([]), { timeout: 5000 });
  });

  it('can be followed over SSE too', async () => {
    const { data } = await server.upload(hello(), 'sse.wav');
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: FOLLOW, variables: { id: data.createJob.id } }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const text = await res.text(); // the stream ends when the job finishes
    const events = [...text.matchAll(/^event: next\ndata: (.+)$/gm)].map((m) => JSON.parse(m[1]).data.jobUpdated.status);
    expect(events.at(-1)).toBe('DONE');
  });

  it('20 jobs created at once are processed in batches and all finish', async () => {
    const before = server.events.length;
    const audio = hello();
    const created = await Promise.all(Array.from({ length: 20 }, (_, i) => server.upload(audio, `burst-${i}.wav`)));
    const ids = created.map((c) => c.data.createJob.id as string);
    const client = server.ws();
    const finals = await Promise.all(
      ids.map((id) => collect<{ jobUpdated: any }>(client, FOLLOW, { id }).then((u) => u.at(-1)!.jobUpdated)),
    );
    await client.dispose();
    expect(finals.every((j) => j.status === 'DONE' && j.attempts === 1)).toBe(true);
    // The same audio gives the same transcript, whatever else shared its batch.
    expect(new Set(finals.map((j) => JSON.stringify(j.result.segments))).size).toBe(1);
    // What the workers reported: batch sizes of their claims.
    const batches = server.events
      .slice(before)
      .filter((e) => e.event === 'batch.started')
      .map((e) => (e.jobIds as string[]).length);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(20);
    expect(Math.max(...batches)).toBeGreaterThan(1);
    // 20 jobs at 8 a batch want more than one worker: the server started a second (its maximum).
    expect(server.events.filter((e) => e.event === 'worker.started')).toHaveLength(2);
  });

  it("decodes with the options it was created with, and each segment carries its window's confidence", async () => {
    const audio = hello();
    const select = 'id options { prompt conditionOnPreviousText temperatures seed beamSize patience lengthPenalty }';
    const sampled = { language: 'en', temperatures: [1], seed: 42 };
    const created = await Promise.all([
      server.upload(audio, 'plain.wav', { language: 'en' }, select),
      server.upload(audio, 'prompted.wav', { language: 'en', prompt: 'Murmur, Whisper' }, select),
      server.upload(audio, 'sampled-a.wav', sampled, select),
      server.upload(audio, 'sampled-b.wav', sampled, select),
      server.upload(audio, 'sampled-c.wav', { ...sampled, seed: 43 }, select),
      server.upload(audio, 'beams.wav', { language: 'en', beamSize: 3, patience: 2, lengthPenalty: 1 }, select),
    ]);
    const none = {
      prompt: null,
      conditionOnPreviousText: false,
      temperatures: [0],
      seed: 0,
      beamSize: null,
      patience: null,
      lengthPenalty: null,
    };
    expect(created[0].data.createJob.options).toEqual(none);
    expect(created[2].data.createJob.options).toEqual({ ...none, temperatures: [1], seed: 42 });
    expect(created[5].data.createJob.options).toEqual({ ...none, beamSize: 3, patience: 2, lengthPenalty: 1 });
    expect(created[1].data.createJob.options.prompt).toBe('Murmur, Whisper');
    const client = server.ws();
    const follow =
      'subscription ($id: ID!) { jobUpdated(id: $id) { status result { text segments { start end text avgLogprob compressionRatio noSpeechProb temperature } } } }';
    const [plain, prompted, a, b, c, beams] = await Promise.all(
      created.map((r) => collect<{ jobUpdated: any }>(client, follow, { id: r.data.createJob.id }).then((u) => u.at(-1)!.jobUpdated)),
    );
    await client.dispose();
    for (const job of [plain, prompted, a, b, c, beams]) {
      expect(job.status).toBe('DONE');
      for (const seg of job.result.segments) {
        expect(seg.avgLogprob).toBeLessThan(0);
        expect(seg.compressionRatio).toBeGreaterThan(0);
        expect(seg.noSpeechProb).toBeGreaterThanOrEqual(0);
        expect(seg.noSpeechProb).toBeLessThanOrEqual(1);
      }
    }
    expect(plain.result.segments[0].temperature).toBe(0);
    expect(a.result.segments[0].temperature).toBe(1);
    // a prompt changes the text; a seed replays it; another seed samples another
    expect(prompted.result.text).not.toBe(plain.result.text);
    expect(b.result.text).toBe(a.result.text);
    expect(new Set([plain.result.text, a.result.text, c.result.text]).size).toBe(3);
  });

  it('times words when asked: in segments, in the transcript, and as word-level subtitles', async () => {
    const audio = hello();
    const [timed, plain] = await Promise.all([
      server.upload(audio, 'words.wav', { language: 'en', wordTimestamps: true }, 'id options { wordTimestamps }'),
      server.upload(audio, 'nowords.wav', { language: 'en' }),
    ]);
    expect(timed.data.createJob.options.wordTimestamps).toBe(true);
    const client = server.ws();
    const follow =
      'subscription ($id: ID!) { jobUpdated(id: $id) { status result { segments { start end text words { word start end probability } } words { word start end } srt(wordLevel: true) vtt(wordLevel: true) } } }';
    const job = (await collect<{ jobUpdated: any }>(client, follow, { id: timed.data.createJob.id })).at(-1)!.jobUpdated;
    const plainJob = (
      await collect<{ jobUpdated: any }>(
        client,
        'subscription ($id: ID!) { jobUpdated(id: $id) { status result { words { word } segments { words { word } } } } }',
        { id: plain.data.createJob.id },
      )
    ).at(-1)!.jobUpdated;
    await client.dispose();
    expect(job.status).toBe('DONE');
    const words = job.result.segments.flatMap((s: any) => s.words);
    expect(words.length).toBeGreaterThan(2);
    expect(job.result.words.map((w: any) => w.word)).toEqual(words.map((w: any) => w.word));
    expect(
      words
        .map((w: any) => w.word)
        .join('')
        .trim(),
    ).toBe(
      job.result.segments
        .map((s: any) => s.text)
        .join(' ')
        .trim(),
    );
    for (const s of job.result.segments)
      for (const w of s.words) expect(w.start >= s.start - 1e-9 && w.end <= s.end + 1e-9 && w.probability > 0).toBe(true);
    // one cue a word
    expect(job.result.srt.match(/ --> /g).length).toBe(words.length);
    expect(job.result.vtt.match(/ --> /g).length).toBe(words.length);
    // a job without word timings has none, and no word-level subtitles
    expect(plainJob.status).toBe('DONE');
    expect(plainJob.result.words).toBeNull();
    expect(plainJob.result.segments.every((s: any) => s.words === null)).toBe(true);
    const refused = await server.gql('query ($id: ID!) { job(id: $id) { result { srt(wordLevel: true) } } }', {
      id: plain.data.createJob.id,
    });
    expect(refused.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('a model that cannot time words fails only the job that asked (INVALID_OPTIONS), not its batch', async () => {
    const dir = await generatedModel({ crossAttentions: false }, 2);
    const other = await startServer({
      MURMUR_MODEL_DIR: dir,
      MURMUR_MAX_WORKERS: '1',
      MURMUR_BATCH_JOBS: '8',
      MURMUR_BATCH_WINDOW_MS: '1000',
    });
    try {
      const audio = hello();
      const created = await Promise.all([
        other.upload(audio, 'a.wav', { language: 'en', wordTimestamps: true }),
        other.upload(audio, 'b.wav', { language: 'en' }),
      ]);
      const client = other.ws();
      const finals = await Promise.all(
        created.map((c) =>
          collect<{ jobUpdated: any }>(
            client,
            'subscription ($id: ID!) { jobUpdated(id: $id) { status attempts error { code message } } }',
            { id: c.data.createJob.id },
          ).then((u) => u.at(-1)!.jobUpdated),
        ),
      );
      await client.dispose();
      expect(finals[0]).toMatchObject({ status: 'FAILED', attempts: 1, error: { code: 'INVALID_OPTIONS' } });
      expect(finals[0].error.message).toMatch(/cross-attention/);
      expect(finals[1].status).toBe('DONE');
    } finally {
      await other.stop();
    }
  });

  it('refuses decoding options out of range, with BAD_USER_INPUT', async () => {
    for (const input of [
      { temperatures: [1.5] },
      { temperatures: [] },
      { prompt: 'x'.repeat(4001) },
      { beamSize: 0 },
      { beamSize: 17 },
      { patience: 2 },
      { beamSize: 2, lengthPenalty: -1 },
    ]) {
      const res = await server.upload(hello(), 'bad.wav', input);
      expect(res.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    }
  });

  it('an idempotency key returns the same job instead of a second one', async () => {
    const first = await server.upload(hello(), 'a.wav', { idempotencyKey: 'client-key-1' });
    const again = await server.upload(hello(), 'b.wav', { idempotencyKey: 'client-key-1' });
    expect(again.data.createJob.id).toBe(first.data.createJob.id);
    expect(again.data.createJob.input.filename).toBe('a.wav');
    const page = await server.gql(`{ jobs(first: 100) { nodes { input { filename } } } }`);
    expect(page.data.jobs.nodes.filter((n: any) => n.input.filename === 'b.wav')).toEqual([]);
  });

  it('pages through jobs newest first with a cursor', async () => {
    const one = await server.gql(`{ jobs(first: 2) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }`);
    const two = await server.gql(`query ($after: String) { jobs(first: 2, after: $after) { nodes { id } } }`, {
      after: one.data.jobs.pageInfo.endCursor,
    });
    expect(one.data.jobs.pageInfo.hasNextPage).toBe(true);
    expect(two.data.jobs.nodes).toHaveLength(2);
    const ids = [...one.data.jobs.edges.map((e: any) => e.node.id), ...two.data.jobs.nodes.map((n: any) => n.id)];
    expect(new Set(ids).size).toBe(4);
    const done = await server.gql(`{ jobs(status: DONE, first: 100) { nodes { status } } queue { done pending } }`);
    expect(done.data.jobs.nodes.every((n: any) => n.status === 'DONE')).toBe(true);
    expect(done.data.queue.done).toBe(done.data.jobs.nodes.length);
  });

  it('the committed schema file is the schema the server serves', async () => {
    const printed = execFileSync(process.execPath, [new URL('../src/cli/bin.js', import.meta.url).pathname, 'schema'], {
      encoding: 'utf8',
    });
    expect(readFileSync(new URL('../schema/schema.graphql', import.meta.url), 'utf8')).toBe(printed);
    expect(printed).toMatch(/jobUpdated\(id: ID!\): Job!/);
  });
});
