// @ts-check
// netacct's live page: two WebSocket streams from the daemon (/v1/stream),
// one of cgroups (the host's totals, and the cgroups view) and one of the top
// processes by traffic. Rates are computed here from the cumulative counters
// of two updates, so that both views get them the same way; the last five
// minutes of each row are kept for its chart. No framework and nothing from
// outside the daemon: the page works on a host with no network. Every name
// shown (process names are chosen by whoever runs the process) goes in as
// text, never as HTML. A click on a process follows its peers (a third
// stream, of that process only), when the daemon counts per peer. Below the
// overview, a History section draws the top groups' traffic of the last
// hour, day or week from GET /v1/history (at the end of this file).
'use strict';

const INTERVAL_MS = 1000;
const HISTORY_MS = 5 * 60_000;
const TOP_PROCESSES = 200;

/**
 * @typedef {{ calls: number, bytes: number }} Pair
 * @typedef {{ tcp: { send: Pair, recv: Pair }, udp: { send: Pair, recv: Pair } }} Counters
 * @typedef {{ t: number, send: number, recv: number }} Point
 * @typedef {{ key: string, fields: Record<string, string | number>, sent: number, received: number,
 *             at: number, sendRate: number | null, recvRate: number | null, history: Point[] }} Row
 * @typedef {{ id: string, title: string, numeric?: boolean, value: (row: Row) => string | number,
 *             show?: (row: Row) => string, className?: string }} Column
 */

