// taskflow's web app: one ES module, no framework, no build step. Everything a person typed
// reaches the page as text (h() appends strings as text nodes), never as HTML.

const TOKEN_KEY = 'taskflow.token';
const TASK_EVENTS = ['created', 'updated', 'completed', 'reopened', 'deleted']
  .map((k) => `com.taskflow.task.${k}.v1`);
const REMINDER = 'com.taskflow.reminder.triggered.v1';
const NOTIFICATION = 'com.taskflow.notification.created.v1';
const PRIORITIES = ['urgent', 'high', 'medium', 'low'];

/** An element with `props` (attributes, properties, `on…` listeners) and children as text or nodes. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (typeof v !== 'string' && k in el) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);

/** Replaces the children of `el` with `children`, leaving out the absent ones. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
}

const ICONS = {
  bell: 'M6 16V11a6 6 0 0 1 12 0v5l2 2H4zM10 20a2 2 0 0 0 4 0',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6',
  clock: 'M12 7v5l3 2M21 12a9 9 0 1 1-18 0a9 9 0 0 1 18 0',
};

/** A line icon drawn in the current colour; decorative (its button carries the name). */
function icon(name, size = 18) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  for (const [k, v] of Object.entries({
    viewBox: '0 0 24 24', width: size, height: size, fill: 'none', stroke: 'currentColor',
    'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'aria-hidden': 'true',
  })) svg.setAttribute(k, String(v));
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  svg.append(path);
  return svg;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The sentence a problem+json answer says, with its field errors. */
function problemText(p, status) {
  if (!p || typeof p !== 'object') return `The server answered ${status}.`;
  const fields = Array.isArray(p.errors)
    ? p.errors.map((e) => `${e.field}: ${e.message}`).join('; ')
    : '';
  const text = p.detail || p.title || `The server answered ${status}.`;
  return fields && !text.includes(fields) ? `${text} (${fields})` : text;
}

const api = {
  token: localStorage.getItem(TOKEN_KEY),
  async call(method, path, body, extra = {}) {
    const headers = { ...extra };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError('The server cannot be reached. Check the connection and try again.', 0);
    }
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      if (res.status === 401 && this.token && path !== '/api/auth/login') {
        signOut('Your session has ended; please sign in again.');
      }
      throw new ApiError(problemText(data, res.status), res.status);
    }
    return data;
  },
  get(path) { return this.call('GET', path); },
  post(path, body = {}) { return this.call('POST', path, body); },
  patch(path, body) { return this.call('PATCH', path, body); },
  del(path) { return this.call('DELETE', path); },
};

// ---------------------------------------------------------------- state

const VIEWS = ['inbox', 'upcoming', 'board'];
/** The view the address names (`/#board`), else the inbox. */
const viewOfAddress = () => (VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'inbox');

const state = {
  user: null,
  view: viewOfAddress(),
  filters: { q: '', status: 'pending', priority: '', due: '', tag: '', sort: 'due', order: 'asc' },
  items: [],
  cursor: null,
  loading: false,
  current: -1,
  parsed: null,
  removed: new Set(),
  conversation: null,
  notifications: [],
  events: null,
  lastEventId: null,
};

// ---------------------------------------------------------------- dates in the user's words

const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

const formats = new Map();
/**
 * The date format for `locale` and `options`, made once: a list shows many dates, and making
 * a format costs far more than using one.
 */
function format(locale, options) {
  const key = `${locale}|${JSON.stringify(options)}`;
  let f = formats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(locale, options);
    formats.set(key, f);
  }
  return f;
}
const zone = () => state.user?.timezone || browserZone();

/** `YYYY-MM-DD` of instant `d` in the user's timezone. */
function dayOf(d) {
  return format('en-CA', {
    timeZone: zone(), year: 'numeric', month: '2-digit', day: '2-digit',
  }).format(d);
}

function daysBetween(a, b) {
  const t = (s) => Date.UTC(+s.slice(0, 4), +s.slice(5, 7) - 1, +s.slice(8, 10));
  return Math.round((t(b) - t(a)) / 86400000);
}

function addDays(day, n) {
  const d = new Date(Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10) + n));
  return d.toISOString().slice(0, 10);
}

/** "today", "tomorrow", "Fri", "Mar 3", "Mar 3, 2027" for a day. */
function dayWords(day) {
  const today = dayOf(new Date());
  const n = daysBetween(today, day);
  if (n === 0) return 'today';
  if (n === 1) return 'tomorrow';
  if (n === -1) return 'yesterday';
  const date = new Date(`${day}T12:00:00Z`);
  if (n > 1 && n < 7) return format(undefined, { weekday: 'long', timeZone: 'UTC' }).format(date);
  const sameYear = day.slice(0, 4) === today.slice(0, 4);
  return format(undefined, {
    month: 'short', day: 'numeric', year: sameYear ? undefined : 'numeric', timeZone: 'UTC',
  }).format(date);
}

const timeWords = (d) => format(undefined, {
  timeZone: zone(), hour: 'numeric', minute: '2-digit',
}).format(d);

/** The due of `t` in words and whether it is overdue: "tomorrow 9:00 AM", "overdue 2 days". */
function dueWords(t) {
  if (!t.due_at && !t.due_date) return null;
  const at = t.due_at ? new Date(t.due_at) : null;
  const day = at ? dayOf(at) : t.due_date;
  const late = daysBetween(day, dayOf(new Date()));
  const overdue = t.status === 'pending' && (at ? at < new Date() : late > 0);
  let text = dayWords(day) + (at ? ` ${timeWords(at)}` : '');
  if (overdue && late > 0) text = `overdue ${late} day${late === 1 ? '' : 's'} (${text})`;
  else if (overdue) text = `overdue (${text})`;
  return { text, overdue };
}

/** A few words for an RRULE: "daily", "every 2 weeks", "monthly". */
function repeatWords(rule) {
  const parts = Object.fromEntries(rule.split(';').map((p) => p.split('=')));
  const unit = { DAILY: 'day', WEEKLY: 'week', MONTHLY: 'month', YEARLY: 'year', HOURLY: 'hour' }[parts.FREQ];
  if (!unit) return 'repeats';
  const n = +(parts.INTERVAL || 1);
  if (parts.FREQ === 'WEEKLY' && parts.BYDAY === 'MO,TU,WE,TH,FR') return 'every weekday';
  return n === 1 ? `every ${unit}` : `every ${n} ${unit}s`;
}

// ---------------------------------------------------------------- toasts

