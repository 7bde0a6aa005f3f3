// atop before 2.10 (Debian 12's own atop 2.8.1), which knows only the netatop
// kernel module and netatopd, served by netacct with no module: real atops,
// real BPF, exact counters for live processes and for processes that exited.
// The semaphore key, the exit file and the getsockopt answers are the host's
// (atop hard-codes them): the tests of this file run one daemon at a time,
// and every other test's daemon runs with --no-netatop-module.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, afterEach, expect, test } from 'vitest';
import { apiGet } from './helpers/api-client.js';
import { TestDaemon, unitCapabilitiesLauncher } from './helpers/daemon.js';
import { BASIC_SCENARIO, expectedCounters, wireCounters } from './helpers/expected.js';
import { asNobody, fixture, tempPath } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { PATIENCE } from './helpers/patience.js';
import { TrafficChild } from './helpers/traffic.js';

const EXIT_FILE = '/var/run/netatop.log';
const INTERVAL_S = 2;
const DEFAULT_KEY = 1541961;
const OTHER_KEY = 424242;

/** Why real atop cannot run here, or null: it must be an atop before 2.10 (Debian 12's is 2.8.1). */
function atopSkipReason(): string | null {
  const version = spawnSync('atop', ['-V'], { encoding: 'utf8' });
  if (version.error) return 'atop is not installed (apt-get install atop)';
  const match = /Version:\s+(\d+)\.(\d+)/.exec(version.stdout);
  if (!match) return `cannot tell atop's version from: ${version.stdout.trim()}`;
  if (Number(match[1]) > 2 || Number(match[2]) >= 10) return `atop ${match[1]}.${match[2]} uses the bpf socket, not the module interface`;
  return null;
}

interface PrnLine {
  sample: number;
  pid: number;
  name: string;
  state: string;
  netatop: string;
  /** tcpsnd, tcpssz, tcprcv, tcprsz, udpsnd, udpssz, udprcv, udprsz: this interval's. */
  counters: number[];
}

const PRN = /^PRN \S+ \d+ \S+ \S+ \d+ (\d+) \((.*)\) (\S) (\S) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) /;

/** atop -K -P PRN: its samples as they come (a SEP line starts each one). */
class AtopPrn {
  lines: PrnLine[] = [];
  samples = 0;
  output = '';
  private waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      this.output += `${line}\n`;
      if (line === 'SEP') {
        this.samples++;
        for (const wake of this.waiters.splice(0)) wake();
        return;
      }
      const m = PRN.exec(line);
      if (m) {
        this.lines.push({ sample: this.samples, pid: Number(m[1]), name: m[2]!, state: m[3]!, netatop: m[4]!, counters: m.slice(5, 13).map(Number) });
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
  }

