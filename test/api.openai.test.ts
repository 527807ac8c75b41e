// The OpenAI-compatible routes, called by OpenAI's own npm package pointed at a
// real server with `baseURL`: every response format, both routes, the model
// list, errors in OpenAI's shape; each request a normal job, seen over GraphQL.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { speech } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { murmur, startServer, wavBytes, type Server } from './helpers/service.ts';

const MODEL_NAME = 'whisper-tiny-test';
let server: Server;
let key: string;
let openai: OpenAI;
const audio = wavBytes(speech('the quick brown fox jumps over the lazy dog'));
const file = (name = 'fox.wav', bytes: Uint8Array = audio) => toFile(bytes, name, { type: 'audio/wav' });
const client = (apiKey: string, url: string) => new OpenAI({ apiKey, baseURL: `${url.replace(/\/graphql$/, '')}/v1`, maxRetries: 0 });
const bearer = () => ({ authorization: `Bearer ${key}` });

beforeAll(async () => {
  server = await startServer({
    MURMUR_AUTH: 'keys',
    MURMUR_MODEL_DIR: await generatedModel(),
    MURMUR_MODEL_NAME: MODEL_NAME,
    MURMUR_MAX_WORKERS: '2',
    MURMUR_BATCH_JOBS: '8',
  });
  key = (await murmur(['keys', 'create', '--name', 'sdk', '--tenant', 'sdk'], { MURMUR_DATA_DIR: server.dataDir })).trim();
  openai = client(key, server.url);
}, 120_000);
afterAll(() => server?.stop());

/** The job behind an answer, over GraphQL. */
async function job(id: string | null) {
  expect(id).toBeTruthy();
  const { data, errors } = await server.gql(
    `query ($id: ID!) { job(id: $id) { id status options { task language prompt temperatures wordTimestamps } result { text language segments { start end text tokens seek avgLogprob compressionRatio noSpeechProb temperature } words { word start end } } } }`,
    { id },
    bearer(),
  );
  expect(errors).toBeUndefined();
  return data.job;
}