function toast(text, action) {
  const box = h('div', { class: 'toast' }, h('span', {}, text));
  if (action) {
    box.append(h('button', {
      type: 'button',
      onclick: async () => { box.remove(); await action.run(); },
    }, action.label));
  }
  $('#toasts').append(box);
  setTimeout(() => box.remove(), action ? 8000 : 5000);
}

const failed = (e) => toast(e instanceof ApiError ? e.message : `Something went wrong: ${e}`);

// ---------------------------------------------------------------- signing in

function signOut(message) {
  api.token = null;
  localStorage.removeItem(TOKEN_KEY);
  state.user = null;
  state.events?.close();
  state.events = null;
  // Nothing of this session carries over to the next person who signs in here.
  state.lastEventId = null;
  state.conversation = null;
  state.items = [];
  renderAuth('login', message);
}

function renderAuth(mode, message) {
  const signup = mode === 'signup';
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      error.textContent = '';
      try {
        const body = signup
          ? { email: data.email, password: data.password, name: data.name || undefined, timezone: browserZone() }
          : { email: data.email, password: data.password };
        const res = await api.post(signup ? '/api/auth/signup' : '/api/auth/login', body);
        api.token = res.token;
        localStorage.setItem(TOKEN_KEY, res.token);
        state.user = res.user;
        renderApp();
      } catch (e) {
        error.textContent = e.message;
      }
    },
  },
  signup ? h('label', {}, 'Name', h('input', { type: 'text', name: 'name', autocomplete: 'name' })) : null,
  h('label', {}, 'Email', h('input', { type: 'email', name: 'email', required: true, autocomplete: 'email' })),
  h('label', {}, 'Password', h('input', {
    type: 'password', name: 'password', required: true, minLength: 8,
    autocomplete: signup ? 'new-password' : 'current-password',
  })),
  error,
  h('button', { class: 'primary', type: 'submit' }, signup ? 'Create account' : 'Sign in'));
  $('#root').replaceChildren(h('main', { id: 'main', class: 'auth' },
    h('h1', {}, 'taskflow'),
    h('p', {}, signup ? 'Create your account. Your timezone is taken from this browser; you can change it later.' : 'Sign in to your tasks.'),
    form,
    h('p', {}, signup ? 'Have an account? ' : 'New here? ',
      h('button', { type: 'button', class: 'link', onclick: () => renderAuth(signup ? 'login' : 'signup') },
        signup ? 'Sign in' : 'Create an account'))));
  form.querySelector('input').focus();
}

// ---------------------------------------------------------------- the shell

const VIEW_NAMES = { inbox: 'Inbox', upcoming: 'Upcoming', board: 'Board' };

/** The whole signed-in page: header, the current view, the chat; opens the live stream. */
function renderApp() {
  const nav = h('nav', { class: 'views', 'aria-label': 'Views' }, VIEWS.map((v) =>
    h('button', { type: 'button', 'data-view': v, onclick: () => { location.hash = v; } }, VIEW_NAMES[v])));
  const bell = h('button', {
    type: 'button', class: 'icon bell', id: 'bell', 'aria-label': 'Notifications', 'aria-haspopup': 'true',
    onclick: () => toggleNotifications(),
  }, icon('bell', 20), h('span', { class: 'badge', id: 'unread', hidden: true }));
  const account = h('button', { type: 'button', onclick: () => openAccount() }, state.user.name || state.user.email);
  $('#root').replaceChildren(h('div', { class: 'shell' },
    h('header', { class: 'top' },
      h('span', { class: 'brand' }, h('img', { src: $('link[rel=icon]').href, alt: '' }), 'taskflow'),
      nav, bell, account,
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Keyboard shortcuts', onclick: openHelp }, '?')),
    h('main', { id: 'main', tabindex: '-1' }),
    chatPanel()));
  renderView();
  listen();
  loadNotifications();
}

/** The current view in `main`; the chat and the live stream stay as they are. */
function renderView() {
  for (const b of document.querySelectorAll('nav.views button')) {
    if (b.dataset.view === state.view) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  fill($('#main'),
    h('h1', { class: 'visually-hidden' }, VIEW_NAMES[state.view]),
    quickAdd(),
    state.view === 'inbox' ? filters() : null,
    state.view === 'board' ? boardControls() : null,
    h('div', { id: 'list', 'aria-live': 'polite' }),
    h('div', { id: 'more', 'aria-hidden': 'true' }));
  state.items = [];
  state.cursor = null;
  // The board's columns stand before their cards arrive, so nothing below them moves.
  if (state.view === 'board') renderList();
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.cursor && !state.loading) loadMore();
  }).observe($('#more'));
  reload();
}

// ---------------------------------------------------------------- quick add

function chipsOf(task) {
  if (!task) return [];
  const chips = [];
  if (task.due_at) {
    const d = new Date(task.due_at);
    chips.push(['due', 'due', `${dayWords(dayOf(d))} ${timeWords(d)}`]);
  } else if (task.due_date) chips.push(['due', 'due', dayWords(task.due_date)]);
  if (task.recurrence) chips.push(['recurrence', 'repeat', repeatWords(task.recurrence)]);
  if (task.priority) chips.push(['priority', 'priority', task.priority]);
  for (const tag of task.tags || []) chips.push([`tag:${tag}`, 'tag', `#${tag}`]);
  for (const m of task.reminders_before_minutes || []) {
    chips.push([`reminder:${m}`, 'reminder', m === 0 ? 'at the due time' : `${m} min before`]);
  }
  return chips;
}

/** The task quick add would create: what was read, less the chips removed. */
function draftOf(parsed, removed) {
  const t = parsed?.task;
  if (!t) return null;
  const draft = { title: t.title };
  if (!removed.has('due')) {
    if (t.due_at) draft.due_at = t.due_at;
    if (t.due_date) draft.due_date = t.due_date;
  }
  if (t.recurrence && !removed.has('recurrence')) draft.recurrence = t.recurrence;
  if (t.priority && !removed.has('priority')) draft.priority = t.priority;
  const tags = (t.tags || []).filter((g) => !removed.has(`tag:${g}`));
  if (tags.length) draft.tags = tags;
  const due = draft.due_at || draft.due_date;
  const reminders = (t.reminders_before_minutes || []).filter((m) => !removed.has(`reminder:${m}`));
  if (due && reminders.length) draft.reminders = reminders.map((m) => ({ before_minutes: m }));
  return draft;
}

