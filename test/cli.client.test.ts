// `murmur submit` and `murmur jobs` against a real server with workers: plain
// lines without a terminal, progress bars in a real pseudo-terminal (script(1)),
// transcripts written where asked, a non-zero exit when a file fails, and no
// file transcribed twice when the same command runs again.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { speechFile, tone } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { murmur, startServer, wavBytes, type Server } from './helpers/service.ts';

const BIN = new URL('../src/cli/bin.js', import.meta.url).pathname;
let server: Server;
let key: string;
let folder: string;

/** `murmur …` as a user runs it: exit code and both streams, never throwing. */
function cli(args: string[], options: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: options.cwd, env: { ...process.env, MURMUR_API_URL: server.url, MURMUR_API_KEY: key }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const jobCount = async () =>
  (await server.gql(`{ jobs(first: 100) { nodes { id } } }`, {}, { authorization: `Bearer ${key}` })).data.jobs.nodes.length;

beforeAll(async () => {
  server = await startServer({ MURMUR_AUTH: 'keys', MURMUR_MODEL_DIR: await generatedModel(), MURMUR_MAX_WORKERS: '2' });
  key = (await murmur(['keys', 'create', '--name', 'cli', '--tenant', 'cli'], { MURMUR_DATA_DIR: server.dataDir })).trim();
  folder = mkdtempSync(join(tmpdir(), 'murmur-submit-'));
  mkdirSync(join(folder, 'talks', 'day 2'), { recursive: true });
  copyFileSync(speechFile('the first talk of the day'), join(folder, 'talks', 'first.wav'));
  copyFileSync(speechFile('the second talk, after lunch'), join(folder, 'talks', 'day 2', 'second.wav'));
  writeFileSync(join(folder, 'talks', 'notes.txt'), 'not audio, and not taken: not an audio file name');
}, 120_000);
afterAll(() => server?.stop());

describe('murmur submit', () => {
  it('without a terminal: a plain line a file, transcripts next to the files, a summary; the same command again transcribes nothing twice', async () => {
    const first = await cli(['submit', join(folder, 'talks'), '--format', 'srt', '--language', 'en']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^done first\.wav → .*talks\/first\.srt$/m);
    expect(first.stdout).toMatch(/^done second\.wav → .*talks\/day 2\/second\.srt$/m);
    expect(first.stdout.trim().split('\n').at(-1)).toBe('2 done, 0 failed (2 files)');
    expect(first.stdout).not.toMatch(/\x1b\[/); // no terminal codes
    const srt = readFileSync(join(folder, 'talks', 'first.srt'), 'utf8');
    expect(srt).toMatch(/^1\n00:00:\d\d,\d{3} --> /);
    const jobs = await jobCount();
    expect(jobs).toBe(2);

    const sentBefore = server.events.length;
    const again = await cli(['submit', join(folder, 'talks'), '--format', 'srt', '--language', 'en']);
    expect(again.code).toBe(0);
    expect(await jobCount()).toBe(jobs);
    // nor sent again: no request of the re-run carried a file (the server's log of each request and its size)
    const sizes = server.events
      .slice(sentBefore)
      .filter((e) => e.event === 'request' && e.method === 'POST')
      .map((e) => (e.bytes as number | undefined) ?? 0);
    expect(sizes.length).toBeGreaterThan(0);
    expect(Math.max(...sizes)).toBeLessThan(statSync(join(folder, 'talks', 'first.wav')).size);
    expect(readFileSync(join(folder, 'talks', 'first.srt'), 'utf8')).toBe(srt);
    // other options are another job
    await cli(['submit', join(folder, 'talks', 'first.wav'), '--task', 'translate', '--out', join(folder, 'translated')]);
    expect(await jobCount()).toBe(jobs + 1);
    expect(readdirSync(join(folder, 'translated'))).toEqual(['first.txt']);
  });

  it('ends non-zero naming what failed, and still writes the rest', async () => {
    const mixed = join(folder, 'mixed');
    mkdirSync(mixed);
    copyFileSync(join(folder, 'talks', 'first.wav'), join(mixed, 'good.wav'));
    writeFileSync(join(mixed, 'broken.wav'), 'RIFF this is not a wave file at all');
    const run = await cli(['submit', mixed, '--format', 'vtt', '--out', join(folder, 'mixed-out')]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^failed broken\.wav: AUDIO_UNDECODABLE: /m);
    expect(run.stdout.trim().split('\n').at(-1)).toBe('1 done, 1 failed (2 files)');
    expect(readFileSync(join(folder, 'mixed-out', 'good.vtt'), 'utf8')).toMatch(/^WEBVTT/);
    expect(existsSync(join(folder, 'mixed-out', 'broken.vtt'))).toBe(false);
  });

  it('in a terminal: a bar a file in flight and an overall bar', async () => {
    const bars = join(folder, 'bars');
    mkdirSync(bars);
    for (const name of ['a', 'b', 'c']) copyFileSync(speechFile(`file ${name} in a terminal`), join(bars, `${name}.wav`));
    // script(1) runs the command in a real pseudo-terminal and copies what it wrote
    const command = [process.execPath, BIN, 'submit', bars, '--concurrency', '2'].map((a) => `'${a}'`).join(' ');
    const run = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(
        'script',
        ['-qefc', command, '/dev/null'],
        { env: { ...process.env, MURMUR_API_URL: server.url, MURMUR_API_KEY: key, TERM: 'xterm', COLUMNS: '120' }, timeout: 120_000 },
        (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout }),
      ),
    );
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/\x1b\[/); // drawn with terminal codes
    expect(run.out).toMatch(/█+░* \d+% \| a\.wav \| /);
    expect(run.out).toMatch(/ 3\/3 \| 3 files \| 3 done/);
    expect(run.out).toMatch(/✔ done c\.wav → /);
    expect(run.out).toMatch(/3 done, 0 failed \(3 files\)/);
    for (const name of ['a', 'b', 'c']) expect(readFileSync(join(bars, `${name}.txt`), 'utf8').length).toBeGreaterThan(1);
  });
});

