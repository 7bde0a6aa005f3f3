// Running under systemd (packaging/netacct.service): READY=1 only once both
// sockets listen, STOPPING=1 at shutdown, through libsystemd or without it;
// the unit passes systemd-analyze verify; and the daemon really works with
// nothing but the capabilities the unit leaves it.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import bcrypt from 'bcryptjs';
import { afterEach, expect, test } from 'vitest';
import { notifyDirect } from '../daemon/service/sd-notify.js';
import { requestOnce } from './helpers/atop-reader.js';
import { apiGet, tcpGet } from './helpers/api-client.js';
import { TestDaemon, UNIT_FILE, unitCapabilities, unitCapabilitiesLauncher } from './helpers/daemon.js';
import { BASIC_SCENARIO, wireCounters } from './helpers/expected.js';
import { fixture, tempPath } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';


/** systemd's end of the notification socket: its messages, one per line. */
class NotifyListener {
  private readonly lines: AsyncIterator<string>;
  private constructor(
    readonly socketPath: string,
    private readonly child: ChildProcess,
  ) {
    this.lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }

  static async start(): Promise<NotifyListener> {
    const socketPath = tempPath('notify');
    const listener = new NotifyListener(socketPath, spawn(fixture('notify-listener'), [socketPath], { stdio: ['ignore', 'pipe', 'inherit'] }));
    expect(await listener.next()).toBe('listening');
    return listener;
  }

  async next(): Promise<string> {
    const line = await this.lines.next();
    if (line.done) throw new Error('the notify listener ended');
    return line.value;
  }

  stop(): void {
    this.child.kill();
  }
}

let listener: NotifyListener | null = null;
afterEach(() => listener?.stop());

test('without libsystemd: the datagram netacct sends itself reaches the socket', async () => {
  listener = await NotifyListener.start();
  notifyDirect(listener.socketPath, 'READY=1\nSTATUS=testing');
  expect(await listener.next()).toBe('READY=1|STATUS=testing');
  expect(() => notifyDirect(`${listener!.socketPath}-missing`, 'READY=1')).toThrow(/sendto .* failed: ENOENT \(2\)/);
});

test('packaging/netacct.service passes systemd-analyze verify', () => {
  // The unit names /usr/bin/netacct and its man page, which exist once the
  // package is installed (test/packaging.test.ts verifies it there too).
  const unit = path.join(path.dirname(tempPath('unit')), 'netacct.service');
  fs.writeFileSync(unit, fs.readFileSync(UNIT_FILE, 'utf8').replace('/usr/bin/netacct', path.join(import.meta.dirname, '..', 'bin', 'netacct.js')));
  const result = execFileSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  expect(result).toBe('');
});