function quickAdd() {
  const input = h('input', {
    type: 'text', id: 'quick', name: 'quick', autocomplete: 'off', maxLength: 2000,
    placeholder: 'Add a task: “pay rent every 1st at 9am #home !high”',
    'aria-label': 'Quick add', 'aria-describedby': 'chips',
  });
  const chips = h('div', { class: 'chips', id: 'chips', role: 'group', 'aria-live': 'polite', 'aria-label': 'What was understood' });
  let timer = 0;
  let asked = 0;
  const show = () => {
    const task = state.parsed?.intent === 'add_task' ? state.parsed.task : null;
    chips.replaceChildren(...chipsOf(task).filter(([key]) => !state.removed.has(key)).map(([key, kind, text]) =>
      h('span', { class: 'chip', 'data-kind': kind },
        h('span', { class: 'kind' }, `${kind}:`), text,
        h('button', {
          type: 'button', 'aria-label': `Remove ${kind} ${text}`,
          onclick: () => { state.removed.add(key); show(); input.focus(); },
        }, '×'))));
    if (task && input.value.trim()) chips.prepend(h('span', { class: 'chip', 'data-kind': 'title' }, h('span', { class: 'kind' }, 'title:'), task.title));
  };
  const read = async () => {
    const text = input.value.trim();
    const n = ++asked;
    if (!text) { state.parsed = null; show(); return; }
    try {
      const parsed = await api.post('/api/parse', { text });
      if (n !== asked) return;
      // What the reader takes for a command ("show my tasks") is still a title to add here.
      state.parsed = parsed.intent === 'add_task' ? parsed : { intent: 'add_task', task: { title: text } };
      show();
    } catch (e) {
      if (n === asked) chips.replaceChildren(h('span', { class: 'error' }, e.message));
    }
  };
  input.addEventListener('input', () => {
    state.removed.clear();
    clearTimeout(timer);
    timer = setTimeout(read, 120);
  });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      clearTimeout(timer);
      if (!input.value.trim()) return;
      await read();
      const draft = draftOf(state.parsed, state.removed);
      if (!draft) return;
      try {
        const task = await api.post('/api/tasks', draft);
        input.value = '';
        state.parsed = null;
        state.removed.clear();
        show();
        toast(`Added #${task.number} “${task.title}”`);
        reload();
      } catch (e) {
        failed(e);
      }
    },
  }, input, h('button', { class: 'primary', type: 'submit' }, 'Add'));
  return h('section', { class: 'quick', 'aria-label': 'Add a task' }, form, chips);
}

// ---------------------------------------------------------------- filters and lists

