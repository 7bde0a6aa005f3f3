// Full maps: what cannot be recorded is counted in the kernel and logged,
// nothing crashes, and no count goes to another process.
import { expect, test } from 'vitest';
import { requestOnce } from './helpers/atop-reader.js';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

describeWithBpf('full maps (real daemon, real BPF)', () => {
  test('a full overflow map and a full exited map are counted and logged; the daemon goes on', async () => {
    // One slot for the whole machine, room for 2 overflow entries and 1 exit record.
    const daemon = await TestDaemon.start(['--slots', '1', '--overflow-capacity', '2', '--exited-capacity', '1']);
    try {
      const children = await Promise.all([1, 2, 3, 4].map(() => TrafficChild.start('basic')));
      await daemon.waitForLog(/kernel: overflow map full, \d+ events not counted \(raise --overflow-capacity\)/, 5000);
      await Promise.all(children.map((c) => c.finish()));
      await daemon.waitForLog(/kernel: exited map full, \d+ exits not recorded/, 5000);
      await requestOnce(daemon.socketPath);
      expect(daemon.running).toBe(true);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
