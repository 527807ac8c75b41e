// The blob store's contract, run against both implementations: a local folder
// and S3 (a real S3-compatible server, s3rver, through the AWS SDK).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../src/storage/blobStore.ts';
import { LocalBlobStore } from '../src/storage/localBlobStore.ts';
import { S3BlobStore } from '../src/storage/s3BlobStore.ts';
import { startS3, type S3Server } from './helpers/s3.ts';

let s3: S3Server;
const dirs: string[] = [];
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3.close();
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

const stores: Record<string, () => BlobStore> = {
  local: () => {
    const dir = mkdtempSync(join(tmpdir(), 'murmur-blobs-'));
    dirs.push(dir);
    return new LocalBlobStore(dir);
  },
  s3: () =>
    new S3BlobStore({ bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, prefix: `t${Math.random().toString(36).slice(2)}/` }),
};

async function* chunks(total: number, size = 64 * 1024): AsyncIterable<Uint8Array> {
  for (let at = 0; at < total; at += size) {
    const n = Math.min(size, total - at);
    const chunk = new Uint8Array(n);
    for (let i = 0; i < n; i++) chunk[i] = (at + i) % 251;
    yield chunk;
  }
}
const expected = (total: number) => Buffer.from(Array.from({ length: total }, (_, i) => i % 251));
const readAll = async (store: BlobStore, key: string) => Buffer.concat(await (await store.read(key)).toArray());

describe.each(Object.keys(stores))('the %s blob store', (name) => {
  const open = () => stores[name]();

  it('stores a stream and gives back the same bytes, size and local file', async () => {
    const store = open();
    await store.check();
    // 12 MB: more than one part of a multipart upload (5 MB parts).
    const total = 12 * 1024 * 1024 + 17;
    expect(await store.put('uploads/a', chunks(total))).toBe(total);
    expect(await store.size('uploads/a')).toBe(total);
    expect((await readAll(store, 'uploads/a')).equals(expected(total))).toBe(true);
    expect(
      (await store.readRange('uploads/a', 5 * 1024 * 1024 - 3, 10)).equals(
        expected(total).subarray(5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 7),
      ),
    ).toBe(true);
    expect((await store.readRange('uploads/a', total - 4, 100)).equals(expected(total).subarray(total - 4))).toBe(true);
    const copy = await store.withLocalFile('uploads/a', async (path) => readFileSync(path));
    expect(copy.equals(expected(total))).toBe(true);
  });

  it('a failed upload leaves nothing under the key', async () => {
    const store = open();
    async function* broken() {
      yield new Uint8Array(1000);
      throw new Error('client went away');
    }
    await expect(store.put('uploads/broken', broken())).rejects.toThrow();
    expect(await store.size('uploads/broken')).toBeNull();
  });

  it('deletes, lists by prefix, and answers null for what is not there', async () => {
    const store = open();
    await store.put('incoming/1/a.wav', chunks(10));
    await store.put('incoming/2/b.wav', chunks(20));
    await store.put('uploads/c', chunks(30));
    const listed = [];
    for await (const b of store.list('incoming/')) listed.push(b);
    expect(listed.map((b) => b.key).sort()).toEqual(['incoming/1/a.wav', 'incoming/2/b.wav']);
    expect(listed.every((b) => Math.abs(b.lastModified - Date.now()) < 60_000)).toBe(true);
    await store.delete('incoming/1/a.wav');
    await store.delete('incoming/never');
    expect(await store.size('incoming/1/a.wav')).toBeNull();
    await expect(store.read('incoming/1/a.wav')).rejects.toThrow();
  });

  it('hands out presigned URLs only where the store can serve them, and they work', async () => {
    const store = open();
    const put = await store.presignPut('incoming/p/x.wav', 600);
    if (name === 'local') {
      expect(put).toBeNull();
      expect(await store.presignGet('incoming/p/x.wav')).toBeNull();
      return;
    }
    expect(put!.expiresAt).toBeGreaterThan(Date.now() + 590_000);
    const body = expected(5000);
    const res = await fetch(put!.url, { method: 'PUT', body, headers: put!.headers });
    expect(res.status).toBe(200);
    expect(await store.size('incoming/p/x.wav')).toBe(5000);
    const got = await fetch((await store.presignGet('incoming/p/x.wav'))!);
    expect(Buffer.from(await got.arrayBuffer()).equals(body)).toBe(true);
  });

  it('check() names a store it cannot use', async () => {
    if (name === 'local') return;
    const missing = new S3BlobStore({ bucket: 'no-such-bucket', endpoint: s3.endpoint, forcePathStyle: true, prefix: '' });
    await expect(missing.check()).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
  });
});
