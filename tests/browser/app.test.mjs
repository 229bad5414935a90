// The web app as people use it, in Debian's headless Chromium against the real binary.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import AxeBuilder from '@axe-core/playwright';
import { launch, restAs, screenshotsDir, signUpOn, startServer, watchedPage } from './harness.mjs';

let server;
let browser;
const problems = [];

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

let people = 0;
/** A new person: their own browser context, signed up through the page. */
async function signUp(name = 'Ada') {
  const context = await browser.newContext({ timezoneId: 'America/New_York', locale: 'en-US' });
  // The page's live streams, for a test to end one as the browser would.
  await context.addInitScript(() => {
    const Native = window.EventSource;
    window.__streams = [];
    window.EventSource = class extends Native {
      constructor(...args) { super(...args); window.__streams.push(this); }
    };
  });
  const page = await watchedPage(context, problems);
  await page.goto(server.url);
  if (people === 0) await accessibility(page, 'sign up');
  people += 1;
  await signUpOn(page, `person${people}-${Date.now()}@example.com`, name);
  return { context, page, rest: await restAs(page, server.url) };
}

const row = (page, title) => page.locator('ul.tasks li', { hasText: title });

/**
 * Fails with what went wrong on the pages so far: console errors, requests off the machine.
 * `expected`: messages the scenario causes on purpose (the browser logs a refused request).
 */
function noProblems(expected = []) {
  const left = problems.splice(0).filter((p) => !expected.some((re) => re.test(p)));
  assert.deepEqual(left, [], 'no console errors, no request leaves 127.0.0.1');
}

/** Serious or critical accessibility violations on the page as it is. */
async function accessibility(page, view) {
  const { violations } = await new AxeBuilder({ page }).analyze();
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${view}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target).join(' | ')}`), []);
}

test('the page is served from the binary with a strict policy and cached assets', async () => {
  const res = await fetch(server.url + '/');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/html/);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  const html = await res.text();
  const script = html.match(/src="(\/assets\/app\.[0-9a-f]+\.js)"/)[1];
  const js = await fetch(server.url + script, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(js.status, 200);
  assert.match(js.headers.get('cache-control'), /immutable/);
  assert.equal(js.headers.get('content-encoding'), 'gzip');
});

test('sign up, then quick add shows what it understood as chips and adds exactly that', async () => {
  const { context, page, rest } = await signUp();
  await accessibility(page, 'inbox (empty)');
  const quick = page.getByLabel('Quick add');
  await quick.fill('pay rent every 1st at 9am #home !high');
  const chip = (kind) => page.locator(`#chips .chip[data-kind="${kind}"]`);
  await chip('priority').filter({ hasText: 'high' }).waitFor();
  await chip('repeat').filter({ hasText: 'every month' }).waitFor();
  await chip('tag').filter({ hasText: '#home' }).waitFor();
  await chip('due').waitFor();
  await chip('title').filter({ hasText: 'pay rent' }).waitFor();
  // A chip taken away is not added.
  await page.getByRole('button', { name: 'Remove tag #home' }).click();
  await quick.press('Enter');
  await row(page, 'pay rent').waitFor();
  const [task] = (await rest.get('/api/tasks')).items;
  assert.equal(task.title, 'pay rent');
  assert.equal(task.priority, 'high');
  assert.deepEqual(task.tags, []);
  assert.match(task.recurrence, /FREQ=MONTHLY/);
  assert.match(task.recurrence, /BYMONTHDAY=1/);
  assert.ok(task.due_at, 'due at 9am on the 1st');
  const shown = await row(page, 'pay rent').innerText();
  assert.match(shown, /#1/);
  assert.match(shown, /every month/);
  assert.match(shown, /9:00/);
  await accessibility(page, 'inbox');
  await page.getByRole('button', { name: 'Upcoming' }).click();
  await page.locator('#list').waitFor();
  await accessibility(page, 'upcoming');
  await context.close();
  noProblems();
});

