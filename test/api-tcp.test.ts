// The API on TCP (--listen, off by default): the same answers as on the Unix
// socket, every process visible (TCP has no credentials), and a web page from
// another site kept out (DNS rebinding, cross-site WebSockets).
import { afterAll, beforeAll, expect, test } from 'vitest';
import WebSocket from 'ws';
import { apiGet, tcpGet } from './helpers/api-client.js';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

function upgradeStatus(port: number, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, { headers });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode!));
    ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
  });
}

describeWithBpf('API on TCP (real daemon)', () => {
  let daemon: TestDaemon;
  let nobodyProcess: TrafficChild;
  beforeAll(async () => {
    daemon = await TestDaemon.start(['--listen', '127.0.0.1:0']);
    nobodyProcess = await TrafficChild.startAsNobody('mptcp');
  });
  afterAll(async () => {
    await nobodyProcess?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('the same process, with the same exact counters, as on the Unix socket', async () => {
    const path = `/v1/processes/${nobodyProcess.pid}`;
    const tcp = await tcpGet(daemon.tcpPort, path);
    expect(tcp.status).toBe(200);
    expect(tcp.headers['content-type']).toBe('application/json');
    const body = JSON.parse(tcp.text);
    expect(body).toMatchObject({ pid: nobodyProcess.pid, uid: 65534, command: 'traffic' });
    expect(body.counters.tcp.send).toEqual({ calls: 10, bytes: 7000 });
    const unix = await apiGet(daemon.apiSocketPath, path);
    expect(body.counters).toEqual(unix.body.counters);
  });

  test('a Host that is a domain name is refused (DNS rebinding); IP literals and localhost are served', async () => {
    const rebinding = await tcpGet(daemon.tcpPort, '/v1/stats', { Host: 'attacker.example:9817' });
    expect(rebinding.status).toBe(403);
    expect(JSON.parse(rebinding.text).error).toMatch(/Host/);
    expect((await tcpGet(daemon.tcpPort, '/v1/stats', { Host: `localhost:${daemon.tcpPort}` })).status).toBe(200);
    expect((await tcpGet(daemon.tcpPort, '/v1/stats', { Host: `[::1]:${daemon.tcpPort}` })).status).toBe(200);
  });

  test('a WebSocket from another origin is refused; one from the page itself is accepted', async () => {
    const port = daemon.tcpPort;
    expect(await upgradeStatus(port, { Origin: 'http://attacker.example' })).toBe(403);
    expect(await upgradeStatus(port, { Origin: `http://127.0.0.1:${port}` })).toBe(101);
    expect(await upgradeStatus(port, {})).toBe(101);
  });

  test('off by default: a daemon started without --listen logs no TCP listener', async () => {
    expect(daemon.log).toMatch(/the API on \S+ and tcp 127\.0\.0\.1:\d+/);
    const plain = await TestDaemon.start();
    try {
      expect(plain.log).not.toMatch(/ tcp /);
    } finally {
      expect(await plain.stop()).toBe(0);
    }
  });
});

describeWithBpf('the TCP listener for a scraper only (--listen-metrics-only)', () => {
  test('/metrics and /healthz are served, nothing else (no listings, no page, no stream); the API socket is whole', async () => {
    const daemon = await TestDaemon.start(['--listen', '127.0.0.1:0', '--listen-metrics-only']);
    try {
      expect((await tcpGet(daemon.tcpPort, '/metrics')).status).toBe(200);
      expect(JSON.parse((await tcpGet(daemon.tcpPort, '/healthz')).text)).toEqual({ status: 'ok' });
      for (const path of ['/v1/processes', '/v1/cgroups?by=pod', '/v1/stats', '/v1/history', '/']) {
        const answer = await tcpGet(daemon.tcpPort, path);
        expect({ path, status: answer.status }).toEqual({ path, status: 404 });
        expect(JSON.parse(answer.text).error).toMatch(/serves \/metrics and \/healthz only/);
      }
      const stream = new WebSocket(`ws://127.0.0.1:${daemon.tcpPort}/v1/stream`);
      const first = await new Promise<string>((resolve, reject) => {
        stream.once('open', () => stream.send(JSON.stringify({ view: 'processes' })));
        stream.once('message', (data) => resolve(String(data)));
        stream.once('error', reject);
      });
      stream.close();
      expect(JSON.parse(first).error).toMatch(/serves \/metrics and \/healthz only/);
      expect((await apiGet(daemon.apiSocketPath, '/v1/processes')).status).toBe(200);
      expect(daemon.log).not.toMatch(/has no basic auth/);
    } finally {
      await daemon.stop();
    }
  });
});
