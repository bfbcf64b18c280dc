// Proffer web UI: vanilla JavaScript, no framework, nothing loaded from elsewhere.
//
// Pages are `#/…` routes of one document. Data comes from the master's JSON routes (`/state`,
// `/roles`, `/maintenance`, `/why`) with the browser's credentials; task output comes through
// the master's sandbox proxy (`/ui/api/sandbox/read`). Every value is put into the DOM as text
// (`h()` makes text nodes, never HTML), so names chosen by users cannot inject markup.
'use strict';

(function () {
  const POLL_MS = 2000; // how often /state is read without the event stream
  const POLL_STREAMING_MS = 5000; // … and with it (offers and shares have no events)
  const POLL_HIDDEN_MS = 30000; // … and while the page is not visible (a background tab)
  const STREAM_RETRY_MS = 30000; // how soon a failed event stream is tried again
  const EVENT_DELAY_MS = 200; // refresh this long after an event …
  const EVENT_MIN_GAP_MS = 1000; // … and at most this often
  const TAIL_MS = 1000; // how often a shown file is read for new output
  const CHUNK = 65536; // bytes per sandbox read
  const MAX_SHOWN = 1 << 20; // characters of output kept on the page
  const RECENT_COMPLETED = 50; // completed tasks on the overview
  const OVERVIEW_LIVE = 100; // live tasks on the overview
  const MAX_ROWS = 1000; // rows of any one table (the rest is counted, not shown)
  const SCALARS = ['cpus', 'mem', 'disk', 'gpus'];
  const TERMINAL = ['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_ERROR', 'TASK_LOST',
    'TASK_DROPPED', 'TASK_GONE', 'TASK_GONE_BY_OPERATOR'];

  const model = {
    state: null, roles: [], windows: [], error: null, updated: null, why: null, streaming: false,
  };
  let viewer = null; // the output viewer of the task page (kept across re-renders)
  let pollTimer = null;

  // ---- DOM helpers ------------------------------------------------------------------------

  /** An element with attributes and children; strings and numbers become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
  }

  /** A link to an in-page route made of `parts` (each URI-encoded). */
  function link(parts, text, attrs) {
    const href = '#/' + parts.map(encodeURIComponent).join('/');
    return h('a', Object.assign({ href: href }, attrs || {}), text);
  }

  const agentLink = (id) => link(['agent', id], id);
  const frameworkLink = (id) => link(['framework', id], id);
  const roleLink = (role) => link(['role', role], role);
  const taskLink = (t, text) => link(['task', t.framework_id, t.id], text === undefined ? t.id : text);

  function stateBadge(s) {
    return h('span', { class: 'state ' + String(s).replace(/[^A-Za-z0-9_]/g, '') }, s);
  }

  /** A table; `total` (when more than the rows) adds a line saying how many are not shown. */
  function table(headers, rows, attrs, total) {
    const hidden = (total || 0) - rows.length;
    return h('table', attrs || {},
      h('thead', {}, h('tr', {}, headers.map((x) =>
        typeof x === 'string' ? h('th', {}, x) : h('th', { class: x.cls }, x.text)))),
      h('tbody', {}, rows.length ? rows :
        h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'none')),
      hidden > 0 ? h('tr', { class: 'more' }, h('td', { colspan: headers.length, class: 'muted' },
        '… and ' + hidden + ' more not shown (the first ' + rows.length + ' are)')) : null));
  }

  /** At most `n` (default MAX_ROWS) of `list`. */
  const first = (list, n) => list.slice(0, n || MAX_ROWS);

  function kv(pairs) {
    return h('dl', { class: 'kv' }, pairs.filter((p) => p).map(([k, v, attrs]) =>
      [h('dt', {}, k), h('dd', attrs || {}, v === '' || v === null || v === undefined ? '—' : v)]));
  }

  function section(title, ...body) {
    return h('section', {}, h('h2', {}, title), body);
  }

  // ---- formatting -------------------------------------------------------------------------

  /** A number rounded to 3 decimals, without trailing zeros. */
  function num(x) {
    return String(Math.round(x * 1000) / 1000);
  }

  function pct(share) {
    return (share * 100).toFixed(1) + '%';
  }

  function when(ms) {
    if (!ms) return '';
    return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function duration(ms) {
    if (ms < 0) return '';
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  }

  /**
   * Totals by resource name of a Mesos resource text (`cpus:2;mem:1024;cpus(web):1;
   * ports:[31000-31009]`): scalars are summed over roles, ranges count their members.
   */
  function parseResources(text) {
    const out = {};
    for (const part of String(text || '').split(';')) {
      const i = part.indexOf(':');
      if (i < 0) continue;
      const name = part.slice(0, i).replace(/\(.*$/, '').trim();
      const value = part.slice(i + 1).trim();
      let amount = 0;
      if (value.startsWith('[')) {
        for (const r of value.slice(1, -1).split(',')) {
          const [a, b] = r.split('-').map(Number);
          if (Number.isFinite(a)) amount += (Number.isFinite(b) ? b : a) - a + 1;
        }
      } else {
        amount = Number(value);
      }
      if (name && Number.isFinite(amount)) out[name] = (out[name] || 0) + amount;
    }
    return out;
  }

  /** Used/total bars of the scalar resources in `total` (and cpus/mem even when absent). */
  function usage(usedText, totalText) {
    const used = parseResources(usedText);
    const total = parseResources(totalText);
    const names = SCALARS.filter((n) => n in total || n === 'cpus' || n === 'mem');
    return h('div', { class: 'res' }, names.map((n) => {
      const u = used[n] || 0;
      const t = total[n] || 0;
      const w = t > 0 ? Math.min(100, (100 * u) / t) : 0;
      return [h('span', { class: 'muted' }, n),
        h('span', { class: 'bar' }, h('span', { 'data-w': w.toFixed(1) })),
        h('span', { class: 'amount used-' + n }, num(u) + ' / ' + num(t))];
    }));
  }

  /** Bars get their width after insertion (the page's CSP allows no inline style attribute). */
  function sizeBars(root) {
    for (const el of root.querySelectorAll('[data-w]')) el.style.width = el.dataset.w + '%';
  }

  // ---- data ---------------------------------------------------------------------------------

  /**
   * `path` on this origin, without any user:password of the page's address (fetch refuses
   * URLs with credentials; the browser sends the ones it has for the origin by itself).
   */
  function here(path) {
    return location.origin + path;
  }

  async function getText(path) {
    const r = await fetch(here(path), { credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) throw new Error(path + ': ' + r.status);
    return r.text();
  }

  /** The samples of a Prometheus text exposition: `{name, labels, value}`. */
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
      const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2];
      }
      out.push({ name: m[1], labels: labels, value: Number(m[3]) });
    }
    return out;
  }

  /** The sum of the samples called `name` (0 when there is none). */
  function metric(name) {
    return (model.metrics || []).filter((x) => x.name === name)
      .reduce((sum, x) => sum + (Number.isFinite(x.value) ? x.value : 0), 0);
  }

  async function getJson(path) {
    const r = await fetch(here(path), { credentials: 'same-origin', cache: 'no-store' });
    const text = await r.text();
    if (!r.ok) {
      let msg = text.trim();
      try { msg = JSON.parse(text).error || msg; } catch (_) { /* plain text */ }
      const err = new Error(path + ': ' + r.status + ' ' + msg);
      err.status = r.status;
      err.detail = r.status + ' ' + msg;
      throw err;
    }
    return JSON.parse(text);
  }

  let lastRefresh = 0;

  async function refresh() {
    lastRefresh = Date.now();
    try {
      const [state, roles, maintenance, metrics] = await Promise.all([
        getJson('/state'),
        getJson('/roles').catch(() => ({ roles: [] })),
        getJson('/maintenance').catch(() => ({ windows: [] })),
        getText('/metrics').then(parseMetrics).catch(() => []),
      ]);
      model.state = state;
      model.roles = roles.roles || [];
      model.windows = maintenance.windows || [];
      model.metrics = metrics;
      model.why = await fetchWhy();
      model.error = null;
      model.updated = new Date();
    } catch (e) {
      model.error = e.message;
      await followLeader();
    }
    render();
  }

  /**
   * After a failover this master may be a standby (its `/health` says so and names the
   * leader; its other routes redirect there, which the page's requests cannot follow across
   * origins): the page moves to the leader, on the same page.
   */
  async function followLeader() {
    try {
      const r = await fetch(here('/health'), { credentials: 'same-origin', cache: 'no-store' });
      const health = await r.json();
      if (health.role === 'standby' && typeof health.leader === 'string' &&
          /^[A-Za-z0-9.\-:\[\]]+$/.test(health.leader) && health.leader !== location.host) {
        location.assign(location.protocol + '//' + health.leader + '/ui' + location.hash);
      }
    } catch (_) {
      // The master does not answer at all: keep trying here.
    }
  }

  /** The `/why` explanation the current page shows (a framework's or a role's). */
  async function fetchWhy() {
    const [page, id] = route();
    if ((page !== 'framework' && page !== 'role') || !id) return null;
    const q = page === 'framework' ? 'framework_id=' : 'role=';
    try {
      return { key: page + '/' + id, lines: (await getJson('/why?' + q + encodeURIComponent(id))).lines };
    } catch (e) {
      return { key: page + '/' + id, error: e.message };
    }
  }

  function schedule() {
    clearTimeout(pollTimer);
    const every = document.hidden ? POLL_HIDDEN_MS : model.streaming ? POLL_STREAMING_MS : POLL_MS;
    pollTimer = setTimeout(async () => { await refresh(); schedule(); }, every);
  }

  // ---- live updates: the operator event stream ----------------------------------------------

  let eventTimer = null;

  /**
   * Refreshes soon after an event: 200 ms later (a burst makes one refresh), and at most one
   * refresh a second however busy the cluster is.
   */
  function onEvent() {
    if (eventTimer) return;
    const wait = Math.max(EVENT_DELAY_MS, EVENT_MIN_GAP_MS - (Date.now() - lastRefresh));
    eventTimer = setTimeout(async () => { eventTimer = null; await refresh(); schedule(); }, wait);
  }

  /**
   * Follows the master's operator event stream (`POST /api/v1` SUBSCRIBE, RecordIO of JSON
   * events) and refreshes on each change; polling stays on as the fallback (and for offers).
   */
  async function stream() {
    try {
      const r = await fetch(here('/api/v1'), {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
        body: JSON.stringify({ type: 'SUBSCRIBE' }),
      });
      if (!r.ok || !r.body) throw new Error('no event stream (' + r.status + ')');
      model.streaming = true;
      schedule();
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = new Uint8Array(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
        // RecordIO: "<length>\n<length bytes of JSON>", repeated.
        for (;;) {
          const nl = buf.indexOf(10);
          if (nl < 0) break;
          const len = Number(decoder.decode(buf.subarray(0, nl)));
          if (!Number.isSafeInteger(len) || len < 0) throw new Error('bad RecordIO length');
          if (buf.length < nl + 1 + len) break;
          const record = JSON.parse(decoder.decode(buf.subarray(nl + 1, nl + 1 + len)));
          buf = buf.slice(nl + 1 + len);
          if (record.type !== 'HEARTBEAT' && !document.hidden) onEvent();
        }
      }
    } catch (_) {
      // No stream (an older master, or the principal may not subscribe): polling it is.
    }
    model.streaming = false;
    schedule();
    setTimeout(stream, STREAM_RETRY_MS);
  }

  function allTasks() {
    const s = model.state;
    return s ? (s.tasks || []).concat(s.completed_tasks || []) : [];
  }

  // ---- routing ------------------------------------------------------------------------------

  function route() {
    const raw = location.hash.replace(/^#\/?/, '');
    if (!raw) return ['overview'];
    return raw.split('/').map((p) => {
      try { return decodeURIComponent(p); } catch (_) { return p; }
    });
  }

  function render() {
    const status = document.getElementById('status');
    status.className = model.error ? 'status error' : 'status';
    status.textContent = model.error ? 'cannot read the master: ' + model.error
      : model.updated ? 'updated ' + model.updated.toLocaleTimeString() +
        (model.streaming ? ' · live' : '') : 'loading…';
    const main = document.getElementById('main');
    if (!model.state) {
      main.replaceChildren(h('p', { class: 'muted' }, model.error ? '' : 'loading…'));
      return;
    }
    const [page, ...args] = route();
    const pages = {
      overview: overviewPage, agents: agentsPage, frameworks: frameworksPage, tasks: tasksPage,
      roles: rolesPage, offers: offersPage, agent: agentPage, framework: frameworkPage,
      role: rolePage, task: taskPage,
    };
    const build = pages[page] || (() => [h('h1', {}, 'No such page'), h('p', {}, link([], 'Overview'))]);
    const content = [].concat(build(...args));
    if (page !== 'task' && viewer) stopViewer();
    // Nodes the page keeps across refreshes (the task's output, the tasks filter) stay where
    // they are, so their scroll position, selection and focus survive; the rest is replaced.
    for (const child of [...main.childNodes]) if (!content.includes(child)) child.remove();
    let cursor = main.firstChild;
    for (const node of content) {
      if (node === cursor) cursor = cursor.nextSibling;
      else main.insertBefore(node, cursor);
    }
    sizeBars(main);
    main.dataset.page = page;
  }

  // ---- tables shared by pages ---------------------------------------------------------------

  function agentRows(agents) {
    return agents.map((a) => h('tr', { 'data-agent-id': a.id },
      h('td', { class: 'mono' }, agentLink(a.id)),
      h('td', {}, a.hostname + ':' + a.port),
      h('td', {}, stateBadge(a.state || (a.connected ? 'active' : 'disconnected'))),
      h('td', {}, usage(a.allocated, a.total)),
      h('td', { class: 'num active-tasks' }, a.active_tasks)));
  }

  function agentsTable(agents) {
    return table(['id', 'address', 'state', 'used / total', { text: 'tasks', cls: 'num' }],
      agentRows(first(agents)), { id: 'agents' }, agents.length);
  }

  function frameworksTable(frameworks) {
    return table(['id', 'name', 'roles', { text: 'dominant share', cls: 'num' }, 'allocated',
      { text: 'tasks', cls: 'num' }, { text: 'offers', cls: 'num' }, 'status'],
    first(frameworks).map((f) => h('tr', { 'data-framework-id': f.id },
      h('td', { class: 'mono' }, frameworkLink(f.id)),
      h('td', { class: 'name' }, f.name),
      h('td', {}, (f.roles || []).map((r, i) => [i ? ', ' : '', roleLink(r)])),
      h('td', { class: 'num share' }, pct(f.dominant_share || 0)),
      h('td', { class: 'mono' }, f.allocated || '—'),
      h('td', { class: 'num active-tasks' }, f.active_tasks),
      h('td', { class: 'num offers' }, f.outstanding_offers),
      h('td', {}, stateBadge(f.connected ? 'connected' : 'disconnected'),
        f.suppressed ? [' ', stateBadge('suppressed')] : null))), { id: 'frameworks' },
    frameworks.length);
  }

  function rolesTable(roles) {
    return table(['role', { text: 'weight', cls: 'num' }, 'guarantees', 'limits', 'allocated',
      'frameworks'],
    roles.map((r) => h('tr', { 'data-role': r.role },
      h('td', { class: 'mono' }, roleLink(r.role)),
      h('td', { class: 'num weight' }, num(r.weight)),
      h('td', { class: 'mono guarantees' }, r.guarantees || '—'),
      h('td', { class: 'mono limits' }, r.limits || '—'),
      h('td', { class: 'mono' }, r.allocated || '—'),
      h('td', {}, (r.frameworks || []).map((f, i) => [i ? ', ' : '', frameworkLink(f)])))),
    { id: 'roles' });
  }

  function tasksTable(tasks, id, limit) {
    const now = model.state.now_ms;
    return table(['id', 'name', 'state', 'framework', 'agent', 'resources', 'ran for'],
      first(tasks, limit).map((t) => h('tr', { 'data-task-id': t.id, 'data-framework-id': t.framework_id },
        h('td', { class: 'mono' }, taskLink(t)),
        h('td', { class: 'name' }, t.name),
        h('td', {}, stateBadge(t.state)),
        h('td', { class: 'mono' }, frameworkLink(t.framework_id)),
        h('td', { class: 'mono' }, t.agent_id ? agentLink(t.agent_id) : '—'),
        h('td', { class: 'mono' }, t.resources),
        h('td', {}, t.started_ms ? duration((t.ended_ms || now) - t.started_ms) : '—'))),
      { id: id || 'tasks' }, tasks.length);
  }

  function offersTable(offers) {
    return table(['offer', 'framework', 'agent', 'resources'],
      first(offers).map((o) => h('tr', { 'data-offer-id': o.id },
        h('td', { class: 'mono' }, o.id),
        h('td', { class: 'mono' }, frameworkLink(o.framework_id)),
        h('td', { class: 'mono' }, agentLink(o.agent_id)),
        h('td', { class: 'mono' }, o.resources))), { id: 'offers' }, offers.length);
  }

  function byState() {
    const counts = {};
    for (const t of allTasks()) counts[t.state] = (counts[t.state] || 0) + 1;
    return Object.keys(counts).sort().map((s) => h('tr', { 'data-state': s },
      h('td', {}, link(['tasks', s], s)), h('td', { class: 'num count' }, counts[s])));
  }

  // ---- pages ----------------------------------------------------------------------------------

  function card(id, n, label, href) {
    return h('div', { class: 'card' }, h('div', { class: 'num', id: id }, n),
      h('div', { class: 'label' }, href ? h('a', { href: href }, label) : label));
  }

  function overviewPage() {
    const s = model.state;
    const live = s.tasks || [];
    const completed = s.completed_tasks || [];
    const recent = completed.slice().sort((a, b) => (b.ended_ms || 0) - (a.ended_ms || 0))
      .slice(0, RECENT_COMPLETED);
    return [
      h('h1', {}, 'Cluster ', h('span', { class: 'mono muted' }, s.master_id)),
      h('div', { class: 'cards' },
        card('count-agents', (s.agents || []).length, 'agents', '#/agents'),
        card('count-frameworks', (s.frameworks || []).length, 'frameworks', '#/frameworks'),
        card('count-tasks-live', live.length, 'live tasks', '#/tasks'),
        card('count-tasks-completed', completed.length, 'completed tasks', '#/tasks'),
        card('count-offers', (s.offers || []).length, 'outstanding offers', '#/offers'),
        card('count-cycles', s.allocation_cycles, 'allocation cycles'),
        card('uptime', duration(s.uptime_ms || 0), 'master uptime')),
      section('Resources', h('div', { id: 'cluster-usage' }, usage(s.allocated, s.total))),
      section('Agents', agentsTable(s.agents || [])),
      section('Frameworks', frameworksTable(s.frameworks || [])),
      section('Roles', rolesTable(model.roles)),
      section('Tasks by state', table(['state', { text: 'tasks', cls: 'num' }], byState(),
        { id: 'tasks-by-state' })),
      section('Live tasks', tasksTable(live, 'live-tasks', OVERVIEW_LIVE),
        live.length > OVERVIEW_LIVE ? h('p', {}, link(['tasks'], 'all tasks')) : null),
      section('Recently completed tasks', tasksTable(recent, 'completed-tasks'),
        completed.length > recent.length ? h('p', {}, link(['tasks'], 'all ' + completed.length)) : null),
      section('Outstanding offers', offersTable(s.offers || [])),
      section('Since the master started', sinceStart()),
    ];
  }

  /** Counters of `/metrics`. */
  function sinceStart() {
    const writes = metric('proffer_registry_write_seconds_count');
    const ended = (model.metrics || []).filter((x) => x.name === 'proffer_tasks_terminal_total');
    return h('div', { class: 'cards' },
      card('metric-offers-made', metric('proffer_offers_made_total'), 'offers made'),
      card('metric-tasks-launched', metric('proffer_tasks_launched_total'), 'tasks launched'),
      card('metric-tasks-ended', metric('proffer_tasks_terminal_total'), 'tasks ended'),
      ended.map((x) => card(null, x.value, (x.labels.state || '?') + ' (ended)')),
      card('metric-agents-removed', metric('proffer_agents_removed_total'), 'agents removed'),
      card('metric-frameworks-removed', metric('proffer_frameworks_removed_total'), 'frameworks removed'),
      writes ? card('metric-registry-write', num(1000 * metric('proffer_registry_write_seconds_sum') / writes) + ' ms',
        'mean registry write (' + writes + ')') : null,
      h('p', { class: 'muted' }, h('a', { href: '/metrics' }, 'all metrics (Prometheus)')));
  }

  function agentsPage() {
    return [h('h1', {}, 'Agents'), section('Agents', agentsTable(model.state.agents || []))];
  }

  function frameworksPage() {
    return [h('h1', {}, 'Frameworks'),
      section('Frameworks', frameworksTable(model.state.frameworks || []))];
  }

  function rolesPage() {
    return [h('h1', {}, 'Roles'), section('Roles', rolesTable(model.roles))];
  }

  function offersPage() {
    return [h('h1', {}, 'Outstanding offers'), section('Offers', offersTable(model.state.offers || []))];
  }

  /** The tasks page's filter box (kept across refreshes: typing is not interrupted). */
  const taskFilter = h('input', {
    type: 'search', id: 'task-filter', placeholder: 'filter by id or name', 'aria-label': 'filter tasks',
  });
  const taskFilterBar = h('div', { class: 'filter' }, taskFilter);
  taskFilter.addEventListener('input', () => render());

  function tasksPage(stateFilter) {
    let tasks = allTasks();
    if (stateFilter) tasks = tasks.filter((t) => t.state === stateFilter);
    const q = taskFilter.value.trim().toLowerCase();
    if (q) {
      tasks = tasks.filter((t) => String(t.id).toLowerCase().includes(q) ||
        String(t.name).toLowerCase().includes(q));
    }
    const states = [...new Set(allTasks().map((t) => t.state))].sort();
    return [h('h1', {}, 'Tasks'),
      h('div', { class: 'tabs filter' }, link(['tasks'], 'all', { class: stateFilter ? '' : 'on' }),
        states.map((s) => link(['tasks', s], s, { class: s === stateFilter ? 'on' : '' }))),
      taskFilterBar,
      section((stateFilter || 'All tasks') + (q ? ' matching “' + taskFilter.value.trim() + '”' : ''),
        tasksTable(tasks))];
  }

  function missing(what, id) {
    return [h('h1', {}, what + ' ', h('span', { class: 'mono' }, id)),
      h('p', { class: 'muted' }, 'The master does not know this ' + what.toLowerCase() +
        ' (or you may not see it).')];
  }

  function agentPage(id) {
    const s = model.state;
    const a = (s.agents || []).find((x) => x.id === id);
    const tasks = allTasks().filter((t) => t.agent_id === id);
    if (!a && !tasks.length) return missing('Agent', id);
    const windows = model.windows.filter((w) => w.agent_id === id);
    const out = [h('h1', {}, 'Agent ', h('span', { class: 'mono' }, id))];
    if (a) {
      out.push(section('Agent', kv([
        ['address', a.hostname + ':' + a.port],
        ['state', stateBadge(a.state)],
        ['isolation', a.isolation],
        ['draining', a.draining ? 'yes' : 'no'],
        ['attributes', (a.attributes || []).map((x) => x.name + ':' + (x.text || x.value || '')).join('; ')],
        ['total', a.total, { class: 'mono', id: 'agent-total' }],
        ['allocated', a.allocated, { class: 'mono', id: 'agent-allocated' }],
        ['available', a.available, { class: 'mono' }],
        ['unreachable since', when(a.unreachable_since_ms)],
      ]), h('h2', {}, 'Used / total'), usage(a.allocated, a.total)));
    } else {
      out.push(h('p', { class: 'muted' }, 'This agent is no longer registered.'));
    }
    if (windows.length) {
      out.push(section('Maintenance', table(['starts in', 'duration', 'started', 'frameworks'],
        windows.map((w) => h('tr', {}, h('td', {}, duration(w.starts_in_ms)),
          h('td', {}, duration(w.duration_ms)), h('td', {}, w.started ? 'yes' : 'no'),
          h('td', {}, (w.frameworks || []).map((f) => f.framework_id + ': ' + f.status).join(', ')))))));
    }
    out.push(section('Tasks', tasksTable(tasks)));
    out.push(section('Offers', offersTable((s.offers || []).filter((o) => o.agent_id === id))));
    return out;
  }

  function whyBlock(key) {
    const why = model.why;
    if (!why || why.key !== key) return h('p', { class: 'muted' }, 'loading…');
    if (why.error) return h('p', { class: 'error' }, why.error);
    return h('pre', { class: 'why', id: 'why' }, (why.lines || []).join('\n'));
  }

  function frameworkPage(id) {
    const s = model.state;
    const f = (s.frameworks || []).find((x) => x.id === id);
    const tasks = allTasks().filter((t) => t.framework_id === id);
    if (!f && !tasks.length) return missing('Framework', id);
    const out = [h('h1', {}, 'Framework ', h('span', { class: 'mono' }, id))];
    if (f) {
      out.push(section('Framework', kv([
        ['name', f.name, { id: 'framework-name' }],
        ['roles', (f.roles || []).map((r, i) => [i ? ', ' : '', roleLink(r)])],
        ['user', f.user], ['principal', f.principal],
        ['connected', f.connected ? 'yes' : 'no'], ['suppressed', f.suppressed ? 'yes' : 'no'],
        ['dominant share', pct(f.dominant_share || 0), { id: 'framework-share' }],
        ['allocated', f.allocated, { class: 'mono' }],
        ['active tasks', f.active_tasks], ['outstanding offers', f.outstanding_offers],
        ['max outstanding offers', f.max_outstanding_offers == null ? 'no limit' : f.max_outstanding_offers],
        ['failover timeout', duration((f.failover_timeout || 0) * 1000)],
      ])));
      out.push(section('Why (offers and allocation)', whyBlock('framework/' + id)));
    } else {
      out.push(h('p', { class: 'muted' }, 'This framework is no longer registered.'));
    }
    out.push(section('Tasks', tasksTable(tasks)));
    out.push(section('Offers', offersTable((s.offers || []).filter((o) => o.framework_id === id))));
    return out;
  }

  function rolePage(role) {
    const r = model.roles.find((x) => x.role === role);
    const out = [h('h1', {}, 'Role ', h('span', { class: 'mono' }, role))];
    if (r) {
      out.push(section('Role', kv([
        ['weight', num(r.weight), { id: 'role-weight' }],
        ['guarantees', r.guarantees, { class: 'mono' }],
        ['limits', r.limits, { class: 'mono' }],
        ['allocated', r.allocated, { class: 'mono' }],
        ['frameworks', (r.frameworks || []).map((f, i) => [i ? ', ' : '', frameworkLink(f)])],
      ])));
    }
    out.push(section('Why (what the role waits for)', whyBlock('role/' + role)));
    return out;
  }

  function taskPage(fw, id, file) {
    const t = allTasks().find((x) => x.framework_id === fw && x.id === id);
    if (!t) return missing('Task', id);
    file = file || 'stdout';
    const out = [h('h1', {}, 'Task ', h('span', { class: 'mono' }, id))];
    out.push(section('Task', kv([
      ['name', t.name, { id: 'task-name' }],
      ['state', stateBadge(t.state), { id: 'task-state' }],
      ['framework', frameworkLink(t.framework_id)],
      ['agent', t.agent_id ? agentLink(t.agent_id) : ''],
      ['resources', t.resources, { class: 'mono' }],
      ['reason', t.reason], ['message', t.message],
      ['started', when(t.started_ms)], ['ended', when(t.ended_ms)],
      ['ran for', t.started_ms ? duration((t.ended_ms || model.state.now_ms) - t.started_ms) : ''],
      ['user', t.user],
      ['sandbox', t.sandbox, { class: 'mono' }],
      t.image && ['image', t.image, { class: 'mono', id: 'task-image' }],
      t.image_sha256 && ['image sha256', t.image_sha256, { class: 'mono' }],
    ])));
    const key = fw + '\u0000' + id + '\u0000' + file;
    if (!viewer || viewer.key !== key) {
      stopViewer();
      viewer = makeViewer(fw, id, file, TERMINAL.includes(t.state));
      viewer.key = key;
    }
    viewer.terminal = TERMINAL.includes(t.state);
    out.push(viewer.node);
    return out;
  }

  // ---- sandbox output -------------------------------------------------------------------------

  function sandboxUrl(op, fw, id, params) {
    const q = new URLSearchParams(Object.assign({ framework_id: fw, task_id: id }, params));
    return '/ui/api/sandbox/' + op + '?' + q.toString();
  }

  /** The sandbox section: its files, and the chosen one followed as it grows. */
  function makeViewer(fw, id, file, terminal) {
    const pre = h('pre', { class: 'output', id: 'output', 'data-file': file });
    const note = h('p', { class: 'muted', id: 'output-status' }, 'reading ' + file + '…');
    const files = h('div', { class: 'tabs', id: 'sandbox-files' });
    const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
    const download = h('a', { id: 'download', download: file,
      href: sandboxUrl('download', fw, id, { path: file }) }, 'download ' + file);
    const node = h('section', { id: 'sandbox' }, h('h2', {}, 'Sandbox'), files,
      h('p', {}, h('label', {}, follow, ' follow (read new output every second)'), ' · ', download),
      note, pre);
    const v = { node: node, stopped: false, timer: null, offset: null, terminal: terminal };
    const setNote = (text, cls) => { note.textContent = text; note.className = cls || 'muted'; };

    const tabs = (names) => {
      const wanted = ['stdout', 'stderr'];
      const all = wanted.concat(names.filter((n) => !wanted.includes(n)));
      files.replaceChildren(...all.map((n) => link(['task', fw, id, n], n,
        { class: n === file ? 'on' : '', 'data-file': n })));
    };
    tabs([]);
    getJson(sandboxUrl('browse', fw, id, { path: '' }))
      .then((entries) => tabs(entries.filter((e) => !e.is_dir).map((e) => e.name)))
      .catch(() => { /* the read below reports the problem */ });

    const step = async () => {
      if (v.stopped) return;
      try {
        if (v.offset === null) {
          // The size first: start at most one chunk before the end.
          const end = await getJson(sandboxUrl('read', fw, id,
            { path: file, offset: Number.MAX_SAFE_INTEGER, length: 0 }));
          v.offset = Math.max(0, end.size - CHUNK);
          if (v.offset > 0) pre.textContent = '… (' + v.offset + ' earlier bytes not shown)\n';
        }
        const r = await getJson(sandboxUrl('read', fw, id, { path: file, offset: v.offset, length: CHUNK }));
        if (v.stopped) return;
        if (r.data) {
          pre.append(r.data);
          if (pre.textContent.length > MAX_SHOWN) pre.textContent = pre.textContent.slice(-MAX_SHOWN);
          if (follow.checked) pre.scrollTop = pre.scrollHeight;
        }
        v.offset = Math.min(r.offset + CHUNK, r.size);
        pre.dataset.size = r.size;
        setNote(file + ': ' + r.size + ' bytes' + (v.terminal ? ' (the task has ended)' : ''));
        const more = v.offset < r.size;
        // An ended task's files do not grow: once read to the end, no more requests.
        if (more || (follow.checked && !v.terminal)) v.timer = setTimeout(step, more ? 0 : TAIL_MS);
      } catch (e) {
        setNote('cannot read ' + file + ': ' + (e.detail || e.message), 'error');
        if (follow.checked) v.timer = setTimeout(step, TAIL_MS * 3);
      }
    };
    follow.addEventListener('change', () => {
      clearTimeout(v.timer);
      if (follow.checked) step();
    });
    step();
    return v;
  }

  function stopViewer() {
    if (viewer) {
      viewer.stopped = true;
      clearTimeout(viewer.timer);
      viewer = null;
    }
  }

  // ---- start ------------------------------------------------------------------------------

  window.addEventListener('hashchange', async () => {
    render();
    const [page] = route();
    if (page === 'framework' || page === 'role') {
      model.why = await fetchWhy();
      render();
    }
  });
  document.addEventListener('visibilitychange', async () => {
    if (!document.hidden) { await refresh(); schedule(); }
  });
  refresh().then(schedule);
  stream();
})();