test('a change made elsewhere shows on every open page of the user within a second', async () => {
  const { context, page, rest } = await signUp();
  const second = await watchedPage(context, problems);
  await second.goto(server.url);
  await second.getByLabel('Quick add').waitFor();
  // Both pages hold their live stream before the change is made.
  await second.waitForFunction(() => document.querySelector('#offline').hidden);
  await page.waitForTimeout(300);
  const started = Date.now();
  await rest.post('/api/tasks', { title: 'call the plumber' });
  await Promise.all([
    row(page, 'call the plumber').waitFor({ timeout: 1000 }),
    row(second, 'call the plumber').waitFor({ timeout: 1000 }),
  ]);
  const took = Date.now() - started;
  assert.ok(took < 1000, `shown after ${took} ms`);
  await context.close();
  noProblems();
});

test('the chat adds a task and the board shows it; completing a recurring task shows the next', async () => {
  const { context, page, rest } = await signUp();
  await page.getByRole('button', { name: 'Board', exact: true }).click();
  await page.getByLabel('Message to the assistant').fill('add water the plants every monday at 8am');
  await page.getByLabel('Message to the assistant').press('Enter');
  await page.locator('.msg.assistant', { hasText: 'Added #1' }).waitFor();
  await page.getByRole('region', { name: 'Medium', exact: true }).locator('.card-task', { hasText: 'water the plants' })
    .waitFor({ timeout: 1000 });
  // The tool call's card opens the task it touched.
  await page.getByRole('button', { name: 'add task → #1 water the plants' }).click();
  await page.getByRole('dialog', { name: 'Edit #1' }).getByLabel('Repeats').waitFor();
  assert.equal(await page.getByRole('dialog', { name: 'Edit #1' }).getByLabel('Repeats').inputValue(), 'weekly');
  await page.getByRole('dialog', { name: 'Edit #1' }).getByRole('button', { name: 'Close' }).click();
  await page.getByRole('button', { name: 'Inbox', exact: true }).click();
  await row(page, 'water the plants').waitFor();
  await page.getByRole('checkbox', { name: 'Complete #1 water the plants' }).check();
  // The next occurrence arrives through the recurring service and the live stream.
  await page.getByRole('checkbox', { name: 'Complete #2 water the plants' }).waitFor({ timeout: 3000 });
  const done = await rest.get('/api/tasks?status=completed');
  assert.deepEqual(done.items.map((t) => t.number), [1]);
  await context.close();
  noProblems();
});

test('quick add and complete work from the keyboard alone', async () => {
  const { context, page, rest } = await signUp();
  await page.locator('body').click({ position: { x: 5, y: 300 } });
  await page.keyboard.press('q');
  await page.keyboard.type('renew the passport tomorrow');
  await page.keyboard.press('Enter');
  await row(page, 'renew the passport').waitFor();
  await page.keyboard.press('Escape');
  await page.keyboard.press('j');
  await page.keyboard.press('x');
  await page.waitForFunction(() => !document.querySelector('ul.tasks li'));
  const [task] = (await rest.get('/api/tasks?status=all')).items;
  assert.equal(task.status, 'completed');
  await context.close();
  noProblems();
});

test('a reminder due in a few seconds shows a toast and a notification in the bell', async () => {
  const { context, page, rest } = await signUp();
  await page.waitForFunction(() => document.querySelector('#offline').hidden);
  await page.waitForTimeout(300);
  const due = new Date(Date.now() + 3000).toISOString();
  await rest.post('/api/tasks', { title: 'take the cake out', due_at: due, reminders: [{ before_minutes: 0 }] });
  await page.locator('.toast', { hasText: 'Reminder: #1 “take the cake out”' }).waitFor({ timeout: 8000 });
  await page.getByRole('button', { name: 'Notifications, 1 unread' }).waitFor({ timeout: 3000 });
  await page.getByRole('button', { name: 'Notifications, 1 unread' }).click();
  await page.locator('#notifications li', { hasText: 'take the cake out' }).waitFor();
  assert.doesNotMatch(await page.locator('#notifications').innerText(), /\b(null|undefined)\b/);
  await page.getByRole('button', { name: 'Mark read' }).click();
  await page.getByRole('button', { name: 'Notifications', exact: true }).waitFor();
  await context.close();
  noProblems();
});

