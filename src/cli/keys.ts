// `murmur keys create|list|revoke`: API keys, in the database the server uses
// (MURMUR_DATA_DIR's SQLite file or MURMUR_DATABASE_URL). A new key's secret is
// printed once, alone on stdout (KEY=$(murmur keys create …) works); only its hash is kept.
import { Command, Option } from 'commander';
import { DEFAULT_TENANT, ROLES, type ApiKey, type Role } from '../auth/keys.ts';
import { readConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import type { JobQueue } from '../queue/jobQueue.ts';
import { openQueue } from '../queue/open.ts';

async function withQueue<T>(work: (queue: JobQueue) => Promise<T>): Promise<T> {
  const config = readConfig();
  // stdout is the command's answer (a new key's secret): the log goes to stderr.
  const queue = await openQueue(config, createLogger(config.log, 2));
  try {
    return await work(queue);
  } finally {
    await queue.close();
  }
}

const when = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

export function keysCommand(): Command {
  const keys = new Command('keys').description(
    'manage API keys (in the database the server uses: same MURMUR_DATA_DIR or MURMUR_DATABASE_URL)',
  );
  keys
    .command('create')
    .description('make a key and print its secret (once: only its hash is stored)')
    .requiredOption('--name <name>', 'a name to recognise it by (unique)')
    .option('--tenant <tenant>', 'whose jobs it creates and sees', DEFAULT_TENANT)
    .addOption(new Option('--role <role>', "client: its tenant's jobs; admin: every job and the queue").choices(ROLES).default('client'))
    .action(async (o: { name: string; tenant: string; role: Role }) => {
      const { key, secret } = await withQueue((q) => q.keys.create(o));
      console.error(`key "${key.name}" (${key.role}, tenant ${key.tenant}, id ${key.id}); the secret below is shown this once:`);
      console.log(secret);
    });
  keys
    .command('list')
    .description('every key: id, name, tenant, role, first characters, created, last used, revoked')
    .option('--json', 'one JSON array')
    .action(async (o: { json?: boolean }) => {
      const list = await withQueue((q) => q.keys.list());
      if (o.json) return console.log(JSON.stringify(list, null, 2));
      console.table(
        list.map((k: ApiKey) => ({
          id: k.id,
          name: k.name,
          tenant: k.tenant,
          role: k.role,
          key: `${k.prefix}…`,
          created: when(k.createdAt),
          used: when(k.lastUsedAt),
          revoked: when(k.revokedAt),
        })),
      );
    });
  keys
    .command('revoke')
    .description('revoke a key by id or name: it stops working at once, on every API instance')
    .argument('<key>', 'its id or name')
    .action(async (which: string) => {
      const key = await withQueue((q) => q.keys.revoke(which));
      console.log(`revoked "${key.name}" (id ${key.id}) at ${when(key.revokedAt)}`);
    });
  return keys;
}
