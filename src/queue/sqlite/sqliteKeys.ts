// API keys in the SQLite file (the store's contract: src/auth/keys.ts).
import { randomUUID } from 'node:crypto';
import { asc, eq, or, and, inArray, isNull } from 'drizzle-orm';
import {
  FIRST_KEY_ID,
  DEFAULT_TENANT,
  KeyError,
  hashSecret,
  newKeyRow,
  toApiKey,
  type ApiKey,
  type KeyStore,
  type NewKey,
} from '../../auth/keys.ts';
import type { Db } from './database.ts';
import { apiKeys } from './schema.ts';

export class SqliteKeys implements KeyStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  async create(key: NewKey): Promise<{ key: ApiKey; secret: string }> {
    const { secret, row } = newKeyRow(key, randomUUID(), this.now());
    const inserted = this.db.insert(apiKeys).values(row).onConflictDoNothing().returning().get();
    if (!inserted) throw new KeyError('KEY_NAME_TAKEN', `a key named "${key.name}" exists already`);
    return { key: toApiKey(inserted), secret };
  }

  async createFirst(): Promise<{ key: ApiKey; secret: string } | null> {
    return this.db.transaction(
      (tx) => {
        if (tx.select({ id: apiKeys.id }).from(apiKeys).limit(1).get()) return null;
        const { secret, row } = newKeyRow({ name: 'admin', tenant: DEFAULT_TENANT, role: 'admin' }, FIRST_KEY_ID, this.now());
        return { key: toApiKey(tx.insert(apiKeys).values(row).returning().get()), secret };
      },
      { behavior: 'immediate' },
    );
  }

  async list(): Promise<ApiKey[]> {
    return this.db.select().from(apiKeys).orderBy(asc(apiKeys.createdAt)).all().map(toApiKey);
  }

  async revoke(which: string): Promise<ApiKey> {
    const match = or(eq(apiKeys.id, which), eq(apiKeys.name, which));
    this.db
      .update(apiKeys)
      .set({ revokedAt: this.now() })
      .where(and(match, isNull(apiKeys.revokedAt)))
      .run();
    const row = this.db.select().from(apiKeys).where(match).get();
    if (!row) throw new KeyError('KEY_NOT_FOUND', `no key with id or name "${which}"`);
    return toApiKey(row);
  }

  async find(secret: string): Promise<ApiKey | undefined> {
    const row = this.db
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.hash, hashSecret(secret)), isNull(apiKeys.revokedAt)))
      .get();
    return row && toApiKey(row);
  }

  async byIds(ids: string[]): Promise<ApiKey[]> {
    return ids.length ? this.db.select().from(apiKeys).where(inArray(apiKeys.id, ids)).all().map(toApiKey) : [];
  }

  async touch(id: string, at: number): Promise<void> {
    this.db.update(apiKeys).set({ lastUsedAt: at }).where(eq(apiKeys.id, id)).run();
  }
}