test('the side panel edits due, priority, repeat and reminders, and shows the history in words', async () => {
  const { context, page, rest } = await signUp();
  const created = await rest.post('/api/tasks', { title: 'team review', due_date: '2030-03-04' });
  await page.getByRole('button', { name: 'Edit #1 team review' }).click();
  const panel = page.getByRole('dialog', { name: 'Edit #1' });
  await panel.getByLabel('Priority').selectOption('urgent');
  await panel.getByLabel('Time (empty: all day)').fill('14:30');
  await panel.getByLabel('Repeats').selectOption('weekly');
  await panel.getByRole('checkbox', { name: 'Mon' }).check();
  await panel.getByRole('checkbox', { name: 'Wed' }).check();
  await panel.getByLabel('Ends').selectOption('count');
  await panel.getByLabel('Occurrences').fill('5');
  await panel.getByRole('checkbox', { name: '15 minutes before' }).check();
  await accessibility(page, 'editor');
  await panel.getByRole('button', { name: 'Save' }).click();
  await panel.waitFor({ state: 'detached' });
  const task = await rest.get(`/api/tasks/${created.id}`);
  assert.equal(task.priority, 'urgent');
  assert.equal(task.recurrence, 'FREQ=WEEKLY;BYDAY=MO,WE;COUNT=5');
  assert.equal(task.due_at, '2030-03-04T19:30:00Z', 'March 4 2030 14:30 in New York');
  assert.deepEqual(task.reminders.map((r) => r.before_minutes), [15]);
  await page.getByRole('button', { name: 'Edit #1 team review' }).click();
  await panel.getByLabel('Repeats').waitFor();
  assert.equal(await panel.getByLabel('Repeats').inputValue(), 'weekly', 'the rule reads back into the picker');
  const history = panel.getByRole('region', { name: 'History' });
  await history.getByText('priority moved from medium to urgent').waitFor();
  await history.getByText('created').waitFor();
  await panel.getByRole('button', { name: 'Close' }).click();
  await context.close();
  noProblems();
});

test('an edit that crossed a change made elsewhere is refused and shown, not saved over it', async () => {
  const { context, page, rest } = await signUp();
  const created = await rest.post('/api/tasks', { title: 'book flights' });
  await page.getByRole('button', { name: 'Edit #1 book flights' }).click();
  const panel = page.getByRole('dialog', { name: 'Edit #1' });
  await panel.getByLabel('Title').fill('book flights to Lisbon');
  const res = await fetch(`${server.url}/api/tasks/${created.id}`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${await page.evaluate(() => localStorage.getItem('taskflow.token'))}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title: 'book flights and hotel' }),
  });
  assert.equal(res.status, 200);
  await panel.getByRole('button', { name: 'Save' }).click();
  await panel.getByText('This task was changed elsewhere').waitFor();
  const [task] = (await rest.get('/api/tasks')).items;
  assert.equal(task.title, 'book flights and hotel', 'the other change stands');
  await panel.getByRole('button', { name: 'Show the current version' }).click();
  // The panel opens again with the version that stands.
  await page.waitForFunction(() => document.querySelector('#editor input[name=title]')?.value === 'book flights and hotel');
  await context.close();
  noProblems([/status of 412 \(Precondition Failed\)/]);
});