function filters() {
  const f = state.filters;
  const select = (name, label, options) => h('select', {
    name, 'aria-label': label,
    onchange: (ev) => { f[name] = ev.target.value; reload(); },
  }, options.map(([value, text]) => h('option', { value, selected: f[name] === value }, text)));
  let timer = 0;
  return h('section', { class: 'filters', 'aria-label': 'Filters' },
    h('input', {
      type: 'search', id: 'search', value: f.q, placeholder: 'Search', 'aria-label': 'Search tasks',
      oninput: (ev) => { clearTimeout(timer); timer = setTimeout(() => { f.q = ev.target.value.trim(); reload(); }, 200); },
    }),
    select('status', 'Status', [['pending', 'Open'], ['completed', 'Completed'], ['all', 'All']]),
    select('priority', 'Priority', [['', 'Any priority'], ...PRIORITIES.map((p) => [p, p[0].toUpperCase() + p.slice(1)])]),
    select('due', 'Due', [['', 'Any time'], ['today', 'Due today'], ['week', 'Due in 7 days'], ['overdue', 'Overdue']]),
    h('input', {
      type: 'text', name: 'tag', value: f.tag, placeholder: 'tag', size: 8, 'aria-label': 'Tag',
      onchange: (ev) => { f.tag = ev.target.value.trim().replace(/^#/, '').toLowerCase(); reload(); },
    }),
    select('sort', 'Sort by', [['due', 'Due'], ['priority', 'Priority'], ['created', 'Created'], ['title', 'Title']]),
    select('order', 'Order', [['asc', 'Ascending'], ['desc', 'Descending']]));
}

function inboxQuery() {
  const f = state.filters;
  const p = new URLSearchParams({ status: f.status, sort: f.sort, order: f.order, limit: '50' });
  if (f.q) p.set('q', f.q);
  if (f.priority) p.set('priority', f.priority);
  if (f.tag) p.set('tag', f.tag);
  const today = dayOf(new Date());
  if (f.due === 'today') { p.set('due_after', today); p.set('due_before', today); }
  if (f.due === 'week') { p.set('due_after', today); p.set('due_before', addDays(today, 6)); }
  if (f.due === 'overdue') p.set('overdue', 'true');
  return p;
}

let reloadTimer = 0;
/** Reads the current view again (soon: changes that arrive together are read once). */
function reload() {
  clearTimeout(reloadTimer);
  const load = { inbox: loadInbox, upcoming: loadUpcoming, board: loadBoard }[state.view];
  reloadTimer = setTimeout(load, 30);
}

/** A page of the inbox: the first, or (`more`) the next one after the cursor. */
async function loadPage(more) {
  state.loading = true;
  try {
    const p = inboxQuery();
    if (more) p.set('cursor', state.cursor);
    const page = await api.get(`/api/tasks?${p}`);
    state.items = more ? [...state.items, ...page.items] : page.items;
    state.cursor = page.next_cursor;
    renderList();
  } catch (e) {
    failed(e);
  } finally {
    state.loading = false;
  }
}

const loadInbox = () => loadPage(false);
const loadMore = () => loadPage(true);

async function loadUpcoming() {
  const today = dayOf(new Date());
  try {
    const [overdue, week] = await Promise.all([
      api.get('/api/tasks?status=pending&overdue=true&sort=due&limit=200'),
      api.get(`/api/tasks?status=pending&sort=due&limit=200&due_after=${today}&due_before=${addDays(today, 6)}`),
    ]);
    const seen = new Set(overdue.items.map((t) => t.id));
    state.items = [...overdue.items, ...week.items.filter((t) => !seen.has(t.id))];
    state.cursor = null;
    renderList();
  } catch (e) {
    failed(e);
  }
}

function renderList() {
  const list = $('#list');
  if (!list) return;
  if (state.view === 'board') { renderBoard(list); return; }
  if (!state.items.length) {
    list.replaceChildren(h('p', { class: 'empty' }, state.view === 'inbox'
      ? 'No tasks here. Add one above, or ask the assistant.'
      : 'Nothing due in the next 7 days.'));
    return;
  }
  if (state.view === 'inbox') {
    list.replaceChildren(h('ul', { class: 'tasks', 'aria-label': 'Tasks' }, state.items.map(taskRow)));
  } else {
    const groups = new Map();
    const today = dayOf(new Date());
    for (const t of state.items) {
      const day = t.due_at ? dayOf(new Date(t.due_at)) : t.due_date;
      const key = day < today || dueWords(t)?.overdue ? 'Overdue' : day;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(t);
    }
    list.replaceChildren(...[...groups].map(([key, items]) => h('section', { 'aria-label': key === 'Overdue' ? key : dayWords(key) },
      h('h2', { class: 'day' }, key === 'Overdue' ? 'Overdue' : dayWords(key)),
      h('ul', { class: 'tasks' }, items.map(taskRow)))));
  }
  markCurrent();
}

function taskRow(t) {
  const done = t.status === 'completed';
  const due = dueWords(t);
  return h('li', { class: done ? 'done' : '', 'data-id': t.id, 'data-number': String(t.number) },
    h('input', {
      type: 'checkbox', checked: done,
      'aria-label': `${done ? 'Reopen' : 'Complete'} #${t.number} ${t.title}`,
      onchange: () => toggle(t),
    }),
    h('div', { class: 'task-main' },
      h('div', { class: 'title' }, h('span', { class: 'num' }, `#${t.number}`),
        h('button', { type: 'button', class: 'open', 'aria-label': `Edit #${t.number} ${t.title}`, onclick: () => openEditor(t.id) }, t.title)),
      h('div', { class: 'meta' },
        due ? h('span', { class: due.overdue ? 'overdue' : '' }, due.text) : null,
        t.priority !== 'medium' ? h('span', { class: `prio-${t.priority}` }, t.priority) : null,
        t.recurrence ? h('span', { title: t.recurrence }, `↻ ${repeatWords(t.recurrence)}`) : null,
        t.reminders?.some((r) => r.status === 'pending') ? h('span', { class: 'with-icon' }, icon('clock', 14), 'reminder') : null,
        (t.tags || []).map((g) => h('span', {}, `#${g}`)))),
    h('button', {
      type: 'button', class: 'icon', 'aria-label': `Delete #${t.number} ${t.title}`,
      onclick: () => remove(t),
    }, icon('trash')));
}

async function toggle(t) {
  try {
    const done = t.status === 'completed';
    const res = await api.post(`/api/tasks/${t.id}/${done ? 'reopen' : 'complete'}`);
    if (!done && res.recurrence) toast(`Completed #${t.number}; the next occurrence is on its way.`);
    reload();
  } catch (e) {
    failed(e);
    reload();
  }
}

/** What adds `t` again after a delete: its fields and relative reminders. */
function recreate(t) {
  const body = { title: t.title, priority: t.priority };
  if (t.description) body.description = t.description;
  if (t.tags?.length) body.tags = t.tags;
  if (t.due_at) body.due_at = t.due_at;
  if (t.due_date) body.due_date = t.due_date;
  if (t.recurrence) { body.recurrence = t.recurrence; body.recurrence_anchor = t.recurrence_anchor; }
  const rel = (t.reminders || []).filter((r) => r.before_minutes != null).map((r) => ({ before_minutes: r.before_minutes }));
  if (rel.length && (t.due_at || t.due_date)) body.reminders = rel;
  return body;
}

async function remove(t) {
  try {
    await api.del(`/api/tasks/${t.id}`);
    reload();
    toast(`Deleted #${t.number} “${t.title}”`, {
      label: 'Undo',
      run: async () => {
        try {
          const back = await api.post('/api/tasks', recreate(t));
          toast(`Restored as #${back.number}`);
          reload();
        } catch (e) { failed(e); }
      },
    });
  } catch (e) {
    failed(e);
  }
}

// ---------------------------------------------------------------- the board

state.boardBy = 'priority';

function boardControls() {
  return h('section', { class: 'filters', 'aria-label': 'Board' },
    h('label', {}, 'Columns by ', h('select', {
      name: 'columns',
      onchange: (ev) => { state.boardBy = ev.target.value; renderList(); },
    }, [['priority', 'priority'], ['tag', 'tag']].map(([v, t]) => h('option', { value: v, selected: state.boardBy === v }, t)))));
}

async function loadBoard() {
  try {
    const page = await api.get('/api/tasks?status=pending&sort=due&limit=200');
    state.items = page.items;
    state.cursor = null;
    renderList();
  } catch (e) {
    failed(e);
  }
}

/** The board's columns: [key, heading, tasks]; a task with several tags stands in each. */
function columns() {
  if (state.boardBy === 'priority') {
    return PRIORITIES.map((p) => [p, p[0].toUpperCase() + p.slice(1), state.items.filter((t) => t.priority === p)]);
  }
  const tags = [...new Set(state.items.flatMap((t) => t.tags || []))].sort();
  return [['', 'No tag', state.items.filter((t) => !t.tags?.length)],
    ...tags.map((g) => [g, `#${g}`, state.items.filter((t) => t.tags?.includes(g))])];
}

/** Moves `t` from column `from` to column `to`: its priority, or one tag for another. */
async function move(t, from, to) {
  if (from === to) return;
  let body;
  if (state.boardBy === 'priority') body = { priority: to };
  else {
    const tags = (t.tags || []).filter((g) => g !== from);
    if (to && !tags.includes(to)) tags.push(to);
    body = { tags };
  }
  try {
    await api.patch(`/api/tasks/${t.id}`, body);
    reload();
  } catch (e) {
    failed(e);
  }
}

function renderBoard(list) {
  const cols = columns();
  list.replaceChildren(h('div', { class: 'board' }, cols.map(([key, heading, items]) => {
    const col = h('section', {
      class: 'column', 'aria-label': heading, 'data-column': key,
      ondragover: (ev) => { ev.preventDefault(); col.classList.add('over'); },
      ondragleave: () => col.classList.remove('over'),
      ondrop: (ev) => {
        ev.preventDefault();
        col.classList.remove('over');
        const [id, from] = ev.dataTransfer.getData('text/plain').split('\n');
        const t = state.items.find((x) => x.id === id);
        if (t) move(t, from, key);
      },
    }, h('h2', { class: 'day' }, `${heading} (${items.length})`),
    h('ul', { class: 'cards' }, items.map((t) => {
      const due = dueWords(t);
      return h('li', {
        class: 'card-task', draggable: 'true', 'data-id': t.id,
        ondragstart: (ev) => { ev.dataTransfer.setData('text/plain', `${t.id}\n${key}`); ev.dataTransfer.effectAllowed = 'move'; },
      },
      h('button', { type: 'button', class: 'open', 'aria-label': `Edit #${t.number} ${t.title}`, onclick: () => openEditor(t.id) },
        h('span', { class: 'num' }, `#${t.number}`), t.title),
      h('div', { class: 'meta' },
        due ? h('span', { class: due.overdue ? 'overdue' : '' }, due.text) : null,
        t.recurrence ? h('span', {}, `↻ ${repeatWords(t.recurrence)}`) : null),
      // Moving without a mouse: the same as a drag.
      h('select', {
        class: 'move', 'aria-label': `Move #${t.number} to`,
        onchange: (ev) => move(t, key, ev.target.value),
      }, cols.map(([k, text]) => h('option', { value: k, selected: k === key }, text))));
    })));
    return col;
  })));
}

// ---------------------------------------------------------------- keyboard

function markCurrent() {
  const rows = [...document.querySelectorAll('ul.tasks li')];
  rows.forEach((r, i) => r.classList.toggle('current', i === state.current));
  rows[state.current]?.scrollIntoView({ block: 'nearest' });
}

function openHelp() {
  const keys = [['q', 'quick add'], ['/', 'search'], ['j / k', 'next / previous task'],
    ['x', 'complete or reopen the selected task'], ['e', 'edit the selected task'], ['Delete', 'delete the selected task'], ['?', 'this help'], ['Esc', 'close']];
  const dialog = h('dialog', { 'aria-label': 'Keyboard shortcuts', onclose: () => dialog.remove() },
    h('h2', {}, 'Keyboard shortcuts'),
    h('dl', {}, keys.map(([k, what]) => [h('dt', {}, h('kbd', {}, k)), h('dd', {}, what)])),
    h('form', { method: 'dialog' }, h('button', { type: 'submit' }, 'Close')));
  document.body.append(dialog);
  dialog.showModal();
}

document.addEventListener('keydown', (ev) => {
  if (!state.user || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const typing = ev.target.closest?.('input, textarea, select, dialog');
  if (typing) {
    if (ev.key === 'Escape' && ev.target.blur) ev.target.blur();
    return;
  }
  const rows = document.querySelectorAll('ul.tasks li');
  const selected = () => state.items.find((t) => t.id === rows[state.current]?.dataset.id);
  switch (ev.key) {
    case 'q': ev.preventDefault(); $('#quick')?.focus(); break;
    case '/': ev.preventDefault(); $('#search')?.focus(); break;
    case '?': ev.preventDefault(); openHelp(); break;
    case 'j': state.current = Math.min(state.current + 1, rows.length - 1); markCurrent(); break;
    case 'k': state.current = Math.max(state.current - 1, 0); markCurrent(); break;
    case 'x': if (selected()) toggle(selected()); break;
    case 'e': if (selected()) { ev.preventDefault(); openEditor(selected().id); } break;
    case 'Delete': if (selected()) remove(selected()); break;
    default:
  }
});

// ---------------------------------------------------------------- live updates

/**
 * Opens the live stream. The browser resumes a dropped stream by itself (sending
 * `Last-Event-ID`); a stream it gave up on (the server answered with an error) is opened
 * again here, after the last event seen, once the server answers again.
 */
function listen() {
  state.events?.close();
  const after = state.lastEventId ? `&last_event_id=${encodeURIComponent(state.lastEventId)}` : '';
  const es = new EventSource(`/api/events?token=${encodeURIComponent(api.token)}${after}`);
  state.events = es;
  let dropped = false;
  const on = (type, handle) => es.addEventListener(type, (ev) => {
    if (ev.lastEventId) state.lastEventId = ev.lastEventId;
    handle(ev);
  });
  for (const type of TASK_EVENTS) on(type, () => reload());
  on(REMINDER, (ev) => {
    const data = JSON.parse(ev.data).data;
    toast(`Reminder: #${data.task_number} “${data.title}”`);
    if ('Notification' in window && Notification.permission === 'granted') {
      new Notification('taskflow reminder', { body: data.title, tag: data.reminder_id });
    }
  });
  on(NOTIFICATION, () => loadNotifications());
  es.onopen = () => {
    $('#offline').hidden = true;
    retryDelay = 1000;
    // Back after a gap: read the view again, in case the replay could not cover it.
    if (dropped) { reload(); loadNotifications(); }
  };
  es.onerror = () => {
    dropped = true;
    $('#offline').hidden = false;
    if (es.readyState === EventSource.CLOSED && state.events === es) listenLater();
  };
}

let retryDelay = 1000;
/** Opens the stream again once the server answers (a refused session signs out instead). */
function listenLater() {
  setTimeout(async () => {
    if (!state.user) return;
    try {
      await api.get('/api/me');
      listen();
    } catch (e) {
      if (e.status !== 401) {
        retryDelay = Math.min(retryDelay * 2, 30_000);
        listenLater();
      }
    }
  }, retryDelay);
}

window.addEventListener('hashchange', () => {
  if (state.user && viewOfAddress() !== state.view) {
    state.view = viewOfAddress();
    state.current = -1;
    renderView();
  }
});

window.addEventListener('online', () => { $('#offline').hidden = true; reload(); });
window.addEventListener('offline', () => { $('#offline').hidden = false; });

// ---------------------------------------------------------------- notifications

async function loadNotifications() {
  try {
    const page = await api.get('/api/notifications?limit=20');
    state.notifications = page.items;
    const unread = page.items.filter((n) => !n.read_at).length;
    const badge = $('#unread');
    if (badge) {
      badge.hidden = unread === 0;
      badge.textContent = String(unread);
      $('#bell').setAttribute('aria-label', unread ? `Notifications, ${unread} unread` : 'Notifications');
    }
    if ($('#notifications')) renderNotifications();
  } catch (e) {
    failed(e);
  }
}

function renderNotifications() {
  const box = $('#notifications');
  const items = state.notifications;
  const enable = 'Notification' in window && Notification.permission === 'default'
    ? h('button', { type: 'button', class: 'link', onclick: () => Notification.requestPermission().then(renderNotifications) }, 'Show reminders as browser notifications')
    : null;
  fill(box, h('h2', { class: 'day' }, 'Notifications'), enable,
    items.length ? h('ul', {}, items.map((n) => h('li', { class: n.read_at ? '' : 'unread' },
      h('div', {}, n.title), h('div', { class: 'meta' }, n.body),
      n.read_at ? null : h('button', {
        type: 'button', class: 'link',
        onclick: async () => { try { await api.post(`/api/notifications/${n.id}/read`); loadNotifications(); } catch (e) { failed(e); } },
      }, 'Mark read'))))
      : h('p', { class: 'empty' }, 'No notifications yet.'));
}

function toggleNotifications() {
  const open = $('#notifications');
  if (open) { open.remove(); $('#bell').setAttribute('aria-expanded', 'false'); return; }
  document.body.append(h('section', { id: 'notifications', class: 'popover', 'aria-label': 'Notifications' }));
  $('#bell').setAttribute('aria-expanded', 'true');
  renderNotifications();
}

// ---------------------------------------------------------------- account

function openAccount() {
  const error = h('p', { class: 'error', role: 'alert' });
  const tz = h('input', { type: 'text', name: 'timezone', value: state.user.timezone, 'aria-label': 'Timezone', list: 'zones' });
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  const dialog = h('dialog', { 'aria-label': 'Account', onclose: () => dialog.remove() },
    h('h2', {}, 'Account'),
    h('p', {}, state.user.email),
    h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          state.user = await api.patch('/api/me', { timezone: tz.value.trim() });
          dialog.close();
          renderApp();
        } catch (e) { error.textContent = e.message; }
      },
    }, h('label', {}, 'Timezone ', tz), h('datalist', { id: 'zones' }, zones.map((z) => h('option', { value: z }))),
    error, h('button', { type: 'submit', class: 'primary' }, 'Save')),
    h('p', {}, h('button', { type: 'button', onclick: () => { dialog.close(); signOut(); } }, 'Sign out'),
      ' ', h('button', { type: 'button', onclick: () => dialog.close() }, 'Close')));
  document.body.append(dialog);
  dialog.showModal();
}

