// The subscription streams open on this instance (jobsChanged, jobUpdated over
// graphql-ws or SSE): each one's buffer, who holds it, and what ends it.
//
// Publishing a change must never wait for, or fail because of, a reader. Each
// stream holds the latest state of each job it has not sent yet (coalesced, so
// a job's ten progress steps take one place), at most `backlog` jobs. A reader
// that lets more pile up is not reading: its connection is dropped (WebSocket
// close 4008, an SSE response cut) and the client reads again when it comes
// back. Before this, 1,024 waiting events for one stalled SSE reader threw
// inside the queue's emitter and failed the claims and completions that
// emitted them, for every tenant.
//
// The key behind each stream is read again every MURMUR_STREAM_RECHECK_SECONDS
// from the database every instance shares (where `murmur keys revoke` writes):
// a revoked key, or one whose tenant or role changed, ends its streams with
// UNAUTHENTICATED, and a WebSocket left with none is closed with 4401.
import type { Logger } from '../log.ts';
import type { KeyStore, Role } from '../auth/keys.ts';
import type { Caller } from './context.ts';
import { ApiError } from './errors.ts';

/**
 * Unsent bytes on a connection past which its reader is dropped. Node's HTTP response takes every
 * write it is given: an SSE reader that stopped reading had 48 MB waiting in the server after 400 jobs
 * of 120 KB events, its stream never backing up. 8 MiB is minutes of events for a dashboard.
 */
const UNSENT_LIMIT = 8 << 20;

/** WebSocket close codes a client can act on (graphql-ws's client retries 4008, and gives up on 4401). */
export const CLOSE_CODES = { slow: 4008, revoked: 4401 } as const;

/** The connection a stream runs on, as the transport knows it. */
export interface Transport {
  /** One per WebSocket or HTTP connection: the per-connection cap counts by it. */
  connection: object;
  /** Bytes written to the connection that its reader has not taken yet (they wait in this process). */
  unsent(): number;
  /** Ends the connection: the reader fell too far behind, or its key no longer holds. */
  drop(why: keyof typeof CLOSE_CODES, reason: string): void;
}

export interface StreamLimits {
  /** Jobs a stream may hold unsent before its reader is dropped. */
  backlog: number;
  perConnection: number;
  perKey: number;
  recheckMs: number;
}

type Owner = { keyId: string | null; tenant: string; role: Role } | null;

