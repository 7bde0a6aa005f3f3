// Counters survive a daemon restart: the maps are pinned under bpffs. A
// process that exited while no daemon ran is retired with its last counters,
// and pinned maps that do not match the daemon are discarded with a log line,
// never read as garbage.
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { LAYOUT_VERSION } from '../daemon/kernel/layout.js';
import { requestOnce } from './helpers/atop-reader.js';
import { TestDaemon, removePinDir, scratchPinDir } from './helpers/daemon.js';
import { BASIC_SCENARIO, expectedCounters, wireCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const udp = (calls: number): number[] =>
  wireCounters(expectedCounters({ 'ipv4 udp send': [calls, calls * 100], 'ipv4 udp recv': [calls, calls * 100] }));

describeWithBpf('restarts with pinned maps (real daemon, real BPF)', () => {
  test('counters survive a restart; a process that exited meanwhile is served with its last counters', async () => {
    const pinDir = scratchPinDir();
    const first = await TestDaemon.start(['--pin-dir', pinDir]);
    const staying = await TrafficChild.start('interactive');
    const leaving = await TrafficChild.start('basic');
    try {
      await staying.exchange(5);
      expect((await requestOnce(first.socketPath)).get(staying.pid)?.counters).toEqual(udp(5));
      expect(await first.stop()).toBe(0);
      expect(fs.existsSync(path.join(pinDir, `v${LAYOUT_VERSION}`, 'slots'))).toBe(true);

      await leaving.finish(); // exits while no daemon runs
      const second = await TestDaemon.start(['--pin-dir', pinDir]);
      try {
        expect(second.log).toMatch(/\d+ processes counted in the pinned maps exited while no daemon ran/);
        await staying.exchange(2);
        const answer = await requestOnce(second.socketPath);
        expect(answer.get(staying.pid)?.counters).toEqual(udp(7)); // 5 before the restart, 2 after
        expect(answer.get(leaving.pid)?.counters).toEqual(wireCounters(BASIC_SCENARIO));
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      await staying.finish();
      await leaving.finish();
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
