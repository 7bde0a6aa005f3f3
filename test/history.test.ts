// History against the real daemon, real BPF and real traffic: every bucket
// and every workload exact (live processes, exited ones, one that starts and
// ends inside a bucket), across a stop and start and a kill -9 at the flush,
// rollups and `other` exact, a full disk, a corrupt or foreign file, a
// read-only file system, and what a non-root user may see. Buckets are
// shortened with --history-tiers; the logic is the default's.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { expect, test } from 'vitest';
import { apiGet, apiGetAsNobody } from './helpers/api-client.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { TestDaemon, removePinDir, scratchPinDir } from './helpers/daemon.js';
import { BASIC_SCENARIO, wireCounters } from './helpers/expected.js';
import { NOBODY_UID, fixture, scratchDir } from './helpers/fixtures.js';
import { afterThisBucket, flatCounters, historyOf, historyUntil, middleOfNextBucket, sumCounters, udpExchanges } from './helpers/history.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';
import { HISTORY_COUNTERS } from '../daemon/history/schema.js';

const TIERS = ['--history-tiers', '2s:1h,10s:1d,60s:7d'];
const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const BASIC = wireCounters(BASIC_SCENARIO);

/** The group of `answer` whose `field` is `value`. */
function groupOf(answer: any, field: string, value: unknown): any {
  const group = answer.groups.find((candidate: any) => candidate[field] === value);
  if (!group) throw new Error(`no group with ${field} ${String(value)} in ${JSON.stringify(answer.groups.map((g: any) => g[field]))}`);
  return group;
}

/** A tmpfs of `size` mounted on a new scratch directory; `unmount` in finally. */
function scratchTmpfs(size: string): { dir: string; unmount: () => void } {
  const dir = scratchDir('history-fs');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  return { dir, unmount: () => execFileSync('umount', ['-l', dir]) };
}

/** The cgroup's total in history since `fromSeconds`, once it equals `expected` (or the wait ends). */
async function cgroupTotal(daemon: TestDaemon, cgroup: ScratchCgroup, fromSeconds: number, expected: number[]): Promise<number[]> {
  const parameters = { from: iso(fromSeconds), by: 'cgroup', cgroup: cgroup.relativePath };
  const total = (answer: any): number[] => (answer.groups.length > 0 ? flatCounters(answer.groups[0]) : new Array(8).fill(0));
  return total(await historyUntil(daemon, parameters, (answer) => JSON.stringify(total(answer)) === JSON.stringify(expected)));
}