test('the board moves a task between columns by drag and by its move menu', async () => {
  const { context, page, rest } = await signUp();
  const plan = await rest.post('/api/tasks', { title: 'plan the trip', tags: ['home'] });
  await rest.post('/api/tasks', { title: 'ship the release', tags: ['work'], priority: 'high' });
  await page.getByRole('button', { name: 'Board', exact: true }).click();
  const column = (name) => page.getByRole('region', { name, exact: true });
  const card = page.locator('.card-task', { hasText: 'plan the trip' });
  await column('Medium').locator('.card-task', { hasText: 'plan the trip' }).waitFor();
  await accessibility(page, 'board');
  await card.dragTo(column('Urgent'));
  await column('Urgent').locator('.card-task', { hasText: 'plan the trip' }).waitFor();
  assert.equal((await rest.get(`/api/tasks/${plan.id}`)).priority, 'urgent');
  await page.getByLabel('Move #1 to').selectOption('low');
  await column('Low').locator('.card-task', { hasText: 'plan the trip' }).waitFor();
  assert.equal((await rest.get(`/api/tasks/${plan.id}`)).priority, 'low');
  await page.getByLabel('Columns by').selectOption('tag');
  await column('#home').locator('.card-task', { hasText: 'plan the trip' }).waitFor();
  await card.dragTo(column('#work'));
  await column('#work').locator('.card-task', { hasText: 'plan the trip' }).waitFor();
  assert.deepEqual((await rest.get(`/api/tasks/${plan.id}`)).tags, ['work']);
  await context.close();
  noProblems();
});

test('a deleted task comes back with undo, the list scrolls on, and going offline shows a banner', async () => {
  const { context, page, rest } = await signUp();
  for (let i = 1; i <= 60; i += 1) await rest.post('/api/tasks', { title: `errand ${String(i).padStart(2, '0')}`, tags: ['chores'] });
  await page.reload();
  await row(page, 'errand 01').waitFor();
  assert.equal(await page.locator('ul.tasks li').count(), 50, 'a page of 50');
  await page.locator('#more').scrollIntoViewIfNeeded();
  await row(page, 'errand 60').waitFor();
  assert.equal(await page.locator('ul.tasks li').count(), 60, 'the next page follows as it scrolls');

  await page.getByRole('button', { name: 'Delete #7 errand 07' }).click();
  await page.locator('.toast', { hasText: 'Deleted #7 “errand 07”' }).getByRole('button', { name: 'Undo' }).click();
  await page.locator('.toast', { hasText: 'Restored as #61' }).waitFor();
  const back = (await rest.get('/api/tasks?q=errand%2007')).items;
  assert.deepEqual(back.map((t) => [t.number, t.tags]), [[61, ['chores']]]);

  await context.setOffline(true);
  await page.locator('#offline').waitFor({ state: 'visible' });
  await context.setOffline(false);
  await page.locator('#offline').waitFor({ state: 'hidden', timeout: 10_000 });
  await context.close();
  noProblems([/net::ERR_INTERNET_DISCONNECTED/]);
});

test('when the server goes away the page says so, and the live stream resumes where it left off', async () => {
  const { context, page, rest } = await signUp();
  await rest.post('/api/tasks', { title: 'before the restart' });
  await row(page, 'before the restart').waitFor();
  const resumed = [];
  page.on('request', async (r) => {
    const u = new URL(r.url());
    if (u.pathname !== '/api/events') return;
    resumed.push((await r.allHeaders())['last-event-id'] ?? u.searchParams.get('last_event_id'));
  });
  await server.stop({ keep: true });
  await page.locator('#offline').waitFor({ state: 'visible', timeout: 10_000 });
  server = await startServer(server);
  await page.locator('#offline').waitFor({ state: 'hidden', timeout: 15_000 });
  // The browser asked for what came after the last event it had.
  assert.ok(resumed.length > 0 && resumed.every(Boolean), `reconnects carry Last-Event-ID: ${JSON.stringify(resumed)}`);
  await rest.post('/api/tasks', { title: 'after the restart' });
  await row(page, 'after the restart').waitFor({ timeout: 2000 });
  await context.close();
  noProblems([/ERR_CONNECTION_REFUSED|net::ERR_/]);
});

