// `murmur submit` and `murmur jobs`: a client of a murmur server over its
// GraphQL API (HTTP for uploads and queries, graphql-ws to follow jobs).
// submit uploads many files at once, shows a bar per file in flight and one
// overall (plain lines when stdout is not a terminal), writes each transcript
// next to its file or into --out, and ends with a summary; a file is sent with
// an idempotency key made from its content and options, so running the same
// command again neither sends nor transcribes it twice.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { createClient, type Client } from 'graphql-ws';
import PQueue from 'p-queue';
import WebSocket from 'ws';
import { integer } from './args.ts';

const AUDIO = new Set([
  '.wav',
  '.mp3',
  '.m4a',
  '.mp4',
  '.aac',
  '.flac',
  '.ogg',
  '.oga',
  '.opus',
  '.webm',
  '.wma',
  '.aiff',
  '.aif',
  '.amr',
  '.mkv',
  '.mov',
]);
const FORMATS = ['txt', 'srt', 'vtt', 'json'] as const;
type Format = (typeof FORMATS)[number];

interface Target {
  url: string;
  key: string | undefined;
}

class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function target(o: { api?: string; key?: string }): Target {
  const api = o.api ?? process.env.MURMUR_API_URL ?? 'http://localhost:4000';
  const url = api.replace(/\/+$/, '').replace(/(\/graphql)?$/, '/graphql');
  return { url, key: o.key ?? process.env.MURMUR_API_KEY };
}

const headers = (t: Target): Record<string, string> => (t.key ? { authorization: `Bearer ${t.key}` } : {});

async function gql<T>(t: Target, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const res = await fetch(t.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers(t) },
    body: JSON.stringify({ query, variables }),
  });
  return answer<T>(res);
}

async function answer<T>(res: Response): Promise<T> {
  const body = (await res.json().catch(() => null)) as { data?: T; errors?: { message: string; extensions?: { code?: string } }[] } | null;
  if (!body) throw new ApiError(`HTTP_${res.status}`, `the server answered ${res.status} without GraphQL`);
  if (body.errors?.length) throw new ApiError(body.errors[0].extensions?.code ?? 'ERROR', body.errors[0].message);
  return body.data!;
}

const JOB_FIELDS = 'id status progress attempts input { filename durationSeconds } error { code message } createdAt';
const RESULT_FIELDS = 'result { partial text language srt vtt segments { start end text } }';

/** A job as JOB_FIELDS (and RESULT_FIELDS, when asked) read it. */
interface JobView {
  id: string;
  status: string;
  progress: number;
  attempts: number;
  input: { filename: string; durationSeconds: number };
  error: { code: string; message: string } | null;
  createdAt: string;
  result?: {
    partial?: boolean;
    text: string;
    language: string;
    srt: string;
    vtt: string;
    segments: { start: number; end: number; text: string }[];
  } | null;
}