// ---------------------------------------------------------------- chat

function message(role, text, calls = []) {
  return h('div', { class: `msg ${role}` }, text, calls.map((c) => {
    const task = c.result?.task || c.result;
    const what = c.result?.error ? `failed: ${c.result.error}`
      : task?.number ? `#${task.number} ${task.title}`
        : Array.isArray(c.result?.items) ? `${c.result.items.length} found` : '';
    const label = `${c.tool.replace('_', ' ')} → ${what}`;
    // A task the call touched (and did not delete) opens in the side panel.
    if (task?.id && c.tool !== 'delete_task' && !c.result?.error) {
      return h('button', { type: 'button', class: 'card', onclick: () => openEditor(task.id) }, label);
    }
    return h('div', { class: 'card' }, label);
  }));
}

function chatPanel() {
  const log = h('div', { class: 'messages', id: 'messages', role: 'log', 'aria-label': 'Conversation' },
    message('assistant', 'Hi! Tell me what to do, like “remind me to pay rent every 1st at 9am, high priority”.'));
  const input = h('input', { type: 'text', id: 'chat-input', autocomplete: 'off', maxLength: 2000, 'aria-label': 'Message to the assistant', placeholder: 'Ask or tell…' });
  const past = h('select', {
    'aria-label': 'Past conversations',
    onchange: async (ev) => {
      state.conversation = ev.target.value || null;
      log.replaceChildren();
      if (!state.conversation) return;
      try {
        const page = await api.get(`/api/conversations/${state.conversation}/messages`);
        log.replaceChildren(...page.items.map((m) => message(m.role, m.content, m.tool_calls || [])));
        log.scrollTop = log.scrollHeight;
      } catch (e) { failed(e); }
    },
  }, h('option', { value: '' }, 'New conversation'));
  api.get('/api/conversations').then((page) => {
    past.append(...page.items.map((c) => h('option', { value: c.id }, c.title)));
  }, () => {});
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = '';
      log.append(message('user', text));
      log.scrollTop = log.scrollHeight;
      try {
        const body = { message: text };
        if (state.conversation) body.conversation_id = state.conversation;
        const res = await api.post('/api/chat', body);
        if (!state.conversation) {
          state.conversation = res.conversation_id;
          past.append(h('option', { value: res.conversation_id, selected: true }, text.slice(0, 60)));
        }
        log.append(message('assistant', res.response, res.tool_calls));
      } catch (e) {
        log.append(message('assistant', e.message));
      }
      log.scrollTop = log.scrollHeight;
    },
  }, input, h('button', { type: 'submit', class: 'primary' }, 'Send'));
  return h('aside', { class: 'chat', 'aria-label': 'Assistant' }, h('h2', {}, 'Assistant'), past, log, form);
}

