// The deployment examples in deploy/ cannot run here (no Docker on the build
// machines), so what can be checked is checked: every environment variable
// they give murmur is one the program reads, and every murmur command they run
// exists with the options they pass.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { buildProgram } from '../src/cli/program.ts';
import { Metrics } from '../src/api/metrics.ts';
import { CONFIG_VARIABLES, readConfig } from '../src/config.ts';
import { queueOptions } from '../src/queue/open.ts';
import { openDatabase } from '../src/queue/sqlite/database.ts';
import { SqliteQueue } from '../src/queue/sqlite/sqliteQueue.ts';
import { SDK_VARIABLES } from '../src/storage/s3BlobStore.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const deploy = join(root, 'deploy');

/** Variables read outside readConfig: found in the sources as `process.env.NAME`. */
function readDirectly(): string[] {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(path, 'utf8').matchAll(/process\.env\.([A-Z0-9_]+)/g)) names.add(m[1]);
    }
  };
  walk(join(root, 'src'));
  walk(join(root, 'worker'));
  return [...names];
}
const READ = new Set([...CONFIG_VARIABLES, ...SDK_VARIABLES, ...readDirectly()]);

interface Container {
  where: string;
  env: string[];
  /** The murmur command line after the program name, e.g. ['worker', '--api', …]. */
  args: string[];
}

/** The containers that run the murmur image, from the compose file and the Kubernetes manifests. */
function murmurContainers(): Container[] {
  const out: Container[] = [];
  const compose = parseAllDocuments(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true })[0].toJS({ maxAliasCount: -1 });
  for (const [name, service] of Object.entries<any>(compose.services)) {
    if (service.image !== 'murmur') continue;
    out.push({ where: `compose.yaml ${name}`, env: Object.keys(service.environment ?? {}), args: service.command ?? ['serve'] });
  }
  for (const file of readdirSync(join(deploy, 'kubernetes'))) {
    for (const doc of parseAllDocuments(readFileSync(join(deploy, 'kubernetes', file), 'utf8'))) {
      const spec = doc.toJS();
      for (const c of spec?.spec?.template?.spec?.containers ?? []) {
        if (!String(c.image).startsWith('murmur:')) continue;
        out.push({
          where: `kubernetes/${file} ${spec.metadata.name}`,
          env: (c.env ?? []).map((e: { name: string }) => e.name),
          args: c.args ?? ['serve'],
        });
      }
    }
  }
  return out;
}

describe('deploy/', () => {
  const containers = murmurContainers();

  it('runs murmur in API and worker containers of both pools', () => {
    expect(containers.length).toBeGreaterThanOrEqual(6);
    const pools = containers.filter((c) => c.args[0] === 'worker').map((c) => c.args[c.args.indexOf('--pool') + 1]);
    expect(new Set(pools)).toEqual(new Set(['cpu', 'gpu']));
  });

  it('gives murmur only variables it reads', () => {
    for (const c of containers) for (const name of c.env) expect(READ.has(name), `${c.where}: ${name}`).toBe(true);
    const dockerfile = readFileSync(join(deploy, 'Dockerfile'), 'utf8');
    for (const [, name] of dockerfile.matchAll(/^ENV\s+([A-Z0-9_]+)=/gm)) expect(READ.has(name), `Dockerfile: ${name}`).toBe(true);
  });

  it('runs commands that exist, with options they take', () => {
    const program = buildProgram();
    for (const c of containers) {
      const command = program.commands.find((cmd: Command) => cmd.name() === c.args[0]);
      expect(command, `${c.where}: murmur ${c.args[0]}`).toBeDefined();
      const known = new Set(command!.options.map((o) => o.long));
      for (const arg of c.args.filter((a) => a.startsWith('--')))
        expect(known.has(arg), `${c.where}: murmur ${c.args[0]} ${arg}`).toBe(true);
    }
    expect(readFileSync(join(deploy, 'Dockerfile'), 'utf8')).toMatch(/ENTRYPOINT \["node", "src\/cli\/bin\.js"\]/);
  });

  it('scales workers on metrics the API exports', async () => {
    const keda = parseAllDocuments(readFileSync(join(deploy, 'kubernetes', 'keda.yaml'), 'utf8')).map((d) => d.toJS());
    const queue = new SqliteQueue(
      openDatabase(join(mkdtempSync(join(tmpdir(), 'murmur-deploy-')), 'q.sqlite')),
      queueOptions(readConfig({})),
    );
    const exported = (await new Metrics(queue, { threads: 1 }).registry.getMetricsAsJSON()).map((m) => m.name);
    await queue.close();
    for (const object of keda) {
      for (const trigger of object.spec.triggers) {
        const [, name] = /(murmur_[a-z_]+)/.exec(trigger.metadata.query)!;
        expect(exported).toContain(name);
      }
    }
  });
});