/** @param {number} bytes */
function human(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** @param {number | null} rate */
const showRate = (rate) => (rate === null ? '–' : `${human(rate)}/s`);

/** @param {Counters} c */
const sentBytes = (c) => c.tcp.send.bytes + c.udp.send.bytes;
/** @param {Counters} c */
const receivedBytes = (c) => c.tcp.recv.bytes + c.udp.recv.bytes;

/** @type {Column[]} */
const TRAFFIC_COLUMNS = [
  { id: 'sendRate', title: 'Send/s', numeric: true, value: (r) => r.sendRate ?? -1, show: (r) => showRate(r.sendRate), className: 'send-rate' },
  { id: 'recvRate', title: 'Recv/s', numeric: true, value: (r) => r.recvRate ?? -1, show: (r) => showRate(r.recvRate), className: 'recv-rate' },
  { id: 'sent', title: 'Sent', numeric: true, value: (r) => r.sent, show: (r) => human(r.sent) },
  { id: 'received', title: 'Received', numeric: true, value: (r) => r.received, show: (r) => human(r.received) },
];

/** @type {Record<'processes' | 'cgroups', Column[]>} */
const COLUMNS = {
  processes: [
    { id: 'pid', title: 'PID', numeric: true, value: (r) => r.fields.pid },
    { id: 'command', title: 'Command', value: (r) => r.fields.command },
    { id: 'uid', title: 'UID', numeric: true, value: (r) => r.fields.uid },
    { id: 'state', title: 'State', value: (r) => r.fields.state },
    { id: 'cgroup', title: 'Cgroup', value: (r) => r.fields.cgroup, className: 'cgroup' },
    { id: 'container', title: 'Container', value: (r) => r.fields.container },
    ...TRAFFIC_COLUMNS,
  ],
  cgroups: [
    { id: 'path', title: 'Cgroup', value: (r) => r.fields.path, className: 'cgroup' },
    { id: 'unit', title: 'Unit', value: (r) => r.fields.unit },
    { id: 'container', title: 'Container', value: (r) => r.fields.container },
    ...TRAFFIC_COLUMNS,
  ],
};

/** Rows by key, per stream; rows that leave an update are dropped. */
const streams = { processes: new Map(), cgroups: new Map() };
/** @type {Point[]} */
const totals = [];
const state = { view: /** @type {'processes' | 'cgroups'} */ ('processes'), sort: 'sendRate', descending: true };

/**
 * Applies one update: cumulative counters become rates against the previous update.
 * @param {Map<string, Row>} rows
 * @param {number} at
 * @param {Array<{ key: string, fields: Record<string, string | number>, counters: Counters }>} items
 */
function applyUpdate(rows, at, items) {
  const seen = new Set();
  for (const item of items) {
    seen.add(item.key);
    const sent = sentBytes(item.counters);
    const received = receivedBytes(item.counters);
    const previous = rows.get(item.key);
    /** @type {Row} */
    const row = previous ?? { key: item.key, fields: item.fields, sent, received, at, sendRate: null, recvRate: null, history: [] };
    if (previous && at > previous.at) {
      const seconds = (at - previous.at) / 1000;
      row.sendRate = Math.max(0, sent - previous.sent) / seconds;
      row.recvRate = Math.max(0, received - previous.received) / seconds;
      row.history.push({ t: at, send: row.sendRate, recv: row.recvRate });
      while (row.history.length > 0 && row.history[0].t < at - HISTORY_MS) row.history.shift();
    }
    Object.assign(row, { fields: item.fields, sent, received, at });
    rows.set(item.key, row);
  }
  for (const key of rows.keys()) if (!seen.has(key)) rows.delete(key);
}

/**
 * A cgroup's container as users name it: "namespace/pod/container" for a
 * pod's, the runtime's name (or short id) otherwise, "" for none.
 * @param {any} cgroup
 */
function containerText(cgroup) {
  const c = cgroup.container;
  if (c && c.pod && c.namespace) return `${c.namespace}/${c.pod}/${c.name ?? c.id.slice(0, 12)}`;
  if (c) return c.name ?? c.id.slice(0, 12);
  return cgroup.containerId ? cgroup.containerId.slice(0, 12) : '';
}

/** @param {any} message */
function onProcesses(message) {
  applyUpdate(
    streams.processes,
    message.at,
    message.processes.map((/** @type {any} */ p) => ({
      key: `${p.pid}:${p.startTime}`,
      fields: { pid: p.pid, command: p.command, uid: p.uid, state: p.state, cgroup: p.cgroup.unit ?? p.cgroup.path ?? `id ${p.cgroup.id}`, container: containerText(p.cgroup) },
      counters: p.counters,
    })),
  );
}

/** @param {any} message */
function onCgroups(message) {
  const rows = streams.cgroups;
  applyUpdate(
    rows,
    message.at,
    message.cgroups.map((/** @type {any} */ c) => ({
      key: String(c.id),
      fields: { path: c.path ?? `(id ${c.id})`, unit: c.unit ?? '', container: containerText(c) },
      counters: c.counters,
    })),
  );
  // The host's totals: every cgroup, exited processes included.
  let send = 0;
  let recv = 0;
  let complete = true;
  for (const row of rows.values()) {
    if (row.sendRate === null) complete = false;
    send += row.sendRate ?? 0;
    recv += row.recvRate ?? 0;
  }
  if (complete && rows.size > 0) {
    totals.push({ t: message.at, send, recv });
    while (totals.length > 0 && totals[0].t < message.at - HISTORY_MS) totals.shift();
    text('total-send', showRate(send));
    text('total-recv', showRate(recv));
  }
}

/** @param {string} id @param {string} value */
function text(id, value) {
  const element = document.getElementById(id);
  if (element) element.textContent = value;
}

/**
 * Send and receive rates over the last five minutes, on a shared scale.
 * @param {HTMLCanvasElement} canvas
 * @param {Point[]} points
 */
function drawChart(canvas, points) {
  const context = canvas.getContext('2d');
  if (!context) return;
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  if (points.length < 2) return;
  const end = points[points.length - 1].t;
  const top = Math.max(1, ...points.map((p) => Math.max(p.send, p.recv)));
  const styles = getComputedStyle(document.documentElement);
  for (const [field, color] of /** @type {const} */ ([['recv', '--recv'], ['send', '--send']])) {
    context.beginPath();
    context.strokeStyle = styles.getPropertyValue(color).trim();
    context.lineWidth = 1.5;
    points.forEach((p, i) => {
      const x = width - ((end - p.t) / HISTORY_MS) * width;
      const y = height - 2 - (p[field] / top) * (height - 4);
      if (i === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.stroke();
  }
}

function renderHeader() {
  const head = /** @type {HTMLTableSectionElement} */ (document.querySelector('#rows thead'));
  const tr = document.createElement('tr');
  for (const column of COLUMNS[state.view]) {
    const th = document.createElement('th');
    th.textContent = column.title;
    th.dataset.column = column.id;
    if (column.numeric) th.classList.add('num');
    if (column.id === state.sort) th.setAttribute('aria-sort', state.descending ? 'descending' : 'ascending');
    th.addEventListener('click', () => {
      state.descending = column.id === state.sort ? !state.descending : Boolean(column.numeric);
      state.sort = column.id;
      renderHeader();
      renderRows();
    });
    tr.append(th);
  }
  const chart = document.createElement('th');
  chart.textContent = 'Last 5 minutes';
  tr.append(chart);
  head.replaceChildren(tr);
}

function renderRows() {
  const columns = COLUMNS[state.view];
  const sortColumn = columns.find((c) => c.id === state.sort) ?? columns[0];
  const sign = state.descending ? -1 : 1;
  const rows = [...streams[state.view].values()].sort((a, b) => {
    const x = sortColumn.value(a);
    const y = sortColumn.value(b);
    return x < y ? -sign : x > y ? sign : a.key < b.key ? -1 : 1;
  });
  const body = /** @type {HTMLTableSectionElement} */ (document.querySelector('#rows tbody'));
  const trs = rows.map((row) => {
    const tr = document.createElement('tr');
    tr.dataset.key = row.key;
    if (state.view === 'processes') tr.dataset.pid = String(row.fields.pid);
    if (row.key === peers.key) tr.classList.add('selected');
    if (row.fields.state === 'exited') tr.classList.add('exited');
    for (const column of columns) {
      const td = document.createElement('td');
      td.textContent = column.show ? column.show(row) : String(column.value(row));
      if (column.numeric) td.classList.add('num');
      if (column.className) td.classList.add(column.className);
      td.dataset.value = String(column.value(row));
      tr.append(td);
    }
    const chartCell = document.createElement('td');
    const canvas = document.createElement('canvas');
    canvas.width = 160;
    canvas.height = 24;
    drawChart(canvas, row.history);
    chartCell.append(canvas);
    tr.append(chartCell);
    return tr;
  });
  body.replaceChildren(...trs);
  text('row-count', String(rows.length));
  drawChart(/** @type {HTMLCanvasElement} */ (document.getElementById('total-chart')), totals);
}

/**
 * One subscription, reconnected after a failure.
 * @param {object} subscription
 * @param {(message: any) => void} onUpdate
 */
function subscribe(subscription, onUpdate) {
  const status = /** @type {HTMLElement} */ (document.getElementById('status'));
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/stream`);
  ws.addEventListener('open', () => ws.send(JSON.stringify(subscription)));
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'error') {
      status.textContent = `error: ${message.error}`;
      status.className = 'status error';
      return;
    }
    status.textContent = `live, every ${INTERVAL_MS / 1000} s`;
    status.className = 'status live';
    onUpdate(message);
    renderRows();
  });
  ws.addEventListener('close', () => {
    status.textContent = 'disconnected: retrying…';
    status.className = 'status error';
    setTimeout(() => subscribe(subscription, onUpdate), 2000);
  });
}

/** The process whose peers are shown, and its stream. */
const peers = { key: '', /** @type {WebSocket | null} */ ws: null };

/**
 * "10.0.0.1:443", "[2001:db8::1]:53", "10.0.0.1" (port not kept), "(unknown)", "(overflow)".
 * @param {any} row
 */
function peerText(row) {
  if (row.kind !== 'peer') return `(${row.kind})`;
  const host = row.address.includes(':') ? `[${row.address}]` : row.address;
  return row.port === null ? host : `${host}:${row.port}`;
}

/** @param {any} message */
function renderPeers(message) {
  const trs = message.peers.map((/** @type {any} */ row) => {
    const tr = document.createElement('tr');
    const c = row.counters;
    const cells = [peerText(row), row.localPort === null ? '–' : String(row.localPort), human(c.tcp.send.bytes), human(c.tcp.recv.bytes), human(c.udp.send.bytes), human(c.udp.recv.bytes)];
    cells.forEach((value, i) => {
      const td = document.createElement('td');
      td.textContent = value;
      if (i > 0) td.classList.add('num');
      tr.append(td);
    });
    return tr;
  });
  /** @type {HTMLElement} */ (document.querySelector('#peer-rows tbody')).replaceChildren(...trs);
  text('peers-status', `${message.peers.length} peers, largest first`);
}

/** Follows the peers of the process in `row` (one stream at a time). @param {Row} row */
function followPeers(row) {
  peers.ws?.close();
  peers.key = row.key;
  /** @type {HTMLElement} */ (document.getElementById('peers')).hidden = false;
  text('peers-title', `Peers of ${row.fields.command} (PID ${row.fields.pid})`);
  text('peers-status', 'connecting…');
  /** @type {HTMLElement} */ (document.querySelector('#peer-rows tbody')).replaceChildren();
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/stream`);
  peers.ws = ws;
  ws.addEventListener('open', () => ws.send(JSON.stringify({ view: 'peers', pid: row.fields.pid, interval: INTERVAL_MS, top: 100 })));
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'error') text('peers-status', message.error);
    else renderPeers(message);
  });
  renderRows();
}

