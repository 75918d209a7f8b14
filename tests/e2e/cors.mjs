// A browser app on another origin calling the API: opens PAGE in headless
// Debian Chromium, runs fetch(API) there with a bearer token (a
// non-safelisted header, so the browser sends a CORS preflight first) and
// prints what the script could read as one JSON line.
//
// Usage: node cors.mjs PAGE_URL API_URL TOKEN
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [pageUrl, apiUrl, token] = process.argv.slice(2);
if (!pageUrl || !apiUrl || !token) {
  console.error('usage: node cors.mjs PAGE_URL API_URL TOKEN');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const userDataDir = mkdtempSync(join(tmpdir(), 'cors-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
    '--disable-sync',
    '--disable-quic',
  ],
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(pageUrl, { waitUntil: 'load', timeout: 30000 });
  const seen = await page.evaluate(
    async ([url, token]) => {
      try {
        const r = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
        return {
          status: r.status,
          requestId: r.headers.get('x-request-id'),
          body: await r.json(),
          origin: location.origin,
        };
      } catch (e) {
        return { status: null, error: String(e), origin: location.origin };
      }
    },
    [apiUrl, token],
  );
  console.log(JSON.stringify(seen));
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