/** A subscription's buffer: the latest unsent state of each job, read as an async iterator. */
export class Stream<T> implements AsyncIterableIterator<T> {
  private readonly pending = new Map<string, T>();
  private waiting: (() => void) | null = null;
  private ended = false;
  private failure: Error | null = null;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly backlog: number,
    private readonly overflow: () => void,
    /** Whether the connection holds more unsent bytes than a reader that keeps up would leave. */
    private readonly behind: () => boolean = () => false,
  ) {}

  /** The latest state of `key`, replacing one not sent yet (it moves to the back). Never blocks, never throws. */
  put(key: string, value: T): void {
    if (this.ended) return;
    this.pending.delete(key);
    this.pending.set(key, value);
    if (this.pending.size > this.backlog || this.behind()) {
      this.close();
      this.overflow();
    }
    this.wake();
  }

  /** No more after what is queued. */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** The next read throws `err` (after nothing: what is queued is dropped). */
  fail(err: Error): void {
    if (this.closed) return;
    this.pending.clear();
    this.failure = err;
    this.ended = true;
    this.release();
    this.wake();
  }

  onClose(cleanup: () => void): void {
    if (this.closed) cleanup();
    else this.cleanups.push(cleanup);
  }

  private closed = false;

  private release(): void {
    if (this.closed) return;
    this.closed = true;
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  private close(): void {
    this.pending.clear();
    this.ended = true;
    this.release();
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.();
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      const first = this.pending.entries().next();
      if (!first.done) {
        this.pending.delete(first.value[0]);
        return { value: first.value[1], done: false };
      }
      if (this.failure) {
        const err = this.failure;
        this.failure = null;
        this.close();
        throw err;
      }
      if (this.ended) {
        this.close();
        return { value: undefined, done: true };
      }
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }

  async return(): Promise<IteratorResult<T>> {
    this.close();
    this.wake();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

interface Entry {
  owner: Owner;
  transport: Transport | undefined;
  stream: Stream<unknown>;
}

export class StreamRegistry {
  private readonly open = new Set<Entry>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly keys: KeyStore,
    private readonly limits: StreamLimits,
    private readonly log: Logger,
  ) {}

  /** A new stream for `caller` on `transport`; TOO_MANY_SUBSCRIPTIONS past a cap. Closed streams leave the registry by themselves. */
  create<T>(caller: Caller, transport: Transport | undefined, kind: string): Stream<T> {
    const owner: Owner = caller.kind === 'client' ? { keyId: caller.keyId, tenant: caller.tenant, role: caller.role } : null;
    const entries = [...this.open];
    if (transport && entries.filter((e) => e.transport?.connection === transport.connection).length >= this.limits.perConnection) {
      throw new ApiError(
        'TOO_MANY_SUBSCRIPTIONS',
        `this connection has ${this.limits.perConnection} subscriptions open, its limit (MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION): end one first`,
      );
    }
    if (owner?.keyId && entries.filter((e) => e.owner?.keyId === owner.keyId).length >= this.limits.perKey) {
      throw new ApiError(
        'TOO_MANY_SUBSCRIPTIONS',
        `this key has ${this.limits.perKey} subscriptions open on this instance, its limit (MURMUR_MAX_SUBSCRIPTIONS_PER_KEY): end one first`,
      );
    }
    const entry: Entry = { owner, transport, stream: undefined as unknown as Stream<unknown> };
    const stream = new Stream<T>(
      this.limits.backlog,
      () => {
        this.log.warn(
          { event: 'subscription.dropped', reason: 'slow', kind, keyId: owner?.keyId },
          `a ${kind} subscriber fell over ${this.limits.backlog} jobs (or ${UNSENT_LIMIT >> 20} MiB) behind: its connection is closed`,
        );
        transport?.drop(
          'slow',
          `the subscriber fell over ${this.limits.backlog} changes behind: read the current state and subscribe again`,
        );
      },
      () => (transport?.unsent() ?? 0) > UNSENT_LIMIT,
    );
    entry.stream = stream as Stream<unknown>;
    this.open.add(entry);
    stream.onClose(() => this.open.delete(entry));
    this.schedule();
    return stream;
  }

  get size(): number {
    return this.open.size;
  }

  private schedule(): void {
    if (this.timer || this.limits.recheckMs <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.recheck().then(
        () => this.open.size > 0 && this.schedule(),
        (err) => {
          this.log.warn({ event: 'subscription.recheck_failed', err }, `could not check the keys of open subscriptions: ${err.message}`);
          if (this.open.size > 0) this.schedule();
        },
      );
    }, this.limits.recheckMs);
    this.timer.unref();
  }

  /** Ends the streams whose key was revoked, or whose tenant or role is no longer what it was. */
  async recheck(): Promise<void> {
    const ids = [...new Set([...this.open].map((e) => e.owner?.keyId).filter((id): id is string => !!id))];
    if (ids.length === 0) return;
    const now = new Map((await this.keys.byIds(ids)).map((k) => [k.id, k]));
    const touched = new Set<Transport>();
    for (const entry of [...this.open]) {
      const owner = entry.owner;
      if (!owner?.keyId) continue;
      const key = now.get(owner.keyId);
      const why =
        !key || key.revokedAt !== null
          ? 'the API key was revoked'
          : key.tenant !== owner.tenant || key.role !== owner.role
            ? "the API key's tenant or role changed: subscribe again"
            : null;
      if (!why) continue;
      this.log.info({ event: 'subscription.ended', reason: 'key', keyId: owner.keyId }, `a subscription ended: ${why}`);
      entry.stream.fail(new ApiError('UNAUTHENTICATED', why));
      if (entry.transport) touched.add(entry.transport);
    }
    // A connection left with no stream of a valid key is closed: its client learns why from the close code,
    // once the streams' errors had half a second to go out.
    if (touched.size === 0) return;
    setTimeout(() => {
      for (const transport of touched) {
        if (![...this.open].some((e) => e.transport?.connection === transport.connection))
          transport.drop('revoked', 'the API key was revoked');
      }
    }, 500).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
