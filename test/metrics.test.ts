// /metrics for Prometheus: exact per-cgroup counters with path, unit and
// container labels, one series across a cgroup that is removed and created
// again (a restarted service), health gauges, bounded per-process series, and
// an exposition that promtool accepts.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { renderMetrics } from '../daemon/serve/metrics.js';
import { apiGet, tcpGet } from './helpers/api-client.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { TestDaemon } from './helpers/daemon.js';
import { expectedCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { tempPath } from './helpers/fixtures.js';
import { TrafficChild } from './helpers/traffic.js';

const PACKAGING = path.join(import.meta.dirname, '..', 'packaging');

const CONTAINER = 'c0ffee'.repeat(10) + 'abcd';

/** The value of the sample with exactly these labels (in the daemon's label order), or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function scrape(port: number): Promise<string> {
  const { status, headers, text } = await tcpGet(port, '/metrics');
  expect(status).toBe(200);
  expect(headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  return text;
}

test('label values are escaped: a cgroup or command with quotes, backslashes and newlines stays one valid sample', () => {
  const counters = Array.from({ length: 16 }, (_, i) => i); // TCP bytes sent: [1] (IPv4) + [9] (IPv6) = 10
  const text = renderMetrics({
    version: 'test',
    startTimeSeconds: 0,
    processCounts: { live: 1, exited: 0 },
    health: {
      attachMode: { mode: 'tracepoint' as const, description: 'tracepoints' },
      programsAttached: 5,
      maps: { slots: { entries: 1, capacity: 2 }, overflow: { entries: 0, capacity: 2 }, exited: { entries: null, capacity: 2 }, threads: null, peers: null },
      peers: null,
      kernel: { unattributed: 0, unattributedFull: 0, lost: 0, overShare: 0, exitedFull: 0, noStorage: 0, slotsRetired: 0, threadsFull: 0, threadsExited: 0, peersFull: 0, peersLost: 0 },
      lastReadSeconds: 0,
      clients: { atop: 0, api: 1, streams: 0 },
      limits: { refused: [], streamsRefused: 0, streamUpdatesSkipped: 0, throttled: 0 },
      netatopModule: { active: false, reason: 'off' },
    },
    cgroups: [
      { path: '/a"b\\c\nd.service', unit: 'x', namespace: '', pod: '', container: '', counters },
      { path: '/a"b\\c\nd.service', unit: 'x', namespace: '', pod: '', container: '', counters }, // the same labels: one series, summed
    ],
    processes: [{ pid: 7, command: 'say "hi"\\', counters }],
    topProcesses: 1,
    peerPorts: null,
    topPeerPorts: 0,
    hostWide: true,
  });
  expect(text).toContain('netacct_cgroup_sent_bytes_total{cgroup="/a\\"b\\\\c\\nd.service",unit="x",namespace="",pod="",container="",protocol="tcp"} 20');
  expect(text).toContain('netacct_process_sent_bytes_total{pid="7",command="say \\"hi\\"\\\\",protocol="tcp"} 10');
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  expect({ status: promtool.status, output: promtool.stdout + promtool.stderr }).toEqual({ status: 0, output: '' });
});

test('per (cgroup, service port) series are bounded: the top K pairs by bytes and one "other"; never an address', () => {
  const health = {
    attachMode: { mode: 'tracepoint' as const, description: 'tracepoints' },
    programsAttached: 5,
    maps: { slots: { entries: 1, capacity: 2 }, overflow: { entries: 0, capacity: 2 }, exited: { entries: null, capacity: 2 }, threads: null, peers: { entries: 4, capacity: 8 } },
    peers: { exitedRows: 0, exitedCapacity: 8, foldedExited: 0 },
    kernel: { unattributed: 0, unattributedFull: 0, lost: 0, overShare: 0, exitedFull: 0, noStorage: 0, slotsRetired: 0, threadsFull: 0, threadsExited: 0, peersFull: 3, peersLost: 0 },
    lastReadSeconds: 0,
    clients: { atop: 0, api: 1, streams: 0 },
    limits: { refused: [], streamsRefused: 0, streamUpdatesSkipped: 0, throttled: 0 },
    netatopModule: { active: false as const, reason: 'off' },
  };
  const tcpSent = (bytes: number) => expectedCounters({ 'ipv4 tcp send': [1, bytes] });
  const text = renderMetrics({
    version: 'test',
    startTimeSeconds: 0,
    processCounts: { live: 3, exited: 0 },
    health,
    cgroups: [],
    processes: null,
    topProcesses: 0,
    peerPorts: [
      { cgroup: '/a', port: '443', counters: tcpSent(1000) },
      { cgroup: '/a', port: '443', counters: tcpSent(1000) }, // two peers of the same service port: one series
      { cgroup: '/b', port: '53', counters: expectedCounters({ 'ipv6 udp send': [1, 10] }) },
      { cgroup: '/c', port: 'unknown', counters: tcpSent(5) },
    ],
    topPeerPorts: 1,
    hostWide: true,
  });
  const series = [...text.matchAll(/^netacct_peer_port_sent_bytes_total\{(.*)\} (\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
  expect(series).toEqual([
    'cgroup="/a",port="443",protocol="tcp" 2000',
    'cgroup="/a",port="443",protocol="udp" 0',
    'cgroup="other",port="other",protocol="tcp" 5',
    'cgroup="other",port="other",protocol="udp" 10',
  ]);
  expect(text).toMatch(/^netacct_peer_overflow_events_total 3$/m);
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  expect({ status: promtool.status, output: promtool.stdout + promtool.stderr }).toEqual({ status: 0, output: '' });
});

describeWithBpf('/metrics (real daemon, real traffic)', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await TestDaemon.start(['--listen', '127.0.0.1:0', '--metrics-top-processes', '1']);
  });
  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('per cgroup: exact bytes and calls by protocol, labelled with path and unit (no runtime knows this container: its names are empty); one series across a re-created cgroup', async () => {
    const unit = `docker-${CONTAINER}.scope`;
    let scratch = ScratchCgroup.create(`metrics.slice/${unit}`);
    const labels = (protocol: string) => `cgroup="${scratch.relativePath}",unit="${unit}",namespace="",pod="",container="",protocol="${protocol}"`;
    const first = await TrafficChild.start('interactive');
    try {
      scratch.add(first.pid);
      await first.exchange(5); // 5 UDP datagrams of 100 bytes, each sent and received
      let text = await scrape(daemon.tcpPort);
      expect(sample(text, 'netacct_cgroup_sent_bytes_total', labels('udp'))).toBe(500);
      expect(sample(text, 'netacct_cgroup_received_bytes_total', labels('udp'))).toBe(500);
      expect(sample(text, 'netacct_cgroup_send_calls_total', labels('udp'))).toBe(5);
      expect(sample(text, 'netacct_cgroup_receive_calls_total', labels('udp'))).toBe(5);
      expect(sample(text, 'netacct_cgroup_sent_bytes_total', labels('tcp'))).toBe(0);

      // The service restarts: its cgroup is removed and created again (a new id, the same path).
      scratch.remove();
      scratch = ScratchCgroup.create(`metrics.slice/${unit}`);
      const second = await TrafficChild.start('interactive');
      try {
        scratch.add(second.pid);
        await second.exchange(2);
        text = await scrape(daemon.tcpPort);
        expect(sample(text, 'netacct_cgroup_sent_bytes_total', labels('udp'))).toBe(700);
        expect(sample(text, 'netacct_cgroup_send_calls_total', labels('udp'))).toBe(7);
      } finally {
        await second.finish();
      }
    } finally {
      await first.finish();
      scratch.remove();
    }
  });

  test('health: programs attached, map fill and capacity, drops, clients, build info', async () => {
    const text = await scrape(daemon.tcpPort);
    expect(text).toMatch(/^netacct_bpf_programs_attached 8$/m); // send, receive, splice in and out, exit, exec, cgroup moves, the iterator
    expect(sample(text, 'netacct_map_capacity', 'map="slots"')).toBe(32768);
    expect(sample(text, 'netacct_map_capacity', 'map="overflow"')).toBe(16384);
    expect(sample(text, 'netacct_map_entries', 'map="slots"')).toBeGreaterThan(0);
    expect(text).toMatch(/^netacct_dropped_events_total 0$/m);
    expect(sample(text, 'netacct_clients', 'protocol="http"')).toBe(1); // this scrape
    expect(text).toMatch(/^netacct_build_info\{version="\d+\.\d+\.\d+"\} 1$/m);
    expect(text).toMatch(/^netacct_last_read_duration_seconds [\d.e-]+$/m);
  });

  test('per-process series are bounded: the top K by traffic and one "other"', async () => {
    const heavy = await TrafficChild.start('loop', '30000'); // 30,000 TCP sends and receives of 64 bytes
    try {
      const text = await scrape(daemon.tcpPort);
      const pids = new Set([...text.matchAll(/^netacct_process_sent_bytes_total\{pid="([^"]+)"/gm)].map((m) => m[1]));
      expect([...pids].sort()).toEqual([String(heavy.pid), 'other'].sort());
      expect(sample(text, 'netacct_process_sent_bytes_total', `pid="${heavy.pid}",command="traffic",protocol="tcp"`)).toBe(30000 * 64);
      expect(sample(text, 'netacct_process_receive_calls_total', `pid="${heavy.pid}",command="traffic",protocol="tcp"`)).toBe(30000);
    } finally {
      await heavy.finish();
    }
  });

  test('promtool check metrics accepts the exposition (format and naming conventions)', async () => {
    const text = await scrape(daemon.tcpPort);
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(promtool.error, 'promtool (Debian package prometheus) must be installed').toBeUndefined();
    expect({ status: promtool.status, output: promtool.stdout + promtool.stderr }).toEqual({ status: 0, output: '' });
  });

  test('the shipped Grafana dashboard: every query parses (promtool) and uses only metrics the daemon serves', async () => {
    const dashboard = JSON.parse(fs.readFileSync(path.join(PACKAGING, 'grafana', 'netacct-dashboard.json'), 'utf8'));
    const exprs: string[] = dashboard.panels.flatMap((panel: { targets: Array<{ expr: string }> }) => panel.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(5);
    // Grafana's variables, as Grafana would substitute them.
    const promql = exprs.map((expr) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*').replaceAll('$namespace', '.+'));
    const rules = tempPath('rules.yml');
    fs.writeFileSync(rules, `groups:\n  - name: dashboard\n    rules:\n${promql.map((expr, i) => `      - record: dashboard:query${i}\n        expr: ${JSON.stringify(expr)}\n`).join('')}`);
    const check = spawnSync('promtool', ['check', 'rules', rules], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);

    const served = new Set([...(await scrape(daemon.tcpPort)).matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
    const used = new Set(promql.flatMap((expr) => [...expr.matchAll(/\b(netacct_\w+)/g)].map((m) => m[1]!)));
    expect([...used].filter((name) => !served.has(name))).toEqual([]);
  });

  test('the shipped Prometheus configuration is valid (promtool check config)', () => {
    const check = spawnSync('promtool', ['check', 'config', path.join(PACKAGING, 'prometheus.yml')], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  test('also on the Unix socket; a parameter is a 400 naming it', async () => {
    const { status, contentType } = await apiGet(daemon.apiSocketPath, '/metrics');
    expect({ status, contentType }).toEqual({ status: 200, contentType: 'text/plain; version=0.0.4; charset=utf-8' });
    const bad = await apiGet(daemon.apiSocketPath, '/metrics?format=json');
    expect(bad.status).toBe(400);
    expect(bad.body.field).toBe('format');
  });
});