/** @type {HTMLElement} */ (document.querySelector('#rows tbody')).addEventListener('click', (event) => {
  const tr = /** @type {HTMLElement} */ (event.target).closest('tr[data-pid]');
  const row = tr && streams.processes.get(/** @type {HTMLElement} */ (tr).dataset.key);
  if (row) followPeers(row);
});

for (const button of document.querySelectorAll('nav button')) {
  button.addEventListener('click', () => {
    state.view = /** @type {'processes' | 'cgroups'} */ (/** @type {HTMLElement} */ (button).dataset.view);
    for (const other of document.querySelectorAll('nav button')) other.setAttribute('aria-pressed', String(other === button));
    state.sort = 'sendRate';
    state.descending = true;
    renderHeader();
    renderRows();
  });
}
renderHeader();
subscribe({ view: 'cgroups', interval: INTERVAL_MS }, onCgroups);
subscribe({ view: 'processes', interval: INTERVAL_MS, sort: 'rate.total.bytes', order: 'desc', top: TOP_PROCESSES, state: 'live' }, onProcesses);

// ---------------------------------------------------------------------------
// History (GET /v1/history): the top groups' bytes per step over the last
// hour, day or week, stacked in an SVG drawn here (no chart library). The
// top 8 groups are drawn each in its colour, the others summed as "the rest".
// A click on a group (its band or its legend entry) shows that group alone; a
// second click, or "Show all", shows every group again. Refreshed once a
// minute and when the range or the grouping changes.

