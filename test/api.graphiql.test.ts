// GraphiQL in a real browser (Debian's chromium through playwright-core) with
// every request off this machine blocked: the page must render and run an
// operation with nothing from a CDN.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedModel } from './helpers/models.ts';
import { startServer, type Server } from './helpers/service.ts';

const CHROMIUM = '/usr/bin/chromium';
let server: Server;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (.ci/run does)`);
  server = await startServer({ MURMUR_MODEL_DIR: await generatedModel(), MURMUR_MAX_WORKERS: '0' });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe('GraphiQL', () => {
  it('renders offline with the example operations and runs a query', async () => {
    const page = await browser.newPage();
    const blocked: string[] = [];
    await page.route('**/*', (route) => {
      const host = new URL(route.request().url()).hostname;
      if (host === '127.0.0.1' || host === 'localhost') return route.continue();
      blocked.push(route.request().url());
      return route.abort();
    });
    await page.goto(server.url);
    await page.locator('.graphiql-container').first().waitFor({ timeout: 30_000 });
    await expect.poll(() => page.locator('.graphiql-query-editor').first().innerText(), { timeout: 15_000 }).toContain('createJob');
    const tabs = await page.locator('.graphiql-tab').allInnerTexts();
    expect(tabs.join(' ')).toMatch(/Cancel.*Jobs.*Job.*Follow/s);
    expect(blocked).toEqual([]);

    // Run the queue query from the second tab and read the answer in the response pane.
    // The tabs are drawn overlapping while they settle into place: click the button itself, not a point on screen.
    await page.locator('button.graphiql-tab-button[title="Jobs"]').dispatchEvent('click');
    await expect.poll(() => page.locator('.graphiql-tab-active').innerText()).toBe('Jobs');
    // The editor takes the tab's text a moment after the tab turns active: executing before then runs the old tab's operation.
    await expect.poll(() => page.locator('.graphiql-query-editor').first().innerText(), { timeout: 15_000 }).toMatch(/query\s+Jobs/);
    // GraphiQL takes the operation name from the tab a beat after its text, and a click on the
    // run button in between asks for the old tab's operation. Running from the keyboard with the
    // cursor inside the operation names it from the cursor (GraphiQL's own run-at-cursor), so:
    // put the cursor on the query's line and press Ctrl+Enter.
    const run = async () => {
      await page.locator('.graphiql-query-editor').first().getByText('jobs(first: 10)').first().click();
      await page.keyboard.press('Control+Enter');
    };
    await run();
    await expect
      .poll(
        async () => {
          const response = await page.locator('.graphiql-response').first().innerText();
          if (/Cannot infer operation/.test(response)) await run();
          return response;
        },
        { timeout: 15_000 },
      )
      .toMatch(/"data"[\s\S]*"jobs"[\s\S]*"edges"/);
  });
});