describe('murmur submit on a terminal, a long job', () => {
  it('shows its text as it grows, each segment once, while the job still runs', async () => {
    // 40 windows of 100 tokens: the worker's 16 rows take them in three rounds, so the first windows' text is
    // there well before the job is done.
    const grow = await startServer({
      MURMUR_MODEL_DIR: await generatedModel({ tokensPerWindow: 100 }),
      MURMUR_MAX_WORKERS: '1',
      MURMUR_SEGMENTATION: 'fixed',
    });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'murmur-grow-'));
      writeFileSync(join(dir, 'long.wav'), wavBytes(tone(300, 40 * 30 - 5)));
      const command = [process.execPath, BIN, 'submit', join(dir, 'long.wav')].map((a) => `'${a}'`).join(' ');
      const child = spawn('script', ['-qefc', command, '/dev/null'], {
        env: { ...process.env, MURMUR_API_URL: grow.url, TERM: 'xterm', COLUMNS: '120' },
      });
      let out = '';
      let statusAtFirstLine: Promise<string> | null = null;
      child.stdout.on('data', (chunk) => {
        out += chunk;
        if (!statusAtFirstLine && /long\.wav \d+:\d\d\.\d {2}\S/.test(out))
          statusAtFirstLine = grow.gql(`{ jobs(first: 1) { nodes { status } } }`).then((r) => r.data.jobs.nodes[0].status);
      });
      const code = await new Promise((resolve) => child.on('exit', resolve));
      expect(code).toBe(0);
      expect(await statusAtFirstLine).toBe('PROCESSING');
      const { data } = await grow.gql(`{ jobs(first: 1) { nodes { status result { segments { start } } } } }`);
      expect(data.jobs.nodes[0].status).toBe('DONE');
      expect((out.match(/long\.wav \d+:\d\d\.\d {2}\S/g) ?? []).length).toBe(data.jobs.nodes[0].result.segments.length);
    } finally {
      await grow.stop();
    }
  });
});

describe('murmur jobs', () => {
  it('lists, gets, cancels and retries; --no-wait only submits', async () => {
    const idle = await startServer({ MURMUR_AUTH: 'keys', MURMUR_MAX_WORKERS: '0' });
    const idleKey = (await murmur(['keys', 'create', '--name', 'cli'], { MURMUR_DATA_DIR: idle.dataDir })).trim();
    const on = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [BIN, ...args, '--api', idle.url, '--key', idleKey], { timeout: 60_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? 1 : 0, stdout, stderr }),
        ),
      );
    try {
      const sent = await on(['submit', join(folder, 'talks', 'first.wav'), '--no-wait']);
      expect(sent.code).toBe(0);
      const id = sent.stdout.match(/^submitted first\.wav: job (\S+)$/m)![1];
      expect(sent.stdout.trim().split('\n').at(-1)).toBe('1 submitted, 0 failed (1 file)');
      expect((await on(['jobs', 'list'])).stdout).toMatch(new RegExp(`^${id}  PENDING .* first\\.wav$`, 'm'));
      expect(JSON.parse((await on(['jobs', 'get', id])).stdout)).toMatchObject({ id, status: 'PENDING', result: null });
      expect((await on(['jobs', 'cancel', id])).stdout.trim()).toBe(`${id} CANCELLED`);
      expect((await on(['jobs', 'retry', id])).stdout.trim()).toBe(`${id} PENDING`);
      const noTranscript = await on(['jobs', 'get', id, '--format', 'txt']);
      expect(noTranscript.code).toBe(1);
      expect(noTranscript.stderr).toMatch(/NOT_DONE: .*PENDING/);
      const unknown = await on(['jobs', 'cancel', 'no-such-job']);
      expect(unknown.stderr).toMatch(/^murmur: JOB_NOT_FOUND: /);
    } finally {
      await idle.stop();
    }
  });
});