  static start(samples: number): AtopPrn {
    return new AtopPrn(spawn('atop', ['-K', '-P', 'PRN', String(INTERVAL_S), String(samples)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Resolves once `count` samples were printed (the sample after them has begun). */
  async waitForSamples(count: number): Promise<void> {
    while (this.samples < count) {
      if (this.child.exitCode !== null) throw new Error(`atop ended after ${this.samples} samples:\n${this.output}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 500);
      });
    }
  }

  ended(): Promise<void> {
    return new Promise((resolve) => (this.child.exitCode !== null ? resolve() : this.child.once('exit', () => resolve())));
  }

  /** The process's counters over every sample: what atop would add up. */
  total(pid: number): number[] {
    const sum = new Array<number>(8).fill(0);
    for (const line of this.lines) if (line.pid === pid) line.counters.forEach((value, i) => (sum[i]! += value));
    return sum;
  }

  exitLine(pid: number): PrnLine | undefined {
    return this.lines.find((line) => line.pid === pid && line.state === 'E');
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
// Semaphore sets outlive their daemons (an atop keeps the set's id): this file's are removed at its end.
afterAll(() => {
  for (const key of [DEFAULT_KEY, OTHER_KEY]) spawnSync('ipcrm', ['-S', String(key)]);
});

function killOnCleanup(child: ChildProcess): void {
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
}

/** A daemon that serves the module interface, with only the capabilities the systemd unit leaves it. */
async function moduleDaemon(extraArgs: string[] = []): Promise<TestDaemon> {
  const daemon = await TestDaemon.start(extraArgs, { netatopModule: true, launcher: unitCapabilitiesLauncher() });
  cleanups.push(() => daemon.stop());
  return daemon;
}

const skip = atopSkipReason();
if (skip && process.env['CI'] === 'true') throw new Error(`CI=true, but the netatop module tests cannot run: ${skip}`);

describeWithBpf(`atop before 2.10 through the netatop module interface${skip ? ` (skipped: ${skip})` : ''}`, () => {
  test.skipIf(skip !== null)(
    'two atops at once: exact TCP/UDP counters for a live process and for processes that exited during an interval',
    async () => {
      const daemon = await moduleDaemon();
      expect(daemon.log).toMatch(/serving atop before 2\.10 as the netatop module and netatopd did/);
      const atops = [AtopPrn.start(15), AtopPrn.start(15)];
      for (const atop of atops) killOnCleanup(atop.child);
      // Traffic starts after every atop's first sample, so that atop's own sum is all of it.
      for (const atop of atops) await atop.waitForSamples(2);
      const live = await TrafficChild.start('basic');
      killOnCleanup(live.child);
      // Started right after a sample of each atop, so that it does its traffic and exits within one
      // interval, well before either's next sample (netacct writes an exit within a few tens of ms:
      // README). The two atops sample up to a few hundred ms apart: waiting for the first alone, the
      // exit could fall just before the second's sample, its record not written yet.
      const before = atops.map((atop) => atop.samples);
      await Promise.all(atops.map((atop, i) => atop.waitForSamples(before[i]! + 1)));
      const quick = await TrafficChild.start('basic');
      killOnCleanup(quick.child);
      await quick.finish();
      const stepwise = await TrafficChild.start('interactive');
      killOnCleanup(stepwise.child);
      await stepwise.exchange(5);
      // Seen live in one sample, then more traffic and the exit in a later interval.
      // Exits come right after a sample: netacct writes each exit within a few
      // tens of ms, atop reads them at its next sample (README: exits).
      const seen = atops.map((atop) => atop.samples);
      for (const [i, atop] of atops.entries()) await atop.waitForSamples(seen[i]! + 2);
      await stepwise.exchange(7);
      await stepwise.finish();
      await Promise.all(atops.map((atop) => atop.ended()));

      const udpExchanges = (n: number): number[] => wireCounters(expectedCounters({ 'ipv4 udp send': [n, n * 100], 'ipv4 udp recv': [n, n * 100] }));
      for (const atop of atops) {
        expect(atop.output).not.toMatch(/netatop.*not active/i);
        for (const line of atop.lines) expect(line.netatop).toBe('y');
        expect(atop.total(live.pid), `live process ${live.pid}:\n${atop.output}`).toEqual(wireCounters(BASIC_SCENARIO));
        expect(atop.exitLine(quick.pid), `exited process ${quick.pid}`).toBeDefined();
        expect(atop.total(quick.pid), `exited process ${quick.pid}`).toEqual(wireCounters(BASIC_SCENARIO));
        expect(atop.exitLine(stepwise.pid)!.counters, 'the exit record adds what came after the last live sample').toEqual(udpExchanges(7));
        expect(atop.total(stepwise.pid)).toEqual(udpExchanges(12));
      }
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body as { netatopModule: Record<string, unknown> };
      expect(stats.netatopModule).toMatchObject({ active: true, clients: 0, requestHook: expect.stringMatching(/^(fentry|kprobe|tracepoint)$/) });
      console.log(`atop's requests noted by the ${String(stats.netatopModule['requestHook'])} on getsockopt`);
      const calls = stats.netatopModule['calls'] as Record<string, number>;
      expect(calls['probe']).toBeGreaterThanOrEqual(18); // one per sample per atop
      expect(calls['processCounters']).toBeGreaterThan(0);
    },
    120_000 * PATIENCE,
  );

  test.skipIf(skip !== null)('atop -K in a terminal shows the SNET and RNET columns filled', async () => {
    await moduleDaemon();
    const busy = await TrafficChild.start('interactive');
    killOnCleanup(busy.child);
    const session = `netacct-atop-${process.pid}`;
    execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '250', '-y', '50', `atop -K ${INTERVAL_S}`]);
    cleanups.push(() => spawnSync('tmux', ['kill-session', '-t', session]));
    let screen = '';
    let row: { rnet: number; snet: number } | null = null;
    for (let attempt = 0; attempt < 40 && !(row && row.rnet > 0 && row.snet > 0); attempt++) {
      await busy.exchange(20); // UDP traffic in every interval
      await new Promise((resolve) => setTimeout(resolve, 250));
      screen = execFileSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' });
      row = screenRow(screen, busy.pid);
    }
    expect(row, screen).not.toBeNull();
    expect(row!.snet, screen).toBeGreaterThan(0);
    expect(row!.rnet, screen).toBeGreaterThan(0);
  });

  test.skipIf(skip !== null)('getsockopt answers: exact, only the caller\'s own processes for other users, a short buffer refused', async () => {
    await moduleDaemon();
    const query = fixture('netatop-query');
    // Answers are published while an atop follows the exit file.
    const atop = AtopPrn.start(30);
    killOnCleanup(atop.child);
    await atop.waitForSamples(1);
    const mine = await TrafficChild.start('basic');
    killOnCleanup(mine.child);
    const theirs = await TrafficChild.startAsNobody('basic');
    killOnCleanup(theirs.child);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // one refresh (netatopRefreshMs 1000)

    // Another user with a raw socket: a copy of the client with the file capability CAP_NET_RAW, run as nobody.
    const rawQuery = path.join(path.dirname(tempPath('raw-query')), 'netatop-query');
    fs.copyFileSync(query, rawQuery);
    fs.chmodSync(rawQuery, 0o755);
    execFileSync('setcap', ['cap_net_raw+ep', rawQuery]);
    cleanups.push(() => fs.rmSync(path.dirname(rawQuery), { recursive: true, force: true }));
    const answer = (args: string[], asUser = false): string => {
      const [command, argv] = asUser ? asNobody(rawQuery, ...args) : [query, args];
      return execFileSync(command, argv, { encoding: 'utf8' }).trim();
    };
    const expected = (pid: number): string => `${pid} ${wireCounters(BASIC_SCENARIO).join(' ')}`;
    const withoutTime = (line: string): string => line.replace(/^(\d+) \d+ traffic /, '$1 ');
    expect(answer(['probe'])).toBe('ok');
    expect(withoutTime(answer(['process', String(mine.pid)]))).toBe(expected(mine.pid));
    expect(withoutTime(answer(['process', String(theirs.pid)]))).toBe(expected(theirs.pid));
    expect(withoutTime(answer(['process', String(theirs.pid)], true))).toBe(expected(theirs.pid));
    expect(answer(['process', String(mine.pid)], true)).toBe('error 3'); // ESRCH: as for a process the module does not know
    expect(answer(['short', String(mine.pid)])).toBe('error 22'); // EINVAL: no room for the answer
    expect(answer(['process', '999999999'])).toBe('error 3');
    expect(answer(['thread', String(mine.pid)])).toBe('error 3'); // per-thread counting is off
  });

  test.skipIf(skip !== null)('with per-thread counting on, a thread\'s counters too', async () => {
    await moduleDaemon(['--threads']);
    const atop = AtopPrn.start(30);
    killOnCleanup(atop.child);
    await atop.waitForSamples(1);
    const threaded = await TrafficChild.start('threads', '3');
    killOnCleanup(threaded.child);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const worker = threaded.announced.map((line) => line.split(' ')).find(([, name, state]) => name === 'worker-1' && state === 'live')!;
    const line = execFileSync(fixture('netatop-query'), ['thread', worker[0]!], { encoding: 'utf8' }).trim();
    const udp = (n: number): number[] => wireCounters(expectedCounters({ 'ipv4 udp send': [n, n * 100] }));
    expect(line.replace(/^(\d+) \d+ \S+ /, '$1 ')).toBe(`${worker[0]} ${udp(2).join(' ')}`);
  });

  test.skipIf(skip !== null)('where something else serves atop, or another user made the semaphore set, the daemon says so in one line and runs without it; off by a setting', async () => {
    const first = await moduleDaemon();
    expect(fs.statSync(EXIT_FILE).mode & 0o777).toBe(0o600); // every process's exits: root only (no allProcessesGroup)
    const second = await TestDaemon.start([], { netatopModule: true });
    cleanups.push(() => second.stop());
    expect(second.log).toMatch(/not serving atop before 2\.10 \(the netatop module interface\): a netatopd \(or another netacct\) holds semaphore set 1541961/);
    // Another key: the semaphore is free, the cgroup program is the first daemon's; both serve, the first answers.
    const third = await TestDaemon.start(['--netatop-semaphore-key', String(OTHER_KEY), '--netatop-exit-file', `${EXIT_FILE}.test`], { netatopModule: true });
    cleanups.push(() => third.stop());
    const stats = (await apiGet(third.apiSocketPath, '/v1/stats')).body as { netatopModule: unknown };
    expect(stats.netatopModule).toMatchObject({ active: true });
    await third.stop();
    expect(fs.existsSync(`${EXIT_FILE}.test`)).toBe(false); // nothing left behind
    await first.stop();
    expect(fs.existsSync(EXIT_FILE)).toBe(false); // the first daemon removed its file on the way out
    // A set another user created first under the key: refused, not used.
    const squatted = 424243;
    spawnSync('ipcrm', ['-S', String(squatted)]);
    const [command, argv] = asNobody(fixture('netatop-query'), 'squat', String(squatted));
    expect(execFileSync(command, argv, { encoding: 'utf8' }).trim()).toBe('created');
    cleanups.push(() => spawnSync('ipcrm', ['-S', String(squatted)]));
    const fourth = await TestDaemon.start(['--netatop-semaphore-key', String(squatted), '--netatop-exit-file', `${EXIT_FILE}.test`], { netatopModule: true });
    cleanups.push(() => fourth.stop());
    expect(fourth.log).toMatch(/not serving atop before 2\.10 .*: semaphore set 424243 belongs to uid 65534 with mode 0666, not root's alone: remove it \(ipcrm -S 424243\)/);
    expect(fs.existsSync(`${EXIT_FILE}.test`)).toBe(false);
    const off = await TestDaemon.start([]); // --no-netatop-module
    cleanups.push(() => off.stop());
    const offStats = (await apiGet(off.apiSocketPath, '/v1/stats')).body as { netatopModule: unknown };
    expect(offStats.netatopModule).toEqual({ active: false, reason: 'off (netatopModule: false)' });
  });
});

/** SNET and RNET of `pid`'s row in atop's generic process view, or null when it is not shown. */
function screenRow(screen: string, pid: number): { rnet: number; snet: number } | null {
  const lines = screen.split('\n');
  const header = lines.find((line) => /\bPID\b.*\bRNET\b.*\bSNET\b/.test(line));
  if (!header) return null;
  const names = header.trim().split(/\s+/);
  const row = lines.find((line) => line.trim().split(/\s+/)[0] === String(pid));
  if (!row) return null;
  const values = row.trim().split(/\s+/);
  const at = (name: string): number => Number(values[names.indexOf(name)]);
  return { rnet: at('RNET'), snet: at('SNET') };
}
