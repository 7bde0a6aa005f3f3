// Counters survive a daemon restart, and counting never stops for one: the
// maps and the programs' links are pinned under bpffs. Traffic made while no
// daemon runs (after a stop, a SIGKILL) and while one daemon replaces
// another is counted exactly once; a process that exited meanwhile is served
// with its last counters; `netacct detach` stops counting; pinned maps that
// do not match the daemon are discarded with a log line, never read as
// garbage.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { LAYOUT_VERSION } from '../daemon/kernel/layout.js';
import { requestOnce } from './helpers/atop-reader.js';
import { NETACCT, TestDaemon, removePinDir, scratchPinDir } from './helpers/daemon.js';
import { scratchDir } from './helpers/fixtures.js';
import { BASIC_SCENARIO, expectedCounters, wireCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

/** `netacct ARGS`: exit status and output. */
function runNetacct(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NETACCT, args, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }));
  });
}

const udp = (calls: number): number[] =>
  wireCounters(expectedCounters({ 'ipv4 udp send': [calls, calls * 100], 'ipv4 udp recv': [calls, calls * 100] }));

describeWithBpf('restarts with pinned maps (real daemon, real BPF)', () => {
  for (const stop of ['SIGTERM', 'SIGKILL'] as const) {
    test(`stopped with ${stop}: traffic made while no daemon runs is counted, once; a process that exited meanwhile is served with its last counters`, async () => {
      const pinDir = scratchPinDir();
      const first = await TestDaemon.start(['--pin-dir', pinDir]);
      const staying = await TrafficChild.start('interactive');
      try {
        await staying.exchange(5);
        expect((await requestOnce(first.socketPath)).get(staying.pid)?.counters).toEqual(udp(5));
        await first.stop(stop);
        expect(fs.existsSync(path.join(pinDir, `v${LAYOUT_VERSION}`, 'slots'))).toBe(true);

        await staying.exchange(3); // while no daemon runs
        const leaving = await TrafficChild.start('basic');
        await leaving.finish(); // starts, counts and exits while no daemon runs
        const second = await TestDaemon.start(['--pin-dir', pinDir]);
        try {
          expect(second.log).toContain('took over counting from the programs left attached');
          await staying.exchange(2);
          const answer = await requestOnce(second.socketPath);
          expect(answer.get(staying.pid)?.counters).toEqual(udp(10)); // 5 before, 3 while stopped, 2 after
          expect(answer.get(leaving.pid)?.counters).toEqual(wireCounters(BASIC_SCENARIO));
        } finally {
          expect(await second.stop()).toBe(0);
        }
      } finally {
        await staying.finish();
        removePinDir(pinDir);
      }
    });
  }

  test('a daemon replaced by another (another object file) while traffic flows: every call counted exactly once', async () => {
    const pinDir = scratchPinDir();
    const otherObject = path.join(scratchDir('object'), 'netacct.bpf.o');
    fs.copyFileSync(path.join(import.meta.dirname, '..', 'bpf', 'netacct.bpf.o'), otherObject);
    let daemon = await TestDaemon.start(['--pin-dir', pinDir]);
    // 10 TCP exchanges of 64 bytes every millisecond for 3 s: 30,000 each way.
    const child = TrafficChild.launch('rate', '20000', '3');
    try {
      for (const next of [['--bpf-object', otherObject], [], ['--bpf-object', otherObject]]) {
        await new Promise((resolve) => setTimeout(resolve, 400));
        await daemon.stop(next.length > 0 ? 'SIGTERM' : 'SIGKILL');
        daemon = await TestDaemon.start(['--pin-dir', pinDir, ...next]);
      }
      await child.expectLine('ready');
      const calls = 30_000;
      expect((await requestOnce(daemon.socketPath)).get(child.pid)?.counters).toEqual(
        wireCounters(expectedCounters({ 'ipv4 tcp send': [calls, calls * 64], 'ipv4 tcp recv': [calls, calls * 64] })),
      );
    } finally {
      await child.finish();
      await daemon.stop();
      removePinDir(pinDir);
    }
  });

  test('netacct detach (daemon stopped) stops counting; refused while a daemon runs; the counters stay', async () => {
    const pinDir = scratchPinDir();
    const first = await TestDaemon.start(['--pin-dir', pinDir]);
    const child = await TrafficChild.start('interactive');
    try {
      await child.exchange(4);
      const refused = await runNetacct(['detach', '--pin-dir', pinDir]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain(`another netacct daemon is using the pin directory ${pinDir}`);
      expect(await first.stop()).toBe(0);

      const detached = await runNetacct(['detach', '--pin-dir', pinDir]);
      expect(detached.stdout).toContain(`netacct: detached the programs pinned in ${pinDir}`);
      expect(fs.existsSync(path.join(pinDir, `v${LAYOUT_VERSION}`, 'links'))).toBe(false);
      await child.exchange(3); // not counted: nothing attached, no daemon
      const second = await TestDaemon.start(['--pin-dir', pinDir]);
      try {
        expect(second.log).not.toContain('took over counting');
        await child.exchange(1);
        expect((await requestOnce(second.socketPath)).get(child.pid)?.counters).toEqual(udp(5));
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      await child.finish();
      removePinDir(pinDir);
    }
  });

  test('pinned maps that do not match (another capacity, an older layout) are discarded with a clear line', async () => {
    const pinDir = scratchPinDir();
    const first = await TestDaemon.start(['--pin-dir', pinDir]);
    const child = await TrafficChild.start('interactive');
    try {
      await child.exchange(4);
      expect((await requestOnce(first.socketPath)).get(child.pid)?.counters).toEqual(udp(4));
      expect(await first.stop()).toBe(0);
      fs.mkdirSync(path.join(pinDir, 'v0')); // what an older netacct would have left

      const second = await TestDaemon.start(['--pin-dir', pinDir, '--slots', '4096']);
      try {
        expect(second.log).toContain(`removing pinned maps of layout v0 in ${pinDir}`);
        expect(second.log).toMatch(
          /pinned maps in \S+\/v\d+ do not match this daemon \(owners: capacity 32768, this daemon needs 4096.*\): discarding them, counters start from zero/,
        );
        await child.exchange(1);
        expect((await requestOnce(second.socketPath)).get(child.pid)?.counters).toEqual(udp(1));
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      await child.finish();
      removePinDir(pinDir);
    }
  });
});
