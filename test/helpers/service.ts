// A real murmur server for integration tests: `murmur serve` as a child
// process on an ephemeral port, with its own data directory, talking to real
// worker child processes; plus small HTTP, multipart and WebSocket clients.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createClient, type Client } from 'graphql-ws';
import wav from 'node-wav';
import WebSocket from 'ws';
import type { LogEntry } from './log.ts';
import { generatedModel } from './models.ts';

const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;
export const WORKER_TOKEN = 'test-worker-token-0123456789';

export interface Server {
  url: string;
  dataDir: string;
  process: ChildProcess;
  /** What it printed that is not a log entry (the first start's key announcement). */
  lines: string[];
  /** Its log (JSON lines: stdout is not a terminal), its workers' relayed with their workerPid. */
  events: LogEntry[];
  /** Resolves with the first printed line (past or future) that matches. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the first log entry (past or future) of this event for which `match` holds. */
  waitForEvent(event: string, match?: (e: LogEntry) => boolean, timeoutMs?: number): Promise<LogEntry>;
  gql<T = any>(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<{ data?: T; errors?: { message: string; extensions?: { code?: string } }[] }>;
  /** As a worker, with the worker token. */
  worker<T = any>(
    query: string,
    variables?: Record<string, unknown>,
  ): Promise<{ data?: T; errors?: { message: string; extensions?: { code?: string } }[] }>;
  upload(
    bytes: Uint8Array,
    filename: string,
    input?: Record<string, unknown>,
    select?: string,
    headers?: Record<string, string>,
  ): Promise<{ data?: any; errors?: { message: string; extensions?: { code?: string } }[] }>;
  ws(connectionParams?: Record<string, unknown>): Client;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A small generated model, made once per test file, for servers that run no embedded workers (generating the default one takes seconds). */
let smallModel: Promise<string> | undefined;

export async function startServer(env: Record<string, string>, dataDir = mkdtempSync(join(tmpdir(), 'murmur-data-'))): Promise<Server> {
  if (env.MURMUR_MAX_WORKERS === '0' && !env.MURMUR_MODEL_DIR && !existsSync(join(dataDir, 'model'))) {
    smallModel ??= generatedModel();
    env = { ...env, MURMUR_MODEL_DIR: await smallModel };
  }
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      MURMUR_DATA_DIR: dataDir,
      MURMUR_WORKER_TOKEN: WORKER_TOKEN,
      // 5 s: on a busy machine 2 s leases were lost mid-job (the old code's suites failed that way too), and expiring
      // ones still lapse within seconds.
      MURMUR_LEASE_SECONDS: '5',
      MURMUR_RETRY_BASE_SECONDS: '0.2',
      MURMUR_BATCH_WINDOW_MS: '300',
      // Tests that are not about keys run without them (loopback only); test/api.auth.test.ts turns them on.
      MURMUR_AUTH: 'none',
      MURMUR_SHUTDOWN_SECONDS: '2',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { lines, events, waitForLine, waitForEvent } = readOutput(child, '');
  let exited = false;
  child.on('exit', () => (exited = true));

  const { url } = (await waitForEvent('listening')) as LogEntry & { url: string };
  const post = async (body: string | FormData, headers: Record<string, string>) => {
    const res = await fetch(url, { method: 'POST', body, headers });
    return res.json() as Promise<any>;
  };
  const gql: Server['gql'] = (query, variables = {}, headers = {}) =>
    post(JSON.stringify({ query, variables }), { 'content-type': 'application/json', ...headers });

  return {
    url,
    dataDir,
    process: child,
    lines,
    events,
    waitForLine,
    waitForEvent,
    gql,
    worker: (query, variables) => gql(query, variables, { authorization: `Bearer ${WORKER_TOKEN}` }),
    upload(
      bytes,
      filename,
      input = {},
      select = 'id status attempts input { filename bytes format durationSeconds sampleRate channels }',
      headers = {},
    ) {
      const form = new FormData();
      form.set(
        'operations',
        JSON.stringify({
          query: `mutation ($input: CreateJobInput!) { createJob(input: $input) { ${select} } }`,
          variables: { input: { ...input, file: null } },
        }),
      );
      form.set('map', JSON.stringify({ 0: ['variables.input.file'] }));
      form.set('0', new Blob([new Uint8Array(bytes)]), filename);
      return post(form, { 'graphql-preflight': '1', ...headers });
    },
    ws: (connectionParams?: Record<string, unknown>) =>
      createClient({ url: url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, lazy: true, retryAttempts: 0, connectionParams }),
    async stop(signal = 'SIGTERM') {
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await done;
    },
  };
}

/**
 * A murmur process's output: JSON log entries into `events`, anything else into `lines` (the key
 * announcement, or a line a native library printed); waits on either.
 */
function readOutput(child: ChildProcess, tag: string) {
  const lines: string[] = [];
  const events: LogEntry[] = [];
  // Each waiter looks at what arrives, once: a long run (the chaos test) is not scanned again at every line.
  const waiters = new Set<(item: string | LogEntry) => boolean>();
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      if (process.env.MURMUR_TEST_LOG) console.log(`${tag}${line}`);
      let entry: LogEntry | undefined;
      try {
        entry = line.startsWith('{') ? JSON.parse(line) : undefined;
      } catch {
        // not a log entry
      }
      const item = entry && typeof entry.level === 'number' ? entry : line;
      if (typeof item === 'string') lines.push(item);
      else events.push(item);
      for (const check of [...waiters]) if (check(item)) waiters.delete(check);
    });
  }
  /** The first of what came (`past`) or comes that `pick` gives a value for. */
  const waitFor = <T>(past: (string | LogEntry)[], pick: (item: string | LogEntry) => T | undefined, what: string, timeoutMs: number) =>
    new Promise<T>((resolve, reject) => {
      for (const item of past) {
        const found = pick(item);
        if (found !== undefined) return resolve(found);
      }
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(
          new Error(`no ${what} in ${timeoutMs} ms; output:\n${lines.join('\n')}\n${events.map((e) => JSON.stringify(e)).join('\n')}`),
        );
      }, timeoutMs);
      const check = (item: string | LogEntry) => {
        const found = pick(item);
        if (found === undefined) return false;
        clearTimeout(timer);
        resolve(found);
        return true;
      };
      waiters.add(check);
    });
  return {
    lines,
    events,
    waitForLine: (pattern: RegExp, timeoutMs = 60_000) =>
      waitFor(
        lines,
        (item) => (typeof item === 'string' ? (item.match(pattern) ?? undefined) : undefined),
        `printed line matching ${pattern}`,
        timeoutMs,
      ),
    waitForEvent: (event: string, match: (e: LogEntry) => boolean = () => true, timeoutMs = 60_000) =>
      waitFor(
        events,
        (item) => (typeof item !== 'string' && item.event === event && match(item) ? item : undefined),
        `log event ${event} (as asked)`,
        timeoutMs,
      ),
  };
}

