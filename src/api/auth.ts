// Who is calling: a worker (the worker token), a client or admin API key, or
// anyone at all when MURMUR_AUTH=none. Decided once per HTTP request (before
// an upload is read) and once per WebSocket connection; resolvers then ask
// for what they need (requireWorker, tenantOf, requireAdmin).
import { timingSafeEqual } from 'node:crypto';
import type { Plugin } from 'graphql-yoga';
import { DEFAULT_TENANT, plausibleSecret } from '../auth/keys.ts';
import type { Caller, Context, Services } from './context.ts';
import { ApiError, requestError } from './errors.ts';

const ANONYMOUS: Caller = { kind: 'client', role: 'admin', tenant: DEFAULT_TENANT, keyId: null };
/** Record a key's use at most this often (one write a minute, not one a request). */
const TOUCH_EVERY_MS = 60_000;
const touched = new Map<string, number>();

/** The caller behind an Authorization header (or connection parameter); UNAUTHENTICATED (401) when it is nobody. */
export async function authenticate(authorization: string | null | undefined, { config, queue, log }: Services): Promise<Caller> {
  const presented = bearerOf(authorization);
  if (presented && secretsEqual(presented, config.workerToken)) return { kind: 'worker' };
  if (config.auth === 'none' && !presented) return ANONYMOUS;
  if (!presented)
    throw requestError(
      'UNAUTHENTICATED',
      'an API key is required: send "Authorization: Bearer <key>" (create one with `murmur keys create`)',
      401,
    );
  const key = plausibleSecret(presented) ? await queue.keys.find(presented) : undefined;
  if (!key) throw requestError('UNAUTHENTICATED', 'the API key is not valid (unknown or revoked)', 401);
  const now = Date.now();
  if (now - (touched.get(key.id) ?? 0) > TOUCH_EVERY_MS) {
    touched.set(key.id, now);
    queue.keys
      .touch(key.id, now)
      .catch((err) =>
        log.warn({ event: 'key.touch_failed', keyId: key.id, err }, `could not record the use of key ${key.id}: ${err.message}`),
      );
  }
  return { kind: 'client', role: key.role, tenant: key.tenant, keyId: key.id };
}

/** For routes only workers use (/audio/:id). */
export function presentsWorkerToken(authorization: string | null | undefined, workerToken: string): boolean {
  const presented = bearerOf(authorization);
  return presented !== undefined && secretsEqual(presented, workerToken);
}

const bearerOf = (authorization: string | null | undefined) => authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];

function secretsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The caller of each HTTP request, found before its body is parsed (an unauthenticated upload is never stored). */
const callers = new WeakMap<Request, Caller>();
/** Requests that arrived after shutdown began: they may not start new work (those already in flight may). */
const lateArrivals = new WeakSet<Request>();

export const arrivedDraining = (request: Request) => lateArrivals.has(request);

export function useAuthentication(services: Services): Plugin {
  return {
    async onRequestParse({ request }) {
      // A stopping instance reads no more uploads: refused before the file is read.
      if (services.draining.aborted && request.headers.get('content-type')?.toLowerCase().startsWith('multipart/')) throw shuttingDown();
      const caller = await authenticate(request.headers.get('authorization'), services);
      // Workers never upload: refused here, the file is not even read.
      if (caller.kind === 'worker' && request.headers.get('content-type')?.toLowerCase().startsWith('multipart/')) {
        throw requestError('FORBIDDEN', 'the worker token is for workers; uploads need an API key', 403);
      }
      callers.set(request, caller);
      if (services.draining.aborted) lateArrivals.add(request);
    },
  };
}

export const shuttingDown = () =>
  requestError(
    'SHUTTING_DOWN',
    'this instance is shutting down: send the request again (another instance, or this one once restarted, takes it)',
    503,
  );

export function callerOf(request: Request): Caller {
  const caller = callers.get(request);
  if (!caller) throw new Error('a request reached a resolver without being authenticated');
  return caller;
}

/** Worker operations: the worker token only. */
export function requireWorker(ctx: Context): void {
  if (ctx.caller.kind === 'worker') return;
  if (ctx.caller.keyId === null) throw new ApiError('UNAUTHENTICATED', 'worker operations need the worker token (Authorization: Bearer …)');
  throw new ApiError('FORBIDDEN', 'worker operations need the worker token; an API key cannot run them');
}

/** Client operations: the caller's tenant, or undefined for an admin (every tenant). Never the worker token. */
export function tenantOf(ctx: Context): string | undefined {
  if (ctx.caller.kind === 'worker') throw new ApiError('FORBIDDEN', 'the worker token is for workers; client operations need an API key');
  return ctx.caller.role === 'admin' ? undefined : ctx.caller.tenant;
}

/** The tenant a new job belongs to: the key's own (an admin's jobs are its tenant's too). */
export function ownerOf(ctx: Context): { tenant: string; apiKeyId: string | null } {
  tenantOf(ctx);
  const caller = ctx.caller as Extract<Caller, { kind: 'client' }>;
  return { tenant: caller.tenant, apiKeyId: caller.keyId };
}

export function requireAdmin(ctx: Context): void {
  if (tenantOf(ctx) !== undefined) throw new ApiError('FORBIDDEN', 'this needs an admin key');
}
