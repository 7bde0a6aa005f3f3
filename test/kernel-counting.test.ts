// The BPF programs against the real kernel: every counter of processes that
// made known traffic, exactly, through the same KernelCounters the daemon uses.
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { KernelCounters, type ProcSample } from '../daemon/kernel-counters.js';
import { ProcessTable } from '../daemon/process-table.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { BASIC_SCENARIO, expectedCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const OBJECT = path.join(import.meta.dirname, '..', 'bpf', 'netacct.bpf.o');

describeWithBpf('kernel counting (real BPF)', () => {
  let kernel: KernelCounters;
  beforeAll(() => {
    kernel = KernelCounters.open({ objectPath: OBJECT, movedCapacity: 1024, exitedCapacity: 4096 });
  });
  afterAll(() => kernel?.close());

  const live = (pid: number): ProcSample | undefined => kernel.readLive().find((s) => s.tgid === pid);
  /** Exit records accumulate across drains; keep them all for lookups. */
  const exitedSeen: ProcSample[] = [];
  const exited = (pid: number): ProcSample | undefined => {
    exitedSeen.push(...kernel.drainExited());
    return exitedSeen.find((s) => s.tgid === pid);
  };

  test('TCP and UDP over IPv4 and IPv6, exact; EAGAIN, MSG_PEEK, EOF, failed and empty calls not counted', async () => {
    const child = await TrafficChild.start('basic');
    const sample = live(child.pid);
    expect(sample?.comm).toBe('traffic');
    expect(sample?.uid).toBe(0);
    expect(Array.from(sample!.counters)).toEqual(BASIC_SCENARIO);
    await child.finish();
    // After the exit the same counters come from the exit program, and the
    // process is no longer listed as live.
    expect(Array.from(exited(child.pid)!.counters)).toEqual(BASIC_SCENARIO);
    expect(live(child.pid)).toBeUndefined();
  });

  test('MPTCP counts as TCP', async () => {
    const child = await TrafficChild.start('mptcp');
    expect(Array.from(live(child.pid)!.counters)).toEqual(
      expectedCounters({ 'ipv4 tcp send': [10, 7000], 'ipv4 tcp recv': [10, 7000] }),
    );
    await child.finish();
  });

  test('UDP-Lite counts as UDP', async () => {
    const child = await TrafficChild.start('udplite');
    expect(Array.from(live(child.pid)!.counters)).toEqual(
      expectedCounters({ 'ipv4 udp send': [7, 2100], 'ipv4 udp recv': [7, 2100] }),
    );
    await child.finish();
  });

  test('other protocols (raw ICMP) are ignored', async () => {
    const child = await TrafficChild.start('raw');
    expect(live(child.pid)).toBeUndefined(); // never counted, so no storage at all
    await child.finish();
  });

  test('a process that moves between cgroups keeps each cgroup its own counts', async () => {
    const first = ScratchCgroup.create('first');
    const second = ScratchCgroup.create('second');
    const child = await TrafficChild.start('interactive');
    try {
      first.add(child.pid);
      await child.exchange(5);
      second.add(child.pid);
      await child.exchange(3);

      const now = live(child.pid)!;
      expect(now.cgroupId).toBe(second.id);
      expect(Array.from(now.counters)).toEqual(
        expectedCounters({ 'ipv4 udp send': [3, 300], 'ipv4 udp recv': [3, 300] }),
      );
      const moved = kernel.readMoved().filter((m) => m.tgid === child.pid);
      expect(moved.map((m) => m.cgroupId)).toEqual([first.id]);
      expect(Array.from(moved[0]!.counters)).toEqual(
        expectedCounters({ 'ipv4 udp send': [5, 500], 'ipv4 udp recv': [5, 500] }),
      );

      // The table adds them up per process, and after the exit it still has
      // both parts and frees the kernel's moved entry.
      await child.finish();
      const table = new ProcessTable({ exitedRetentionMs: 0, maxExited: 100 });
      const finished = table.apply(
        { exited: [exited(child.pid)!], moved: kernel.readMoved(), live: null },
        Date.now(),
      );
      kernel.deleteMoved(finished);
      const entry = table.exitedAfter(0).find((e) => e.tgid === child.pid)!;
      expect(Array.from(entry.total)).toEqual(
        expectedCounters({ 'ipv4 udp send': [8, 800], 'ipv4 udp recv': [8, 800] }),
      );
      expect(Array.from(entry.moved.keys())).toEqual([first.id]);
      expect(kernel.readMoved().filter((m) => m.tgid === child.pid)).toEqual([]);
    } finally {
      await child.finish();
      first.remove();
      second.remove();
    }
  });

  test('nothing was dropped', () => {
    expect(kernel.readStats()).toEqual({ droppedNoStorage: 0, movedFull: 0, exitedFull: 0 });
  });
});