test('refusals and an unreachable server are said in words, and a reminder becomes a browser notification', async () => {
  const { context, page, rest } = await signUp();
  // A title over 500 characters: the server's problem detail, in a toast; nothing added.
  await page.getByLabel('Quick add').fill('x'.repeat(600));
  await page.getByLabel('Quick add').press('Enter');
  await page.locator('.toast', { hasText: 'title' }).waitFor();
  assert.deepEqual((await rest.get('/api/tasks')).items, []);
  // The server out of reach: said so, not a stack trace.
  await page.route('**/api/tasks**', (r) => r.abort('connectionrefused'));
  await page.getByRole('button', { name: 'Upcoming', exact: true }).click();
  await page.locator('.toast', { hasText: 'The server cannot be reached' }).waitFor();
  await page.unroute('**/api/tasks**');
  // With permission, a reminder is also a notification of the browser.
  await context.grantPermissions(['notifications'], { origin: server.url });
  await page.evaluate(() => {
    window.shown = [];
    const Real = window.Notification;
    window.Notification = class extends Real {
      constructor(title, options) { super(title, options); window.shown.push([title, options.body]); }
    };
    Object.defineProperty(window.Notification, 'permission', { get: () => Real.permission });
  });
  await page.waitForFunction(() => document.querySelector('#offline').hidden);
  await rest.post('/api/tasks', { title: 'stretch', due_at: new Date(Date.now() + 2500).toISOString(), reminders: [{ before_minutes: 0 }] });
  await page.waitForFunction(() => window.shown.length > 0, null, { timeout: 8000 });
  assert.deepEqual(await page.evaluate(() => window.shown), [['taskflow reminder', 'stretch']]);
  await context.close();
  noProblems([/status of 422/, /ERR_CONNECTION_REFUSED|net::ERR_FAILED/]);
});

test('a stream the browser gave up on is opened again after the last event, once the server answers', async () => {
  const { context, page, rest } = await signUp();
  await rest.post('/api/tasks', { title: 'seen live' });
  await row(page, 'seen live').waitFor();
  // The server refuses for a while (every API request answered 503), and the browser gives
  // the stream up, as it does when a reconnect is answered with an error.
  const refuse = (r) => r.fulfill({ status: 503, contentType: 'application/problem+json', body: '{"title":"Service Unavailable","status":503}' });
  await page.route('**/api/**', refuse);
  const reopened = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/api/events') reopened.push(u.searchParams.get('last_event_id'));
  });
  await page.evaluate(() => {
    const es = window.__streams.at(-1);
    if (!es) throw new Error('no live stream was opened');
    es.close();
    es.dispatchEvent(new Event('error'));
  });
  await page.locator('#offline').waitFor({ state: 'visible' });
  await page.waitForTimeout(2500);
  assert.deepEqual(reopened, [], 'not reopened while the server refuses');
  await page.unroute('**/api/**', refuse);
  await page.locator('#offline').waitFor({ state: 'hidden', timeout: 15_000 });
  assert.ok(reopened.length > 0 && reopened.every(Boolean), `reopened after the last event: ${JSON.stringify(reopened)}`);
  await rest.post('/api/tasks', { title: 'seen after the refusals' });
  await row(page, 'seen after the refusals').waitFor({ timeout: 2000 });
  await context.close();
  noProblems([/status of 503/]);
});

test('the timezone can be changed, past conversations reopen, and signing out forgets the session', async () => {
  const { context, page, rest } = await signUp('Grace');
  const say = page.getByLabel('Message to the assistant');
  await say.fill('add feed the cat tomorrow at 7am');
  await say.press('Enter');
  await page.locator('.msg.assistant', { hasText: 'Added #1' }).waitFor();
  await page.reload();
  await page.getByLabel('Past conversations').selectOption({ label: 'add feed the cat tomorrow at 7am' });
  await page.locator('.msg.user', { hasText: 'add feed the cat tomorrow at 7am' }).waitFor();
  await page.locator('.msg.assistant', { hasText: 'Added #1 “feed the cat”' }).waitFor();

  await page.getByRole('button', { name: 'Grace' }).click();
  const account = page.getByRole('dialog', { name: 'Account' });
  await account.getByLabel('Timezone').fill('Europe/Lisbon');
  await account.getByRole('button', { name: 'Save' }).click();
  await account.waitFor({ state: 'detached' });
  assert.equal((await rest.get('/api/me')).timezone, 'Europe/Lisbon');
  await page.getByRole('button', { name: 'Grace' }).click();
  await account.getByLabel('Timezone').fill('Mars/Olympus');
  await account.getByRole('button', { name: 'Save' }).click();
  await account.getByRole('alert').filter({ hasText: 'timezone' }).waitFor();
  await account.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('taskflow.token')), null);
  // The next person on this page starts afresh: their own conversation, not Grace's.
  await page.getByRole('button', { name: 'Create an account' }).click();
  await signUpOn(page, `after-grace-${Date.now()}@example.com`);
  await say.fill('add water the garden');
  await say.press('Enter');
  await page.locator('.msg.assistant', { hasText: 'Added #1 “water the garden”' }).waitFor();
  await context.close();
  noProblems([/status of 422/]);
});

