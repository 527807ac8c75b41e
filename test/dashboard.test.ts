// The dashboard in a real browser (Debian's chromium through playwright-core),
// every request off this machine blocked: it asks for the key, shows the
// queue, takes a file, follows its job live to DONE, downloads its SRT, and
// cancels and retries. Screenshots go to test/artifacts/.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { speech, speechFile } from './helpers/audio.ts';
import { generatedModel } from './helpers/models.ts';
import { startServer, wavBytes, type Server } from './helpers/service.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
let browser: Browser;
const servers: Server[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (.ci/run does)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
afterAll(async () => {
  await browser?.close();
  await Promise.all(servers.map((s) => s.stop()));
});

/** A server with keys and its first admin key. */
async function serverWithKey(env: Record<string, string>): Promise<{ server: Server; base: string; key: string }> {
  const server = await startServer({ MURMUR_AUTH: 'keys', ...env });
  servers.push(server);
  const key = (await server.waitForLine(/export MURMUR_API_KEY=(\S+)/))[1];
  return { server, base: server.url.replace(/\/graphql$/, ''), key };
}

/** A page that may reach this machine only; counts the bytes it is sent. */
async function offlinePage(): Promise<{ page: Page; blocked: string[]; bytes: () => number }> {
  const page = await browser.newPage({ acceptDownloads: true });
  const blocked: string[] = [];
  let bytes = 0;
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === '127.0.0.1' || host === 'localhost') return route.continue();
    blocked.push(route.request().url());
    return route.abort();
  });
  page.on(
    'response',
    (r) =>
      void r.body().then(
        (b) => (bytes += b.length),
        () => {},
      ),
  );
  return { page, blocked, bytes: () => bytes };
}

// A short wait of its own: playwright's default (30 s) would outlast expect.poll's timeout.
const statusOf = (page: Page, filename: string) =>
  page
    .locator('#jobs tbody tr', { hasText: filename })
    .locator('.status')
    .innerText({ timeout: 250 })
    .catch(() => '');

describe('the dashboard', () => {
  it('asks for the key, shows the queue, takes a dropped file, follows it to DONE and downloads its SRT', async () => {
    const { base, key } = await serverWithKey({ MURMUR_MODEL_DIR: await generatedModel(), MURMUR_MAX_WORKERS: '1' });
    const { page, blocked, bytes } = await offlinePage();
    await page.goto(`${base}/`);
    await page.locator('#key-dialog[open]').waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-key.png') });
    // the first load, everything the page fetched
    expect(bytes()).toBeLessThan(300_000);
    console.log(`dashboard first load: ${(bytes() / 1024).toFixed(1)} kB`);
    await page.fill('#key-input', key);
    await page.click('#key-form button[type=submit]');
    await expect
      .poll(
        () =>
          page
            .locator('dd[data-count="live workers"]')
            .innerText()
            .catch(() => ''),
        { timeout: 15_000 },
      )
      .toMatch(/^\d+$/);

    await page.setInputFiles('#file', speechFile('a file given to the dashboard'));
    await expect.poll(() => page.locator('#uploads .state').first().innerText(), { timeout: 15_000 }).toBe('sent');
    await expect.poll(() => statusOf(page, 'speech.wav'), { timeout: 60_000 }).toBe('DONE');
    await page.locator('#jobs tbody tr', { hasText: 'speech.wav' }).click();
    await page.locator('#detail table.segments tbody tr').first().waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-done.png'), fullPage: true });
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#detail a', { hasText: 'SRT' }).click()]);
    expect(download.suggestedFilename()).toBe('speech.srt');
    expect(readFileSync((await download.path())!, 'utf8')).toMatch(/^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n\S/);
    // the queue's counts are read again when a job changes status
    await expect.poll(() => page.locator('dd[data-count="done"]').innerText(), { timeout: 10_000 }).toBe('1');
    expect(blocked).toEqual([]);
  });

  it("shows a running job's text as it grows, then its transcript", async () => {
    // 100 tokens a window and 24 minutes of audio in fixed windows: long enough to watch it run.
    const { base, key } = await serverWithKey({
      MURMUR_MODEL_DIR: await generatedModel({ tokensPerWindow: 100 }),
      MURMUR_MAX_WORKERS: '1',
      MURMUR_SEGMENTATION: 'fixed',
    });
    const { page } = await offlinePage();
    await page.goto(`${base}/?key=${key}`);
    const fox = speech('the quick brown fox jumps over the lazy dog');
    const long = new Float32Array(16000 * 60 * 24).map((_, i) => fox[i % fox.length]);
    const file = join(mkdtempSync(join(tmpdir(), 'murmur-dashboard-')), 'long.wav');
    writeFileSync(file, wavBytes(long));
    await page.setInputFiles('#file', file);
    await expect.poll(() => statusOf(page, 'long.wav'), { timeout: 60_000, interval: 100 }).toBe('PROCESSING');
    await page.locator('#jobs tbody tr', { hasText: 'long.wav' }).click();
    const soFar = page.locator('#detail blockquote.partial');
    await soFar.waitFor({ timeout: 60_000 });
    const first = await soFar.innerText();
    expect(first.length).toBeGreaterThan(0);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-partial.png'), fullPage: true });
    await expect.poll(() => statusOf(page, 'long.wav'), { timeout: 120_000 }).toBe('DONE');
    await page.locator('#detail table.segments tbody tr').first().waitFor();
    expect(await page.locator('#detail blockquote.partial').count()).toBe(0);
    const whole = await page.locator('#detail blockquote').innerText();
    expect(whole.startsWith(first)).toBe(true);
    expect(whole.length).toBeGreaterThan(first.length);
  });

  it('cancels a job that waits and retries it', async () => {
    const { server, base, key } = await serverWithKey({ MURMUR_MAX_WORKERS: '0' });
    const { page } = await offlinePage();
    await page.goto(`${base}/?key=${key}`);
    await page.setInputFiles('#file', speechFile('a job nobody takes'));
    await expect.poll(() => statusOf(page, 'speech.wav'), { timeout: 15_000 }).toBe('PENDING');
    // a job created elsewhere comes into the list as it is made (jobsChanged; the page reads the list itself every 15 s only)
    const made = await server.upload(wavBytes(speech('made elsewhere')), 'elsewhere.wav', {}, 'id', { authorization: `Bearer ${key}` });
    expect(made.errors).toBeUndefined();
    await expect.poll(() => statusOf(page, 'elsewhere.wav'), { timeout: 5_000 }).toBe('PENDING');
    await page.locator('#jobs tbody tr', { hasText: 'speech.wav' }).click();
    await page.locator('#detail button', { hasText: 'Cancel' }).click();
    await expect.poll(() => statusOf(page, 'speech.wav'), { timeout: 10_000 }).toBe('CANCELLED');
    await page.locator('#detail button', { hasText: 'Retry' }).click();
    await expect.poll(() => statusOf(page, 'speech.wav'), { timeout: 10_000 }).toBe('PENDING');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-retried.png'), fullPage: true });
  });
});