describe('OpenAI-compatible routes', () => {
  it('lists whisper-1 and the configured model; an unknown one is not found', async () => {
    const models = [];
    for await (const m of openai.models.list()) models.push(m);
    expect(models.map((m) => m.id)).toEqual(['whisper-1', MODEL_NAME]);
    expect((await openai.models.retrieve(MODEL_NAME)).object).toBe('model');
    const err = await openai.models.retrieve('gpt-4o-transcribe').catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.code).toBe('model_not_found');
  });

  it('answers in every response format, each a job batched with the others, the same text as GraphQL shows', async () => {
    const formats = ['json', 'text', 'srt', 'vtt', 'verbose_json'] as const;
    const answers = await Promise.all(
      formats.map(async (format, i) =>
        openai.audio.transcriptions
          .create({ file: await file(`${format}.wav`), model: i % 2 ? MODEL_NAME : 'whisper-1', language: 'en', response_format: format })
          .withResponse(),
      ),
    );
    const jobs = await Promise.all(answers.map((a) => job(a.response.headers.get('x-murmur-job-id'))));
    const texts = new Set(jobs.map((j) => j.result.text));
    expect(texts.size).toBe(1); // the same audio, the same model: the same text
    const [text] = texts;
    expect(text.length).toBeGreaterThan(0);
    for (const j of jobs)
      expect(j).toMatchObject({
        status: 'DONE',
        options: { task: 'TRANSCRIBE', language: 'en', temperatures: [0, 0.2, 0.4, 0.6, 0.8, 1] },
      });

    const [json, plain, srt, vtt, verbose] = answers.map((a) => a.data as any);
    expect(json).toMatchObject({ text, usage: { type: 'duration', seconds: expect.any(Number) } });
    expect(plain).toBe(`${text}\n`);
    expect(srt).toMatch(/^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S/);
    expect(vtt).toMatch(/^WEBVTT\n\n(1\n)?00:00:\d\d\.\d{3} --> 00:00:\d\d\.\d{3}\n\S/);
    expect(verbose).toMatchObject({ task: 'transcribe', language: 'english', text });
    expect(verbose.duration).toBeCloseTo(audio.length / 2 / 16000, 1);
    expect(verbose.words).toBeUndefined();
    // every segment field computed by the worker, as GraphQL has it
    const stored = jobs[4].result.segments;
    expect(verbose.segments).toEqual(
      stored.map((s: any, id: number) => ({
        id,
        seek: s.seek,
        start: s.start,
        end: s.end,
        text: s.text,
        tokens: s.tokens,
        temperature: s.temperature,
        avg_logprob: s.avgLogprob,
        compression_ratio: s.compressionRatio,
        no_speech_prob: s.noSpeechProb,
      })),
    );
    for (const s of verbose.segments) {
      // where its window (a speech chunk found by VAD) starts, in 10 ms frames: at or before the segment
      expect(Number.isInteger(s.seek)).toBe(true);
      expect(s.seek).toBeLessThanOrEqual(Math.round(s.start * 100));
      expect(s.tokens.length).toBeGreaterThan(1);
      expect(s.tokens.every((t: unknown) => Number.isInteger(t))).toBe(true);
      expect(s.avg_logprob).toBeLessThan(0);
      expect(s.compression_ratio).toBeGreaterThan(0);
      expect([0, 0.2, 0.4, 0.6, 0.8, 1]).toContain(s.temperature); // openai/whisper's fallback, as OpenAI's temperature 0 means
    }
  });

  it('gives word timings for timestamp_granularities[]=word, with the segments only when asked too', async () => {
    const both = await openai.audio.transcriptions
      .create({ file: await file(), model: 'whisper-1', response_format: 'verbose_json', timestamp_granularities: ['word', 'segment'] })
      .withResponse();
    const stored = await job(both.response.headers.get('x-murmur-job-id'));
    expect(stored.options.wordTimestamps).toBe(true);
    expect(both.data.words!.length).toBeGreaterThan(2);
    expect(both.data.words).toEqual(stored.result.words.map((w: any) => ({ word: w.word.trim(), start: w.start, end: w.end })));
    expect(both.data.segments!.length).toBeGreaterThan(0);
    const words = await openai.audio.transcriptions.create({
      file: await file(),
      model: 'whisper-1',
      response_format: 'verbose_json',
      timestamp_granularities: ['word'],
    });
    expect(words.words!.length).toBeGreaterThan(2);
    expect(words.segments).toBeUndefined();
  });

  it('translates, and passes the prompt and the temperature on to the job', async () => {
    const translated = await openai.audio.translations
      .create({ file: await file(), model: 'whisper-1', response_format: 'verbose_json', prompt: 'Fox, dog.', temperature: 0.3 })
      .withResponse();
    expect((translated.data as any).task).toBe('translate');
    const stored = await job(translated.response.headers.get('x-murmur-job-id'));
    expect(stored.options).toMatchObject({ task: 'TRANSLATE', prompt: 'Fox, dog.', temperatures: [0.3] });
    expect(stored.result.segments[0].temperature).toBeCloseTo(0.3, 5);
    expect(translated.data.text).toBe(stored.result.text);
  });

  it('streams with stream=true as the SDK reads it: text deltas as windows are done, then the whole text', async () => {
    // Two minutes of speech and pauses: several windows, so the text grows.
    const fox = speech('the quick brown fox jumps over the lazy dog');
    const long = new Float32Array(16000 * 120);
    for (let at = 0; at + fox.length < long.length; at += fox.length + 16000 * 3) long.set(fox, at);
    const events: { type: string; delta?: string; text?: string }[] = [];
    const stream = await openai.audio.transcriptions.create({
      file: await file('long.wav', wavBytes(long)),
      model: 'whisper-1',
      stream: true,
    });
    for await (const event of stream) events.push(event);
    const done = events.at(-1)!;
    expect(done.type).toBe('transcript.text.done');
    const deltas = events.slice(0, -1);
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.every((e) => e.type === 'transcript.text.delta')).toBe(true);
    expect(deltas.map((e) => e.delta).join('')).toBe(done.text);
    // The same text as the answer without streaming.
    const whole = await openai.audio.transcriptions.create({ file: await file('long.wav', wavBytes(long)), model: 'whisper-1' });
    expect(done.text).toBe(whole.text);
  });

  it("refuses in OpenAI's error shape, with fitting statuses", async () => {
    const refusal = async (call: Promise<unknown>) => {
      const err = await call.then(
        () => null,
        (e) => e,
      );
      expect(err).toBeInstanceOf(OpenAI.APIError);
      return { status: err.status, code: err.code, param: err.param, type: err.type, message: err.message };
    };
    expect(
      await refusal(client('mk_not-a-key', server.url).audio.transcriptions.create({ file: await file(), model: 'whisper-1' })),
    ).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(await refusal(openai.audio.transcriptions.create({ file: await file(), model: 'gpt-4o-transcribe' }))).toMatchObject({
      status: 404,
      code: 'model_not_found',
      param: 'model',
    });
    expect(
      await refusal(openai.audio.transcriptions.create({ file: await file(), model: 'whisper-1', response_format: 'mp3' as never })),
    ).toMatchObject({ status: 400, param: 'response_format', type: 'invalid_request_error' });
    expect(
      await refusal(openai.audio.transcriptions.create({ file: await file(), model: 'whisper-1', timestamp_granularities: ['word'] })),
    ).toMatchObject({ status: 400, param: 'timestamp_granularities' });
    expect(await refusal(openai.audio.transcriptions.create({ file: await file(), model: 'whisper-1', temperature: 3 }))).toMatchObject({
      status: 400,
      param: 'temperature',
    });
    expect(
      await refusal(openai.audio.transcriptions.create({ file: await file(), model: 'whisper-1', language: 'klingon' })),
    ).toMatchObject({ status: 400, code: 'unknown_language', param: 'language' });
    expect(
      await refusal(
        openai.audio.transcriptions.create({
          file: await file('notes.wav', new TextEncoder().encode('not audio at all')),
          model: 'whisper-1',
        }),
      ),
    ).toMatchObject({ status: 400, code: 'audio_undecodable' });
    expect(
      await refusal(openai.audio.translations.create({ file: await file(), model: 'whisper-1', language: 'en' } as never)),
    ).toMatchObject({ status: 400, param: 'language', code: 'unknown_parameter' });
    // without the SDK: no file, not multipart
    const form = new FormData();
    form.set('model', 'whisper-1');
    const noFile = await fetch(`${server.url.replace(/\/graphql$/, '')}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: bearer(),
      body: form,
    });
    expect(noFile.status).toBe(400);
    expect(await noFile.json()).toEqual({
      error: { message: expect.stringContaining('file'), type: 'invalid_request_error', param: 'file', code: null },
    });
    // a second file is refused, not dropped unseen
    const two = new FormData();
    two.set('model', 'whisper-1');
    two.append('file', new Blob([new Uint8Array(wavBytes(speech('one')))]), 'one.wav');
    two.append('file', new Blob([new Uint8Array(wavBytes(speech('two')))]), 'two.wav');
    const twoFiles = await fetch(`${server.url.replace(/\/graphql$/, '')}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: bearer(),
      body: two,
    });
    expect(twoFiles.status).toBe(413);
    expect(await twoFiles.json()).toMatchObject({
      error: { code: 'input_too_large', message: expect.stringContaining('more than 1 file') },
    });
    const notMultipart = await fetch(`${server.url.replace(/\/graphql$/, '')}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { ...bearer(), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(notMultipart.status).toBe(400);
    // nothing refused was kept: every upload above is gone (the earlier tests' jobs are done, and their audio with them)
    await vi.waitFor(() => expect(readdirSync(join(server.dataDir, 'blobs', 'uploads'))).toEqual([]), { timeout: 5000 });
  });
});

describe('OpenAI-compatible routes while no worker takes the job', () => {
  let idle: Server;
  let idleKey: string;
  beforeAll(async () => {
    idle = await startServer({
      MURMUR_AUTH: 'keys',
      MURMUR_MAX_WORKERS: '0',
      MURMUR_SYNC_TIMEOUT_SECONDS: '2',
      MURMUR_KEY_MAX_PENDING: '3',
    });
    idleKey = (await murmur(['keys', 'create', '--name', 'idle', '--tenant', 'idle'], { MURMUR_DATA_DIR: idle.dataDir })).trim();
  }, 120_000);
  afterAll(() => idle?.stop());
  const pending = async () =>
    (
      await idle.gql(`{ jobs(first: 50) { edges { node { id status } } } }`, {}, { authorization: `Bearer ${idleKey}` })
    ).data.jobs.edges.map((e: any) => e.node);

  it("answers 504 with the job's id past MURMUR_SYNC_TIMEOUT_SECONDS, and the job goes on", async () => {
    const err = await client(idleKey, idle.url)
      .audio.transcriptions.create({ file: await file(), model: 'whisper-1' })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(504);
    expect(err.code).toBe('timeout');
    const id = err.error.job_id;
    expect(err.headers.get('x-murmur-job-id')).toBe(id);
    expect((await pending()).find((j: any) => j.id === id)?.status).toBe('PENDING');
  });

  it('cancels the job of a client that hangs up', async () => {
    const before = new Set((await pending()).map((j: any) => j.id));
    const hangUp = new AbortController();
    const call = client(idleKey, idle.url)
      .audio.transcriptions.create({ file: await file(), model: 'whisper-1' }, { signal: hangUp.signal })
      .catch((e) => e);
    const created = await vi.waitFor(
      async () => {
        const fresh = (await pending()).filter((j: any) => !before.has(j.id));
        expect(fresh).toHaveLength(1);
        return fresh[0];
      },
      { timeout: 5000 },
    );
    expect(created.status).toBe('PENDING');
    hangUp.abort();
    expect(await call).toBeInstanceOf(OpenAI.APIUserAbortError);
    await vi.waitFor(async () => expect((await pending()).find((j: any) => j.id === created.id)?.status).toBe('CANCELLED'), {
      timeout: 5000,
    });
  });

  it("keeps to the key's limits: over its pending jobs, 429 with Retry-After", async () => {
    const sdk = client(idleKey, idle.url);
    // one job is still pending from the timeout test; two more fill the limit of 3 (each answers 504 after 2 s)
    const fill = await Promise.all(
      [0, 1].map(async () => sdk.audio.transcriptions.create({ file: await file(), model: 'whisper-1' }).catch((e) => e)),
    );
    expect(fill.map((e) => e.status)).toEqual([504, 504]);
    const err = await sdk.audio.transcriptions.create({ file: await file(), model: 'whisper-1' }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('rate_limited');
    expect(Number(err.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});
