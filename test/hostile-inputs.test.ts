// What a local user can make the daemon hold or parse (issue "Trust"):
// 130,000 exited processes kept for a client, cgroups that churn, a second
// daemon on the same pinned maps, and requests that are almost right.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect, test } from 'vitest';
import WebSocket from 'ws';
import { apiGet } from './helpers/api-client.js';
import { AtopConnection } from './helpers/atop-reader.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { NETACCT, TestDaemon, removePinDir, scratchPinDir } from './helpers/daemon.js';
import { asNobody, NODE_FOR_OTHERS, scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const EXITED = 130_000;

/** One raw HTTP exchange on the API socket: the status line and headers the daemon wrote, and whether it closed. */
function rawRequest(socketPath: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath, () => socket.write(text));
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (/\r\n\r\n/.test(received)) socket.destroy();
    });
    socket.once('close', () => resolve(received));
    socket.once('error', reject);
    setTimeout(() => socket.destroy(), 3000);
  });
}

describeWithBpf('hostile inputs (real daemon)', () => {
  test(`${EXITED.toLocaleString('en')} exited processes held for an atop client: listings and streams answer, nobody's atop stays prompt, memory bounded`, async () => {
    const daemon = await TestDaemon.start();
    try {
      const holder = await AtopConnection.connect(daemon.socketPath);
      await holder.request(); // asked once: holds every exit from now on (until its idle timeout)
      const rssBefore = daemon.rssMiB();
      const burst = await TrafficChild.start('burst', String(EXITED));
      await burst.finish();
      await new Promise((resolve) => setTimeout(resolve, 2000)); // drained
      const { status, body } = await apiGet(daemon.apiSocketPath, '/v1/processes?state=exited&sort=pid&order=desc&limit=3');
      expect(status).toBe(200);
      expect(body.processes).toHaveLength(3);
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect(stats.processes.exited).toBeGreaterThanOrEqual(EXITED - 100);
      // A processes stream over all of them.
      const ws = new WebSocket('ws+unix://' + daemon.apiSocketPath + ':/v1/stream');
      await new Promise((resolve) => ws.once('open', resolve));
      const update = new Promise<any>((resolve) => ws.once('message', (data) => resolve(JSON.parse(data.toString()))));
      ws.send(JSON.stringify({ view: 'processes', state: 'all', sort: 'total.bytes', order: 'desc', top: 5, interval: 1000 }));
      expect((await update).processes).toHaveLength(5);
      ws.close();
      // Every row at once, as JSON: streamed a chunk at a time while nobody's
      // atop (which sees only nobody's processes) keeps being answered.
      const everything = apiGet(daemon.apiSocketPath, '/v1/processes?state=all');
      const nobodysAtop: number[] = [];
      let done = false;
      void everything.then(() => (done = true));
      while (!done) {
        const started = performance.now();
        const [command, args] = asNobody(NODE_FOR_OTHERS, '-e', atopOnceScript(daemon.socketPath));
        const { stdout } = await promisify(execFile)(command, args, { encoding: 'utf8' });
        expect(stdout.trim()).toBe('answered');
        nobodysAtop.push(performance.now() - started);
      }
      const all = await everything;
      expect(all.body.processes.length).toBeGreaterThanOrEqual(EXITED);
      const rss = daemon.rssMiB();
      console.log(
        `${EXITED} exited processes held: RSS ${rssBefore.toFixed(1)} → ${rss.toFixed(1)} MiB; a listing of all ${all.body.processes.length} rows; ` +
          `nobody's atop answered ${nobodysAtop.length} times meanwhile, slowest ${Math.max(...nobodysAtop).toFixed(0)} ms (node start included)`,
      );
      expect(rss).toBeLessThan(rssBefore + 500);
      expect(daemon.running).toBe(true);
      holder.close();
    } finally {
      await daemon.stop();
    }
  }, 300_000);

  test('300 cgroups that come and go: /metrics stays bounded (their traffic folds into cgroup="(removed)"), and cgroup totals survive a restart', async () => {
    const pinDir = scratchPinDir();
    const args = ['--pin-dir', pinDir, '--exited-retention-ms', '0', '--removed-cgroup-fold-ms', '1000'];
    let daemon = await TestDaemon.start(args);
    try {
      const seriesOf = async (): Promise<Map<string, number>> => {
        const text: string = (await apiGet(daemon.apiSocketPath, '/metrics')).body;
        const sent = new Map<string, number>();
        for (const line of text.split('\n')) {
          const match = /^netacct_cgroup_sent_bytes_total\{cgroup="([^"]*)".*protocol="udp"\} (\d+)$/.exec(line);
          if (match) sent.set(match[1]!, Number(match[2]));
        }
        return sent;
      };
      // The suites running alongside make cgroups of their own, and remove some (their traffic folds into
      // the same "(removed)"): what is asserted exactly is this test's cgroups' own.
      const churned = (series: Map<string, number>) => [...series.keys()].filter((cgroup) => cgroup.includes(`netacct-test-${process.pid}-churn-`));
      const before = await seriesOf();
      for (let i = 0; i < 300; i++) {
        const cgroup = ScratchCgroup.create(`churn-${i}`);
        const child = await TrafficChild.start('interactive');
        cgroup.add(child.pid);
        await child.exchange(1);
        await child.finish();
        // A scrape sees it, with its exchange exactly, before it is removed.
        expect((await seriesOf()).get(cgroup.relativePath)).toBe(100);
        cgroup.remove();
      }
      await new Promise((resolve) => setTimeout(resolve, 3500)); // two fold intervals
      const after = await seriesOf();
      console.log(`300 churned cgroups: ${before.size} cgroup series before, ${after.size} after; (removed) sent ${after.get('(removed)')} UDP bytes`);
      expect(churned(after)).toEqual([]);
      expect((after.get('(removed)') ?? 0) - (before.get('(removed)') ?? 0)).toBeGreaterThanOrEqual(300 * 100);
      // Restarted on the same pinned maps: nothing goes backwards.
      expect(await daemon.stop()).toBe(0);
      daemon = await TestDaemon.start(args);
      const restarted = await seriesOf();
      expect(restarted.get('(removed)')).toBe(after.get('(removed)'));
      for (const [cgroup, bytes] of after) expect(restarted.get(cgroup) ?? 0, cgroup).toBeGreaterThanOrEqual(bytes);
    } finally {
      await daemon.stop();
      removePinDir(pinDir);
    }
  }, 120_000);

  test('a second daemon on the same pin directory exits with one clear line, and the first goes on', async () => {
    const pinDir = scratchPinDir();
    const first = await TestDaemon.start(['--pin-dir', pinDir]);
    try {
      const second = await TestDaemon.start(['--pin-dir', pinDir]).then(
        (daemon) => daemon.stop().then(() => null),
        (err: Error) => err.message,
      );
      expect(second).toMatch(/another netacct daemon is using the pin directory .*: stop it, or give this one its own --pin-dir/);
      expect(first.running).toBe(true);
    } finally {
      await first.stop();
      removePinDir(pinDir);
    }
  });

  test('a garbage --bpf-object says what is wrong, leaves no pin directory; a relative one is refused', () => {
    const dir = scratchDir('object');
    const pinDir = scratchPinDir();
    try {
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, '{}');
      const garbage = path.join(dir, 'garbage.o');
      fs.writeFileSync(garbage, 'not an object at all, just text\n');
      const run = (object: string) =>
        spawnSync(NETACCT, ['daemon', '--config', config, '--atop-socket', path.join(dir, 'atop'), '--api-socket', path.join(dir, 'api'), '--pin-dir', pinDir, '--bpf-object', object], { encoding: 'utf8' });
      const result = run(garbage);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(`opening ${garbage}: not a compiled BPF object (not an ELF file`);
      expect(fs.existsSync(pinDir)).toBe(false);
      const elf = run('/bin/true');
      expect(elf.stderr).toMatch(/an ELF file for machine 62, not a BPF object/);
      const relative = run('bpf/netacct.bpf.o');
      expect(relative.status).toBe(2);
      expect(relative.stderr).toContain("--bpf-object 'bpf/netacct.bpf.o': must be an absolute path");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      removePinDir(pinDir);
    }
  });

  test('strict requests: decimal numbers only, no repeated parameter, no body, Host in any case, HEAD like GET', async () => {
    const daemon = await TestDaemon.start(['--listen', '127.0.0.1:0']);
    try {
      for (const query of ['limit=0x2', 'limit=1e2', 'limit=+3', 'limit=%203', 'pid=-1']) {
        const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/processes?${query}`);
        expect(status, query).toBe(400);
        expect(body.error).toMatch(/must be a whole number/);
      }
      expect((await apiGet(daemon.apiSocketPath, '/v1/processes/%20')).status).toBe(400);
      expect((await apiGet(daemon.apiSocketPath, '/v1/processes/0x10')).status).toBe(400);
      const repeated = await apiGet(daemon.apiSocketPath, '/v1/processes?limit=1&limit=2');
      expect(repeated.status).toBe(400);
      expect(repeated.body.error).toBe("invalid parameter 'limit': given more than once");
      // A body is refused without being read, and the connection closed.
      const posted = await rawRequest(daemon.apiSocketPath, 'POST /v1/stats HTTP/1.1\r\nHost: netacct\r\nContent-Length: 1000000000\r\n\r\nxxxx');
      expect(posted).toMatch(/^HTTP\/1\.1 413 /);
      expect(posted).toMatch(/Connection: close/i);
      // HEAD: GET's status and headers, no body.
      const head = await rawRequest(daemon.apiSocketPath, 'HEAD /v1/stats HTTP/1.1\r\nHost: netacct\r\n\r\n');
      expect(head).toMatch(/^HTTP\/1\.1 200 /);
      expect(head.split('\r\n\r\n')[1]).toBe('');
      // Host compared without case on TCP.
      const tcp = await new Promise<string>((resolve) => {
        const socket = net.connect(daemon.tcpPort, '127.0.0.1', () => socket.write('GET /v1/stats HTTP/1.1\r\nHost: LOCALHOST\r\nConnection: close\r\n\r\n'));
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.once('close', () => resolve(text));
      });
      expect(tcp).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      await daemon.stop();
    }
  });
});

/** A node -e script: one atop request on `socketPath`, prints "answered" once the terminator came. */
function atopOnceScript(socketPath: string): string {
  return `const s = require('net').connect(${JSON.stringify(socketPath)}, () => s.write(Buffer.alloc(96)));
let got = Buffer.alloc(0);
s.on('data', (c) => { got = Buffer.concat([got, c]); for (let o = 0; o + 96 <= got.length; o += 96) if (got.readInt32LE(o) === 0) { console.log('answered'); s.destroy(); } });`;
}