describeWithBpf('history (real daemon, real BPF, real traffic)', () => {
  test('every bucket and every workload exact: live processes, one that exited, one that started and ended inside a bucket', async () => {
    const a = ScratchCgroup.create('history-a');
    const b = ScratchCgroup.create('history-b');
    // 4-second buckets: traffic made in the middle of one has 2 s to land in it, a loaded CI machine included.
    const daemon = await TestDaemon.start(['--history-tiers', '4s:1h,20s:1d']);
    const children: TrafficChild[] = [];
    try {
      const staying = await TrafficChild.startIn(a, 'interactive');
      children.push(staying);
      const leaving = await TrafficChild.startIn(b, 'interactive');
      children.push(leaving);
      const first = await middleOfNextBucket(4);
      await staying.exchange(3);
      await leaving.exchange(5);
      const second = await middleOfNextBucket(4);
      await staying.exchange(7);
      await leaving.finish();
      const brief = await TrafficChild.startIn(b, 'basic');
      await brief.finish();
      await afterThisBucket(4);
      const parameters = { from: iso(first), to: iso(second + 4), by: 'cgroup', step: '4s' };
      const answer = await historyUntil(daemon, parameters, (ans) => ans.groups.length >= 2 && ans.groups.some((g: any) => g.cgroup === b.relativePath && g.series[1]?.[1] > 0));
      expect(answer.tier).toBe('4s');
      expect(answer.steps).toBe(2);
      expect(groupOf(answer, 'cgroup', a.relativePath).series).toEqual([udpExchanges(3), udpExchanges(7)]);
      expect(groupOf(answer, 'cgroup', b.relativePath).series).toEqual([udpExchanges(5), BASIC]);
      // By workload: the command, its user and cgroup, and a pid as a hint.
      const workloads = await historyOf(daemon, { from: iso(first), to: iso(second + 4), by: 'workload', cgroup: b.relativePath });
      expect(workloads.groups).toHaveLength(1);
      expect(workloads.groups[0]).toMatchObject({ command: 'traffic', uid: 0, cgroup: b.relativePath });
      expect(flatCounters(workloads.groups[0])).toEqual(sumCounters(udpExchanges(5), BASIC));
      // The file holds the same, for sqlite3 users: the view names each row.
      const file = /--history-file (\S+)/.exec(daemon.child.spawnargs.join(' '))![1]!;
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        const rows = db.prepare(`SELECT ${HISTORY_COUNTERS.map((name) => `sum(${name}) AS ${name}`).join(', ')} FROM traffic_named WHERE tier = 4 AND cgroup = ? AND bucket >= ? AND bucket < ?`).get(a.relativePath, first, second + 4) as Record<string, number>;
        expect(HISTORY_COUNTERS.map((name) => rows[name])).toEqual(udpExchanges(10));
      } finally {
        db.close();
      }
    } finally {
      for (const child of children) await child.finish();
      await daemon.stop();
      a.remove();
      b.remove();
    }
  });

  test('across a stop and a start, and a kill -9 as a flush runs: nothing lost, nothing counted twice', async () => {
    const pinDir = scratchPinDir();
    const file = path.join(scratchDir('history'), 'history.db');
    const args = [...TIERS, '--pin-dir', pinDir, '--history-file', file];
    const cgroup = ScratchCgroup.create('history-restart');
    const from = Math.floor(Date.now() / 1000) - 2;
    let daemon = await TestDaemon.start(args);
    const child = await TrafficChild.startIn(cgroup, 'interactive');
    let exchanges = 0;
    try {
      await child.exchange(4);
      exchanges += 4;
      await afterThisBucket(2);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      await child.exchange(3); // while no daemon runs
      exchanges += 3;
      const leaving = await TrafficChild.startIn(cgroup, 'basic'); // starts, counts and exits while no daemon runs
      await leaving.finish();
      daemon = await TestDaemon.start(args);
      expect(daemon.log).toContain('continuing where it stopped');
      for (let round = 0; round < 3; round++) {
        await child.exchange(2 + round);
        exchanges += 2 + round;
        // The flush starts 50 ms after a bucket's end, and takes a few ms: killed inside it, or just around it.
        await sleep(Math.floor(Date.now() / 2000) * 2000 + 2000 + 50 + round * 3 - Date.now());
        await daemon.stop('SIGKILL');
        await child.exchange(1);
        exchanges += 1;
        daemon = await TestDaemon.start(args);
      }
      await child.exchange(5);
      exchanges += 5;
      const expected = sumCounters(udpExchanges(exchanges), BASIC);
      expect(await cgroupTotal(daemon, cgroup, from, expected)).toEqual(expected);
      // And it is what the daemon counts live: the process, and the cgroup
      // (the short-lived process's counters, read for the last time by a
      // daemon killed later, are in the pinned totals).
      const live = (await apiGet(daemon.apiSocketPath, `/v1/processes?pid=${child.pid}`)).body.processes[0];
      expect(flatCounters(live)).toEqual(udpExchanges(exchanges));
      const liveCgroup = (await apiGet(daemon.apiSocketPath, '/v1/cgroups')).body.cgroups.find((row: any) => row.path === cgroup.relativePath);
      expect(flatCounters(liveCgroup)).toEqual(expected);
    } finally {
      await child.finish();
      await daemon.stop();
      removePinDir(pinDir);
      cgroup.remove();
    }
  });

  test('the coarser tiers hold exactly the sums of the finer, each bucket within its bound (`other` exact: history-store.test.ts)', async () => {
    const cgroups = [1, 2, 3, 4].map((n) => ScratchCgroup.create(`history-top-${n}`));
    const file = path.join(scratchDir('history'), 'history.db');
    const daemon = await TestDaemon.start(['--history-tiers', '1s:1h,2s:1d,4s:7d', '--history-rows-per-bucket', '2', '--history-file', file]);
    const children: TrafficChild[] = [];
    try {
      for (const cgroup of cgroups) children.push(await TrafficChild.startIn(cgroup, 'interactive'));
      const start = await middleOfNextBucket(4);
      // Two base buckets of the same coarse ones: 1..4 exchanges, then 4..1.
      for (const [i, child] of children.entries()) await child.exchange(i + 1);
      await middleOfNextBucket(1);
      for (const [i, child] of children.entries()) await child.exchange(4 - i);
      await afterThisBucket(4);
      await sleep(1500);
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        const rows = (tier: number) =>
          db.prepare(`SELECT bucket, workload, ${HISTORY_COUNTERS.join(', ')} FROM traffic WHERE tier = ? AND bucket >= ? AND bucket < ? ORDER BY bucket, workload`).all(tier, start, start + 4) as Array<Record<string, number>>;
        const sums = (list: Array<Record<string, number>>): number[] => sumCounters(...list.map((row) => HISTORY_COUNTERS.map((name) => row[name]!)));
        // Whatever else the host sent meanwhile, each tier holds the same over the same time.
        const base = sums(rows(1));
        expect(base[4]).toBeGreaterThanOrEqual(20); // ours at least
        for (const tier of [2, 4]) expect(sums(rows(tier)), `tier ${tier}`).toEqual(base);
        for (const tier of [1, 2, 4]) {
          const perBucket = new Map<number, number>();
          for (const row of rows(tier)) perBucket.set(row.bucket!, (perBucket.get(row.bucket!) ?? 0) + 1);
          for (const count of perBucket.values()) expect(count, `tier ${tier}`).toBeLessThanOrEqual(3); // 2 workloads and other
        }
        // The API sums the same rows (ours among them, or in `other`).
        const answer = await historyOf(daemon, { from: iso(start), to: iso(start + 4), by: 'cgroup', limit: '1000' });
        expect(answer.tier).toBe('1s');
        expect(sumCounters(...answer.groups.map(flatCounters), flatCounters(answer.rest))).toEqual(base);
      } finally {
        db.close();
      }
    } finally {
      for (const child of children) await child.finish();
      await daemon.stop();
      for (const cgroup of cgroups) cgroup.remove();
    }
  });

  test('a full disk pauses history (said once, in /v1/stats and /metrics); counting and live answers go on; it resumes by itself with nothing lost', async () => {
    const disk = scratchTmpfs('1m');
    const file = path.join(disk.dir, 'history.db');
    const cgroup = ScratchCgroup.create('history-full');
    let daemon: TestDaemon | null = null;
    let child: TrafficChild | null = null;
    try {
      daemon = await TestDaemon.start([...TIERS, '--history-file', file]);
      const from = Math.floor(Date.now() / 1000) - 2;
      child = await TrafficChild.startIn(cgroup, 'interactive');
      await child.exchange(2);
      await afterThisBucket(2);
      const filler = path.join(disk.dir, 'filler');
      try {
        fs.writeFileSync(filler, Buffer.alloc(2 * 1024 * 1024));
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      }
      // Rows that the file must grow for: traffic of new workloads, bucket after bucket, until a write finds no room
      // (the write-ahead log keeps the room it had: the first writes after the disk filled may still fit).
      await child.exchange(6);
      const commands = symlinkDir();
      for (let round = 0; round < 10 && (await apiGet(daemon.apiSocketPath, '/v1/stats')).body.history.state !== 'paused'; round++) {
        const brief: TrafficChild[] = [];
        for (let i = 0; i < 10; i++) brief.push(await TrafficChild.startFrom(path.join(commands, `t${round * 10 + i}`), 'basic'));
        for (const b of brief) await b.finish();
        await afterThisBucket(2);
      }
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect(stats.history.state).toBe('paused');
      expect(stats.history.reason).toMatch(/full/);
      expect((await apiGet(daemon.apiSocketPath, '/metrics')).body).toMatch(/^netacct_history_paused 1$/m);
      expect(daemon.log.match(/history: paused/g)).toHaveLength(1);
      // Counting goes on: the live answer is exact.
      const live = (await apiGet(daemon.apiSocketPath, `/v1/processes?pid=${child.pid}`)).body.processes[0];
      expect(live.counters.udp.send).toEqual({ calls: 8, bytes: 800 });
      fs.rmSync(filler);
      await child.exchange(1);
      const expected = udpExchanges(9);
      expect(await cgroupTotal(daemon, cgroup, from, expected)).toEqual(expected);
      expect(daemon.log).toContain('history: writing again');
      expect((await apiGet(daemon.apiSocketPath, '/v1/stats')).body.history.state).toBe('writing');
    } finally {
      await child?.finish();
      await daemon?.stop();
      disk.unmount();
      cgroup.remove();
    }
  });

  test('a corrupt file and a foreign SQLite file are moved aside with one line and a new one started; a newer schema is left alone', async () => {
    const dir = scratchDir('history');
    const file = path.join(dir, 'history.db');
    for (const [what, make] of [
      ['garbage', () => fs.writeFileSync(file, Buffer.alloc(8192, 0x5a))],
      ['another application', () => {
        const db = new DatabaseSync(file);
        db.exec('CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES (\'mine\')');
        db.close();
      }],
    ] as const) {
      fs.rmSync(`${file}.corrupt`, { force: true });
      make();
      const daemon = await TestDaemon.start([...TIERS, '--history-file', file]);
      try {
        expect(daemon.log, what).toContain(`history file ${file} cannot be used`);
        expect(daemon.log).toContain(`moved to ${file}.corrupt; a new one is started`);
        expect(fs.existsSync(`${file}.corrupt`)).toBe(true);
        await afterThisBucket(2);
        expect((await apiGet(daemon.apiSocketPath, '/v1/stats')).body.history.state).toBe('writing');
        expect((await apiGet(daemon.apiSocketPath, '/v1/history?from=-1m')).status).toBe(200);
      } finally {
        await daemon.stop();
      }
      fs.rmSync(file);
    }
    // A file of a newer netacct (a downgrade): paused, never moved or changed.
    const db = new DatabaseSync(file);
    db.exec(`PRAGMA application_id = ${0x4e414354}; PRAGMA user_version = 99; CREATE TABLE future (x)`);
    db.close();
    const before = fs.readFileSync(file);
    const daemon = await TestDaemon.start([...TIERS, '--history-file', file]);
    try {
      await afterThisBucket(2);
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect(stats.history.state).toBe('paused');
      expect(stats.history.reason).toContain('newer than this daemon');
      expect((await apiGet(daemon.apiSocketPath, '/v1/history')).status).toBe(503);
    } finally {
      await daemon.stop();
    }
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  test('a read-only file system: history waits, counting does not; once writable, history has everything counted since the start', async () => {
    const disk = scratchTmpfs('4m');
    const file = path.join(disk.dir, 'netacct', 'history.db');
    const cgroup = ScratchCgroup.create('history-ro');
    let daemon: TestDaemon | null = null;
    let child: TrafficChild | null = null;
    try {
      fs.mkdirSync(path.dirname(file));
      execFileSync('mount', ['-o', 'remount,ro', disk.dir]);
      daemon = await TestDaemon.start([...TIERS, '--history-file', file]);
      const from = Math.floor(Date.now() / 1000) - 2;
      expect(daemon.log).toMatch(/history: paused, .* cannot be written \(.*read-only/);
      child = await TrafficChild.startIn(cgroup, 'interactive');
      await child.exchange(3);
      const brief = await TrafficChild.startIn(cgroup, 'basic');
      await brief.finish();
      await afterThisBucket(2);
      expect((await apiGet(daemon.apiSocketPath, `/v1/processes?pid=${child.pid}`)).body.processes[0].counters.udp.send).toEqual({ calls: 3, bytes: 300 });
      execFileSync('mount', ['-o', 'remount,rw', disk.dir]);
      await child.exchange(2);
      const expected = sumCounters(udpExchanges(5), BASIC);
      expect(await cgroupTotal(daemon, cgroup, from, expected)).toEqual(expected);
      const mode = fs.statSync(file).mode & 0o777;
      expect(mode.toString(8)).toBe('640');
    } finally {
      await child?.finish();
      await daemon?.stop();
      disk.unmount();
      cgroup.remove();
    }
  });

  test('with --peers: rows per (workload, peer, port) in the second and third tiers, each exactly what the process counted with that peer', async () => {
    const cgroup = ScratchCgroup.create('history-peers');
    const file = path.join(scratchDir('history'), 'history.db');
    const daemon = await TestDaemon.start(['--peers', '--history-tiers', '1s:1h,2s:1d,4s:7d', '--history-file', file]);
    let child: TrafficChild | null = null;
    try {
      const from = (await middleOfNextBucket(4)) - 4;
      child = await TrafficChild.startIn(cgroup, 'peers'); // its traffic, then it waits
      const rows = (await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}/peers`)).body;
      // The API's rows, as history names them: the address ("(unknown)"), and the port that tells the service.
      const expected = new Map<string, number[]>();
      for (const row of rows.peers) {
        const key = `${row.address ?? '(unknown)'} ${row.port ?? row.localPort ?? 0}`;
        expected.set(key, sumCounters(expected.get(key) ?? new Array(8).fill(0), flatCounters(row)));
      }
      const total = flatCounters(rows);
      const parameters = { from: iso(from), by: 'peer', cgroup: cgroup.relativePath, limit: '1000' };
      const answer = await historyUntil(daemon, parameters, (ans) => JSON.stringify(sumCounters(...ans.groups.map(flatCounters))) === JSON.stringify(total));
      expect(answer.tier).toBe('2s');
      expect(sumCounters(...answer.groups.map(flatCounters))).toEqual(total);
      expect(new Map(answer.groups.map((group: any) => [`${group.peer} ${group.port}`, flatCounters(group)]))).toEqual(expected);
      // The 4-second tier sums the 2-second one, once its buckets end.
      await afterThisBucket(4);
      await sleep(1000);
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        const sum = (tier: number) =>
          db.prepare(`SELECT ${HISTORY_COUNTERS.map((name) => `coalesce(sum(p.${name}), 0) AS ${name}`).join(', ')} FROM peer_traffic p JOIN workloads w ON w.id = p.workload WHERE p.tier = ? AND w.cgroup = ?`).get(tier, cgroup.relativePath) as Record<string, number>;
        expect(HISTORY_COUNTERS.map((name) => sum(4)[name])).toEqual(total);
        expect(HISTORY_COUNTERS.map((name) => sum(2)[name])).toEqual(total);
        expect(db.prepare('SELECT count(*) AS n FROM peer_traffic WHERE tier = 1').get()).toEqual({ n: 0 }); // not in the base tier
      } finally {
        db.close();
      }
      // Without --peers, by=peer says why.
      const off = await TestDaemon.start(TIERS);
      try {
        const refused = await apiGet(off.apiSocketPath, '/v1/history?by=peer');
        expect(refused.status).toBe(400);
        expect(refused.body.error).toContain('--peers');
      } finally {
        await off.stop();
      }
    } finally {
      await child?.finish();
      await daemon.stop();
      cgroup.remove();
    }
  });

  test("a user who does not see every process gets its own workloads' rows only; bad parameters are a 400 naming them", async () => {
    const daemon = await TestDaemon.start(TIERS);
    const cgroup = ScratchCgroup.create('history-nobody');
    const mine = await TrafficChild.startIn(cgroup, 'interactive', { asNobody: true });
    const roots = await TrafficChild.start('interactive');
    try {
      const from = Math.floor(Date.now() / 1000) - 2;
      await mine.exchange(4);
      await roots.exchange(6);
      await afterThisBucket(2);
      await historyUntil(daemon, { from: iso(from), by: 'user' }, (answer) => answer.groups.some((g: any) => g.uid === NOBODY_UID));
      const own = await apiGetAsNobody(daemon.apiSocketPath, `/v1/history?from=${iso(from)}&by=workload&limit=1000`);
      expect(own.scope).toBe('own');
      expect(own.groups.length).toBeGreaterThan(0);
      expect(own.groups.every((group: any) => group.uid === NOBODY_UID)).toBe(true);
      expect(flatCounters(groupOf(own, 'cgroup', cgroup.relativePath))).toEqual(udpExchanges(4));
      const asRoot = await historyOf(daemon, { from: iso(from), by: 'user', limit: '1000' });
      expect(asRoot.scope).toBe('host');
      expect(asRoot.groups.some((group: any) => group.uid === 0)).toBe(true);
      // Asking for root's rows by filter gives nobody nothing.
      expect((await apiGetAsNobody(daemon.apiSocketPath, `/v1/history?from=${iso(from)}&uid=0`)).groups).toEqual([]);

      for (const [query, field] of [
        ['from=yesterday', 'from'],
        ['to=-2x', 'to'],
        ['by=host', 'by'],
        ['step=7s', 'step'], // not a multiple of the 2-second buckets
        ['step=1s', 'step'],
        ['limit=0', 'limit'],
        ['sort=size', 'sort'],
        ['from=-1h&to=-2h', 'to'],
        ['from=-7d&step=2s', 'step'], // 302,400 steps
        ['colour=red', 'colour'],
      ]) {
        const answer = await apiGet(daemon.apiSocketPath, `/v1/history?${query}`);
        expect(answer.status, query).toBe(400);
        expect(answer.body.field, query).toBe(field);
        expect(answer.body.error).toContain(`'${field}'`);
      }
    } finally {
      await mine.finish();
      await roots.finish();
      await daemon.stop();
      cgroup.remove();
    }
  });
});

/** A directory of symlinks to the traffic fixture: each name is a command of its own (a workload each). */
function symlinkDir(): string {
  const dir = scratchDir('history-commands');
  for (let i = 0; i < 100; i++) fs.symlinkSync(fixture('traffic'), path.join(dir, `t${i}`));
  return dir;
}
