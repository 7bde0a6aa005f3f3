// Per-peer counters (opt-in): a real process talks to several local peers
// (127.0.0.x and ::1, several ports, TCP client and server, connected and
// unconnected UDP, an IPv4-mapped IPv6 connection); every (process, peer)
// row is exact and the rows add up to the process, live and after its exit;
// a full peers map counts the rest in the process's overflow row, exactly in
// sum; users see only their own processes' peers; filters are validated.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { apiGet, apiGetAsNobody } from './helpers/api-client.js';
import { NETACCT, TestDaemon } from './helpers/daemon.js';
import { type ApiCounters, addApiCounters, apiCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

interface PeerRow {
  kind: 'peer' | 'unknown' | 'overflow';
  address: string | null;
  port: number | null;
  localPort: number | null;
  loopback: boolean;
  counters: ApiCounters;
}

const peer = (address: string | null, port: number | null, localPort: number | null, spec: Record<string, [number, number]>): PeerRow => ({
  kind: address === null ? 'unknown' : 'peer',
  address,
  port,
  localPort,
  loopback: address !== null,
  counters: apiCounters(spec),
});

/**
 * What the fixture's "peers" scenario does, row by row (test/fixtures/traffic.c).
 * With the tracepoints the kernel side does not see a datagram's own address:
 * unconnected UDP is the "unknown" peer; with fexit it sees sendto's and
 * recvfrom's, and only recv (no address asked) stays unknown.
 */
function expectedRows([p1, p2, p3, p4]: number[], mode: 'tracepoint' | 'fexit'): PeerRow[] {
  const rows = [
    // 127.0.0.3 -> 127.0.0.2:P1, and the IPv6 socket to ::ffff:127.0.0.2:P1: one peer, two families.
    peer('127.0.0.2', p1!, null, { 'ipv4 tcp send': [3, 3000], 'ipv4 tcp recv': [2, 1000], 'ipv6 tcp send': [1, 123] }),
    peer('127.0.0.3', null, p1!, { 'ipv4 tcp recv': [3, 3000], 'ipv4 tcp send': [2, 1000] }),
    peer('127.0.0.7', null, p1!, { 'ipv4 tcp recv': [1, 123] }),
    peer('::1', p2!, null, { 'ipv6 tcp send': [1, 700] }),
    peer('::1', null, p2!, { 'ipv6 tcp recv': [1, 700] }),
    peer('127.0.0.4', p3!, null, { 'ipv4 udp send': [4, 400], 'ipv4 udp recv': [1, 50] }),
    peer('127.0.0.5', null, p3!, { 'ipv4 udp recv': [4, 400], 'ipv4 udp send': [1, 50] }),
  ];
  if (mode === 'tracepoint') {
    rows.push(peer(null, null, null, { 'ipv4 udp send': [5, 300], 'ipv4 udp recv': [2, 60] }));
    rows.push(peer(null, null, p4!, { 'ipv4 udp recv': [5, 300], 'ipv4 udp send': [2, 60] }));
  } else {
    rows.push(peer('127.0.0.6', p4!, null, { 'ipv4 udp send': [5, 300] }));
    rows.push(peer(null, null, null, { 'ipv4 udp recv': [2, 60] }));
    rows.push(peer('127.0.0.8', null, p4!, { 'ipv4 udp recv': [5, 300], 'ipv4 udp send': [2, 60] }));
  }
  return rows;
}

const rowOrder = (a: PeerRow, b: PeerRow): number =>
  `${a.kind} ${a.address} ${a.port} ${a.localPort}`.localeCompare(`${b.kind} ${b.address} ${b.port} ${b.localPort}`);

const portsOf = (child: TrafficChild): number[] => child.announced.find((line) => line.startsWith('ports '))!.split(' ').slice(1).map(Number);

describeWithBpf('per-peer counters (--peers: real daemon, real traffic to local peers)', () => {
  let daemon: TestDaemon;
  let child: TrafficChild;
  let mode: 'tracepoint' | 'fexit';
  beforeAll(async () => {
    daemon = await TestDaemon.start(['--peers', '--exited-retention-ms', '60000', '--metrics-top-peer-ports', '1000']);
    mode = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body.attachMode.mode;
    child = await TrafficChild.start('peers');
  });
  afterAll(async () => {
    await child?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('/v1/processes/{pid}/peers: every (process, peer) row exact, adding up to the process', async () => {
    const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}/peers`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ pid: child.pid, command: 'traffic', state: 'live' });
    expect([...body.peers].sort(rowOrder)).toEqual(expectedRows(portsOf(child), mode).sort(rowOrder));
    expect(addApiCounters(body.peers.map((row: PeerRow) => row.counters))).toEqual(body.counters);
    // Sorted by total bytes, largest first, by default.
    const totals = body.peers.map((row: PeerRow) => row.counters.tcp.send.bytes + row.counters.tcp.recv.bytes + row.counters.udp.send.bytes + row.counters.udp.recv.bytes);
    expect(totals).toEqual([...totals].sort((a, b) => b - a));
  });

  test('/v1/peers: the same rows with their process; filters by address, prefix, port, protocol and cgroup', async () => {
    const [p1, p2, p3] = portsOf(child);
    const rows = async (query: string): Promise<PeerRow[]> => {
      const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/peers?pid=${child.pid}&${query}`);
      expect(status, JSON.stringify(body)).toBe(200);
      for (const row of body.peers) expect(row).toMatchObject({ pid: child.pid, command: 'traffic', uid: 0, state: 'live' });
      return body.peers;
    };
    const all = await rows('sort=address&order=asc');
    expect(all.map(({ kind, address, port, localPort, loopback, counters }) => ({ kind, address, port, localPort, loopback, counters })).sort(rowOrder)).toEqual(
      expectedRows(portsOf(child), mode).sort(rowOrder),
    );
    const where = (found: PeerRow[]) => found.map((row) => `${row.address} ${row.port} ${row.localPort}`).sort();
    expect(where(await rows('address=127.0.0.2'))).toEqual([`127.0.0.2 ${p1} null`]);
    expect(where(await rows('address=::1'))).toEqual([`::1 ${p2} null`, `::1 null ${p2}`].sort());
    expect(where(await rows('address=127.0.0.4/31'))).toEqual([`127.0.0.4 ${p3} null`, `127.0.0.5 null ${p3}`].sort());
    expect(where(await rows(`port=${p1}`))).toEqual([`127.0.0.2 ${p1} null`, `127.0.0.3 null ${p1}`, `127.0.0.7 null ${p1}`].sort());
    expect((await rows('protocol=tcp')).length).toBe(5);
    expect((await rows('protocol=udp')).length).toBe(mode === 'tracepoint' ? 4 : 5);
    expect((await rows('limit=2')).length).toBe(2);
    const cgroup = (await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`)).body.cgroup.id as number;
    expect((await rows(`cgroup=${cgroup}`)).length).toBe(expectedRows(portsOf(child), mode).length);
    expect(await rows(`cgroup=${cgroup + 1}`)).toEqual([]);
  });

  test('netacct peers: a row per peer, as host:port, the local port where kept', async () => {
    const [p1, p2] = portsOf(child);
    const run = async (...args: string[]) => (await promisify(execFile)(NETACCT, ['peers', '--api-socket', daemon.apiSocketPath, '--pid', String(child.pid), ...args])).stdout;
    const lines = (await run('--protocol', 'tcp', '--sort', 'address', '--order', 'asc')).trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ *PID +COMMAND +PEER +LOCAL PORT +TCP SENT +TCP RECV +UDP SENT +UDP RECV$/);
    const byPeer = (a: string[], b: string[]): number => a[2]!.localeCompare(b[2]!) || a[3]!.localeCompare(b[3]!);
    const cells = lines.slice(1).map((line) => line.trim().split(/ +/).slice(0, 4));
    expect(cells.sort(byPeer)).toEqual(
      [
        [String(child.pid), 'traffic', `127.0.0.2:${p1}`, '-'],
        [String(child.pid), 'traffic', '127.0.0.3', String(p1)],
        [String(child.pid), 'traffic', '127.0.0.7', String(p1)],
        [String(child.pid), 'traffic', `[::1]:${p2}`, '-'],
        [String(child.pid), 'traffic', '[::1]', String(p2)],
      ].sort(byPeer),
    );
    const json = JSON.parse(await run('--json'));
    expect(json).toEqual((await apiGet(daemon.apiSocketPath, `/v1/peers?pid=${child.pid}`)).body);
  });

  test('/metrics --metrics-top-peer-ports: per cgroup and service port, exact, never an address', async () => {
    const [p1, p2] = portsOf(child);
    const cgroup = (await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`)).body.cgroup.path;
    const text = (await apiGet(daemon.apiSocketPath, '/metrics')).body as string;
    const sample = (metric: string, port: number): number =>
      Number(new RegExp(`^${metric}\\{cgroup="${cgroup}",port="${port}",protocol="tcp"\\} (\\d+)$`, 'm').exec(text)?.[1]);
    // P1: the client's rows to 127.0.0.2:P1 (both families) and the service's rows from 127.0.0.3 and 127.0.0.7.
    expect(sample('netacct_peer_port_sent_bytes_total', p1!)).toBe(3000 + 123 + 1000);
    expect(sample('netacct_peer_port_received_bytes_total', p1!)).toBe(1000 + 3000 + 123);
    expect(sample('netacct_peer_port_sent_bytes_total', p2!)).toBe(700);
    expect(sample('netacct_peer_port_received_bytes_total', p2!)).toBe(700);
    expect(text).not.toMatch(/127\.0\.0\.|::1/);
  });

  test('bad filters are 400 naming the parameter', async () => {
    for (const [query, field] of [
      ['address=127.0.0.300', 'address'],
      ['address=10.0.0.0/33', 'address'],
      ['address=::1/129', 'address'],
      ['port=65536', 'port'],
      ['protocol=icmp', 'protocol'],
      ['sort=bogus', 'sort'],
      ['peer=1', 'peer'],
    ]) {
      const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/peers?${query}`);
      expect({ query, status, field: body.field }).toEqual({ query, status: 400, field });
    }
  });

  test('a user sees only the peers of their own processes', async () => {
    const theirs = await TrafficChild.startAsNobody('peers');
    try {
      const seen = await apiGetAsNobody(daemon.apiSocketPath, '/v1/peers');
      expect(new Set(seen.peers.map((row: { uid: number }) => row.uid))).toEqual(new Set([65534]));
      expect(seen.peers.filter((row: { pid: number }) => row.pid === theirs.pid).length).toBe(expectedRows(portsOf(theirs), mode).length);
      expect(await apiGetAsNobody(daemon.apiSocketPath, `/v1/processes/${child.pid}/peers`)).toEqual({
        error: `no process ${child.pid} with counters that you may see`,
      });
      const own = await apiGetAsNobody(daemon.apiSocketPath, `/v1/processes/${theirs.pid}/peers`);
      expect([...own.peers].sort(rowOrder)).toEqual(expectedRows(portsOf(theirs), mode).sort(rowOrder));
    } finally {
      await theirs.finish();
    }
  });

  test("an exited process keeps its peers with its record; they leave the kernel's map", async () => {
    const ports = portsOf(child);
    await child.finish();
    // Its exit tracepoint follows the parent's wait: a read or two later.
    const deadline = Date.now() + 5000;
    let body: { state: string; peers: PeerRow[]; counters: ApiCounters };
    for (;;) {
      body = (await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}/peers`)).body;
      if (body.state === 'exited' || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(body.state).toBe('exited');
    expect([...body.peers].sort(rowOrder)).toEqual(expectedRows(ports, mode).sort(rowOrder));
    expect(addApiCounters(body.peers.map((row) => row.counters))).toEqual(body.counters);
    const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
    expect(stats.peers.exitedRows).toBeGreaterThanOrEqual(expectedRows(ports, mode).length);
  });
});