/** A GraphQL multipart createJob that streams the file and reports the bytes sent. */
async function upload(
  t: Target,
  path: string,
  input: Record<string, unknown>,
  onBytes: (sent: number) => void,
): Promise<{ id: string; status: string }> {
  const boundary = `murmur${createHash('sha1')
    .update(path + Date.now())
    .digest('hex')}`;
  const operations = JSON.stringify({
    query: `mutation ($input: CreateJobInput!) { createJob(input: $input) { id status } }`,
    variables: { input: { ...input, file: null } },
  });
  const head = Buffer.from(
    `--${boundary}\r\ncontent-disposition: form-data; name="operations"\r\n\r\n${operations}\r\n` +
      `--${boundary}\r\ncontent-disposition: form-data; name="map"\r\n\r\n{"0":["variables.input.file"]}\r\n` +
      `--${boundary}\r\ncontent-disposition: form-data; name="0"; filename="${encodeURIComponent(basename(path))}"\r\ncontent-type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const size = (await stat(path)).size;
  let sent = 0;
  async function* body() {
    yield head;
    for await (const chunk of createReadStream(path)) {
      sent += chunk.length;
      onBytes(sent);
      yield chunk as Buffer;
    }
    yield tail;
  }
  const res = await fetch(t.url, {
    method: 'POST',
    headers: {
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + size + tail.length),
      'graphql-preflight': '1',
      ...headers(t),
    },
    body: Readable.toWeb(Readable.from(body())) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  return (await answer<{ createJob: { id: string; status: string } }>(res)).createJob;
}

/** Files under the given paths: folders are walked for audio files; files named are taken as they are. */
async function audioFiles(paths: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const p of paths) {
    const s = await stat(p).catch(() => null);
    if (!s) throw new ApiError('NOT_FOUND', `${p}: no such file or folder`);
    if (s.isFile()) found.push(resolve(p));
    else {
      for (const entry of await readdir(p, { recursive: true, withFileTypes: true })) {
        if (entry.isFile() && AUDIO.has(extname(entry.name).toLowerCase())) found.push(resolve(entry.parentPath, entry.name));
      }
    }
  }
  return [...new Set(found)].sort();
}

async function contentHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

interface SubmitOptions {
  api?: string;
  key?: string;
  language?: string;
  task: 'transcribe' | 'translate';
  format: Format;
  out?: string;
  concurrency: number;
  wait: boolean;
}

type Outcome =
  | { path: string; status: 'DONE'; output: string }
  | { path: string; status: 'FAILED' | 'CANCELLED'; reason: string }
  | { path: string; status: 'SUBMITTED'; id: string };

/** What each file's display does: bars on a terminal, lines otherwise. */
interface Display {
  start(
    path: string,
    bytes: number,
  ): {
    uploaded(sent: number): void;
    queued(id: string): void;
    /** The job's state; with its result so far (partial while it runs), the segments not shown yet are shown. */
    update(status: string, progress: number, result?: JobView['result']): void;
    end(outcome: Outcome): void;
  };
  stop(): void;
}

function bars(total: number): Display {
  const multi = new cliProgress.MultiBar(
    {
      format: ' {bar} {percentage}% | {name} | {state}',
      barCompleteChar: '█',
      barIncompleteChar: '░',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  const overall = multi.create(
    total,
    0,
    { name: `${total} file${total === 1 ? '' : 's'}`, state: 'starting' },
    { format: ' {bar} {value}/{total} | {name} | {state}' },
  );
  let done = 0;
  let failed = 0;
  return {
    start(path, bytes) {
      const bar = multi.create(100, 0, { name: basename(path), state: 'uploading' });
      let shownSegments = 0;
      return {
        uploaded: (sent) => bar.update(Math.round((sent / Math.max(bytes, 1)) * 10), { state: 'uploading' }),
        queued: (id) => bar.update(10, { state: `queued ${id.slice(0, 8)}` }),
        update: (status, progress, result) => {
          bar.update(10 + Math.round(progress * 90), { state: status.toLowerCase() });
          // The text as it grows: each segment once, above the bars, as its window is done.
          for (const s of result?.segments.slice(shownSegments) ?? [])
            multi.log(`  ${basename(path)} ${clock(s.start)}  ${s.text.trim()}\n`);
          shownSegments = Math.max(shownSegments, result?.segments.length ?? 0);
        },
        end(outcome) {
          if (outcome.status === 'DONE') done++;
          else if (outcome.status !== 'SUBMITTED') failed++;
          bar.update(outcome.status === 'DONE' || outcome.status === 'SUBMITTED' ? 100 : bar.getProgress() * 100, {
            state:
              outcome.status === 'DONE'
                ? `done → ${outcome.output}`
                : outcome.status === 'SUBMITTED'
                  ? `submitted ${outcome.id}`
                  : `${outcome.status.toLowerCase()}: ${outcome.reason}`,
          });
          bar.stop();
          multi.remove(bar);
          multi.log(`${outcome.status === 'DONE' ? '✔' : outcome.status === 'SUBMITTED' ? '→' : '✘'} ${line(outcome)}\n`);
          overall.increment(1, { state: `${done} done${failed ? `, ${failed} failed` : ''}` });
        },
      };
    },
    stop() {
      // a redraw prints the lines logged since the last one
      multi.update();
      multi.stop();
    },
  };
}

function lines(): Display {
  return {
    start(path) {
      return {
        uploaded: () => {},
        queued: (id) => console.log(`queued ${basename(path)}: job ${id}`),
        update: () => {},
        end: (outcome) => console.log(line(outcome)),
      };
    },
    stop: () => {},
  };
}

/** Seconds as m:ss.s (h:mm:ss.s past an hour). */
function clock(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = (seconds % 60).toFixed(1).padStart(4, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function line(o: Outcome): string {
  const name = basename(o.path);
  if (o.status === 'DONE') return `done ${name} → ${o.output}`;
  if (o.status === 'SUBMITTED') return `submitted ${name}: job ${o.id}`;
  return `${o.status.toLowerCase()} ${name}: ${o.reason}`;
}

function render(format: Format, result: { text: string; srt: string; vtt: string }, job: unknown): string {
  if (format === 'txt') return `${result.text}\n`;
  if (format === 'srt') return result.srt;
  if (format === 'vtt') return result.vtt;
  return `${JSON.stringify(job, null, 2)}\n`;
}

async function submit(paths: string[], o: SubmitOptions): Promise<number> {
  const t = target(o);
  const files = await audioFiles(paths);
  if (files.length === 0) throw new ApiError('NO_FILES', `no audio files under ${paths.join(', ')}`);
  const display = process.stdout.isTTY ? bars(files.length) : lines();
  const ws: Client | null = o.wait
    ? createClient({
        url: t.url.replace(/^http/, 'ws'),
        webSocketImpl: WebSocket,
        connectionParams: t.key ? { authorization: `Bearer ${t.key}` } : {},
        lazy: true,
        retryAttempts: 5,
      })
    : null;
  const outcomes: Outcome[] = [];
  const queue = new PQueue({ concurrency: o.concurrency });
  try {
    await Promise.all(
      files.map((path) =>
        queue.add(async () => {
          const size = (await stat(path)).size;
          const shown = display.start(path, size);
          let outcome: Outcome;
          try {
            outcome = await submitOne(t, ws, path, o, shown);
          } catch (err) {
            outcome = { path, status: 'FAILED', reason: err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message };
          }
          shown.end(outcome);
          outcomes.push(outcome);
        }),
      ),
    );
  } finally {
    display.stop();
    await ws?.dispose();
  }
  const count = (s: Outcome['status']) => outcomes.filter((x) => x.status === s).length;
  const failed = count('FAILED') + count('CANCELLED');
  const summary = o.wait ? `${count('DONE')} done, ${failed} failed` : `${count('SUBMITTED')} submitted, ${failed} failed`;
  console.log(`${summary} (${files.length} file${files.length === 1 ? '' : 's'})`);
  return failed > 0 ? 1 : 0;
}

async function submitOne(
  t: Target,
  ws: Client | null,
  path: string,
  o: SubmitOptions,
  shown: ReturnType<Display['start']>,
): Promise<Outcome> {
  // Same content, same options: the same job. Asked for first, so a file sent before is not sent again
  // (were two runs to race, the server still answers the second upload with the first's job).
  const idempotencyKey = `murmur-submit:${await contentHash(path)}:${o.task}:${o.language ?? 'auto'}`;
  const known = (
    await gql<{ jobByIdempotencyKey: { id: string } | null }>(t, `query ($key: String!) { jobByIdempotencyKey(key: $key) { id } }`, {
      key: idempotencyKey,
    })
  ).jobByIdempotencyKey;
  const job =
    known ??
    (await upload(
      t,
      path,
      { idempotencyKey, task: o.task === 'translate' ? 'TRANSLATE' : 'TRANSCRIBE', ...(o.language && { language: o.language }) },
      shown.uploaded,
    ));
  shown.queued(job.id);
  if (!ws) return { path, status: 'SUBMITTED', id: job.id };
  const final = await new Promise<JobView | null>((resolveJob, reject) => {
    let last: JobView | null = null;
    ws.subscribe(
      { query: `subscription ($id: ID!) { jobUpdated(id: $id) { ${JOB_FIELDS} ${RESULT_FIELDS} } }`, variables: { id: job.id } },
      {
        next: ({ data, errors }) => {
          if (errors?.length) return reject(new ApiError((errors[0].extensions?.code as string) ?? 'ERROR', errors[0].message));
          last = (data as { jobUpdated: JobView }).jobUpdated;
          shown.update(last.status, last.progress, last.result);
        },
        error: (err) => reject(err instanceof Error ? err : new Error(String((err as { reason?: string })?.reason ?? err))),
        complete: () => resolveJob(last),
      },
    );
  });
  if (!final || final.status !== 'DONE')
    return {
      path,
      status: final?.status === 'CANCELLED' ? 'CANCELLED' : 'FAILED',
      reason: final?.error ? `${final.error.code}: ${final.error.message}` : 'the job did not finish',
    };
  const output = join(o.out ? resolve(o.out) : dirname(path), `${basename(path, extname(path))}.${o.format}`);
  await mkdir(dirname(output), { recursive: true });
  await writeFile(output, render(o.format, final.result!, final));
  return { path, status: 'DONE', output };
}

const apiOptions = (c: Command) =>
  c
    .option('--api <url>', 'the server (default $MURMUR_API_URL, else http://localhost:4000)')
    .option('--key <key>', 'an API key (default $MURMUR_API_KEY)');

export function submitCommand(): Command {
  return apiOptions(
    new Command('submit')
      .description('send audio files (and the audio files in folders) to a murmur server, follow them, write their transcripts')
      .argument('<paths...>', 'files or folders'),
  )
    .option('--language <code>', 'the language spoken (default: detected)')
    .addOption(
      new Option('--task <task>', 'transcribe, or translate into English').choices(['transcribe', 'translate']).default('transcribe'),
    )
    .addOption(new Option('--format <format>', 'what to write').choices(FORMATS).default('txt'))
    .option('--out <dir>', 'write the transcripts here (default: next to each file)')
    .option('--concurrency <n>', 'files in flight at once', integer('--concurrency', 1), 4)
    .option('--no-wait', 'only send them: print each job id and end')
    .action(async (paths: string[], o: SubmitOptions) => {
      process.exitCode = await submit(paths, o);
    });
}

export function jobsCommand(): Command {
  const jobs = new Command('jobs').description('the jobs on a murmur server: list, get, cancel, retry');
  apiOptions(jobs.command('list').description('the newest jobs'))
    .option('--first <n>', 'how many', integer('--first', 1), 20)
    .option('--json', 'as JSON')
    .action(async (o: { api?: string; key?: string; first: number; json?: boolean }) => {
      const data = await gql<{ jobs: { nodes: JobView[] } }>(
        target(o),
        `query ($first: Int!) { jobs(first: $first) { nodes { ${JOB_FIELDS} } } }`,
        { first: o.first },
      );
      if (o.json) return console.log(JSON.stringify(data.jobs.nodes, null, 2));
      for (const j of data.jobs.nodes)
        console.log([j.id, j.status.padEnd(10), `${Math.round(j.progress * 100)}%`.padStart(4), j.createdAt, j.input.filename].join('  '));
    });
  apiOptions(jobs.command('get').description('one job; with --format, its transcript').argument('<id>'))
    .addOption(new Option('--format <format>', 'print the transcript').choices(FORMATS))
    .action(async (id: string, o: { api?: string; key?: string; format?: Format }) => {
      const data = await gql<{ job: JobView | null }>(target(o), `query ($id: ID!) { job(id: $id) { ${JOB_FIELDS} ${RESULT_FIELDS} } }`, {
        id,
      });
      if (!data.job) throw new ApiError('JOB_NOT_FOUND', `no job with id ${id}`);
      if (!o.format) return console.log(JSON.stringify(data.job, null, 2));
      if (!data.job.result) throw new ApiError('NOT_DONE', `job ${id} is ${data.job.status}: no transcript yet`);
      process.stdout.write(render(o.format, data.job.result, data.job));
    });
  for (const [name, mutation, what] of [
    ['cancel', 'cancelJob', 'stop a job that has not finished'],
    ['retry', 'retryJob', 'queue a failed or cancelled job again'],
  ] as const) {
    apiOptions(jobs.command(name).description(what).argument('<id>')).action(async (id: string, o: { api?: string; key?: string }) => {
      const data = await gql<Record<string, { id: string; status: string }>>(
        target(o),
        `mutation ($id: ID!) { ${mutation}(id: $id) { id status } }`,
        { id },
      );
      console.log(`${data[mutation].id} ${data[mutation].status}`);
    });
  }
  return jobs;
}

/** `murmur` with the client commands alone. */
export function clientProgram(): Command {
  return new Command('murmur')
    .description('murmur: a self-hostable speech-to-text job service')
    .addCommand(submitCommand())
    .addCommand(jobsCommand());
}