describeWithBpf('under systemd (real daemon)', () => {
  test('READY=1 (with a status line) once both sockets accept clients, STOPPING=1 at SIGTERM', async () => {
    listener = await NotifyListener.start();
    const daemon = await TestDaemon.start([], { env: { NOTIFY_SOCKET: listener.socketPath } });
    const ready = await listener.next();
    expect(ready).toMatch(/^READY=1\|STATUS=netacct counting; serving atop on \S+ and the API on \S+$/);
    for (const socketPath of [daemon.socketPath, daemon.apiSocketPath]) {
      await new Promise<void>((resolve, reject) => net.connect(socketPath, resolve).once('error', reject).unref());
    }
    const stopping = listener.next();
    expect(await daemon.stop()).toBe(0);
    expect(await stopping).toBe('STOPPING=1');
  });

  test("the unit's capabilities are enough: the daemon counts exactly with only them", async () => {
    const bounding = unitCapabilities();
    // CAP_NET_ADMIN and CAP_CHOWN for netatopModule (test/netatop-module.test.ts), CAP_DAC_READ_SEARCH to name cgroups.
    expect(bounding).toEqual(['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN', 'CAP_CHOWN', 'CAP_DAC_READ_SEARCH']);
    const daemon = await TestDaemon.start([], { launcher: unitCapabilitiesLauncher() });
    const child = await TrafficChild.start('basic');
    try {
      const status = fs.readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
      const capabilities = (1n << 39n) | (1n << 38n) | (1n << 12n) | (1n << 0n) | (1n << 2n); // CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_CHOWN, CAP_DAC_READ_SEARCH
      expect(/^CapEff:\s*(\w+)$/m.exec(status)![1]).toBe(capabilities.toString(16).padStart(16, '0'));
      const records = await requestOnce(daemon.socketPath);
      expect(records.get(child.pid)?.counters).toEqual(wireCounters(BASIC_SCENARIO));
      // Its cgroup is named (from its id), as /proc says it is.
      const own = fs.readFileSync(`/proc/${child.pid}/cgroup`, 'utf8').match(/^0::(.*)$/m)![1];
      expect((await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`)).body.cgroup.path).toBe(own);
      expect(daemon.log).not.toMatch(/cgroups are listed by id only|naming a cgroup/);
    } finally {
      await child.finish();
      expect(await daemon.stop()).toBe(0);
    }
  });

  test("every system call the daemon makes is in the unit's SystemCallFilter (strace; systemd would kill it with SIGSYS)", async () => {
    const summary = tempPath('strace');
    // Basic auth too: its password checks run in a thread of their own.
    const webConfig = path.join(path.dirname(summary), 'web.yml');
    fs.writeFileSync(webConfig, `basic_auth_users:\n  prometheus: ${bcrypt.hashSync('s3cret', 4)}\n`);
    const daemon = await TestDaemon.start(['--listen', '127.0.0.1:0', '--web-config', webConfig, '--peers', '--threads'], {
      launcher: ['strace', '-f', '-qq', '-c', '-o', summary, '--'],
    });
    const traced = Number(fs.readFileSync(`/proc/${daemon.child.pid}/task/${daemon.child.pid}/children`, 'utf8').trim());
    const child = await TrafficChild.start('basic');
    try {
      // What it does in service: counts, answers atop and the API (every listing, /metrics, a stream), reloads, stops.
      await requestOnce(daemon.socketPath);
      for (const request of ['/v1/processes', '/v1/cgroups', '/v1/peers', '/v1/stats', '/metrics', '/']) {
        expect((await apiGet(daemon.apiSocketPath, request)).status).toBe(200);
      }
      const authorization = `Basic ${Buffer.from('prometheus:s3cret').toString('base64')}`;
      expect((await tcpGet(daemon.tcpPort, '/v1/processes?limit=1', { Authorization: authorization })).status).toBe(200);
      process.kill(traced, 'SIGHUP');
      await daemon.waitForLog(/SIGHUP: configuration reloaded/);
    } finally {
      await child.finish();
      process.kill(traced, 'SIGTERM');
      await new Promise((resolve) => daemon.child.once('exit', resolve));
      await daemon.stop();
    }
    // strace -c: a row per system call, its name last.
    const made = fs
      .readFileSync(summary, 'utf8')
      .split('\n')
      .map((line) => /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+(?:\d+\s+)?(\w+)$/.exec(line)?.[1])
      .filter((name): name is string => name !== undefined && name !== 'total');
    expect(made).toContain('bpf');
    expect(made).toContain('open_by_handle_at');
    const filter = /^SystemCallFilter=(.*)$/m.exec(fs.readFileSync(UNIT_FILE, 'utf8'))![1]!.split(/\s+/);
    const allowed = allowedCalls(filter);
    expect(made.filter((name) => !allowed.has(name))).toEqual([]);
  });
});

/** The system calls a SystemCallFilter list allows, its groups expanded by systemd-analyze. */
function allowedCalls(filter: string[]): Set<string> {
  const allowed = new Set<string>();
  const expand = (item: string): void => {
    if (allowed.has(item)) return;
    allowed.add(item);
    if (!item.startsWith('@')) return;
    const lines = execFileSync('systemd-analyze', ['syscall-filter', item], { encoding: 'utf8' }).split('\n').slice(1);
    for (const line of lines.map((text) => text.trim())) if (line && !line.startsWith('#')) expand(line);
  };
  for (const item of filter) expand(item);
  return allowed;
}