// ---------------------------------------------------------------- the editor

const DAYS = ['MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU'];
const DAY_NAMES = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
const ORDINALS = ['1st', '2nd', '3rd', '4th', 'last'];
const REMINDER_CHOICES = [[0, 'at the due time'], [5, '5 minutes before'], [15, '15 minutes before'],
  [30, '30 minutes before'], [60, '1 hour before'], [120, '2 hours before'], [1440, '1 day before'], [2880, '2 days before']];

/** The picker's reading of an RRULE, or `custom` when the picker cannot show it. */
function pickerOf(rule) {
  const p = { freq: 'never', interval: 1, days: [], monthly: 'day', ends: 'never', count: 10, until: '', custom: '' };
  if (!rule) return p;
  const parts = Object.fromEntries(rule.split(';').map((x) => x.split('=')));
  const known = new Set(['FREQ', 'INTERVAL', 'BYDAY', 'BYMONTHDAY', 'COUNT', 'UNTIL', 'BYMONTH']);
  const freq = { DAILY: 'daily', WEEKLY: 'weekly', MONTHLY: 'monthly', YEARLY: 'yearly' }[parts.FREQ];
  if (!freq || Object.keys(parts).some((k) => !known.has(k))) return { ...p, freq: 'custom', custom: rule };
  p.freq = freq;
  p.interval = +(parts.INTERVAL || 1);
  if (parts.BYDAY && freq === 'weekly') {
    p.days = parts.BYDAY.split(',');
    if (p.interval === 1 && p.days.join(',') === 'MO,TU,WE,TH,FR') p.freq = 'weekdays';
  } else if (parts.BYDAY && freq === 'monthly') p.monthly = 'weekday';
  else if (parts.BYDAY) return { ...p, freq: 'custom', custom: rule };
  if (parts.COUNT) { p.ends = 'count'; p.count = +parts.COUNT; }
  if (parts.UNTIL) { p.ends = 'until'; p.until = `${parts.UNTIL.slice(0, 4)}-${parts.UNTIL.slice(4, 6)}-${parts.UNTIL.slice(6, 8)}`; }
  return p;
}

