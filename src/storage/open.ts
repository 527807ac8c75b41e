// Which blob store holds the audio: S3 when MURMUR_S3_BUCKET is set, otherwise
// a folder in the data directory. A store that refuses us stops the program
// at once, naming the variable; one that does not answer yet is waited for.
import { join } from 'node:path';
import { ConfigError, type Config } from '../config.ts';
import type { Logger } from '../log.ts';
import type { BlobStore } from './blobStore.ts';
import { LocalBlobStore } from './localBlobStore.ts';
import { S3BlobStore } from './s3BlobStore.ts';

export async function openBlobStore(config: Config, log: Logger): Promise<BlobStore> {
  if (!config.s3) return new LocalBlobStore(join(config.dataDir, 'blobs'));
  const store = new S3BlobStore(config.s3);
  const deadline = Date.now() + config.databaseWaitSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      await store.check();
      return store;
    } catch (err) {
      const e = err as Error & { $metadata?: { httpStatusCode?: number } };
      // An HTTP answer (no such bucket, access denied) will not change by waiting; no answer might.
      if (e.$metadata?.httpStatusCode || Date.now() > deadline) {
        throw new ConfigError(
          `MURMUR_S3_BUCKET: cannot use ${store.name}: ${e.name}${e.message && e.message !== 'UnknownError' ? ` (${e.message})` : ''}`,
        );
      }
      if (attempt === 1)
        log.warn(
          { event: 'store.waiting', store: store.name, err: e },
          `the blob store ${store.name} does not answer (${e.message}); waiting up to ${config.databaseWaitSeconds} s`,
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
