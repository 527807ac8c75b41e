// The README's examples, run as they are written: each fenced block whose
// info string names a file (```js openai.mjs) is taken from README.md, its
// address pointed at a real server, and run in a folder holding recording.wav.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { speechFile } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { murmur, startServer, type Server } from './helpers/service.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const run = promisify(execFile);

/** The README's fenced blocks that name a file, by that name. */
function examples(): Map<string, string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return new Map([...readme.matchAll(/^```\w+ ([\w.-]+)\n([\s\S]*?)^```$/gm)].map((m) => [m[1], m[2]]));
}

let server: Server;
let key: string;
let folder: string;
beforeAll(async () => {
  server = await startServer({ MURMUR_AUTH: 'keys', MURMUR_MODEL_DIR: await generatedModel(), MURMUR_MAX_WORKERS: '1' });
  key = (await murmur(['keys', 'create', '--name', 'readme'], { MURMUR_DATA_DIR: server.dataDir })).trim();
  folder = mkdtempSync(join(tmpdir(), 'murmur-readme-'));
  copyFileSync(speechFile('the examples in the read me file run as they are written'), join(folder, 'recording.wav'));
}, 120_000);
afterAll(() => server?.stop());

/** An example as a file: the server's address in place of localhost:4000. Scripts live inside the project so `import 'openai'` finds its node_modules. */
function write(name: string): string {
  const code = examples().get(name);
  expect(code, `README.md has no block named ${name}`).toBeDefined();
  const dir = join(ROOT, 'node_modules', '.cache', 'murmur-readme');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(path, code!.replaceAll('http://localhost:4000', server.url.replace(/\/graphql$/, '')));
  return path;
}

const env = () => ({ ...process.env, MURMUR_API_KEY: key });

describe('README examples', () => {
  it("openai.mjs: OpenAI's SDK prints the text, then each word with its times", async () => {
    const { stdout } = await run(process.execPath, [write('openai.mjs')], { cwd: folder, env: env() });
    const [text, ...words] = stdout.trim().split('\n');
    expect(text.length).toBeGreaterThan(0);
    expect(words.length).toBeGreaterThan(2);
    for (const line of words) expect(line).toMatch(/^\d+(\.\d+)? \d+(\.\d+)? \S/);
  });

  it('submit.sh: murmur submit writes recording.srt beside the file', async () => {
    // `npx murmur` is this project's bin: run it from the project, in the folder holding the recording
    const script = write('submit.sh').replace(/\.sh$/, '.run.sh');
    writeFileSync(
      script,
      readFileSync(write('submit.sh'), 'utf8').replace('npx murmur', `${process.execPath} ${join(ROOT, 'src/cli/bin.js')}`),
    );
    const { stdout } = await run('bash', [script], { cwd: folder, env: env() });
    expect(stdout).toMatch(/^done recording\.wav → .*recording\.srt$/m);
    expect(readFileSync(join(folder, 'recording.srt'), 'utf8')).toMatch(/^1\n00:00:\d\d,\d{3} --> /);
  });

  it('openai-curl.sh: curl gets SubRip subtitles', async () => {
    const { stdout } = await run('bash', [write('openai-curl.sh')], { cwd: folder, env: env() });
    expect(stdout).toMatch(/^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S/);
  });
});