/** The RRULE the picker says, for a task due on `day` (`YYYY-MM-DD`, or null); null for never. */
function ruleOf(p, day) {
  if (p.freq === 'never') return null;
  if (p.freq === 'custom') return p.custom.trim() || null;
  const d = day ? new Date(`${day}T12:00:00Z`) : new Date();
  const parts = [];
  if (p.freq === 'weekdays') parts.push('FREQ=WEEKLY', 'BYDAY=MO,TU,WE,TH,FR');
  else {
    parts.push(`FREQ=${p.freq.toUpperCase()}`);
    if (p.interval > 1) parts.push(`INTERVAL=${p.interval}`);
    if (p.freq === 'weekly' && p.days.length) parts.push(`BYDAY=${DAYS.filter((x) => p.days.includes(x)).join(',')}`);
    if (p.freq === 'monthly' && p.monthly === 'day') parts.push(`BYMONTHDAY=${d.getUTCDate()}`);
    if (p.freq === 'monthly' && p.monthly === 'weekday') {
      const nth = Math.ceil(d.getUTCDate() / 7);
      parts.push(`BYDAY=${nth > 4 ? -1 : nth}${DAYS[(d.getUTCDay() + 6) % 7]}`);
    }
  }
  if (p.ends === 'count' && p.count > 0) parts.push(`COUNT=${p.count}`);
  if (p.ends === 'until' && p.until) parts.push(`UNTIL=${p.until.replaceAll('-', '')}`);
  return parts.join(';');
}

/** "the 2nd Tuesday" of the month `day` falls in. */
function nthWeekday(day) {
  const d = new Date(`${day}T12:00:00Z`);
  const nth = Math.ceil(d.getUTCDate() / 7);
  return `the ${ORDINALS[Math.min(nth, 5) - 1]} ${DAY_NAMES[(d.getUTCDay() + 6) % 7]}`;
}

/** Local `YYYY-MM-DD` and `HH:MM` of an instant, and back. */
function localParts(iso) {
  const d = new Date(iso);
  const time = format('en-GB', { timeZone: zone(), hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(d);
  return { day: dayOf(d), time };
}

/** The instant of local `day` `time` in the user's timezone, as an RFC 3339 instant in UTC. */
function instantOf(day, time) {
  const [y, m, d] = day.split('-').map(Number);
  const [hh, mm] = time.split(':').map(Number);
  // The offset at that wall time: guess with UTC, correct by what the zone says of the guess.
  let t = Date.UTC(y, m - 1, d, hh, mm);
  for (let i = 0; i < 2; i += 1) {
    const p = format('en-GB', {
      timeZone: zone(), year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }).formatToParts(new Date(t)).reduce((o, x) => ({ ...o, [x.type]: +x.value }), {});
    const shown = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute);
    t += Date.UTC(y, m - 1, d, hh, mm) - shown;
  }
  return new Date(t).toISOString();
}

/** A task's history in words, from its events oldest first. */
function historyWords(items) {
  const words = [];
  let before = null;
  const show = (field, v) => {
    if (v == null || (Array.isArray(v) && !v.length)) return 'none';
    if (field === 'due_at') return `${dayWords(dayOf(new Date(v)))} ${timeWords(new Date(v))}`;
    if (field === 'due_date') return dayWords(v);
    if (field === 'recurrence') return repeatWords(v);
    if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? `#${x}` : '')).join(' ') || `${v.length}`;
    return String(v);
  };
  for (const e of items) {
    const kind = e.type.split('.').at(-2);
    const after = e.data?.task_data ?? {};
    let text = { created: 'created', completed: 'completed', reopened: 'reopened', deleted: 'deleted' }[kind] ?? 'changed';
    if (kind === 'updated') {
      const changed = (e.data?.changed ?? []).filter((f) => f !== 'updated_at' && f !== 'version');
      const parts = changed.map((f) => {
        const name = f === 'due_at' || f === 'due_date' || f === 'due' ? 'due' : f.replace('_', ' ');
        const key = f === 'due' ? (after.due_at != null || before?.due_at != null ? 'due_at' : 'due_date') : f;
        if (before && key in after && key !== 'reminders' && key !== 'description') {
          return `${name} moved from ${show(key, before[key])} to ${show(key, after[key])}`;
        }
        return `${name} changed`;
      });
      text = parts.length ? parts.join('; ') : 'changed';
    }
    words.push([e.occurred_at, text]);
    before = after;
  }
  return words;
}

