// Full maps: no call is ever lost. Where a process's calls find neither its
// slot nor an overflow entry, they count in its (user, cgroup) row, so that
// every cgroup's sum stays exact; what degrades is logged; nothing crashes.
import { expect, test } from 'vitest';
import { requestOnce } from './helpers/atop-reader.js';
import { apiGet } from './helpers/api-client.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { TestDaemon } from './helpers/daemon.js';
import { type ApiCounters, BASIC_SCENARIO_API, addApiCounters, apiCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

/** The `churn` scenario's processes each send one datagram of 10 bytes. */
const churnCounters = (processes: number): ApiCounters => apiCounters({ 'ipv4 udp send': [processes, processes * 10] });

async function cgroupCounters(daemon: TestDaemon, group: ScratchCgroup): Promise<ApiCounters | undefined> {
  const { body } = await apiGet(daemon.apiSocketPath, '/v1/cgroups');
  return body.cgroups.find((row: { id: number }) => row.id === group.id)?.counters;
}

describeWithBpf('full maps (real daemon, real BPF)', () => {
  test('a full overflow map and a full exited map: every call still counted in its cgroup, logged; the daemon goes on', async () => {
    // One slot for the whole machine, room for 2 overflow entries and 1 exit record.
    const daemon = await TestDaemon.start(['--slots', '1', '--overflow-capacity', '2', '--exited-capacity', '1']);
    const group = ScratchCgroup.create('map-full');
    const children: TrafficChild[] = [];
    const four = addApiCounters([BASIC_SCENARIO_API, BASIC_SCENARIO_API, BASIC_SCENARIO_API, BASIC_SCENARIO_API]);
    try {
      for (let i = 0; i < 4; i++) children.push(await TrafficChild.startIn(group, 'basic'));
      await daemon.waitForLog(/kernel: overflow map full, \d+ calls counted per user and cgroup only/, 5000);
      expect(await cgroupCounters(daemon, group)).toEqual(four);
      await Promise.all(children.map((c) => c.finish()));
      await daemon.waitForLog(/kernel: exited map full, \d+ exits not recorded/, 5000);
      await requestOnce(daemon.socketPath);
      expect(await cgroupCounters(daemon, group)).toEqual(four);
      const { body } = await apiGet(daemon.apiSocketPath, '/v1/stats');
      expect(body.kernel.unattributed).toBeGreaterThan(0);
      expect(body.kernel.lost).toBe(0);
      expect(daemon.running).toBe(true);
    } finally {
      await Promise.all(children.map((c) => c.finish()));
      group.remove();
      expect(await daemon.stop()).toBe(0);
    }
  });

  test("nobody churning 50,000 processes cannot hide one call, and root's traffic meanwhile stays exact", async () => {
    const PROCESSES = 50_000;
    // Few slots and a small overflow map: under this churn most processes find their slot still held by
    // an exited one (PIDs wrap around 1,024 slots every few hundred ms), and the overflow map full.
    const daemon = await TestDaemon.start(['--slots', '1024', '--overflow-capacity', '64']);
    const churnGroup = ScratchCgroup.create('churn-nobody');
    const rootGroup = ScratchCgroup.create('churn-root');
    const root: TrafficChild[] = [];
    try {
      const churn = await TrafficChild.startIn(churnGroup, 'churn', { asNobody: true, args: [String(PROCESSES)] });
      for (let i = 0; i < 5; i++) root.push(await TrafficChild.startIn(rootGroup, 'basic'));
      await churn.finish();
      const rootSum = addApiCounters(root.map(() => BASIC_SCENARIO_API));
      expect(await cgroupCounters(daemon, churnGroup)).toEqual(churnCounters(PROCESSES));
      expect(await cgroupCounters(daemon, rootGroup)).toEqual(rootSum);
      // nobody's share of the overflow map leaves root's processes their rows.
      for (const child of root) {
        expect((await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`)).body.counters, `root's process ${child.pid}`).toEqual(BASIC_SCENARIO_API);
      }
      await Promise.all(root.map((c) => c.finish()));
      await new Promise((resolve) => setTimeout(resolve, 1500)); // exits drained, slots freed, the processes forgotten
      expect(await cgroupCounters(daemon, churnGroup)).toEqual(churnCounters(PROCESSES));
      expect(await cgroupCounters(daemon, rootGroup)).toEqual(rootSum);
      const { body } = await apiGet(daemon.apiSocketPath, '/v1/stats');
      console.log(`${PROCESSES} processes of nobody: ${body.kernel.unattributed} calls counted per (user, cgroup) only, ${body.kernel.lost} lost`);
      expect(body.kernel.unattributed).toBeGreaterThan(0);
      expect(body.kernel.lost).toBe(0);
    } finally {
      await Promise.all(root.map((c) => c.finish()));
      churnGroup.remove();
      rootGroup.remove();
      await daemon.stop();
    }
  });
});