export { alive } from '../../worker/apiClient.ts';

/** `murmur <args>` as a child process with the server's environment (for `murmur keys …`): its stdout, or a rejection with stderr. */
export function murmur(args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`murmur ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

/** A `murmur worker` process on its own, as on another machine: it reaches the API over HTTP only. */
export function startWorker(
  api: string,
  model: string,
  args: string[] = [],
): { process: ChildProcess; lines: string[]; events: LogEntry[]; stop(signal?: NodeJS.Signals): Promise<void> } {
  const child = spawn(
    process.execPath,
    [BIN, 'worker', '--api', api, '--model', model, '--segmentation', 'fixed', '--exit-after', '600', '--poll', '5', ...args],
    {
      env: { ...process.env, MURMUR_WORKER_TOKEN: WORKER_TOKEN },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const { lines, events } = readOutput(child, `[worker ${child.pid}] `);
  let exited = false;
  child.on('exit', () => (exited = true));
  return {
    process: child,
    lines,
    events,
    async stop(signal = 'SIGTERM') {
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await done;
    },
  };
}

/** A 44-byte WAV header with the given fields (each one can be wrong), and `dataBytes` of silence. */
export function wavHeader(o: {
  codec?: number;
  channels?: number;
  rate?: number;
  bits?: number;
  align?: number;
  dataBytes?: number;
  declared?: number;
}): Buffer {
  const { codec = 1, channels = 1, rate = 16000, bits = 16, dataBytes = 3200 } = o;
  const b = Buffer.alloc(44 + dataBytes);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + dataBytes, 4);
  b.write('WAVEfmt ', 8);
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(codec, 20);
  b.writeUInt16LE(channels, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE((rate * channels * bits) / 8, 28);
  b.writeUInt16LE(o.align ?? (channels * bits) / 8, 32);
  b.writeUInt16LE(bits, 34);
  b.write('data', 36);
  b.writeUInt32LE(o.declared ?? dataBytes, 40);
  return b;
}

/** 16-bit mono 16 kHz WAV bytes. */
export function wavBytes(samples: Float32Array): Uint8Array {
  return new Uint8Array(wav.encode([samples], { sampleRate: 16000, float: false, bitDepth: 16 }));
}

/** Follows a subscription until it completes; returns every payload. */
export function collect<T>(client: Client, query: string, variables: Record<string, unknown>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const seen: T[] = [];
    client.subscribe<T>(
      { query, variables },
      {
        next: (v) => (v.errors ? reject(new Error(JSON.stringify(v.errors))) : seen.push(v.data as T)),
        error: reject,
        complete: () => resolve(seen),
      },
    );
  });
}