const HISTORY_REFRESH_MS = 60_000;
const HISTORY_TOP = 8;
/** The groups asked for: the top 8 are drawn, the others summed per step as the rest. */
const HISTORY_LIMIT = 200;
/** About this many steps across the chart. */
const HISTORY_TARGET_STEPS = 180;
const HISTORY_RANGES = /** @type {Record<string, { seconds: number, title: string }>} */ ({
  '1h': { seconds: 3600, title: 'last hour' },
  '1d': { seconds: 86_400, title: 'last day' },
  '7d': { seconds: 7 * 86_400, title: 'last week' },
});
/** One colour per rank; the rest is grey. */
const HISTORY_COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#9c755f'];
const HISTORY_REST_COLOUR = '#bab0ac';
const REST_KEY = '(rest)';
const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART = { width: 900, height: 260, left: 72, right: 10, top: 12, bottom: 26 };
const DURATION_UNITS = /** @type {Record<string, number>} */ ({ s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, mo: 2_629_746, y: 31_556_952 });

/**
 * @typedef {{ key: string, name: string, colour: string, bytes: number, series: number[] }} HistoryBand
 */

const historyState = {
  range: '1h',
  by: 'command',
  /** The key of the group shown alone, or null for all. */
  only: /** @type {string | null} */ (null),
  /** The bucket length of the tier that holds each range (from the daemon). */
  tierSeconds: /** @type {Map<string, number>} */ (new Map()),
  /** The last answer drawn, to redraw on a click without asking again. */
  bands: /** @type {HistoryBand[]} */ ([]),
  answer: /** @type {any} */ (null),
  /** Each request's number: an answer to an older one is dropped. */
  request: 0,
};

/** "1,234,567" whatever the browser's locale. @param {number} n */
const grouped = (n) => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');

/** Seconds in the daemon's "10s", "1m", "1h", "1d"…, or null. @param {string} text */
function durationSecondsOf(text) {
  const match = /^(\d+)(s|m|h|d|w|mo|y)$/.exec(text);
  return match ? Number(match[1]) * DURATION_UNITS[match[2]] : null;
}

