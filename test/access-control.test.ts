// Who sees what on the atop socket: the daemon reads each client's
// credentials from the kernel (SO_PEERCRED). Root, or a member of the
// configured group, sees every process; any other user only their own.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { readLikeAtop } from './helpers/atop-c-client.js';
import { NETACCT_FOR_OTHERS, TestDaemon } from './helpers/daemon.js';
import { apiGet } from './helpers/api-client.js';
import { asNobody } from './helpers/fixtures.js';
import { BASIC_SCENARIO, wireCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const BASIC_ON_WIRE = wireCounters(BASIC_SCENARIO);

/** A daemon, then one process making traffic as root and one as nobody. */
async function withDaemonAndTraffic(
  daemonArgs: string[],
  check: (daemon: TestDaemon, rootPid: number, nobodyPid: number) => Promise<void>,
): Promise<void> {
  const daemon = await TestDaemon.start(daemonArgs);
  const asRoot = await TrafficChild.start('basic');
  const asNobody = await TrafficChild.startAsNobody('basic');
  try {
    await check(daemon, asRoot.pid, asNobody.pid);
  } finally {
    await asRoot.finish();
    await asNobody.finish();
    await daemon.stop();
  }
}

describeWithBpf('access control on the atop socket (clients as root and as nobody)', () => {
  test('by default any user may connect and sees only processes of their own uid; root sees all', async () => {
    await withDaemonAndTraffic([], async (daemon, rootPid, nobodyPid) => {
      expect(fs.statSync(daemon.socketPath).mode & 0o777).toBe(0o666);
      const root = await readLikeAtop(daemon.socketPath);
      expect(root.byPid.get(rootPid)).toEqual(BASIC_ON_WIRE);
      expect(root.byPid.get(nobodyPid)).toEqual(BASIC_ON_WIRE);

      const nobody = await readLikeAtop(daemon.socketPath, { asNobody: true });
      expect(nobody.shortReads).toBe(0);
      expect(nobody.byPid.get(nobodyPid)).toEqual(BASIC_ON_WIRE);
      expect(nobody.byPid.has(rootPid)).toBe(false);
      const nobodyUid = fs.statSync(`/proc/${nobodyPid}`).uid;
      for (const pid of nobody.byPid.keys()) {
        if (fs.existsSync(`/proc/${pid}`)) expect(fs.statSync(`/proc/${pid}`).uid, `pid ${pid}`).toBe(nobodyUid);
      }
    });
  });

  test('members of --all-processes-group see every process', async () => {
    await withDaemonAndTraffic(['--all-processes-group', 'nogroup'], async (daemon, rootPid, nobodyPid) => {
      const nobody = await readLikeAtop(daemon.socketPath, { asNobody: true });
      expect(nobody.byPid.get(rootPid)).toEqual(BASIC_ON_WIRE);
      expect(nobody.byPid.get(nobodyPid)).toEqual(BASIC_ON_WIRE);
    });
  });

  test('a supplementary group counts, as the kernel had it at connect (SO_PEERGROUPS): curl as nobody with group adm', async () => {
    await withDaemonAndTraffic(['--all-processes-group', 'adm'], async (daemon, rootPid) => {
      const curl = (...groups: string[]): Promise<{ processes: Array<{ pid: number }> }> =>
        promisify(execFile)('setpriv', ['--reuid=nobody', '--regid=nogroup', ...groups, 'curl', '--silent', '--unix-socket', daemon.apiSocketPath, 'http://netacct/v1/processes?state=all']).then(({ stdout }) => JSON.parse(stdout));
      expect((await curl('--groups=adm')).processes.map((p) => p.pid)).toContain(rootPid);
      expect((await curl('--clear-groups')).processes.map((p) => p.pid)).not.toContain(rootPid);
    });
  });

  test("another user's /v1/stats, /metrics and netacct stats: its own processes, none of the host-wide figures", async () => {
    await withDaemonAndTraffic(['--peers'], async (daemon, _rootPid, nobodyPid) => {
      const curl = (request: string): Promise<string> =>
        promisify(execFile)(...asNobody('curl', '--silent', '--unix-socket', daemon.apiSocketPath, `http://netacct${request}`)).then(({ stdout }) => stdout);
      const stats = JSON.parse(await curl('/v1/stats'));
      expect(Object.keys(stats).sort()).toEqual(['attachMode', 'processes', 'programsAttached', 'scope', 'uptimeSeconds', 'version']);
      expect(stats.scope).toBe('own');
      const own = JSON.parse(await curl('/v1/processes?state=all')).processes as Array<{ pid: number; state: string }>;
      expect(own.map((p) => p.pid)).toContain(nobodyPid);
      expect(stats.processes).toEqual({ live: own.filter((p) => p.state === 'live').length, exited: own.filter((p) => p.state === 'exited').length });
      const rootStats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect(rootStats.scope).toBe('host');
      expect(rootStats.processes.live).toBeGreaterThan(stats.processes.live); // root's process too
      expect(rootStats.maps.peers.entries).toBeGreaterThan(0);

      const metrics = await curl('/metrics');
      expect(metrics).toMatch(/^netacct_processes\{state="live"\} (\d+)$/m);
      expect(Number(/^netacct_processes\{state="live"\} (\d+)$/m.exec(metrics)![1])).toBe(stats.processes.live);
      for (const hostWide of ['netacct_map_entries', 'netacct_clients', 'netacct_unrecorded_exits_total', 'netacct_clients_refused_total', 'netacct_netatop_module_active']) {
        expect(metrics).not.toContain(hostWide);
      }

      const [command, args] = asNobody(NETACCT_FOR_OTHERS, 'stats', '--api-socket', daemon.apiSocketPath);
      const { stdout } = await promisify(execFile)(command, args);
      expect(stdout).toMatch(new RegExp(`^your processes: ${stats.processes.live} live, ${stats.processes.exited} exited`, 'm'));
      expect(stdout).toMatch(/shown to root and allProcessesGroup only/);
    });
  });

  test('with a mode that shuts other users out, they cannot connect at all', async () => {
    const daemon = await TestDaemon.start(['--atop-socket-mode', '0600']);
    try {
      await expect(readLikeAtop(daemon.socketPath, { asNobody: true })).rejects.toThrow(/Permission denied/);
    } finally {
      await daemon.stop();
    }
  });
});