describeWithBpf('a full peers map (--peer-capacity 2)', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await TestDaemon.start(['--peers', '--peer-capacity', '2']);
  });
  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test("what does not fit is the process's overflow row: the rows still add up to the process; counted in /v1/stats and /metrics", async () => {
    const child = await TrafficChild.start('peers');
    try {
      const { body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}/peers`);
      const overflow = body.peers.filter((row: PeerRow) => row.kind === 'overflow');
      expect(overflow).toHaveLength(1);
      expect(overflow[0]).toMatchObject({ address: null, port: null, localPort: null, loopback: false });
      expect(body.peers.length).toBeLessThanOrEqual(3); // the map holds 2 pairs, of any process on the machine
      expect(addApiCounters(body.peers.map((row: PeerRow) => row.counters))).toEqual(body.counters);
      const overflowCalls = (['tcp', 'udp'] as const).reduce((sum, p) => sum + overflow[0].counters[p].send.calls + overflow[0].counters[p].recv.calls, 0);
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect(stats.kernel.peersFull).toBeGreaterThanOrEqual(overflowCalls);
      expect(stats.maps.peers).toEqual({ entries: expect.any(Number), capacity: 2 });
      const metrics = (await apiGet(daemon.apiSocketPath, '/metrics')).body as string;
      expect(Number(/^netacct_peer_overflow_events_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(overflowCalls);
      expect(metrics).toMatch(/^netacct_map_capacity\{map="peers"\} 2$/m);
    } finally {
      await child.finish();
    }
  });
});

describeWithBpf("a user's share of the peers map (--peer-capacity 1024)", () => {
  test("nobody's 3,000 peers fill only its share: root's process keeps a row per peer, exact", async () => {
    const daemon = await TestDaemon.start(['--peers', '--peer-capacity', '1024']);
    const flood = await TrafficChild.startAsNobody('peer-flood', '3000');
    let child: TrafficChild | undefined;
    try {
      const floodRows = (await apiGet(daemon.apiSocketPath, `/v1/processes/${flood.pid}/peers`)).body.peers as PeerRow[];
      // Half of 1,024 pairs at most (--map-share-per-user-percent 50), the rest in its own overflow row.
      expect(floodRows.filter((row) => row.kind === 'peer').length).toBeLessThanOrEqual(512);
      expect(floodRows.filter((row) => row.kind === 'overflow')).toHaveLength(1);
      expect(addApiCounters(floodRows.map((row) => row.counters))).toEqual(apiCounters({ 'ipv4 udp send': [3000, 3000] }));

      child = await TrafficChild.start('peers');
      const mode = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body.attachMode.mode;
      const { body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}/peers`);
      expect([...body.peers].sort(rowOrder)).toEqual(expectedRows(portsOf(child), mode).sort(rowOrder));
      expect((await apiGet(daemon.apiSocketPath, '/v1/stats')).body.kernel.overShare).toBeGreaterThan(0);
    } finally {
      await child?.finish();
      await flood.finish();
      expect(await daemon.stop()).toBe(0);
    }
  });
});

describeWithBpf('without --peers', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
  });
  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('/v1/peers and /v1/processes/{pid}/peers say how to turn it on; /v1/stats has no peers', async () => {
    const child = await TrafficChild.start('peers');
    try {
      for (const path of ['/v1/peers', `/v1/processes/${child.pid}/peers`]) {
        const { status, body } = await apiGet(daemon.apiSocketPath, path);
        expect({ status, body }).toEqual({ status: 404, body: { error: 'per-peer counting is off: start the daemon with --peers (config `peers`)' } });
      }
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect({ peers: stats.peers, map: stats.maps.peers }).toEqual({ peers: null, map: null });
    } finally {
      await child.finish();
    }
  });
});
