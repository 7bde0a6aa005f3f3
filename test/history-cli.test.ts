// `netacct history` against a real daemon whose history has 1-second
// buckets: known traffic in a cgroup of the test's own, by root and by
// nobody, read back as a table, as JSON and as CSV, with the exact counts;
// and the times people type, turned into what the API takes.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { csvLine } from '../cli/csv.js';
import { HistoryOptionError, attachOptionValues, historyRequest } from '../cli/history.js';
import { humanBytes } from '../cli/listing.js';
import { apiMoment, utcText } from '../cli/typed-time.js';
import { apiGet } from './helpers/api-client.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { netacct, runCommand } from './helpers/cli-run.js';
import { NETACCT_FOR_OTHERS, TestDaemon } from './helpers/daemon.js';
import { NOBODY_UID, asNobody, fixture, scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

describe('times as people type them', () => {
  const now = new Date(2026, 11, 7, 10, 0, 0); // local time, whatever the zone the tests run in
  const savedZone = process.env['TZ'];
  afterEach(() => {
    if (savedZone === undefined) delete process.env['TZ'];
    else process.env['TZ'] = savedZone;
  });

  test.each(['now', '-30m', '-2h', '-7d', '2026-12-07T03:00:00Z', '2026-12-07T03:00:00+05:30', '2026-12-07T03:00:00.5-08:00'])('%s goes to the API as it is', (text) => {
    expect(apiMoment(text, now)).toBe(text);
  });

  test.each([
    ['03:00', new Date(2026, 11, 7, 3, 0, 0)],
    ['03:00:30', new Date(2026, 11, 7, 3, 0, 30)],
    ['10:00', new Date(2026, 11, 7, 10, 0, 0)], // now itself is not in the future
    ['10:00:01', new Date(2026, 11, 6, 10, 0, 1)], // still to come today: yesterday's
    ['23:59', new Date(2026, 11, 6, 23, 59, 0)],
    ['2026-12-07 03:00', new Date(2026, 11, 7, 3, 0, 0)],
    ['2026-12-07T03:00:15', new Date(2026, 11, 7, 3, 0, 15)],
    ['2026-12-07', new Date(2026, 11, 7, 0, 0, 0)],
  ])('%s is local time', (text, expected) => {
    expect(apiMoment(text, now)).toBe(utcText(expected));
  });

  test("a clock time still to come on New Year's Day is the last day of the year before", () => {
    expect(apiMoment('23:00', new Date(2027, 0, 1, 1, 0, 0))).toBe(utcText(new Date(2026, 11, 31, 23, 0, 0)));
  });

  test('local forms use the time zone of the user', () => {
    process.env['TZ'] = 'Asia/Kolkata';
    expect(apiMoment('2026-12-07 03:00', now)).toBe('2026-12-06T21:30:00Z');
    process.env['TZ'] = 'America/New_York';
    expect(apiMoment('2026-12-07 03:00', now)).toBe('2026-12-07T08:00:00Z');
  });

  test.each(['', 'yesterday', '3pm', '24:00', '03:60', '03:00:60', '2026-02-30 03:00', '2026-13-01', '-2x', '-0h', '+2h', '2026-12-07T03:00:00+1'])(
    '%j is refused',
    (text) => {
      expect(apiMoment(text, now)).toBeNull();
    },
  );

  test('a value after its option is its value even with a leading dash (parseArgs would refuse "--since -2h")', () => {
    expect(attachOptionValues(['--since', '-2h', '--json', '--until', 'now', '--command', '-bash', '--csv'])).toEqual(['--since=-2h', '--json', '--until=now', '--command=-bash', '--csv']);
    expect(attachOptionValues(['--since', '--json', '--until'])).toEqual(['--since', '--json', '--until']); // missing values stay missing
  });

  test('the request: defaults, options passed under their names, a range that ends before it starts', () => {
    expect(historyRequest({})).toBe('/v1/history?from=-1h&to=now');
    expect(historyRequest({ since: '-2h', until: '-1h', by: 'unit', step: '10m', limit: '5', cgroup: '/a b' })).toBe(
      '/v1/history?from=-2h&to=-1h&by=unit&step=10m&limit=5&cgroup=%2Fa+b',
    );
    expect(() => historyRequest({ since: '-1h', until: '-2h' })).toThrow(new HistoryOptionError("--until '-2h' must be later than --since '-1h'"));
    expect(() => historyRequest({ since: 'yesterday' })).toThrow(/^--since 'yesterday': must be now, a time ago/);
  });
});

test('CSV: RFC 4180 quoting, terminal escapes shown as text, and text a spreadsheet would take for a formula made plain', () => {
  expect(csvLine(['a', 1, null, 'x,y', 'say "hi"', 'two\nlines', '\x1b]0;pwn\x07'])).toBe('a,1,,"x,y","say ""hi""",two\\x0alines,\\x1b]0;pwn\\x07\n');
  expect(csvLine(['=1+1', '+1', '-bash', '@sum', '/system.slice', -5])).toBe("'=1+1,'+1,'-bash,'@sum,/system.slice,-5\n");
});

describeWithBpf('netacct history (real daemon, 1-second buckets)', () => {
  const UNIT = 'netacct-history-test.service';
  // test/fixtures/traffic.c: "basic" as root, "loop 25" (25 TCP sends and receives of 64 bytes) as nobody.
  const ROOT_TRAFFIC = { tcp: { send: { calls: 151, bytes: 250_500 }, recv: { calls: 151, bytes: 250_500 } }, udp: { send: { calls: 31, bytes: 5000 }, recv: { calls: 31, bytes: 5000 } } };
  const NOBODY_TRAFFIC = { tcp: { send: { calls: 25, bytes: 1600 }, recv: { calls: 25, bytes: 1600 } }, udp: { send: { calls: 0, bytes: 0 }, recv: { calls: 0, bytes: 0 } } };
  /** The same, as a series step's 8 counters (calls, bytes: TCP send, TCP receive, UDP send, UDP receive). */
  const ROOT_SERIES = [151, 250_500, 151, 250_500, 31, 5000, 31, 5000];
  const NOBODY_SERIES = [25, 1600, 25, 1600, 0, 0, 0, 0];

  /** A name nobody gives its process: a formula for spreadsheets, escapes for terminals (set the window title). */
  const EVIL_NAME = '=\x1b]0;pwn\x07';
  const EVIL_TRAFFIC = { tcp: { send: { calls: 3, bytes: 192 }, recv: { calls: 3, bytes: 192 } }, udp: NOBODY_TRAFFIC.udp };

  let daemon: TestDaemon;
  let cgroup: ScratchCgroup;
  let evilCgroup: ScratchCgroup;
  let linkDir: string;
  const children: TrafficChild[] = [];
  let rootRow: string[];
  let nobodyRow: string[];

  /** Flushed at each second's end: waits (20 s at most) until the history holds these workloads of `cgroupPath`, [uid, command, counters] each. */
  async function untilHistoryHolds(cgroupPath: string, workloads: unknown[]): Promise<void> {
    const expected = JSON.stringify(workloads);
    const held = async () => {
      const { body } = await apiGet(daemon.apiSocketPath, `/v1/history?from=-10m&cgroup=${encodeURIComponent(cgroupPath)}`);
      return JSON.stringify(body.groups?.map((group: { uid: number; command: string; counters: unknown }) => [group.uid, group.command, group.counters]));
    };
    let seen = await held();
    for (const deadline = Date.now() + 20_000; seen !== expected; seen = await held()) {
      if (Date.now() > deadline) throw new Error(`the history of ${cgroupPath} did not reach ${expected} within 20 s; it holds ${seen}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  beforeAll(async () => {
    daemon = await TestDaemon.start(['--history-tiers', '1s:1h,10s:1d']);
    cgroup = ScratchCgroup.create(`history.slice/${UNIT}`);
    children.push(await TrafficChild.startIn(cgroup, 'basic'));
    children.push(await TrafficChild.startIn(cgroup, 'loop', { asNobody: true, args: ['25'] }));
    // The evil name in a cgroup of its own: the other tests see two workloads.
    evilCgroup = ScratchCgroup.create('history-names');
    linkDir = scratchDir('history-names');
    fs.symlinkSync(fixture('traffic'), path.join(linkDir, EVIL_NAME));
    children.push(await TrafficChild.startIn(evilCgroup, 'loop', { asNobody: true, args: ['3'], executable: path.join(linkDir, EVIL_NAME) }));
    await untilHistoryHolds(cgroup.relativePath, [
      [0, 'traffic', ROOT_TRAFFIC],
      [NOBODY_UID, 'traffic', NOBODY_TRAFFIC],
    ]);
    await untilHistoryHolds(evilCgroup.relativePath, [[NOBODY_UID, EVIL_NAME, EVIL_TRAFFIC]]);
    const human = (c: typeof ROOT_TRAFFIC) => [c.tcp.send, c.tcp.recv, c.udp.send, c.udp.recv].map((d) => humanBytes(d.bytes));
    rootRow = [...human(ROOT_TRAFFIC), humanBytes(511_000)];
    nobodyRow = [...human(NOBODY_TRAFFIC), humanBytes(3200)];
  });
  afterAll(async () => {
    try {
      for (const child of children) await child.finish();
    } finally {
      cgroup?.remove();
      evilCgroup?.remove();
      if (linkDir) fs.rmSync(linkDir, { recursive: true, force: true });
      await daemon?.stop();
    }
  });

  const history = (...args: string[]) => netacct('history', '--since', '-10m', '--cgroup', cgroup.relativePath, '--api-socket', daemon.apiSocketPath, ...args);
  /** The table's lines after the range line, split into cells (columns are two spaces apart at least). */
  const cells = (stdout: string): string[][] =>
    stdout
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s{2,}/));

  test('a table per workload: its command, user and unit, the bytes in human units, the range, tier and step', async () => {
    const result = await history();
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout.split('\n')[0]).toMatch(/^history \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(local time\) by workload: tier 1s, step 1s \(600 steps\)$/);
    expect(cells(result.stdout)).toEqual([
      ['COMMAND', 'UID', 'CGROUP/UNIT', 'TCP SENT', 'TCP RECV', 'UDP SENT', 'UDP RECV', 'TOTAL'],
      ['traffic', '0', UNIT, ...rootRow],
      ['traffic', String(NOBODY_UID), UNIT, ...nobodyRow],
    ]);
  });

  test('--by user, --by unit, and --limit: the groups past it in one line', async () => {
    expect(cells((await history('--by', 'user')).stdout)).toEqual([
      ['UID', 'TCP SENT', 'TCP RECV', 'UDP SENT', 'UDP RECV', 'TOTAL'],
      ['0', ...rootRow],
      [String(NOBODY_UID), ...nobodyRow],
    ]);
    expect(cells((await history('--by', 'unit')).stdout)).toEqual([
      ['UNIT', 'TCP SENT', 'TCP RECV', 'UDP SENT', 'UDP RECV', 'TOTAL'],
      [UNIT, humanBytes(250_500 + 1600), humanBytes(250_500 + 1600), humanBytes(5000), humanBytes(5000), humanBytes(511_000 + 3200)],
    ]);
    expect(cells((await history('--limit', '1')).stdout).slice(1)).toEqual([
      ['traffic', '0', UNIT, ...rootRow],
      ['(1 more)', ...nobodyRow],
    ]);
  });

  test('--json: the exact counters, per workload and in total, and the series that sums to them', async () => {
    const result = await history('--json');
    expect(result.code).toBe(0);
    const answer = JSON.parse(result.stdout);
    expect(answer).toMatchObject({ by: 'workload', tier: '1s', step: '1s', stepSeconds: 1, steps: 600, scope: 'host', rest: { groups: 0 } });
    expect(answer.groups.map(({ series, ...group }: { series: number[][] }) => ({ ...group, steps: series.length }))).toEqual([
      { cgroup: cgroup.relativePath, unit: UNIT, container: null, command: 'traffic', uid: 0, counters: ROOT_TRAFFIC, total: { bytes: 511_000, calls: 364 }, steps: 600 },
      { cgroup: cgroup.relativePath, unit: UNIT, container: null, command: 'traffic', uid: NOBODY_UID, counters: NOBODY_TRAFFIC, total: { bytes: 3200, calls: 50 }, steps: 600 },
    ]);
    const sumOf = (series: number[][]) => series.reduce((sum, step) => sum.map((value, i) => value + step[i]!), new Array<number>(8).fill(0));
    expect(answer.groups.map((group: { series: number[][] }) => sumOf(group.series))).toEqual([ROOT_SERIES, NOBODY_SERIES]);
  });

  test('--csv: a line per workload per step, whose sums are the totals', async () => {
    const result = await history('--csv', '--step', '10s');
    expect(result.code).toBe(0);
    const [header, ...lines] = result.stdout.trimEnd().split('\n').map((line) => line.split(','));
    expect(header).toEqual(['start', 'command', 'uid', 'cgroup', 'unit', 'container', ...['tcp', 'udp'].flatMap((p) => ['send', 'recv'].flatMap((d) => [`${p}_${d}_calls`, `${p}_${d}_bytes`]))]);
    const sums = new Map<string, number[]>();
    const starts = new Map<string, number[]>();
    for (const [start, command, uid, cgroupPath, unit, container, ...counters] of lines as string[][]) {
      expect([command, cgroupPath, unit, container]).toEqual(['traffic', cgroup.relativePath, UNIT, '']);
      const sum = sums.get(uid!) ?? new Array<number>(8).fill(0);
      counters.forEach((value, i) => (sum[i]! += Number(value)));
      sums.set(uid!, sum);
      starts.set(uid!, [...(starts.get(uid!) ?? []), Date.parse(start!) / 1000]);
    }
    expect(Object.fromEntries(sums)).toEqual({ 0: ROOT_SERIES, [NOBODY_UID]: NOBODY_SERIES });
    for (const times of starts.values()) {
      // 10 minutes in 10-second steps, each 10 s after the one before; 61 when the range does not start on a step.
      expect([60, 61]).toContain(times.length);
      times.forEach((time, i) => expect(time).toBe(times[0]! + 10 * i));
      expect(times[0]! % 10).toBe(0);
    }
  });

  test('a clock time and a local date and time reach the API as the moments they name', async () => {
    const fiveMinutesAgo = new Date(Math.floor(Date.now() / 1000) * 1000 - 5 * 60_000);
    const two = (n: number) => String(n).padStart(2, '0');
    const clock = `${two(fiveMinutesAgo.getHours())}:${two(fiveMinutesAgo.getMinutes())}:${two(fiveMinutesAgo.getSeconds())}`;
    const dated = `${fiveMinutesAgo.getFullYear()}-${two(fiveMinutesAgo.getMonth() + 1)}-${two(fiveMinutesAgo.getDate())} ${clock}`;
    for (const since of [clock, dated]) {
      const answer = JSON.parse((await netacct('history', '--json', '--since', since, '--cgroup', cgroup.relativePath, '--api-socket', daemon.apiSocketPath)).stdout);
      expect(answer.from).toBe(fiveMinutesAgo.toISOString());
      expect(answer.groups.map((group: { total: unknown }) => group.total)).toEqual([
        { bytes: 511_000, calls: 364 },
        { bytes: 3200, calls: 50 },
      ]);
    }
  });

  test('a name chosen by a user: escaped in the table and the CSV, a formula made plain in the CSV, exact in JSON', async () => {
    const inEvilCgroup = (...args: string[]) => netacct('history', '--since', '-10m', '--cgroup', evilCgroup.relativePath, '--api-socket', daemon.apiSocketPath, ...args);
    const table = await inEvilCgroup();
    expect(table.code).toBe(0);
    expect(table.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/); // nothing a terminal acts on (but the line feeds)
    expect(cells(table.stdout)[1]).toEqual(['=\\x1b]0;pwn\\x07', String(NOBODY_UID), evilCgroup.relativePath, '192B', '192B', '0B', '0B', '384B']);
    const csv = await inEvilCgroup('--csv', '--step', '10m');
    expect(csv.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    expect(csv.stdout.split('\n').slice(1, -1).map((line) => line.split(',').slice(1, 3))).toContainEqual(["'=\\x1b]0;pwn\\x07", String(NOBODY_UID)]);
    expect(JSON.parse((await inEvilCgroup('--json')).stdout).groups[0].command).toBe(EVIL_NAME);
  });

  test('bad values: one line naming the option, exit status 2', async () => {
    const since = await history('--since', 'yesterday');
    expect(since.code).toBe(2);
    expect(since.stderr).toMatch(/^netacct: --since 'yesterday': must be now, a time ago such as -30m, -2h or -7d, [^\n]*\n$/);
    const step = await history('--step', '7x');
    expect(step).toMatchObject({ code: 2, stdout: '', stderr: `netacct: invalid parameter 'step': must be a duration such as "1m", "10m", "1h" or "1d"\n` });
    const both = await history('--json', '--csv');
    expect(both).toMatchObject({ code: 2, stderr: 'netacct: --json and --csv: one or the other\n' });
  });

  test('as nobody: its own workload only, said in the range line', async () => {
    const asNobodyRun = (...args: string[]) => runCommand(...asNobody(NETACCT_FOR_OTHERS, 'history', '--since', '-10m', '--api-socket', daemon.apiSocketPath, ...args));
    const table = await asNobodyRun('--cgroup', cgroup.relativePath);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/, your own workloads only$/);
    expect(cells(table.stdout).slice(1)).toEqual([['traffic', String(NOBODY_UID), UNIT, ...nobodyRow]]);
    // Nor anyone else's anywhere: every workload it is shown, in any cgroup, is its own.
    const everywhere = JSON.parse((await asNobodyRun('--json', '--limit', '1000')).stdout);
    expect(everywhere.scope).toBe('own');
    expect(everywhere.groups.length).toBeGreaterThan(0);
    expect(everywhere.groups.every((group: { uid: number }) => group.uid === NOBODY_UID)).toBe(true);
  });
});

describeWithBpf('netacct history (real daemon, no history)', () => {
  test("the API's 404 as one line, exit status 1", async () => {
    const daemon = await TestDaemon.start(['--no-history']);
    try {
      const result = await netacct('history', '--api-socket', daemon.apiSocketPath);
      expect(result).toMatchObject({ code: 1, stdout: '', stderr: 'netacct: history is off: the daemon runs with --no-history (config `history`)\n' });
    } finally {
      await daemon.stop();
    }
  });
});
