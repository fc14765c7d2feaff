// Drives Debian's Chromium through the notes site (examples/notes) as a person would, at a
// desktop and a phone size, and prints what it saw as one JSON object for
// tests/e2e/test_browser.py to judge.
// usage: node check_notes.mjs BASE_URL [--ca ROOT.pem] [--screenshots DIR]
// --ca: a root certificate Chromium trusts for this run (an NSS database in a throwaway HOME).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const SIZES = {
  desktop: { viewport: { width: 1280, height: 800 } },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    deviceScaleFactor: 3 },
};

// No GPU, no sandbox (CI runs as root), and no traffic of Chromium's own beyond the site's.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];

// Chromium on Linux trusts the roots in $HOME/.pki/nssdb besides the system's.
function trustRoot(home, caFile) {
  const dir = join(home, '.pki', 'nssdb');
  mkdirSync(dir, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${dir}`, '-N', '--empty-password']);
  execFileSync('certutil',
    ['-d', `sql:${dir}`, '-A', '-t', 'C,,', '-n', 'test-root', '-i', caFile]);
}

// Everything that goes wrong on the context's pages ends up in problems: console errors,
// uncaught exceptions, failed requests, HTTP errors and CSP violations.
async function watch(context, problems, navigations) {
  await context.exposeBinding('reportCspViolation',
    (_source, text) => problems.push(`CSP: ${text}`));
  await context.addInitScript(() => document.addEventListener('securitypolicyviolation',
    (e) => window.reportCspViolation(
      `${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`)));
  context.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  context.on('weberror', (e) => problems.push(`exception: ${e.error().message}`));
  context.on('requestfailed',
    (r) => problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
  context.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    if (r.request().isNavigationRequest())
      navigations.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`);
  });
}

// What the stylesheet and the viewport meta did to the page.
function layout(page) {
  return page.evaluate(() => {
    const width = window.innerWidth;
    const style = (selector) => getComputedStyle(document.querySelector(selector));
    const name = (el) => el.tagName.toLowerCase() + (el.id ? `#${el.id}` : '');
    return {
      innerWidth: width,
      scrollWidth: document.documentElement.scrollWidth,
      overflowing: [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > width + 0.5).map(name),
      // nor out of its card's padding (a grid track wider than the form, say)
      outOfCard: [...document.querySelectorAll('.card *')].filter((el) => {
        const card = el.closest('.card');
        const { left, right } = card.getBoundingClientRect();
        const inset = (side) => parseFloat(getComputedStyle(card)[`padding${side}`])
          + parseFloat(getComputedStyle(card)[`border${side}Width`]);
        const box = el.getBoundingClientRect();
        return box.left < left + inset('Left') - 0.5 || box.right > right - inset('Right') + 0.5;
      }).map(name),
      viewportMeta: document.querySelector('meta[name=viewport]')?.content ?? null,
      bodyMargin: style('body').margin,
      headerDisplay: style('.site-header').display,
      mainWidth: document.querySelector('main').getBoundingClientRect().width,
      submitWidth: document.querySelector('.new-note button').getBoundingClientRect().width,
    };
  });
}

// Widths of the linked icon and of /favicon.ico as the browser decodes them; 0: not an image.
function iconWidths(page) {
  return page.evaluate(async () => {
    const width = async (src) => {
      const img = new Image();
      img.src = src;
      return img.decode().then(() => img.naturalWidth, () => 0);
    };
    return { linked: await width(document.querySelector('link[rel=icon]').href),
      root: await width('/favicon.ico') };
  });
}

// The protocol each of the page's requests went over, as the browser's Resource Timing saw it
// (the page itself, the stylesheet, the icons): "h2", "http/1.1"...
function protocols(page) {
  return page.evaluate(() => Object.fromEntries(
    [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
      .map((e) => [new URL(e.name).pathname, e.nextHopProtocol])));
}

// Adds a note through the form (with a file attached), then deletes it with its button.
async function addAndDelete(page, base, label, screenshots) {
  const title = `${label} note ${Date.now()}`;
  await page.fill('#title', title);
  await page.fill('#body', 'typed in Chromium');
  await page.setInputFiles('#attachment', { name: 'hello.txt', mimeType: 'text/plain',
    buffer: Buffer.from('attached from the browser') });
  await page.click('.new-note button[type=submit]');
  await page.waitForURL(/#note-\d+$/);
  const heading = page.getByRole('heading', { name: title, exact: true });
  const note = page.locator('li.note', { has: heading });
  const added = { count: await note.count(), body: await note.locator('.body').innerText() };
  if (screenshots)
    await page.screenshot({ path: join(screenshots, `${label}.png`), fullPage: true });
  await note.getByRole('button', { name: `Delete ${title}` }).click();
  await page.waitForURL(`${base}/`);
  return { added, leftAfterDelete: await note.count() };
}

async function visit(browser, base, label, screenshots) {
  const context = await browser.newContext(SIZES[label]);
  const problems = [];
  const navigations = [];
  await watch(context, problems, navigations);
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const response = await page.goto(`${base}/`);
  const headers = await response.allHeaders();
  const result = { security: { csp: headers['content-security-policy'] ?? null,
    hsts: headers['strict-transport-security'] ?? null },
  layout: await layout(page), icons: await iconWidths(page), protocols: await protocols(page),
    ...(await addAndDelete(page, base, label, screenshots)) };
  await context.close();
  return { ...result, navigations, problems };
}

async function main() {
  const { values, positionals } = parseArgs({ allowPositionals: true,
    options: { ca: { type: 'string' }, screenshots: { type: 'string' } } });
  const base = positionals[0].replace(/\/$/, '');
  // a throwaway HOME: its NSS database holds the --ca root, and nothing of the user's is used
  const home = mkdtempSync(join(tmpdir(), 'notes-chromium-'));
  try {
    if (values.ca) trustRoot(home, values.ca);
    // launch() gives Chromium a fresh --user-data-dir of its own, removed on close
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: CHROMIUM_ARGS, env: { ...process.env, HOME: home }, timeout: 30000 });
    try {
      const result = {};
      for (const label of Object.keys(SIZES))
        result[label] = await visit(browser, base, label, values.screenshots);
      console.log(JSON.stringify(result));
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
