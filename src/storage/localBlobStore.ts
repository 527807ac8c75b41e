// Blobs as files in a local directory: the embedded default.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import type { BlobStore, PresignedPut } from './blobStore.ts';

export class LocalBlobStore implements BlobStore {
  constructor(readonly dir: string) {}

  get name(): string {
    return this.dir;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
    const path = this.path(key);
    await mkdir(dirname(path), { recursive: true });
    // Written beside the target and renamed into place, so a crash mid-upload leaves no partial blob under the key.
    const partial = `${path}.${randomUUID()}.partial`;
    try {
      await pipeline(Readable.from(body), createWriteStream(partial));
      await rename(partial, path);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    return (await stat(path)).size;
  }

  async read(key: string): Promise<Readable> {
    const path = this.path(key);
    await stat(path);
    return createReadStream(path);
  }

  async readRange(key: string, start: number, length: number): Promise<Buffer> {
    const file = await open(this.path(key));
    try {
      const out = Buffer.alloc(length);
      const { bytesRead } = await file.read(out, 0, length, start);
      return out.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }

  async size(key: string): Promise<number | null> {
    try {
      return (await stat(this.path(key))).size;
    } catch {
      return null;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }

  withLocalFile<T>(key: string, fn: (path: string) => Promise<T>): Promise<T> {
    return fn(this.path(key));
  }

  async *list(prefix: string): AsyncIterable<{ key: string; lastModified: number }> {
    const root = resolve(this.dir);
    let entries;
    try {
      entries = await readdir(root, { recursive: true, withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isFile() || e.name.endsWith('.partial')) continue;
      const path = join(e.parentPath, e.name);
      const key = relative(root, path).split(sep).join('/');
      if (!key.startsWith(prefix)) continue;
      const s = await stat(path).catch(() => null);
      if (s) yield { key, lastModified: s.mtimeMs };
    }
  }

  async presignGet(): Promise<string | null> {
    return null;
  }

  async presignPut(): Promise<PresignedPut | null> {
    return null;
  }

  async check(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Keys are the project's own, but a key that climbs out of the directory is refused all the same. */
  path(key: string): string {
    const path = resolve(this.dir, key);
    if (!path.startsWith(resolve(this.dir) + sep)) throw new Error(`blob key escapes the store: ${key}`);
    return path;
  }
}
