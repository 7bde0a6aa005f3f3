// The configuration file: validated strictly, one line naming the bad key or
// value and no half-configured start; flags override it; SIGHUP reloads what
// can change at run time, names what needs a restart, and keeps the running
// configuration whole when the new file is bad.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { nodeVersionProblem, requiredNodeRange, runtimeSupportProblem } from '../daemon/common/node-version.js';
import { requestOnce } from './helpers/atop-reader.js';
import { NETACCT, TestDaemon } from './helpers/daemon.js';
import { tempPath } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

function configFile(content: unknown): string {
  const file = path.join(path.dirname(tempPath('config')), 'config.json');
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function startWith(config: string, ...args: string[]) {
  const socket = tempPath('atop');
  const result = spawnSync(NETACCT, ['daemon', '--config', config, '--atop-socket', socket, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { ...result, socket };
}

test.each([
  [{ slot: 4096 }, "unknown key 'slot'"],
  [{ slots: 1000 }, 'slots: must be a power of two'],
  [{ atopSocketMode: 'rw-rw-rw-' }, 'atopSocketMode: must be an octal mode such as "0660"'],
  [{ exitedRetentionMs: -1 }, 'exitedRetentionMs: Too small'],
  [{ listen: '9817' }, 'listen: must be host:port, such as "127.0.0.1:9817" or "[::1]:9817"'],
  [{ listen: '127.0.0.1:70000' }, 'listen: the port must be 0 to 65535'],
  [{ metricsTopProcesses: 5000 }, "metricsTopProcesses: Too big: expected number to be <=1000"],
  [{ threads: 'yes' }, 'threads: Invalid input: expected boolean, received string'],
  [{ historyTiers: [{ bucket: '1m', keep: '2 days' }] }, 'historyTiers.0.keep: must be a duration such as "90s", "10m", "48h", "31d", "13mo" or "5y"'],
  [{ historyTiers: [{ bucket: '1m', keep: '48h' }, { bucket: '90s', keep: '31d' }] }, "historyTiers.1.bucket: must be a whole multiple of the tier before's (1m), and longer"],
  [{ historyTiers: [{ bucket: '1m', keep: '48h' }, { bucket: '10m', keep: '1h' }] }, "historyTiers.1.keep: must be longer than the tier before's (48h)"],
  [{ historyTiers: [] }, 'historyTiers: Too small'],
  [{ historyTiers: [{ bucket: '1m', keep: '12h' }, { bucket: '1d', keep: '1y' }] }, "historyTiers.0.keep: must be at least two of the next tier's buckets (1d), which are summed from these rows"],
  [{ historyFile: 'history.db' }, 'historyFile: must be an absolute path'],
  ['{"slots": ', 'not valid JSON'],
])('a bad configuration file %j: one line naming it, exit code 2, nothing started', (content, message) => {
  const file = configFile(content);
  const result = startWith(file);
  expect(result.status).toBe(2);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).toContain(`config ${file}: ${message}`);
  expect(fs.existsSync(result.socket)).toBe(false);
});

test('a configuration file given with --config must exist', () => {
  const result = startWith('/nonexistent/netacct.json');
  expect(result.status).toBe(2);
  expect(result.stderr).toContain('config /nonexistent/netacct.json: ENOENT');
});

describeWithBpf('configuration at run time (real daemon)', () => {
  test('the file sets the socket mode, a flag overrides the file', async () => {
    const file = configFile({ atopSocketMode: '0640', exitedRetentionMs: 5 });
    const fromFile = await TestDaemon.start(['--config', file]);
    expect(fs.statSync(fromFile.socketPath).mode & 0o777).toBe(0o640);
    expect(await fromFile.stop()).toBe(0);
    const overridden = await TestDaemon.start(['--config', file, '--atop-socket-mode', '0600']);
    expect(fs.statSync(overridden.socketPath).mode & 0o777).toBe(0o600);
    expect(await overridden.stop()).toBe(0);
  });

  test('SIGHUP applies a new file, names restart-only changes, and keeps everything when the file is bad', async () => {
    const file = configFile({ atopSocketMode: '0640' });
    const daemon = await TestDaemon.start(['--config', file]);
    try {
      fs.writeFileSync(file, JSON.stringify({ atopSocketMode: '0600', slots: 4096, verbose: true }));
      daemon.child.kill('SIGHUP');
      await daemon.waitForLog(/SIGHUP: configuration reloaded/);
      expect(fs.statSync(daemon.socketPath).mode & 0o777).toBe(0o600);
      expect(daemon.log).toContain('SIGHUP: slots changes only on restart; still 32768');

      fs.writeFileSync(file, JSON.stringify({ atopSocketMode: '0666', slot: 1 }));
      daemon.child.kill('SIGHUP');
      await daemon.waitForLog(/unknown key 'slot'; keeping the running configuration/);
      expect(fs.statSync(daemon.socketPath).mode & 0o777).toBe(0o600);
      await requestOnce(daemon.socketPath);
      expect(daemon.running).toBe(true);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});

test('the Node.js version check: engines.node of package.json against the running version', () => {
  expect(requiredNodeRange()).toBe('>=26.12.1');
  // The tests run on the runtime the packages carry: the pinned node-linux-* package's.
  expect(process.versions.node).toBe('26.12.1');
  expect(nodeVersionProblem(process.versions.node, requiredNodeRange())).toBeNull();
  expect(nodeVersionProblem('18.19.0', '>=20.19')).toBe('netacct needs Node.js >=20.19, this is 18.19.0');
  expect(nodeVersionProblem('20.18.3', '>=20.19')).toMatch(/needs Node.js >=20.19/);
  expect(nodeVersionProblem('20.19.0', '>=20.19')).toBeNull();
  expect(nodeVersionProblem('22.1.0', '>=20.19')).toBeNull();
  expect(nodeVersionProblem('26.12.0', '>=26.12.1')).toMatch(/needs Node.js >=26.12.1, this is 26.12.0/);
});

test('the package build refuses a runtime that is not LTS or within a year of its end of life', () => {
  const on = (day: string): Date => new Date(`${day}T12:00:00Z`);
  expect(runtimeSupportProblem('26.12.1', on('2026-12-07'))).toBeNull();
  expect(runtimeSupportProblem('v24.11.0', on('2026-12-07'))).toBeNull();
  expect(runtimeSupportProblem('22.21.0', on('2026-12-07'))).toBe(
    'Node.js 22.21.0 reaches its end of life on 2027-04-30, in 143 days: carry a release with at least 365 days of support left',
  );
  expect(runtimeSupportProblem('20.20.2', on('2026-12-07'))).toBe(
    'Node.js 20.20.2 reached its end of life on 2026-04-30: carry a release with at least 365 days of support left',
  );
  expect(runtimeSupportProblem('25.2.0', on('2026-12-07'))).toMatch(/^Node.js 25.2.0 is not a known LTS line \(20, 22, 24, 26\)/);
  expect(runtimeSupportProblem('26.12.1', on('2028-04-30'))).toMatch(/in 364 days/);
  expect(runtimeSupportProblem('26.12.1', on('2028-04-29'))).toBeNull();
});
