// The listing commands against a real daemon: tables for people, --json for
// scripts, clear messages when the daemon cannot be reached.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { humanBytes } from '../cli/listing.js';
import { netacct } from './helpers/cli-run.js';
import { NETACCT_FOR_OTHERS, TestDaemon } from './helpers/daemon.js';
import { asNobody } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

test.each([
  [0, '0B'],
  [1023, '1023B'],
  [1536, '1.5K'],
  [250_500, '245K'],
  [5 * 1024 ** 3, '5.0G'],
])('humanBytes(%d) = %s', (bytes, text) => {
  expect(humanBytes(bytes)).toBe(text);
});

test('without a daemon: one clear line and exit code 1', async () => {
  const result = await netacct('ps', '--api-socket', '/nonexistent/api.sock');
  expect(result.code).toBe(1);
  expect(result.stderr).toBe(
    'netacct: the netacct daemon is not running (nothing listens on /nonexistent/api.sock); start it with: sudo netacct daemon\n',
  );
});

describeWithBpf('netacct ps, cgroups, stats (real daemon)', () => {
  let daemon: TestDaemon;
  let child: TrafficChild;
  beforeAll(async () => {
    daemon = await TestDaemon.start(['--api-socket-mode', '0600']);
    child = await TrafficChild.start('basic');
  });
  afterAll(async () => {
    await child?.finish();
    if (daemon) await daemon.stop();
  });

  test('ps: a table with human units, and --json with the exact counters', async () => {
    const table = await netacct('ps', '--pid', String(child.pid), '--api-socket', daemon.apiSocketPath);
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header!.split(/\s+/)).toEqual(['PID', 'COMMAND', 'UID', 'STATE', 'CONTAINER', 'TCP', 'SENT', 'TCP', 'RECV', 'UDP', 'SENT', 'UDP', 'RECV']);
    expect(row!.split(/\s+/)).toEqual([String(child.pid), 'traffic', '0', 'live', '-', '245K', '245K', '4.9K', '4.9K']);

    const json = await netacct('ps', '--json', '--pid', String(child.pid), '--api-socket', daemon.apiSocketPath);
    const [process] = JSON.parse(json.stdout).processes;
    expect(process.counters.tcp.send).toEqual({ calls: 151, bytes: 250_500 });
    expect(process.counters.udp.recv).toEqual({ calls: 31, bytes: 5000 });
  });

  test('cgroups and stats, as tables and as JSON', async () => {
    const cgroups = await netacct('cgroups', '--json', '--api-socket', daemon.apiSocketPath);
    expect(JSON.parse(cgroups.stdout).cgroups.length).toBeGreaterThan(0);
    expect((await netacct('cgroups', '--api-socket', daemon.apiSocketPath)).stdout).toMatch(/^CGROUP\s+UNIT\s+CONTAINER/);
    const stats = await netacct('stats', '--api-socket', daemon.apiSocketPath);
    expect(stats.stdout).toMatch(/^netacct \S+, up \d+ s\n/);
    expect(stats.stdout).toContain('clients: 0 atop, 1 API (0 streams)'); // the CLI itself
    expect(stats.stdout).toContain('8 BPF programs attached'); // send, recv, splice in and out, exit, exec, cgroup moves, iterator
    expect(stats.stdout).toMatch(/maps: slots \d+\/32768, overflow \d+\/16384\n/);
    expect(JSON.parse((await netacct('stats', '--json', '--api-socket', daemon.apiSocketPath)).stdout).kernel.slots).toBe(32768);
  });

  test('a bad option value is the API 400, named, exit code 2', async () => {
    const result = await netacct('ps', '--limit', 'many', '--api-socket', daemon.apiSocketPath);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("netacct: invalid parameter 'limit': must be a whole number\n");
  });

  test('a socket the user may not open: one clear line', async () => {
    const [command, args] = asNobody(NETACCT_FOR_OTHERS, 'ps', '--api-socket', daemon.apiSocketPath);
    const result = await promisify(execFile)(command, args).catch((err: { code: number; stderr: string }) => err);
    expect((result as { code: number }).code).toBe(1);
    expect((result as { stderr: string }).stderr).toContain(`no permission to connect to ${daemon.apiSocketPath}`);
  });
});
