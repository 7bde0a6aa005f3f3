// Starting and stopping the daemon: clear one-line errors with a non-zero
// exit, a stale socket replaced, a second instance refused, and a clean exit
// on SIGTERM/SIGINT with answers in flight finished and the socket removed.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { RECORD_SIZE, decodeRecord } from '../protocol/netatop-record.js';
import { requestOnce } from './helpers/atop-reader.js';
import { NETACCT, NETACCT_FOR_OTHERS, TestDaemon } from './helpers/daemon.js';
import { NODE_FOR_OTHERS, tempPath } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

function runNetacct(args: string[], options: { asNobody?: boolean } = {}) {
  const command = options.asNobody
    ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', NODE_FOR_OTHERS, NETACCT_FOR_OTHERS, ...args]
    : [process.execPath, NETACCT, ...args];
  return spawnSync(command[0]!, command.slice(1), { encoding: 'utf8', timeout: 30_000 });
}

test('a bad option is refused with a message naming it and exit code 2', () => {
  const result = runNetacct(['daemon', '--overflow-capacity', 'lots']);
  expect(result.status).toBe(2);
  expect(result.stderr).toContain("--overflow-capacity 'lots': must be a whole number");
  const slots = runNetacct(['daemon', '--slots', '1000']);
  expect(slots.status).toBe(2);
  expect(slots.stderr).toContain("--slots '1000': must be a power of two");
  const unknown = runNetacct(['daemon', '--no-such-option']);
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain('--no-such-option');
});

test('--version prints the package version', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8'));
  expect(runNetacct(['--version']).stdout).toBe(`netacct ${manifest.version}\n`);
});

describeWithBpf('daemon lifecycle (root)', () => {
  test('without root: one clear line and exit code 1', () => {
    const socket = path.join(os.tmpdir(), `netacct-nobody-${process.pid}.sock`);
    const result = runNetacct(['daemon', '--atop-socket', socket], { asNobody: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/error netacct needs root \(or CAP_BPF and CAP_PERFMON\)/);
    expect(fs.existsSync(socket)).toBe(false);
  });

  test('a second instance on the same socket is refused; the first keeps serving', async () => {
    const first = await TestDaemon.start();
    const second = runNetacct(['daemon', '--atop-socket', first.socketPath]);
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`${first.socketPath} is served by a running process`);
    expect(first.running).toBe(true);
    await requestOnce(first.socketPath);
    expect(await first.stop()).toBe(0);
  });

  test('a stale socket left by a crash is replaced; a path that is not a socket is left alone', async () => {
    const stale = tempPath('stale');
    // A socket file nobody listens on, as a killed daemon leaves it.
    const left = spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]);
    expect(left.status).toBe(0);
    expect(fs.lstatSync(stale).isSocket()).toBe(true);
    const daemon = await TestDaemon.start(['--atop-socket', stale]);
    await requestOnce(stale);
    expect(await daemon.stop()).toBe(0);

    const regular = tempPath('regular');
    fs.writeFileSync(regular, 'precious');
    const refused = runNetacct(['daemon', '--atop-socket', regular]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`${regular} exists and is not a socket`);
    expect(fs.readFileSync(regular, 'utf8')).toBe('precious');
  });

  test('the socket is created with the configured mode', async () => {
    const daemon = await TestDaemon.start(['--atop-socket-mode', '0660']);
    expect(fs.statSync(daemon.socketPath).mode & 0o777).toBe(0o660);
    expect(await daemon.stop()).toBe(0);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal}: exit code 0 and the socket removed`, async () => {
      const daemon = await TestDaemon.start();
      expect(await daemon.stop(signal), daemon.log).toBe(0);
      expect(fs.existsSync(daemon.socketPath)).toBe(false);
      expect(daemon.log).toContain(`${signal}: shutting down`);
    });
  }

  test('SIGTERM during a large answer: the answer in flight is finished first', async () => {
    const daemon = await TestDaemon.start();
    const spawner = await TrafficChild.start('spawn', '3000');
    try {
      const socket = net.connect(daemon.socketPath);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.pause(); // read nothing yet: the answer stays in flight
      socket.write(Buffer.alloc(RECORD_SIZE));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const exited = daemon.stop('SIGTERM');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.resume();
      await new Promise((resolve) => socket.once('close', resolve));
      const answer = Buffer.concat(chunks);
      expect(answer.length % RECORD_SIZE).toBe(0);
      expect(answer.length / RECORD_SIZE).toBeGreaterThan(3000);
      expect(decodeRecord(answer, answer.length - RECORD_SIZE).id).toBe(0); // terminated
      expect(await exited).toBe(0);
    } finally {
      await spawner.finish();
    }
  });
});

test('the fixture that runs as nobody can reach node and the package', async () => {
  // Guards the "without root" test above: it must fail for the right reason.
  if (process.getuid?.() !== 0) return;
  const { stdout } = await promisify(execFile)('setpriv', [
    '--reuid=nobody', '--regid=nogroup', '--clear-groups', NODE_FOR_OTHERS, NETACCT_FOR_OTHERS, '--version',
  ]);
  expect(stdout).toMatch(/^netacct /);
});