test('a person never sees another person\'s tasks', async () => {
  const ada = await signUp('Ada');
  const bob = await signUp('Bob');
  await ada.rest.post('/api/tasks', { title: 'ada private plans' });
  await row(ada.page, 'ada private plans').waitFor();
  await bob.page.reload();
  await bob.page.locator('.empty').waitFor();
  await bob.page.waitForTimeout(500);
  assert.equal(await row(bob.page, 'ada private plans').count(), 0);
  assert.deepEqual((await bob.rest.get('/api/tasks')).items, []);
  await ada.context.close();
  await bob.context.close();
  noProblems();
});

test('screenshots of each view, light and dark, desktop and phone', async () => {
  const dir = screenshotsDir();
  const visitor = await browser.newContext();
  const welcome = await watchedPage(visitor, problems);
  await welcome.goto(server.url);
  await welcome.getByRole('button', { name: 'Create account' }).waitFor();
  const sizes = [['desktop', { width: 1280, height: 800 }], ['phone', { width: 360, height: 780 }]];
  const shoot = async (p, view) => {
    for (const scheme of ['light', 'dark']) {
      for (const [device, size] of sizes) {
        await p.emulateMedia({ colorScheme: scheme });
        await p.setViewportSize(size);
        await p.screenshot({ path: path.join(dir, `${view}-${scheme}-${device}.png`), fullPage: true });
      }
    }
  };
  await shoot(welcome, 'signup');
  await welcome.getByRole('button', { name: 'Sign in' }).click();
  await welcome.getByRole('button', { name: 'Sign in' }).waitFor();
  await accessibility(welcome, 'sign in');
  await shoot(welcome, 'signin');
  await visitor.close();
  const { context, page, rest } = await signUp();
  for (const [title, extra] of [['pay rent', { recurrence: 'FREQ=MONTHLY;BYMONTHDAY=1', priority: 'high', tags: ['home'] }],
    ['call mom', { priority: 'urgent', due_date: new Date().toISOString().slice(0, 10) }], ['buy milk', { tags: ['errands'] }]]) {
    await rest.post('/api/tasks', { title, ...extra });
  }
  await page.getByLabel('Message to the assistant').fill('remind me to call the plumber friday at 5pm, high priority');
  await page.getByLabel('Message to the assistant').press('Enter');
  await page.locator('.card', { hasText: 'call the plumber' }).waitFor();
  for (const scheme of ['light', 'dark']) {
    for (const [device, size] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 360, height: 780 }]]) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.setViewportSize(size);
      for (const view of ['Inbox', 'Upcoming', 'Board']) {
        await page.getByRole('button', { name: view, exact: true }).click();
        await page.locator('ul.tasks li, .card-task').first().waitFor();
        assert.doesNotMatch(await page.locator('body').innerText(), /\b(null|undefined|NaN)\b/, `${view} shows no placeholder`);
        await page.screenshot({ path: path.join(dir, `${view.toLowerCase()}-${scheme}-${device}.png`), fullPage: true });
      }
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${device}: the page scrolls sideways by ${overflow}px`);
    }
  }
  await context.close();
  noProblems();
});
