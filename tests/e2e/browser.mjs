// Loads a page in headless Debian Chromium (driven by playwright-core, no
// downloaded browser), waits for the client component to hydrate, saves a
// screenshot and prints what it saw as one JSON line.
//
// Usage: node browser.mjs URL SCREENSHOT.png [COOKIE_NAME=VALUE]
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, screenshot, cookie] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node browser.mjs URL SCREENSHOT.png [COOKIE_NAME=VALUE]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const userDataDir = mkdtempSync(join(tmpdir(), 'e2e-chromium-'));
// The machine's network is closed: keep Chromium from calling home.
const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-quic',
];
// HTTPS tests: the gateway's test certificate is trusted by its public key
// (base64 SHA-256 of the SubjectPublicKeyInfo), no other certificate is.
if (process.env.TRUST_SPKI) args.push(`--ignore-certificate-errors-spki-list=${process.env.TRUST_SPKI}`);
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args,
  viewport: { width: 1024, height: 600 },
});
try {
  if (cookie) {
    const [name, ...rest] = cookie.split('=');
    await context.addCookies([{ name, value: rest.join('='), url }]);
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const failed = [];
  page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) failed.push(`${r.url()}: ${r.status()}`);
  });
  const response = await page.goto(url, { waitUntil: 'load', timeout: 30000 });
  // null: the page has no client component (e.g. the login page).
  let hydrated = null;
  if (await page.$('#js-status')) {
    hydrated = await page
      .waitForSelector('#js-status[data-hydrated="yes"]', { timeout: 15000 })
      .then(() => true, () => false);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(
    JSON.stringify({
      status: response?.status() ?? 0,
      url: page.url(),
      title: await page.title(),
      heading: await page.textContent('h1').catch(() => null),
      jsStatus: await page.textContent('#js-status').catch(() => null),
      hydrated,
      failed,
      // "h2" or "http/1.1" for the page and for every script it loaded.
      protocols: await page.evaluate(() => [
        ...new Set(
          [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
            .map((e) => e.nextHopProtocol),
        ),
      ]),
      tls: (await response?.securityDetails())?.protocol ?? null,
    }),
  );
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
