// `murmur serve` in a child process for a benchmark: a free port on loopback,
// no keys, its own data folder; each JSON log line is handed to `onEvent`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export interface BenchServer {
  /** The GraphQL endpoint. */
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startBenchServer(
  env: Record<string, string>,
  options: { root?: string; onEvent?: (entry: Record<string, unknown>) => void } = {},
): Promise<BenchServer> {
  const root = options.root ?? resolve(import.meta.dirname, '..');
  const child = spawn(process.execPath, [join(root, 'src/cli/bin.js'), 'serve'], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      MURMUR_AUTH: 'none',
      MURMUR_DATA_DIR: mkdtempSync(join(tmpdir(), 'murmur-bench-data-')),
      MURMUR_LOG_FORMAT: 'json',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((done, fail) => {
    child.once('exit', (code) => fail(new Error(`murmur serve exited (${code}) before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const entry = JSON.parse(line);
      options.onEvent?.(entry);
      if (entry.event === 'listening') done(entry.url);
    });
  });
  return {
    url,
    process: child,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
