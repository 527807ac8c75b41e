// Where uploaded audio lives until its job is done. Two implementations, one
// contract (test/storage.conformance.test.ts runs the same suite on both): a
// local directory (localBlobStore.ts) for one machine, and any S3-compatible
// store (s3BlobStore.ts) for many, where clients upload and workers download
// straight from the store through presigned URLs.
import type { Readable } from 'node:stream';

export interface PresignedPut {
  url: string;
  /** Headers the upload must carry exactly as given. */
  headers: Record<string, string>;
  expiresAt: number;
}

export interface BlobStore {
  /** A name for messages: the directory or the bucket. */
  readonly name: string;
  /** Stores the stream under `key`; the blob appears whole or not at all. Returns its size. */
  put(key: string, body: AsyncIterable<Uint8Array>): Promise<number>;
  read(key: string): Promise<Readable>;
  /** Up to `length` bytes from `start` (fewer at the end of the blob). */
  readRange(key: string, start: number, length: number): Promise<Buffer>;
  /** The blob's size, or null when there is none. */
  size(key: string): Promise<number | null>;
  delete(key: string): Promise<void>;
  /** Runs `fn` on a local file holding the blob (the blob's own file, or a temporary copy). */
  withLocalFile<T>(key: string, fn: (path: string) => Promise<T>): Promise<T>;
  /** Blobs under `prefix` with their last modification (epoch ms). */
  list(prefix: string): AsyncIterable<{ key: string; lastModified: number }>;
  /** A URL anyone holding it may GET the blob from until it expires; null where the store cannot hand one out. */
  presignGet(key: string, expiresSeconds?: number): Promise<string | null>;
  /** A URL to PUT a new blob to, bypassing the API; null where the store cannot hand one out. */
  presignPut(key: string, expiresSeconds: number): Promise<PresignedPut | null>;
  /** Throws, naming the store, when it cannot be used. */
  check(): Promise<void>;
}
