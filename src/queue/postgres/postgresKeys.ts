// API keys in PostgreSQL (the store's contract: src/auth/keys.ts).
import { randomUUID } from 'node:crypto';
import { and, asc, eq, inArray, isNull, or, sql } from 'drizzle-orm';
import {
  DEFAULT_TENANT,
  FIRST_KEY_ID,
  KeyError,
  hashSecret,
  newKeyRow,
  toApiKey,
  type ApiKey,
  type KeyStore,
  type NewKey,
} from '../../auth/keys.ts';
import type { PgDb } from './database.ts';
import { apiKeys } from './schema.ts';

export class PostgresKeys implements KeyStore {
  constructor(
    private readonly db: PgDb,
    private readonly now: () => number = Date.now,
  ) {}

  async create(key: NewKey): Promise<{ key: ApiKey; secret: string }> {
    const { secret, row } = newKeyRow(key, randomUUID(), this.now());
    const [inserted] = await this.db.insert(apiKeys).values(row).onConflictDoNothing().returning();
    if (!inserted) throw new KeyError('KEY_NAME_TAKEN', `a key named "${key.name}" exists already`);
    return { key: toApiKey(inserted), secret };
  }

  async createFirst(): Promise<{ key: ApiKey; secret: string } | null> {
    const { secret, row } = newKeyRow({ name: 'admin', tenant: DEFAULT_TENANT, role: 'admin' }, FIRST_KEY_ID, this.now());
    // Instances starting together may all see no key; the fixed id lets exactly one insert win.
    const [inserted] = await this.db
      .insert(apiKeys)
      .select(
        sql`SELECT ${row.id}, ${row.name}, ${row.tenant}, ${row.role}, ${row.hash}, ${row.prefix}, ${row.createdAt}::bigint, NULL::bigint, NULL::bigint WHERE NOT EXISTS (SELECT 1 FROM ${apiKeys})`,
      )
      .onConflictDoNothing()
      .returning();
    return inserted ? { key: toApiKey(inserted), secret } : null;
  }

  async list(): Promise<ApiKey[]> {
    return (await this.db.select().from(apiKeys).orderBy(asc(apiKeys.createdAt))).map(toApiKey);
  }

  async revoke(which: string): Promise<ApiKey> {
    const match = or(eq(apiKeys.id, which), eq(apiKeys.name, which));
    await this.db
      .update(apiKeys)
      .set({ revokedAt: this.now() })
      .where(and(match, isNull(apiKeys.revokedAt)));
    const [row] = await this.db.select().from(apiKeys).where(match);
    if (!row) throw new KeyError('KEY_NOT_FOUND', `no key with id or name "${which}"`);
    return toApiKey(row);
  }

  async find(secret: string): Promise<ApiKey | undefined> {
    const [row] = await this.db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.hash, hashSecret(secret)), isNull(apiKeys.revokedAt)));
    return row && toApiKey(row);
  }

  async byIds(ids: string[]): Promise<ApiKey[]> {
    return ids.length ? (await this.db.select().from(apiKeys).where(inArray(apiKeys.id, ids))).map(toApiKey) : [];
  }

  async touch(id: string, at: number): Promise<void> {
    await this.db.update(apiKeys).set({ lastUsedAt: at }).where(eq(apiKeys.id, id));
  }
}
