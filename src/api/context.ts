// What every resolver gets: the queue (which also knows the live workers and
// the API keys), the blob store, the configuration, and who is calling.
import type { Config } from '../config.ts';
import type { Role } from '../auth/keys.ts';
import type { JobQueue } from '../queue/jobQueue.ts';
import type { BlobStore } from '../storage/blobStore.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import type { StreamRegistry, Transport } from './streams.ts';

/** Who is calling: the worker token, or a key (auth.ts tells them apart). */
export type Caller =
  | { kind: 'worker' }
  /** `keyId` null: authentication is off (MURMUR_AUTH=none) and no key was sent. */
  | { kind: 'client'; role: Role; tenant: string; keyId: string | null };

export interface Services {
  config: Config;
  queue: JobQueue;
  store: BlobStore;
  metrics: Metrics;
  /** Lines written while a request is handled carry its requestId (log.ts). */
  log: Logger;
  /** The model folder the embedded workers load (/readyz checks it is there). */
  modelDir: string;
  /** The secret webhook signatures derive from (webhooks.ts). */
  webhookMaster: string;
  /** The subscriptions open on this instance (streams.ts). */
  streams: StreamRegistry;
  /** Aborted when this instance starts shutting down: new work is refused (SHUTTING_DOWN), waiting claims and subscriptions end. */
  draining: AbortSignal;
}

export interface Context extends Services {
  /** A worker, a client or admin key (auth.ts). */
  caller: Caller;
  /** The request came after shutdown began: it may not start new work (SHUTTING_DOWN). */
  lateArrival: boolean;
  /** Where the caller reached the API, for the audio URLs handed to workers. */
  origin: string;
  /** The connection a subscription runs on (graphql-ws or SSE), to drop a reader that stopped reading. */
  transport?: Transport;
  /** Aborted when the caller hangs up. */
  signal?: AbortSignal;
}
