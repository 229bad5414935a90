// Lighthouse (performance, accessibility, best practices) on the board view of a signed-in
// person, in Debian's Chromium: Lighthouse drives it over its debugging port, after
// playwright-core signed up through the page in the same profile.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import lighthouse from 'lighthouse';
import { chromium } from 'playwright-core';
import { FLAGS, restAs, screenshotsDir, signUpOn, startServer } from './harness.mjs';

const MINIMUM = 95;

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function debuggable(port) {
  for (let i = 0; i < 100; i += 1) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/json/version`);
      if (res.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('Chromium did not open its debugging port');
}

test(`Lighthouse scores the board at least ${MINIMUM} for performance, accessibility and best practices`, async () => {
  const server = await startServer();
  const port = await freePort();
  const profile = mkdtempSync(path.join(tmpdir(), 'taskflow-lighthouse-'));
  const chrome = spawn(process.env.CHROMIUM ?? '/usr/bin/chromium', ['--headless=new', `--remote-debugging-port=${port}`,
    `--user-data-dir=${profile}`, ...FLAGS, 'about:blank'], { stdio: 'ignore' });
  try {
    await debuggable(port);
    const browser = await chromium.connectOverCDP(`http://127.0.0.1:${port}`);
    const page = await browser.contexts()[0].newPage();
    await page.goto(server.url);
    await signUpOn(page, 'lighthouse@example.com', 'Lighthouse');
    const rest = await restAs(page, server.url);
    for (const [title, more] of [['pay rent', { recurrence: 'FREQ=MONTHLY;BYMONTHDAY=1', priority: 'high' }],
      ['call mom', { priority: 'urgent', due_date: new Date().toISOString().slice(0, 10) }],
      ['buy milk', { tags: ['errands'] }], ['plan the trip', { priority: 'low', tags: ['home'] }]]) {
      await rest.post('/api/tasks', { title, ...more });
    }
    // A first visit: nothing of the app in the HTTP cache.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.clearBrowserCache');
    await page.close();

    // The signed-in profile is kept: Lighthouse must not clear its storage.
    const result = await lighthouse(`${server.url}/#board`, {
      port, output: 'html', logLevel: 'error', disableStorageReset: true,
      onlyCategories: ['performance', 'accessibility', 'best-practices'],
    });
    const dir = screenshotsDir();
    writeFileSync(path.join(dir, 'lighthouse-board.html'), result.report);
    const scores = Object.fromEntries(Object.entries(result.lhr.categories)
      .map(([id, c]) => [id, Math.round(c.score * 100)]));
    const audits = result.lhr.audits;
    console.log(`lighthouse (mobile, simulated slow 4G): ${JSON.stringify(scores)}; ` +
      `first contentful paint ${audits['first-contentful-paint'].displayValue}, ` +
      `largest contentful paint ${audits['largest-contentful-paint'].displayValue}, ` +
      `total transfer ${audits['total-byte-weight'].displayValue}; report: target/browser-artifacts/lighthouse-board.html`);
    for (const [id, score] of Object.entries(scores)) {
      const failing = Object.values(audits)
        .filter((a) => a.score !== null && a.score < 1 && result.lhr.categories[id].auditRefs.some((r) => r.id === a.id && r.weight > 0))
        .map((a) => `${a.id}: ${a.title}`);
      assert.ok(score >= MINIMUM, `${id} ${score} < ${MINIMUM}; audits not passed: ${failing.join('; ')}`);
    }
    await browser.close().catch(() => {});
  } finally {
    if (chrome.exitCode === null) {
      const exited = new Promise((r) => chrome.once('exit', r));
      chrome.kill('SIGKILL');
      await exited;
    }
    await server.stop();
    rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
});
