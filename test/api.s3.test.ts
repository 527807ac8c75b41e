// Audio in S3 (a real S3-compatible server) through the real API: presigned
// uploads that bypass the API, presigned downloads that bypass it for workers,
// the same refusals as multipart uploads, and uploads no job took expiring.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { startS3, type S3Server } from './helpers/s3.ts';
import { collect, startServer, wavBytes, type Server } from './helpers/service.ts';
import { S3BlobStore } from '../src/storage/s3BlobStore.ts';
import { expireUploads } from '../src/service.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readConfig } from '../src/config.ts';
import { queueOptions } from '../src/queue/open.ts';
import { openDatabase } from '../src/queue/sqlite/database.ts';
import { SqliteQueue } from '../src/queue/sqlite/sqliteQueue.ts';

let s3: S3Server;
let server: Server;
let store: S3BlobStore;
const MAX_BYTES = 200_000;

beforeAll(async () => {
  s3 = await startS3();
  store = new S3BlobStore({ bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, prefix: '' });
  server = await startServer({
    ...s3.env,
    MURMUR_MODEL_DIR: await generatedModel(),
    MURMUR_MAX_WORKERS: '0',
    MURMUR_MAX_UPLOAD_BYTES: String(MAX_BYTES),
  });
});
afterAll(async () => {
  await server?.stop();
  await s3?.close();
});

const CREATE = `mutation ($input: CreateJobInput!) { createJob(input: $input) { id status input { filename bytes format durationSeconds } } }`;
const CLAIM = `mutation { claimJobs(input: { workerId: "w", maxJobs: 10, maxSeconds: 1000 }) { leaseToken audioUrl job { id } } }`;

async function presignedUpload(bytes: Uint8Array, filename: string): Promise<string> {
  const { data } = await server.gql(
    `mutation ($f: String!) { createUpload(input: { filename: $f }) { key url headers { name value } expiresAt } }`,
    { f: filename },
  );
  const { key, url, headers, expiresAt } = data.createUpload;
  expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());
  // Straight to the store, not through the API.
  expect(url.startsWith(s3.endpoint)).toBe(true);
  const put = await fetch(url, {
    method: 'PUT',
    body: Buffer.from(bytes),
    headers: Object.fromEntries(headers.map((h: { name: string; value: string }) => [h.name, h.value])),
  });
  expect(put.status).toBe(200);
  return key;
}

describe('audio in S3', () => {
  it('a presigned upload becomes a job; the worker downloads it from the store, not the API; the audio goes when the job is done', async () => {
    const audio = wavBytes(tone(300, 2));
    const key = await presignedUpload(audio, 'räume große.wav');
    const created = await server.gql(CREATE, { input: { uploadKey: key } });
    expect(created.errors).toBeUndefined();
    expect(created.data.createJob).toMatchObject({ status: 'PENDING', input: { bytes: audio.length, format: 'wav', durationSeconds: 2 } });
    expect(created.data.createJob.input.filename).toMatch(/\.wav$/);

    const claimed = await server.worker(CLAIM);
    const [lease] = claimed.data.claimJobs;
    expect(lease.audioUrl.startsWith(s3.endpoint)).toBe(true);
    // No worker token needed: the URL carries its own signature.
    const fetched = Buffer.from(await (await fetch(lease.audioUrl)).arrayBuffer());
    expect(fetched.equals(Buffer.from(audio))).toBe(true);

    const client = server.ws();
    const follow = collect<{ jobUpdated: { status: string } }>(client, `subscription ($id: ID!) { jobUpdated(id: $id) { status } }`, {
      id: lease.job.id,
    });
    const done = await server.worker(
      `mutation ($id: ID!, $t: Int!) { completeJob(jobId: $id, leaseToken: $t, result: { text: "t", language: "en", model: "m", segments: [] }) { status } }`,
      { id: lease.job.id, t: lease.leaseToken },
    );
    expect(done.data.completeJob.status).toBe('DONE');
    expect((await follow).at(-1)!.jobUpdated.status).toBe('DONE');
    await client.dispose();
    await expect.poll(() => store.size(key)).toBeNull();
  });

  it('a multipart upload is stored in the bucket too', async () => {
    const created = await server.upload(wavBytes(tone(300, 1)), 'm.wav');
    expect(created.errors).toBeUndefined();
    const [lease] = (await server.worker(CLAIM)).data.claimJobs;
    expect(lease.audioUrl.startsWith(s3.endpoint)).toBe(true);
    expect((await fetch(lease.audioUrl)).status).toBe(200);
  });

  it('refuses keys it did not hand out, keys with nothing behind them, keys used twice, non-audio and oversized objects, and deletes what it refuses', async () => {
    const code = async (input: Record<string, unknown>) => (await server.gql(CREATE, { input })).errors?.[0]?.extensions?.code;
    expect(await code({ uploadKey: 'uploads/../../etc/passwd' })).toBe('UPLOAD_NOT_FOUND');
    expect(await code({ uploadKey: 'incoming/0b0e7c43-2d2f-4c1a-9a57-3b1b4e3c0f11/x.wav' })).toBe('UPLOAD_NOT_FOUND');
    expect(await code({})).toBe('BAD_USER_INPUT');

    const used = await presignedUpload(wavBytes(tone(300, 1)), 'once.wav');
    expect(await code({ uploadKey: used })).toBeUndefined();
    expect(await code({ uploadKey: used })).toBe('UPLOAD_ALREADY_USED');

    const text = await presignedUpload(new TextEncoder().encode('not audio at all, just text'.repeat(10)), 'text.wav');
    expect(await code({ uploadKey: text })).toBe('AUDIO_UNDECODABLE');
    expect(await store.size(text)).toBeNull();

    const big = await presignedUpload(wavBytes(tone(300, 7)), 'big.wav');
    expect(await code({ uploadKey: big })).toBe('INPUT_TOO_LARGE');
    expect(await store.size(big)).toBeNull();
  });

  it('uploads no job took expire; those a job took stay', async () => {
    const taken = await presignedUpload(wavBytes(tone(300, 1)), 'taken.wav');
    const left = await presignedUpload(wavBytes(tone(300, 1)), 'left.wav');
    // The server sweeps every minute; here the same sweep runs at once, with its own queue (a real SQLite file) holding a job that took one upload.
    const queue = new SqliteQueue(
      openDatabase(join(mkdtempSync(join(tmpdir(), 'murmur-sweep-')), 'q.sqlite')),
      queueOptions(readConfig({})),
    );
    await queue.create({
      filename: 'taken.wav',
      bytes: 1,
      durationSeconds: 1,
      format: 'wav',
      sampleRate: 16000,
      channels: 1,
      blobKey: taken,
    });
    expect(await expireUploads(queue, store, 60_000)).toBe(0);
    expect(await expireUploads(queue, store, 0)).toBeGreaterThanOrEqual(1);
    expect(await store.size(left)).toBeNull();
    expect(await store.size(taken)).not.toBeNull();
    await queue.close();
  });
});
