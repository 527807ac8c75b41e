// Where uploaded audio lives until its job is done. Two implementations are
// planned (a local directory here, S3-compatible stores for scale-out), so
// the API and the audio route speak only this interface.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';

export interface BlobStore {
  /** Stores the stream under `key`; the blob appears whole or not at all. Returns its size. */
  put(key: string, body: AsyncIterable<Uint8Array>): Promise<number>;
  read(key: string): Promise<Readable>;
  size(key: string): Promise<number | null>;
  delete(key: string): Promise<void>;
  /** Runs `fn` on a local file holding the blob (the blob's own file, or a temporary copy). */
  withLocalFile<T>(key: string, fn: (path: string) => Promise<T>): Promise<T>;
}

export class LocalBlobStore implements BlobStore {
  constructor(readonly dir: string) {}

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

  /** Keys are the project's own (job ids), but a key that climbs out of the directory is refused all the same. */
  path(key: string): string {
    const path = resolve(this.dir, key);
    if (!path.startsWith(resolve(this.dir) + sep)) throw new Error(`blob key escapes the store: ${key}`);
    return path;
  }
}
