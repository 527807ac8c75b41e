// Blobs in any S3-compatible store (AWS S3, MinIO, R2, …) through the AWS SDK.
// Uploads stream in parts (lib-storage), never whole in memory; clients may
// upload and workers download straight from the store with presigned URLs.
//
// Checksums only when an operation requires them: the SDK's default (a CRC on
// every request and response since 3.729) corrupts streamed uploads to some
// S3-compatible servers.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BlobStore, PresignedPut } from './blobStore.ts';
import { StorageError, storeUnavailable } from './errors.ts';

/** The AWS SDK's own variables murmur relies on (the SDK reads them; profiles and roles work too). */
export const SDK_VARIABLES = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_PROFILE'] as const;

export interface S3Options {
  bucket: string;
  /** For stores other than AWS: http(s)://host:port */
  endpoint?: string;
  forcePathStyle: boolean;
  /** Prepended to every key, so one bucket can hold other things too. */
  prefix: string;
  /** Credentials and region come from the SDK's own variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, profiles, roles). */
  region?: string;
}

export class S3BlobStore implements BlobStore {
  private readonly client: S3Client;

  constructor(private readonly o: S3Options) {
    this.client = new S3Client({
      region: o.region ?? process.env.AWS_REGION ?? 'us-east-1',
      endpoint: o.endpoint,
      forcePathStyle: o.forcePathStyle,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  get name(): string {
    return `s3://${this.o.bucket}/${this.o.prefix}${this.o.endpoint ? ` at ${this.o.endpoint}` : ''}`;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<number> {
    let bytes = 0;
    let failure: unknown;
    const counted = Readable.from(
      (async function* () {
        try {
          for await (const chunk of body) {
            bytes += chunk.length;
            yield chunk;
          }
        } catch (err) {
          failure = err;
          throw err;
        }
      })(),
    );
    // S3 makes an object visible only when its upload completes: whole or not at all.
    const upload = new Upload({ client: this.client, params: { Bucket: this.o.bucket, Key: this.key(key), Body: counted }, queueSize: 2 });
    await upload.done().catch((err) => {
      // The body's own failure (the client went away) is not the store's.
      throw err === failure || !storeUnavailable(err) ? err : new StorageError(this.name, err);
    });
    return bytes;
  }

  async read(key: string): Promise<Readable> {
    const res = await this.guard(this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(key) })));
    return res.Body as Readable;
  }

  async readRange(key: string, start: number, length: number): Promise<Buffer> {
    if (length <= 0) return Buffer.alloc(0);
    const res = await this.guard(
      this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(key), Range: `bytes=${start}-${start + length - 1}` })),
    );
    return Buffer.from(await res.Body!.transformToByteArray());
  }

  async size(key: string): Promise<number | null> {
    try {
      const head = await this.guard(this.client.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: this.key(key) })));
      return head.ContentLength ?? null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.guard(this.client.send(new DeleteObjectCommand({ Bucket: this.o.bucket, Key: this.key(key) })));
  }

  async withLocalFile<T>(key: string, fn: (path: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-blob-'));
    try {
      const path = join(dir, 'blob');
      await pipeline(await this.read(key), createWriteStream(path));
      return await fn(path);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async *list(prefix: string): AsyncIterable<{ key: string; lastModified: number }> {
    let token: string | undefined;
    do {
      const page = await this.guard(
        this.client.send(new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: this.key(prefix), ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key.slice(this.o.prefix.length), lastModified: o.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  presignGet(key: string, expiresSeconds = 3600): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(key) }), { expiresIn: expiresSeconds });
  }

  async presignPut(key: string, expiresSeconds: number): Promise<PresignedPut> {
    const url = await getSignedUrl(this.client, new PutObjectCommand({ Bucket: this.o.bucket, Key: this.key(key) }), {
      expiresIn: expiresSeconds,
    });
    return { url, headers: {}, expiresAt: Date.now() + expiresSeconds * 1000 };
  }

  async check(): Promise<void> {
    await this.guard(this.client.send(new HeadBucketCommand({ Bucket: this.o.bucket })));
  }

  /** Every request to the store: failures of the store itself become StorageError (BLOB_STORE_UNAVAILABLE). */
  private async guard<T>(request: Promise<T>): Promise<T> {
    try {
      return await request;
    } catch (err) {
      throw storeUnavailable(err) ? new StorageError(this.name, err) : err;
    }
  }

  private key(key: string): string {
    return this.o.prefix + key;
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}
