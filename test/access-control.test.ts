// Who sees what on the atop socket: the daemon reads each client's
// credentials from the kernel (SO_PEERCRED). Root, or a member of the
// configured group, sees every process; any other user only their own.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { readLikeAtop } from './helpers/atop-c-client.js';
import { TestDaemon } from './helpers/daemon.js';
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

  test('with a mode that shuts other users out, they cannot connect at all', async () => {
    const daemon = await TestDaemon.start(['--atop-socket-mode', '0600']);
    try {
      await expect(readLikeAtop(daemon.socketPath, { asNobody: true })).rejects.toThrow(/Permission denied/);
    } finally {
      await daemon.stop();
    }
  });
});
