// The real binary on a free port with a throwaway SQLite database, and Debian's Chromium
// driven by playwright-core, watched for console errors and for requests that leave 127.0.0.1.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const ARTIFACTS = path.join(ROOT, 'target', 'browser-artifacts');

/**
 * Starts `taskflow serve`; resolves once it logs where it listens. `again`: the server to
 * start anew on its own address and database (after `stop({ keep: true })`).
 */
export async function startServer(again) {
  const bin = process.env.TASKFLOW_BIN ?? path.join(ROOT, 'target', 'debug', 'taskflow');
  const dir = again?.dir ?? mkdtempSync(path.join(tmpdir(), 'taskflow-browser-'));
  const bind = again ? again.url.replace('http://', '') : '127.0.0.1:0';
  const off = ['--rate-limit-per-ip', '--rate-limit-per-user', '--rate-limit-chat-per-user',
    '--rate-limit-auth-per-ip', '--rate-limit-auth-per-account'].flatMap((f) => [f, '0']);
  const child = spawn(bin, ['--log-format', 'json', 'serve', '--bind', bind,
    '--database-url', `sqlite:${dir}/taskflow.db`, ...off], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  const lines = readline.createInterface({ input: child.stderr });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`taskflow did not listen within 30 s:\n${log.join('\n')}`)), 30_000);
    lines.on('line', (line) => {
      log.push(line);
      const found = /"message":"listening"/.test(line) && line.match(/"addr":"([^"]+)"/);
      if (found) { clearTimeout(timer); resolve(found[1]); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`taskflow exited (${code}):\n${log.join('\n')}`)); });
  });
  return {
    url: `http://${addr}`,
    dir,
    log,
    /** Stops the server; `keep`: its database stays, to start it again. */
    async stop({ keep = false } = {}) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: FLAGS });
}

/**
 * A page that records its console errors, failed page errors and every request whose host is
 * not 127.0.0.1 in `problems`.
 */
export async function watchedPage(context, problems) {
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1') problems.push(`request left 127.0.0.1: ${r.url()}`);
  });
  return page;
}

/** Signs up through the page's form (`name` optional) and waits for the app to show. */
export async function signUpOn(page, email, name) {
  if (name) await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByLabel('Quick add').waitFor();
}

/** The REST API as the page's signed-in user. */
export async function restAs(page, base) {
  const token = await page.evaluate(() => localStorage.getItem('taskflow.token'));
  if (!token) throw new Error('the page holds no token');
  const call = async (method, p, body) => {
    const res = await fetch(base + p, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p} → ${res.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return { get: (p) => call('GET', p), post: (p, b = {}) => call('POST', p, b) };
}

export function screenshotsDir() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