async function openEditor(id) {
  let task;
  try {
    task = await api.get(`/api/tasks/${id}`);
  } catch (e) { failed(e); return; }
  $('#editor')?.close();
  const error = h('p', { class: 'error', role: 'alert' });
  const field = (label, control) => h('label', { class: 'field' }, h('span', {}, label), control);
  const title = h('input', { type: 'text', name: 'title', value: task.title, required: true, maxLength: 500 });
  const notes = h('textarea', { name: 'description', rows: 3, maxLength: 10000 }, task.description || '');
  const priority = h('select', { name: 'priority' }, PRIORITIES.map((p) => h('option', { value: p, selected: p === task.priority }, p)));
  const tags = h('input', { type: 'text', name: 'tags', value: (task.tags || []).map((g) => `#${g}`).join(' '), placeholder: '#home #errands' });
  const at = task.due_at ? localParts(task.due_at) : null;
  const dueDay = h('input', { type: 'date', name: 'due_day', value: at?.day || task.due_date || '' });
  const dueTime = h('input', { type: 'time', name: 'due_time', value: at?.time || '' });
  const pick = pickerOf(task.recurrence);
  const freq = h('select', { name: 'freq' }, [['never', 'Does not repeat'], ['daily', 'Daily'], ['weekdays', 'Every weekday'],
    ['weekly', 'Weekly'], ['monthly', 'Monthly'], ['yearly', 'Yearly'], ['custom', 'Custom rule']]
    .map(([v, t]) => h('option', { value: v, selected: v === pick.freq }, t)));
  const interval = h('input', { type: 'number', name: 'interval', min: 1, max: 999, value: String(pick.interval), class: 'narrow', 'aria-label': 'Interval' });
  const days = DAYS.map((d, i) => h('label', { class: 'day-pick' },
    h('input', { type: 'checkbox', name: 'byday', value: d, checked: pick.days.includes(d) }), DAY_NAMES[i].slice(0, 3)));
  const monthly = h('select', { name: 'monthly', 'aria-label': 'Monthly on' });
  const ends = h('select', { name: 'ends', 'aria-label': 'Ends' }, [['never', 'never ends'], ['count', 'ends after'], ['until', 'ends on']]
    .map(([v, t]) => h('option', { value: v, selected: v === pick.ends }, t)));
  const count = h('input', { type: 'number', name: 'count', min: 1, max: 9999, value: String(pick.count), class: 'narrow', 'aria-label': 'Occurrences' });
  const until = h('input', { type: 'date', name: 'until', value: pick.until, 'aria-label': 'Last day' });
  const custom = h('input', { type: 'text', name: 'custom', value: pick.custom, placeholder: 'FREQ=MONTHLY;BYDAY=2TU', 'aria-label': 'RRULE' });
  const anchor = h('select', { name: 'anchor', 'aria-label': 'Next occurrence counted' }, [['due', 'from the due date'], ['completion', 'from completion']]
    .map(([v, t]) => h('option', { value: v, selected: v === (task.recurrence_anchor || 'due') }, t)));
  const reminders = new Set((task.reminders || []).filter((r) => r.before_minutes != null && r.status !== 'cancelled').map((r) => r.before_minutes));
  const reminderBox = h('fieldset', { class: 'reminders' }, h('legend', {}, 'Reminders'),
    REMINDER_CHOICES.map(([m, t]) => h('label', { class: 'day-pick' },
      h('input', { type: 'checkbox', name: 'reminder', value: String(m), checked: reminders.has(m) }), t)));
  const every = h('span', { class: 'unit' });
  const repeatRow = h('div', { class: 'repeat-detail' }, 'every ', interval, every);
  const weekRow = h('div', { class: 'repeat-detail days' }, days);
  const monthRow = h('div', { class: 'repeat-detail' }, monthly);
  const endRow = h('div', { class: 'repeat-detail' }, ends, count, until);
  const customRow = h('div', { class: 'repeat-detail' }, custom);
  const anchorRow = h('div', { class: 'repeat-detail' }, 'next one counted ', anchor);
  const sync = () => {
    const f = freq.value;
    every.textContent = { daily: ' day(s)', weekly: ' week(s)', monthly: ' month(s)', yearly: ' year(s)' }[f] ?? '';
    repeatRow.hidden = !['daily', 'weekly', 'monthly', 'yearly'].includes(f);
    weekRow.hidden = f !== 'weekly';
    monthRow.hidden = f !== 'monthly';
    customRow.hidden = f !== 'custom';
    endRow.hidden = anchorRow.hidden = f === 'never' || f === 'custom';
    count.hidden = ends.value !== 'count';
    until.hidden = ends.value !== 'until';
    const day = dueDay.value || dayOf(new Date());
    const chosen = monthly.value || pick.monthly;
    monthly.replaceChildren(h('option', { value: 'day', selected: chosen === 'day' }, `on day ${+day.slice(8, 10)}`),
      h('option', { value: 'weekday', selected: chosen === 'weekday' }, `on ${nthWeekday(day)}`));
  };
  freq.addEventListener('change', sync);
  ends.addEventListener('change', sync);
  dueDay.addEventListener('change', sync);
  sync();

  const history = h('ol', { class: 'history', 'aria-label': 'History' });
  const save = async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const body = {
      title: title.value.trim(),
      description: notes.value.trim() || null,
      priority: priority.value,
      tags: tags.value.split(/[\s,]+/).map((g) => g.replace(/^#/, '').toLowerCase()).filter(Boolean),
    };
    if (!dueDay.value) { body.due_at = null; body.due_date = null; } else if (dueTime.value) {
      body.due_at = instantOf(dueDay.value, dueTime.value); body.due_date = null;
    } else { body.due_date = dueDay.value; body.due_at = null; }
    const p = {
      freq: freq.value, interval: +interval.value || 1, monthly: monthly.value, ends: ends.value,
      count: +count.value, until: until.value, custom: custom.value,
      days: [...weekRow.querySelectorAll('input:checked')].map((x) => x.value),
    };
    body.recurrence = ruleOf(p, dueDay.value || null);
    if (body.recurrence) body.recurrence_anchor = anchor.value;
    const chosen = [...reminderBox.querySelectorAll('input:checked')].map((x) => ({ before_minutes: +x.value }));
    const absolute = (task.reminders || []).filter((r) => r.before_minutes == null && r.status === 'pending').map((r) => ({ at: r.fire_at }));
    body.reminders = dueDay.value ? [...chosen, ...absolute] : absolute;
    try {
      // Saved only over the version this panel shows.
      const saved = await api.call('PATCH', `/api/tasks/${task.id}`, body, { 'if-match': `"${task.version}"` });
      dialog.close();
      toast(`Saved #${saved.number} “${saved.title}”`);
      reload();
    } catch (e) {
      if (e.status === 412) {
        error.replaceChildren('This task was changed elsewhere since you opened it; your edit was not saved. ',
          h('button', { type: 'button', class: 'link', onclick: () => openEditor(task.id) }, 'Show the current version'));
      } else {
        error.textContent = `${e.message} Your edit was not saved.`;
      }
    }
  };
  const done = task.status === 'completed';
  const dialog = h('dialog', { id: 'editor', class: 'panel', 'aria-label': `Edit #${task.number}`, onclose: () => dialog.remove() },
    h('form', { onsubmit: save },
      h('header', { class: 'panel-head' }, h('h2', {}, `#${task.number}`),
        h('button', { type: 'button', class: 'icon', 'aria-label': 'Close', onclick: () => dialog.close() }, '×')),
      field('Title', title), field('Notes', notes), field('Priority', priority), field('Tags', tags),
      h('fieldset', {}, h('legend', {}, 'Due'), field('Day', dueDay), field('Time (empty: all day)', dueTime),
        h('button', { type: 'button', class: 'link', onclick: () => { dueDay.value = ''; dueTime.value = ''; sync(); } }, 'No due date')),
      h('fieldset', {}, h('legend', {}, 'Repeat'), field('Repeats', freq), repeatRow, weekRow, monthRow, endRow, customRow, anchorRow),
      reminderBox,
      error,
      h('div', { class: 'panel-actions' },
        h('button', { type: 'submit', class: 'primary' }, 'Save'),
        h('button', { type: 'button', onclick: async () => { dialog.close(); await toggle(task); } }, done ? 'Reopen' : 'Complete'),
        h('button', { type: 'button', class: 'danger', onclick: async () => { dialog.close(); await remove(task); } }, 'Delete'))),
    h('section', { 'aria-label': 'History' }, h('h3', {}, 'History'), history));
  document.body.append(dialog);
  dialog.showModal();
  title.focus();
  try {
    const page = await api.get(`/api/tasks/${task.id}/history?limit=100`);
    history.replaceChildren(...historyWords(page.items).map(([when, text]) => h('li', {},
      h('time', { datetime: when }, `${dayWords(dayOf(new Date(when)))} ${timeWords(new Date(when))}`), ` — ${text}`)));
  } catch (e) {
    history.replaceChildren(h('li', {}, e.message));
  }
}

// ---------------------------------------------------------------- start

async function start() {
  if (!api.token) return renderAuth('signup');
  try {
    state.user = await api.get('/api/me');
    renderApp();
  } catch (e) {
    if (e.status !== 401) renderAuth('login', e.message);
  }
}

start();