/** "20 s", "8 min", "1 h". @param {number} seconds */
function stepText(seconds) {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** A group's name as shown (text only, never HTML). @param {any} group @param {string} by */
function groupName(group, by) {
  if (group.other !== undefined) return '(other workloads, past each bucket\'s bound)';
  const orNone = (/** @type {unknown} */ value, /** @type {string} */ none) => (value === null || value === undefined || value === '' ? none : String(value));
  switch (by) {
    case 'command': return orNone(group.command, '(no command)');
    case 'unit': return orNone(group.unit, '(no unit)');
    case 'cgroup': return orNone(group.cgroup, '(unknown cgroup)');
    case 'container': return group.container === null || group.container === undefined ? '(no container)' : orNone(group.pod ? `${group.namespace}/${group.pod}/${group.containerName}` : group.containerName, group.container.slice(0, 12));
    case 'pod': return group.pod === null || group.pod === undefined ? '(not in a pod)' : `${group.namespace}/${group.pod}`;
    case 'namespace': return orNone(group.namespace, '(not in a pod)');
    case 'user': return group.uid === null || group.uid === undefined ? '(no user)' : `uid ${group.uid}`;
    default: return `${orNone(group.command, '(no command)')} · ${orNone(group.unit ?? group.cgroup, '(unknown cgroup)')} · uid ${orNone(group.uid, '?')}`;
  }
}

/** A group's identity across refreshes. @param {any} group */
function groupKey(group) {
  const { counters: _c, total: _t, series: _s, ...key } = group;
  return JSON.stringify(key);
}

/** Bytes of one step (the 8 counters in seriesCounters order). @param {number[]} counters @param {string[]} names */
function stepBytes(counters, names) {
  let bytes = 0;
  names.forEach((name, i) => {
    if (name.endsWith('.bytes')) bytes += counters[i];
  });
  return bytes;
}

/** @param {string} id @param {string} message @param {boolean} [error] */
function historyStatus(id, message, error = false) {
  const element = /** @type {HTMLElement} */ (document.getElementById(id));
  element.textContent = message;
  element.classList.toggle('error', error);
}

/**
 * GET /v1/history with these parameters: the answer, or an Error whose message is the line to show.
 * @param {Record<string, string>} parameters
 * @returns {Promise<{ status: number, body: any }>}
 */
async function historyGet(parameters) {
  const response = await fetch(`/v1/history?${new URLSearchParams(parameters)}`, { headers: { accept: 'application/json' }, cache: 'no-store' });
  /** @type {any} */
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { status: response.status, body };
}

/** Why an answer is not a chart, as one line. @param {{ status: number, body: any }} answer */
function historyProblem(answer) {
  const detail = answer.body && typeof answer.body.error === 'string' ? answer.body.error : `HTTP ${answer.status}`;
  if (answer.status === 404) return `History is off on this daemon (${detail}).`;
  if (answer.status === 503) return `History is paused (${detail}).`;
  return `History cannot be shown: ${detail}`;
}

/** Asks for the current range and grouping and draws the answer. */
async function refreshHistory() {
  const request = ++historyState.request;
  const { range, by } = historyState;
  const rangeSeconds = HISTORY_RANGES[range].seconds;
  try {
    let answer = null;
    for (let attempt = 0; attempt < 2 && answer === null; attempt++) {
      // The step must be a multiple of the bucket of the tier that holds the range: learn it once.
      let tier = historyState.tierSeconds.get(range);
      if (tier === undefined) {
        const probe = await historyGet({ from: `-${range}`, to: 'now', by, limit: '1' });
        if (probe.status !== 200) throw new Error(historyProblem(probe));
        tier = durationSecondsOf(probe.body.tier) ?? probe.body.stepSeconds;
        historyState.tierSeconds.set(range, /** @type {number} */ (tier));
      }
      const t = /** @type {number} */ (tier);
      const step = t * Math.max(1, Math.ceil(rangeSeconds / t / HISTORY_TARGET_STEPS));
      const got = await historyGet({ from: `-${range}`, to: 'now', by, step: `${step}s`, limit: String(HISTORY_LIMIT) });
      if (got.status === 400 && got.body?.field === 'step' && attempt === 0) {
        historyState.tierSeconds.delete(range); // the daemon's tiers changed: ask again
        continue;
      }
      if (got.status !== 200) throw new Error(historyProblem(got));
      answer = got.body;
    }
    if (request !== historyState.request) return;
    if (answer === null) throw new Error('History cannot be shown: no step fits the daemon\'s tiers');
    showHistory(answer);
  } catch (err) {
    if (request !== historyState.request) return;
    historyState.answer = null;
    historyState.bands = [];
    drawHistory();
    historyStatus('history-status', err instanceof Error ? err.message : String(err), true);
  }
}

/** Turns an answer into bands (top 8 and the rest) and draws them. @param {any} answer */
function showHistory(answer) {
  const names = /** @type {string[]} */ (answer.seriesCounters);
  const steps = /** @type {number} */ (answer.steps);
  /** @type {HistoryBand[]} */
  const bands = [];
  const groups = /** @type {any[]} */ (answer.groups).filter((group) => group.total.bytes > 0);
  groups.slice(0, HISTORY_TOP).forEach((group, i) => {
    bands.push({
      key: groupKey(group),
      name: groupName(group, answer.by),
      colour: HISTORY_COLOURS[i],
      bytes: group.total.bytes,
      series: Array.from({ length: steps }, (_, s) => (group.series[s] ? stepBytes(group.series[s], names) : 0)),
    });
  });
  const others = groups.slice(HISTORY_TOP);
  if (others.length > 0) {
    const series = new Array(steps).fill(0);
    let bytes = 0;
    for (const group of others) {
      bytes += group.total.bytes;
      for (let s = 0; s < steps; s++) if (group.series[s]) series[s] += stepBytes(group.series[s], names);
    }
    bands.push({ key: REST_KEY, name: `the rest (${others.length} ${others.length === 1 ? 'group' : 'groups'})`, colour: HISTORY_REST_COLOUR, bytes, series });
  }
  historyState.answer = answer;
  historyState.bands = bands;
  if (historyState.only !== null && !bands.some((band) => band.key === historyState.only)) historyState.only = null;
  drawHistory();
  const range = HISTORY_RANGES[historyState.range].title;
  let line = `${range[0].toUpperCase()}${range.slice(1)} by ${answer.by}, bytes per ${stepText(answer.stepSeconds)} step (the ${answer.tier} tier); updated ${clock(new Date(), true)}.`;
  if (bands.length === 0) line = `No traffic recorded in the ${range} yet. ${line}`;
  if (answer.rest && answer.rest.groups > 0) {
    const restBytes = sentBytes(answer.rest.counters) + receivedBytes(answer.rest.counters);
    line += ` ${answer.rest.groups} smaller groups (${human(restBytes)} in all) are not in the chart.`;
  }
  historyStatus('history-status', line);
}

/** "14:05" (or "14:05:09"), local time. @param {Date} date @param {boolean} [seconds] */
function clock(date, seconds = false) {
  const two = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}${seconds ? `:${two(date.getSeconds())}` : ''}`;
}

/** @param {string} name @param {Record<string, string | number>} attributes @param {string} [content] */
function svg(name, attributes, content) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [attribute, value] of Object.entries(attributes)) element.setAttribute(attribute, String(value));
  if (content !== undefined) element.textContent = content;
  return element;
}

/** Shows `key`'s group alone, or every group when it is already alone (or key is null). @param {string | null} key */
function onlyGroup(key) {
  historyState.only = key === null || historyState.only === key ? null : key;
  drawHistory();
}

/** Draws the chart and the legend from historyState (no request). */
function drawHistory() {
  const chart = /** @type {SVGSVGElement | null} */ (/** @type {unknown} */ (document.getElementById('history-chart')));
  const legend = /** @type {HTMLElement} */ (document.getElementById('history-legend'));
  /** @type {HTMLElement} */ (document.getElementById('history-show-all')).hidden = historyState.only === null;
  if (!chart) return;
  const { answer, bands, only } = historyState;
  const shown = only === null ? bands : bands.filter((band) => band.key === only);
  /** @type {Element[]} */
  const parts = [];
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const bottom = CHART.top + plotHeight;
  parts.push(svg('line', { class: 'axis', x1: CHART.left, y1: bottom + 0.5, x2: CHART.width - CHART.right, y2: bottom + 0.5 }));
  if (answer && shown.length > 0) {
    const steps = /** @type {number} */ (answer.steps);
    const startMs = Date.parse(answer.start);
    const endMs = Date.parse(answer.end);
    const stacked = new Array(steps).fill(0);
    for (const band of shown) for (let s = 0; s < steps; s++) stacked[s] += band.series[s];
    const top = Math.max(1, ...stacked);
    const x = (/** @type {number} */ s) => (CHART.left + (s / steps) * plotWidth).toFixed(2);
    const y = (/** @type {number} */ bytes) => (bottom - (bytes / top) * plotHeight).toFixed(2);
    // The y axis: 0, half and the top, in bytes per step.
    for (const fraction of [0.5, 1]) {
      const at = Number(y(top * fraction));
      parts.push(svg('line', { class: 'axis', x1: CHART.left, y1: at, x2: CHART.width - CHART.right, y2: at, 'stroke-dasharray': '3 3' }));
      parts.push(svg('text', { x: CHART.left - 6, y: at + 4, 'text-anchor': 'end' }, human(top * fraction)));
    }
    parts.push(svg('text', { x: CHART.left - 6, y: bottom + 4, 'text-anchor': 'end' }, '0'));
    // The x axis: five times, local, with the day when the range is longer than a day.
    const long = endMs - startMs > 86_400_000 + 3_600_000;
    for (let i = 0; i <= 4; i++) {
      const ms = startMs + ((endMs - startMs) * i) / 4;
      const date = new Date(ms);
      const label = long ? `${date.getMonth() + 1}/${date.getDate()} ${clock(date)}` : clock(date);
      parts.push(svg('text', { x: CHART.left + (plotWidth * i) / 4, y: CHART.height - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, label));
    }
    // The bands, the largest at the bottom: each a stepped area between what is below it and its own top.
    const below = new Array(steps).fill(0);
    for (const band of shown) {
      const above = below.map((value, s) => value + band.series[s]);
      let d = `M${x(0)},${y(above[0])}`;
      for (let s = 0; s < steps; s++) d += `H${x(s + 1)}` + (s + 1 < steps ? `V${y(above[s + 1])}` : '');
      d += `V${y(below[steps - 1])}`;
      for (let s = steps - 1; s >= 0; s--) d += `H${x(s)}` + (s > 0 ? `V${y(below[s - 1])}` : '');
      d += 'Z';
      const index = bands.indexOf(band);
      const path = svg('path', { class: 'band', d, fill: band.colour, 'data-index': index, 'data-name': band.name, 'data-bytes': band.bytes });
      path.append(svg('title', {}, `${band.name}: ${grouped(band.bytes)} B (${human(band.bytes)})`));
      path.addEventListener('click', () => onlyGroup(band.key));
      parts.push(path);
      for (let s = 0; s < steps; s++) below[s] = above[s];
    }
  } else if (answer) {
    parts.push(svg('text', { x: CHART.left + plotWidth / 2, y: CHART.top + plotHeight / 2, 'text-anchor': 'middle' }, 'no traffic in this range'));
  }
  chart.replaceChildren(...parts);

  const items = bands.map((band, index) => {
    const li = document.createElement('li');
    li.dataset.index = String(index);
    if (only !== null && band.key !== only) li.classList.add('dimmed');
    const button = document.createElement('button');
    button.type = 'button';
    button.setAttribute('aria-pressed', String(band.key === only));
    button.title = only === band.key ? 'show every group' : 'show this group alone';
    const swatch = svg('svg', { class: 'swatch', width: 12, height: 12, viewBox: '0 0 12 12', 'aria-hidden': 'true' });
    swatch.append(svg('rect', { width: 12, height: 12, fill: band.colour }));
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = band.name;
    name.title = band.name;
    const bytes = document.createElement('span');
    bytes.className = 'bytes';
    bytes.dataset.bytes = String(band.bytes);
    bytes.textContent = `${grouped(band.bytes)} B`;
    bytes.title = human(band.bytes);
    button.append(swatch, name, bytes);
    button.addEventListener('click', () => onlyGroup(band.key));
    li.append(button);
    return li;
  });
  legend.replaceChildren(...items);
}

for (const button of document.querySelectorAll('.history-ranges button')) {
  button.addEventListener('click', () => {
    historyState.range = /** @type {string} */ (/** @type {HTMLElement} */ (button).dataset.range);
    for (const other of document.querySelectorAll('.history-ranges button')) other.setAttribute('aria-pressed', String(other === button));
    historyStatus('history-status', 'loading…');
    void refreshHistory();
  });
}
/** @type {HTMLSelectElement} */ (document.getElementById('history-by')).addEventListener('change', (event) => {
  historyState.by = /** @type {HTMLSelectElement} */ (event.target).value;
  historyState.only = null;
  historyStatus('history-status', 'loading…');
  void refreshHistory();
});
/** @type {HTMLElement} */ (document.getElementById('history-show-all')).addEventListener('click', () => onlyGroup(null));
void refreshHistory();
setInterval(() => void refreshHistory(), HISTORY_REFRESH_MS);
