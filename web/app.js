// @ts-check
// netacct's live page: two WebSocket streams from the daemon (/v1/stream),
// one of cgroups (the host's totals, and the cgroups view) and one of the top
// processes by traffic. Rates are computed here from the cumulative counters
// of two updates, so that both views get them the same way; the last five
// minutes of each row are kept for its chart. No framework and nothing from
// outside the daemon: the page works on a host with no network. Every name
// shown (process names are chosen by whoever runs the process) goes in as
// text, never as HTML. A click on a process follows its peers (a third
// stream, of that process only), when the daemon counts per peer.
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

/** @param {any} message */
function onProcesses(message) {
  applyUpdate(
    streams.processes,
    message.at,
    message.processes.map((/** @type {any} */ p) => ({
      key: `${p.pid}:${p.startTime}`,
      fields: { pid: p.pid, command: p.command, uid: p.uid, state: p.state, cgroup: p.cgroup.unit ?? p.cgroup.path ?? `id ${p.cgroup.id}` },
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
      fields: { path: c.path ?? `(id ${c.id})`, unit: c.unit ?? '', container: c.containerId ? c.containerId.slice(0, 12) : '' },
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
