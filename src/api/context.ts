// What every resolver gets: the queue (which also knows the live workers), the
// blob store, the configuration, and whether the caller holds the worker token.
import { timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.ts';
import type { JobQueue } from '../queue/jobQueue.ts';
import type { BlobStore } from '../storage/blobStore.ts';
import type { Metrics } from './metrics.ts';

export interface Services {
  config: Config;
  queue: JobQueue;
  store: BlobStore;
  metrics: Metrics;
  log: (line: string) => void;
}

export interface Context extends Services {
  /** The caller presented the worker token. */
  isWorker: boolean;
  /** Where the caller reached the API, for the audio URLs handed to workers. */
  origin: string;
  /** Aborted when the caller hangs up. */
  signal?: AbortSignal;
}

export function bearerMatches(header: string | null | undefined, token: string): boolean {
  const presented = header?.match(/^Bearer\s+(.+)$/i)?.[1];
  if (!presented) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
