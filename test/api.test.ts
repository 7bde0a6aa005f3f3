// The HTTP API over a Unix socket: exact counters for real traffic, JSON and
// msgpack, a 400 naming the field for every bad parameter, the same
// visibility rules as the atop socket, and hostile bytes.
import net from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { apiGet, apiGetAsNobody } from './helpers/api-client.js';
import { BASIC_SCENARIO_API } from './helpers/expected.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

describeWithBpf('HTTP API (real daemon, real traffic)', () => {
  let daemon: TestDaemon;
  let rootProcess: TrafficChild;
  let nobodyProcess: TrafficChild;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
    rootProcess = await TrafficChild.start('basic');
    nobodyProcess = await TrafficChild.startAsNobody('mptcp');
  });
  afterAll(async () => {
    await rootProcess?.finish();
    await nobodyProcess?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('a process: exact counters, TCP/UDP × send/recv × calls/bytes, with the IPv4/IPv6 split', async () => {
    const { status, contentType, body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${rootProcess.pid}`);
    expect(status).toBe(200);
    expect(contentType).toBe('application/json');
    expect(body).toMatchObject({ pid: rootProcess.pid, command: 'traffic', uid: 0, state: 'live', counters: BASIC_SCENARIO_API });
    expect(body.cgroup.path).toMatch(/^\//);
  });

  test('listing: filters, sort and limit; msgpack gives the same data', async () => {
    const json = await apiGet(daemon.apiSocketPath, '/v1/processes?command=traffic&sort=tcp.send.bytes&order=desc');
    expect(json.status).toBe(200);
    const pids = json.body.processes.map((p: { pid: number }) => p.pid);
    expect(pids).toContain(rootProcess.pid);
    expect(pids).toContain(nobodyProcess.pid);
    const bytes = json.body.processes.map((p: { counters: typeof BASIC_SCENARIO_API }) => p.counters.tcp.send.bytes);
    expect(bytes).toEqual([...bytes].sort((a, b) => b - a));
    const byTotal = await apiGet(daemon.apiSocketPath, '/v1/processes?command=traffic&sort=total.bytes&order=desc');
    const totals = byTotal.body.processes.map(({ counters: c }: { counters: typeof BASIC_SCENARIO_API }) =>
      c.tcp.send.bytes + c.tcp.recv.bytes + c.udp.send.bytes + c.udp.recv.bytes);
    expect(totals).toEqual([...totals].sort((a, b) => b - a));
    expect(totals).toContain(2 * 250_500 + 2 * 5000); // the basic scenario's process

    const limited = await apiGet(daemon.apiSocketPath, '/v1/processes?command=traffic&limit=1');
    expect(limited.body.processes).toHaveLength(1);

    const path = `/v1/processes?pid=${rootProcess.pid}`;
    const packed = await apiGet(daemon.apiSocketPath, path, 'application/msgpack');
    expect(packed.contentType).toBe('application/msgpack');
    expect(packed.body).toEqual((await apiGet(daemon.apiSocketPath, path)).body);
  });

  test.each([
    ['/v1/processes?limit=abc', 'limit'],
    ['/v1/processes?limit=0', 'limit'],
    ['/v1/processes?sort=fastest', 'sort'],
    ['/v1/processes?state=zombie', 'state'],
    ['/v1/processes?pid=-3', 'pid'],
    ['/v1/processes?colour=red', 'colour'],
    ['/v1/processes/abc', 'pid'],
    ['/v1/stats?verbose=1', 'verbose'],
  ])('%s: HTTP 400 naming %s', async (path, field) => {
    const { status, body } = await apiGet(daemon.apiSocketPath, path);
    expect(status).toBe(400);
    expect(body.field).toBe(field);
    expect(body.error).toContain(`'${field}'`);
  });

  test('unknown endpoints are 404, other methods 405', async () => {
    expect((await apiGet(daemon.apiSocketPath, '/v2/everything')).status).toBe(404);
    const status = await new Promise<number>((resolve) => {
      const socket = net.connect(daemon.apiSocketPath, () => socket.write('DELETE /v1/stats HTTP/1.1\r\nHost: x\r\n\r\n'));
      socket.once('data', (chunk: Buffer) => {
        resolve(Number(chunk.toString().split(' ')[1]));
        socket.destroy();
      });
    });
    expect(status).toBe(405);
  });

  test('stats: version, uptime, table and kernel figures, clients', async () => {
    const { body } = await apiGet(daemon.apiSocketPath, '/v1/stats');
    expect(body).toMatchObject({ kernel: { slots: 32768, unattributed: 0, lost: 0, exitedFull: 0 }, clients: { atop: 0 } });
    expect(body.processes.live).toBeGreaterThanOrEqual(2);
    expect(typeof body.version).toBe('string');
  });

  test('another user sees only their own processes', async () => {
    const body = await apiGetAsNobody(daemon.apiSocketPath, '/v1/processes');
    const pids = body.processes.map((p: { pid: number }) => p.pid);
    expect(pids).toContain(nobodyProcess.pid);
    expect(pids).not.toContain(rootProcess.pid);
    const hidden = await apiGetAsNobody(daemon.apiSocketPath, `/v1/processes/${rootProcess.pid}`);
    expect(hidden.error).toContain(`no process ${rootProcess.pid}`);
  });

  test('garbage and half requests on the API socket do not stop it', async () => {
    for (const bytes of ['\x00\xff garbage\r\n\r\n', 'GET /v1/stats HTTP/1.1\r\nHost: x', 'x'.repeat(100_000)]) {
      const socket = net.connect(daemon.apiSocketPath);
      socket.on('error', () => {});
      socket.write(bytes);
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.destroy();
    }
    expect((await apiGet(daemon.apiSocketPath, '/v1/stats')).status).toBe(200);
    expect(daemon.running).toBe(true);
  });
});

describeWithBpf('HTTP API: cgroups (real daemon, real cgroups)', () => {
  const CONTAINER = '0123456789abcdef'.repeat(4);
  const udp = (calls: number) => ({ send: { calls, bytes: calls * 100 }, recv: { calls, bytes: calls * 100 } });

  test("a process in a container's cgroup: path, unit and container id; the cgroup keeps its traffic after the process is gone", async () => {
    const daemon = await TestDaemon.start(['--exited-retention-ms', '0']);
    const scratch = ScratchCgroup.create(`api.slice/docker-${CONTAINER}.scope`);
    const child = await TrafficChild.start('interactive');
    try {
      scratch.add(child.pid);
      await child.exchange(4);
      const expectedCgroup = { id: scratch.id, path: scratch.relativePath, unit: `docker-${CONTAINER}.scope`, containerId: CONTAINER, container: null };
      const process = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`);
      expect(process.body.cgroup).toEqual(expectedCgroup);
      expect(process.body.counters.udp).toEqual(udp(4));

      const inCgroup = async () =>
        (await apiGet(daemon.apiSocketPath, '/v1/cgroups?sort=udp.send.calls&order=desc')).body.cgroups.find(
          (c: { id: number }) => c.id === scratch.id,
        );
      expect(await inCgroup()).toMatchObject({ ...expectedCgroup, counters: { udp: udp(4) } });

      await child.finish();
      await new Promise((resolve) => setTimeout(resolve, 2500)); // retired, its slot freed, forgotten
      expect((await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`)).status).toBe(404);
      expect(await inCgroup()).toMatchObject({ ...expectedCgroup, counters: { udp: udp(4), tcp: udp(0) } });
    } finally {
      await child.finish();
      scratch.remove();
      await daemon.stop();
    }
  });
});

describeWithBpf('HTTP API: rates (real daemon, real traffic)', () => {
  test('rates over the last sampling interval: rate × interval is the traffic of that interval, exactly', async () => {
    const daemon = await TestDaemon.start();
    const child = await TrafficChild.start('interactive');
    try {
      await child.exchange(10);
      const first = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`);
      expect(first.body.counters.udp.send.calls).toBe(10);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await child.exchange(30);
      // Samples are at least a second apart and may also be taken by the
      // daemon's own reads: poll until the sample that covers the 30 exchanges.
      let covered = false;
      for (let tries = 0; tries < 30 && !covered; tries++) {
        const { body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`);
        const interval: number | null = body.rateIntervalSeconds;
        if (body.rates && interval) {
          const calls = body.rates.udp.send.calls * interval;
          expect(Math.abs(calls - Math.round(calls))).toBeLessThan(1e-6); // whole calls per interval
          if (Math.round(calls) === 30) {
            expect(body.rates.udp.send.bytes * interval).toBeCloseTo(3000, 6);
            expect(body.rates.udp.recv.calls * interval).toBeCloseTo(30, 6);
            expect(body.rates.tcp.send.calls).toBe(0);
            covered = true;
          }
        }
        if (!covered) await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(covered).toBe(true);
      const sorted = await apiGet(daemon.apiSocketPath, '/v1/processes?sort=rate.udp.send.bytes&order=desc&state=live');
      expect(sorted.status).toBe(200);
    } finally {
      await child.finish();
      await daemon.stop();
    }
  });
});
