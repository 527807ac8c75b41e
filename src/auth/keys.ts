// API keys: what a key is, how its secret is made and recognised, and the
// store each database keeps them in (sqlite/sqliteKeys.ts, postgres/postgresKeys.ts).
// A secret is 32 random bytes; only its SHA-256 is stored (a secret that
// random needs no slow hash), so a leaked database holds no usable key.
import { CodedError } from '../errors.ts';
import { createHash, randomBytes } from 'node:crypto';

export type Role = 'client' | 'admin';
export const ROLES: readonly Role[] = ['client', 'admin'];
export const DEFAULT_TENANT = 'default';

export interface ApiKey {
  id: string;
  name: string;
  /** Whose jobs: a client key sees its tenant's jobs only. */
  tenant: string;
  /** `admin` sees every tenant's jobs and the queue. */
  role: Role;
  /** The secret's first characters, to tell keys apart. */
  prefix: string;
  createdAt: number;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

export interface NewKey {
  name: string;
  tenant: string;
  role: Role;
}

export interface KeyStore {
  /** A new key, and its secret (shown once: only its hash is kept). KEY_NAME_TAKEN when the name is in use. */
  create(key: NewKey): Promise<{ key: ApiKey; secret: string }>;
  /**
   * The first admin key, when no key has ever existed; null otherwise. Safe when several
   * instances start at once: one of them makes it.
   */
  createFirst(): Promise<{ key: ApiKey; secret: string } | null>;
  list(): Promise<ApiKey[]>;
  /** By id or name; KEY_NOT_FOUND otherwise. Revoking twice keeps the first time. */
  revoke(which: string): Promise<ApiKey>;
  /** The live (not revoked) key with this secret. */
  find(secret: string): Promise<ApiKey | undefined>;
  /** The keys with these ids as they are now, revoked ones included (open streams are checked against them). */
  byIds(ids: string[]): Promise<ApiKey[]>;
  /** Records a use (callers throttle it). */
  touch(id: string, at: number): Promise<void>;
}

export class KeyError extends CodedError<'KEY_NOT_FOUND' | 'KEY_NAME_TAKEN' | 'KEY_INVALID'> {}

const SECRET_PREFIX = 'mk_';
export const FIRST_KEY_ID = 'first-admin';

export function newSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The row for a new key, and its secret. */
export function newKeyRow(key: NewKey, id: string, now: number) {
  if (!/^[\w.@:-]{1,100}$/.test(key.name)) throw new KeyError('KEY_INVALID', 'a key name is 1 to 100 letters, digits or . _ - @ :');
  if (!/^[\w.@:-]{1,100}$/.test(key.tenant)) throw new KeyError('KEY_INVALID', 'a tenant is 1 to 100 letters, digits or . _ - @ :');
  if (!ROLES.includes(key.role)) throw new KeyError('KEY_INVALID', `a role is one of ${ROLES.join(', ')}`);
  const secret = newSecret();
  return {
    secret,
    row: { id, name: key.name, tenant: key.tenant, role: key.role, hash: hashSecret(secret), prefix: secret.slice(0, 10), createdAt: now },
  };
}

/** A secret worth looking up: ours by its shape (anything else is refused without a query). */
export function plausibleSecret(secret: string): boolean {
  return secret.startsWith(SECRET_PREFIX) && secret.length === SECRET_PREFIX.length + 43;
}

export function toApiKey(row: {
  id: string;
  name: string;
  tenant: string;
  role: Role;
  prefix: string;
  createdAt: number;
  revokedAt: number | null;
  lastUsedAt: number | null;
}): ApiKey {
  return {
    id: row.id,
    name: row.name,
    tenant: row.tenant,
    role: row.role,
    prefix: row.prefix,
    createdAt: Number(row.createdAt),
    revokedAt: row.revokedAt === null ? null : Number(row.revokedAt),
    lastUsedAt: row.lastUsedAt === null ? null : Number(row.lastUsedAt),
  };
}
