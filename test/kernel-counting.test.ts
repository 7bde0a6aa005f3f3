// The BPF programs against the real kernel: every counter of processes that
// made known traffic, exactly, read through the same KernelCounters,
// Collector and ProcessTable the daemon uses.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Collector } from '../daemon/accounting/collector.js';
import { KernelCounters } from '../daemon/kernel/kernel-counters.js';
import type { Logger } from '../daemon/common/log.js';
import { type ProcessEntry, ProcessTable, countersByCgroup } from '../daemon/accounting/process-table.js';
import { Direction, Family, HOST_UID, Kind, Protocol, counterIndex } from '../daemon/kernel/layout.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { testAttachMode } from './helpers/daemon.js';
import { liveOf } from './helpers/live.js';
import { BASIC_SCENARIO, expectedCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';
import { PeerTable, processKey } from '../daemon/accounting/peer-table.js';
import { ThreadTable } from '../daemon/accounting/thread-table.js';
import { NOBODY_UID } from './helpers/fixtures.js';

const OBJECT = path.join(import.meta.dirname, '..', 'bpf', 'netacct.bpf.o');

interface CountingOptions {
  overflowCapacity?: number;
  exitedCapacity?: number;
  threadCapacity?: number;
  peerCapacity?: number;
  unattributedCapacity?: number;
  /** How often reads run the task iterator (0: every read, as minutes of the daemon's reads would). */
  liveInfoIntervalMs?: number;
}

/** The daemon's reading path on its own BPF object, with `slots` process slots. */
class Counting {
  readonly kernel: KernelCounters;
  readonly table = new ProcessTable({ exitedRetentionMs: 3_600_000, maxExited: 100_000, slotSettleMs: 0, rateIntervalMs: 1000 });
  readonly warnings: string[] = [];
  readonly collector: Collector;
  readonly log: Logger = { error: (m) => this.warnings.push(m), warn: (m) => this.warnings.push(m), info() {}, debug() {} };

  constructor(slots: number, options: CountingOptions = {}) {
    const attachMode = testAttachMode();
    this.kernel = KernelCounters.open({
      pinDir: null,
      objectPath: OBJECT,
      slots,
      overflowCapacity: options.overflowCapacity ?? 4096,
      ...(options.unattributedCapacity ? { unattributedCapacity: options.unattributedCapacity } : {}),
      exitedCapacity: options.exitedCapacity ?? 4096,
      threadCapacity: options.threadCapacity ?? 0,
      ...(options.peerCapacity ? { peerCapacity: options.peerCapacity } : {}),
      ...(attachMode ? { attachMode } : {}),
    });
    const threads = options.threadCapacity ? new ThreadTable(3_600_000, 100_000) : null;
    this.collector = new Collector(this.kernel, this.table, { liveInfoIntervalMs: options.liveInfoIntervalMs ?? 10_000 }, this.log, threads);
  }

  /** Per cgroup id, every process's counters and the unattributed rows, after a fresh read (what /v1/cgroups adds up). */
  cgroupTotals(): Map<number, number[]> {
    this.collector.readAll();
    const totals = this.table.cgroupTotals(() => true, true);
    this.collector.unattributed.addTo(totals, () => true, true);
    return new Map([...totals].map(([id, counters]) => [id, Array.from(counters)]));
  }

  /** Every entry of process `pid`, live or exited, after a fresh read. */
  entriesOf(pid: number): ProcessEntry[] {
    this.collector.readAll();
    return [...liveOf(this.table), ...this.table.exitedAfter(0)].filter((e) => e.tgid === pid);
  }

  /** The process's entry after a fresh read of everything. */
  process(pid: number): ProcessEntry | undefined {
    this.collector.readAll();
    const entries = [...liveOf(this.table), ...this.table.exitedAfter(0)].filter((e) => e.tgid === pid);
    return entries.at(-1);
  }

  counters(pid: number): number[] | undefined {
    const entry = this.process(pid);
    return entry && Array.from(entry.total);
  }
}

/** A Counting for the enclosing suite, opened before its tests and closed after. */
function useCounting(slots: number, options: CountingOptions = {}): () => Counting {
  let counting: Counting | undefined;
  beforeAll(() => {
    counting = new Counting(slots, options);
  });
  afterAll(() => counting?.kernel.close());
  return () => counting!;
}

describeWithBpf('kernel counting (real BPF)', () => {
  const counting = useCounting(32768);

  test('TCP and UDP over IPv4 and IPv6, exact; EAGAIN, MSG_PEEK, EOF, failed and empty calls not counted', async () => {
    const child = await TrafficChild.start('basic');
    const live = counting().process(child.pid)!;
    expect(live.comm).toBe('traffic');
    expect(live.uid).toBe(0);
    expect(live.exit).toBeNull();
    expect(Array.from(live.total)).toEqual(BASIC_SCENARIO);
    await child.finish();
    const exited = counting().process(child.pid)!;
    expect(exited.exit).not.toBeNull();
    expect(Array.from(exited.total)).toEqual(BASIC_SCENARIO);
  });

  test('MPTCP counts as TCP', async () => {
    const child = await TrafficChild.start('mptcp');
    expect(counting().counters(child.pid)).toEqual(
      expectedCounters({ 'ipv4 tcp send': [10, 7000], 'ipv4 tcp recv': [10, 7000] }),
    );
    await child.finish();
  });

  test('UDP-Lite counts as UDP', async () => {
    const child = await TrafficChild.start('udplite');
    expect(counting().counters(child.pid)).toEqual(
      expectedCounters({ 'ipv4 udp send': [7, 2100], 'ipv4 udp recv': [7, 2100] }),
    );
    await child.finish();
  });

  test('sendmmsg/recvmmsg per message, writev/readv, sendfile and splice: exact bytes (and calls, but sendfile per page where sock_sendpage exists)', async () => {
    const child = await TrafficChild.start('calls');
    const actual = counting().counters(child.pid)!;
    // sendfile into a socket is one call per page on kernels with sock_sendpage (<= 6.4), one per 64 KiB after.
    const sendfileCalls = actual[counterIndex(Family.ipv6, Protocol.tcp, Direction.send, Kind.calls)]!;
    expect(sendfileCalls).toBeGreaterThanOrEqual(2);
    console.log(`sendfile of 23,380 bytes and splice of 5,000 into TCP/IPv6: ${sendfileCalls} send calls`);
    expect(actual).toEqual(
      expectedCounters({
        'ipv4 udp send': [3, 600],
        'ipv4 udp recv': [3, 600],
        'ipv4 tcp send': [1, 3000],
        'ipv4 tcp recv': [1, 3000],
        'ipv6 tcp send': [sendfileCalls, 23_380 + 5000],
        'ipv6 tcp recv': [2, 23_380 + 5000],
        'ipv6 udp send': [1, 1000], // not twice: sock_sendpage falls back to inet6_sendmsg for UDP/IPv6
        'ipv6 udp recv': [1, 1000],
      }),
    );
    await child.finish();
  });

  test('splice(2) from a TCP socket into a pipe (tcp_splice_read: no recvmsg) counts as receive calls, exact', async () => {
    const child = await TrafficChild.start('splice-read');
    const splices = Number(child.announced.find((line) => line.startsWith('splices '))!.split(' ')[1]);
    expect(splices).toBeGreaterThanOrEqual(10);
    expect(counting().counters(child.pid)).toEqual(expectedCounters({ 'ipv4 tcp send': [10, 100_000], 'ipv4 tcp recv': [splices, 100_000] }));
    await child.finish();
  });

  test('io_uring: IORING_OP_SEND, SEND_ZC, RECV, SENDMSG and RECVMSG are counted like the system calls, exact', async () => {
    const child = await TrafficChild.startIoUring();
    const recvs = Number(child.announced.find((line) => line.startsWith('recvs '))!.split(' ')[1]);
    expect(counting().counters(child.pid)).toEqual(
      expectedCounters({ 'ipv4 tcp send': [5, 4500], 'ipv4 tcp recv': [recvs, 4500], 'ipv4 udp send': [3, 600], 'ipv4 udp recv': [3, 600] }),
    );
    await child.finish();
  });

  test('a socket passed to another process (SCM_RIGHTS): each process counts the calls it made on it', async () => {
    const parent = await TrafficChild.start('pass-socket');
    const child = Number(parent.announced.find((line) => line.startsWith('child '))!.split(' ')[1]);
    expect(counting().counters(parent.pid)).toEqual(expectedCounters({ 'ipv4 udp send': [2, 200], 'ipv4 udp recv': [5, 500] }));
    expect(counting().counters(child)).toEqual(expectedCounters({ 'ipv4 udp send': [3, 300] }));
    await parent.finish();
  });

  test('other protocols (raw ICMP) are ignored', async () => {
    const child = await TrafficChild.start('raw');
    expect(counting().process(child.pid)).toBeUndefined(); // never counted at all
    await child.finish();
  });

  test('a process that moves between cgroups keeps each cgroup its own counts, before and after its exit', async () => {
    const first = ScratchCgroup.create('first');
    const second = ScratchCgroup.create('second');
    const child = await TrafficChild.start('interactive');
    const udp = (calls: number): number[] => expectedCounters({ 'ipv4 udp send': [calls, calls * 100], 'ipv4 udp recv': [calls, calls * 100] });
    const byCgroup = (): Map<number, number[]> =>
      new Map([...countersByCgroup(counting().process(child.pid)!)].map(([id, c]) => [id, Array.from(c)]));
    try {
      first.add(child.pid);
      await child.exchange(5);
      second.add(child.pid);
      await child.exchange(3);
      expect(byCgroup()).toEqual(new Map([[first.id, udp(5)], [second.id, udp(3)]]));

      await child.exchange(2); // after the old slot was read and freed: claimed again in the new cgroup
      expect(byCgroup()).toEqual(new Map([[first.id, udp(5)], [second.id, udp(5)]]));
      expect(counting().process(child.pid)!.cgroupId).toBe(second.id);

      await child.finish();
      const exited = counting().process(child.pid)!;
      expect(exited.exit).not.toBeNull();
      expect(Array.from(exited.total)).toEqual(udp(10));
      expect(byCgroup()).toEqual(new Map([[first.id, udp(5)], [second.id, udp(5)]]));
    } finally {
      await child.finish();
      first.remove();
      second.remove();
    }
  });

  test('nothing was dropped', () => {
    expect(counting().kernel.readStats()).toMatchObject({ unattributed: 0, lost: 0, exitedFull: 0, noStorage: 0 });
    expect(counting().warnings).toEqual([]);
  });
});

describeWithBpf('kernel counting with one slot for every process (real BPF)', () => {
  // With a single slot, every process but the one holding it is counted in
  // the overflow map: the slow path must be as exact as the fast one.
  const counting = useCounting(1);

  test('concurrent processes are all exact, live and after their exit; their kernel entries are freed', async () => {
    const children = await Promise.all([1, 2, 3].map(() => TrafficChild.start('basic')));
    for (const child of children) expect(counting().counters(child.pid), `pid ${child.pid}`).toEqual(BASIC_SCENARIO);
    await Promise.all(children.map((c) => c.finish()));
    for (const child of children) {
      const exited = counting().process(child.pid)!;
      expect(exited.exit).not.toBeNull();
      expect(Array.from(exited.total)).toEqual(BASIC_SCENARIO);
    }
    counting().process(0); // one more read: exited slots settle and are freed
    const pids = new Set(children.map((c) => c.pid));
    expect(counting().kernel.readOverflow().filter((p) => pids.has(p.tgid))).toEqual([]);
    const slotHolders: number[] = [];
    counting().kernel.visitSlots((_index, _state, tgid) => slotHolders.push(tgid));
    expect(slotHolders.filter((tgid) => pids.has(tgid))).toEqual([]);
    expect(counting().kernel.readStats()).toMatchObject({ unattributed: 0, lost: 0, exitedFull: 0, noStorage: 0 });
  });
});

describeWithBpf('a process that moves cgroup, then idles (real BPF)', () => {
  // Every read runs the task iterator: a few reads here are minutes of the daemon's.
  const counting = useCounting(32768, { liveInfoIntervalMs: 0 });

  test('is never taken for exited while it lives, wherever it moved; each cgroup keeps its counts; one row, exact, after its exit', async () => {
    const first = ScratchCgroup.create('idle-first');
    const second = ScratchCgroup.create('idle-second');
    const child = await TrafficChild.start('interactive');
    const udp = (calls: number): number[] => expectedCounters({ 'ipv4 udp send': [calls, calls * 100], 'ipv4 udp recv': [calls, calls * 100] });
    try {
      first.add(child.pid);
      await child.exchange(10);
      second.add(child.pid); // its slot is read and freed; it holds nothing in the kernel while idle
      for (let read = 0; read < 6; read++) {
        const entries = counting().entriesOf(child.pid);
        expect(entries.map((e) => [e.exit, Array.from(e.total)]), `read ${read} after the move`).toEqual([[null, udp(10)]]);
      }
      await child.exchange(10); // claims its slot again, in the new cgroup
      const live = counting().entriesOf(child.pid);
      expect(live.map((e) => [e.exit, Array.from(e.total), e.cgroupId])).toEqual([[null, udp(20), second.id]]);
      const totals = counting().cgroupTotals();
      expect([totals.get(first.id), totals.get(second.id)]).toEqual([udp(10), udp(10)]);

      await child.finish();
      const exited = counting().entriesOf(child.pid);
      expect(exited).toHaveLength(1);
      expect(exited[0]!.exit).toMatchObject({ lost: false });
      expect(Array.from(exited[0]!.total)).toEqual(udp(20));
      expect(counting().table.lostExits).toBe(0);
      expect(counting().table.revived).toBe(0);
      expect(counting().warnings).toEqual([]);
    } finally {
      await child.finish();
      first.remove();
      second.remove();
    }
  });
});

describeWithBpf('no call lost when the overflow map is full (real BPF)', () => {
  // One slot for the whole host and room for 2 overflow entries: nearly every
  // process, the tests' and the host's, finds neither.
  const counting = useCounting(1, { overflowCapacity: 2, unattributedCapacity: 64 });

  test("root's and nobody's processes: each cgroup's sum is exact, counted per (user, cgroup) where no process row could take it", async () => {
    const rootGroup = ScratchCgroup.create('full-root');
    const nobodyGroup = ScratchCgroup.create('full-nobody');
    const children: TrafficChild[] = [];
    try {
      for (let i = 0; i < 4; i++) children.push(await TrafficChild.startIn(rootGroup, 'basic'));
      for (let i = 0; i < 4; i++) children.push(await TrafficChild.startIn(nobodyGroup, 'basic', { asNobody: true }));
      const four = BASIC_SCENARIO.map((value) => value * 4);
      let totals = counting().cgroupTotals();
      expect([totals.get(rootGroup.id), totals.get(nobodyGroup.id)]).toEqual([four, four]);
      const rows = counting().collector.unattributed.all;
      expect(rows.some((row) => row.cgroupId === nobodyGroup.id && row.uid === NOBODY_UID)).toBe(true);
      expect(rows.some((row) => row.cgroupId === rootGroup.id && row.uid === 0)).toBe(true);

      await Promise.all(children.map((c) => c.finish()));
      totals = counting().cgroupTotals();
      expect([totals.get(rootGroup.id), totals.get(nobodyGroup.id)]).toEqual([four, four]);
      // Exact per process where a row took every call: never more than it made.
      for (const child of children) {
        for (const entry of counting().entriesOf(child.pid)) {
          entry.total.forEach((value, i) => expect(value).toBeLessThanOrEqual(BASIC_SCENARIO[i]!));
        }
      }
      const stats = counting().kernel.readStats();
      expect(stats.unattributed).toBeGreaterThan(0);
      expect(stats.lost).toBe(0);
    } finally {
      await Promise.all(children.map((c) => c.finish()));
      rootGroup.remove();
      nobodyGroup.remove();
    }
  });
});

describeWithBpf("the host's row when the unattributed map is full too (real BPF)", () => {
  const counting = useCounting(1, { overflowCapacity: 1, unattributedCapacity: 1 });

  test('takes every call the (user, cgroup) rows cannot, and none is lost', async () => {
    // One slot, one overflow entry and one (user, cgroup) row for 5 processes in 5 cgroups: 2 at least go to the host's row.
    const groups = ['a', 'b', 'c', 'd', 'e'].map((name) => ScratchCgroup.create(`host-${name}`));
    const children: TrafficChild[] = [];
    try {
      const hostRow = (): number[] => Array.from(counting().collector.unattributed.all.find((row) => row.uid === HOST_UID)?.counters ?? []);
      counting().collector.readAll();
      const before = hostRow();
      for (const group of groups) children.push(await TrafficChild.startIn(group, 'basic'));
      const totals = counting().cgroupTotals();
      // At most one (user, cgroup) pair has a row; the rest of these cgroups' calls are in the host's row.
      const inGroups = groups.map((g) => totals.get(g.id) ?? BASIC_SCENARIO.map(() => 0));
      const after = hostRow();
      BASIC_SCENARIO.forEach((value, i) => {
        const counted = inGroups.reduce((sum, counters) => sum + counters[i]!, 0);
        expect(counted + after[i]! - before[i]!, `counter ${i}`).toBeGreaterThanOrEqual(value * groups.length);
      });
      expect(counting().kernel.readStats()).toMatchObject({ lost: 0 });
      expect(counting().kernel.readStats().unattributedFull).toBeGreaterThan(0);
    } finally {
      await Promise.all(children.map((c) => c.finish()));
      for (const group of groups) group.remove();
    }
  });
});

describeWithBpf('the peers sweep (real BPF)', () => {
  const counting = useCounting(32768, { peerCapacity: 1024 });

  test("keeps a live process's rows when the table has not read it yet (a daemon just started on pinned maps, a quiet host)", async () => {
    const child = await TrafficChild.start('peers');
    try {
      // A new daemon's table and collector over the same maps; only the periodic check runs, sweeping each time.
      const table = new ProcessTable({ exitedRetentionMs: 3_600_000, maxExited: 100_000, slotSettleMs: 0, rateIntervalMs: 1000 });
      const collector = new Collector(counting().kernel, table, { liveInfoIntervalMs: 10_000, peerSweepMs: 0 }, counting().log, null, new PeerTable(1000));
      for (let sweep = 0; sweep < 3; sweep++) collector.drain();
      collector.readAll();
      const entry = table.find(child.pid, liveOf(table).find((e) => e.tgid === child.pid)!.startNs)!;
      const rows = collector.peersOf([entry])!.get(processKey(entry.tgid, entry.startNs)) ?? [];
      expect(rows.length).toBeGreaterThan(5);
      const sum = rows.reduce((total, row) => total.map((value, i) => value + row.counters[i]!), BASIC_SCENARIO.map(() => 0));
      expect(sum).toEqual(Array.from(entry.total));
      expect(counting().warnings).toEqual([]);
    } finally {
      await child.finish();
    }
  });
});

describeWithBpf('exec from a thread other than the main one (real BPF)', () => {
  const udp = (calls: number): number[] => expectedCounters({ 'ipv4 udp send': [calls, calls * 100], 'ipv4 udp recv': [calls, calls * 100] });
  const sent = expectedCounters({ 'ipv4 udp send': [3, 300] });
  const plus = (a: number[], b: number[]): number[] => a.map((value, i) => value + b[i]!);

  describe('with per-thread counters', () => {
    const counting = useCounting(32768, { threadCapacity: 1024 });

    test("the thread's slot is retired at the exec: it is an exited thread, its tid free for any other", async () => {
      const child = await TrafficChild.start('exec-thread');
      try {
        const tid = Number(child.announced.find((line) => line.startsWith('tid '))!.split(' ')[1]);
        await child.exchange(2);
        const entry = counting().entriesOf(child.pid)[0]!;
        expect(Array.from(entry.total)).toEqual(plus(sent, udp(2)));
        const threads = counting().collector.threadsOf(child.pid, entry.startNs)!;
        expect(threads.find((thread) => thread.tid === tid)).toMatchObject({ exitedAtMs: expect.any(Number) });
        const slotOwners: number[] = [];
        counting().kernel.readThreads().forEach((thread) => slotOwners.push(thread.tid));
        expect(slotOwners).not.toContain(tid); // read as exited, and freed
      } finally {
        await child.finish();
      }
    });
  });

  describe('a process counted in the overflow map only (one slot for every process)', () => {
    const counting = useCounting(1, { liveInfoIntervalMs: 0 });

    test('stays live however long it idles after the exec, and its exit is recorded', async () => {
      const holder = await TrafficChild.start('interactive');
      await holder.exchange(1); // the one slot is this one's, or another process's already
      const child = await TrafficChild.start('exec-thread');
      try {
        for (let read = 0; read < 4; read++) {
          expect(counting().entriesOf(child.pid).map((e) => [e.exit, Array.from(e.total)]), `read ${read} after the exec`).toEqual([[null, sent]]);
        }
        await child.finish();
        const exited = counting().entriesOf(child.pid);
        expect(exited.map((e) => [e.exit?.lost, Array.from(e.total)])).toEqual([[false, sent]]);
      } finally {
        await child.finish();
        await holder.finish();
      }
    });
  });
});

describeWithBpf("a user's share of the exit records between two drains (real BPF)", () => {
  const counting = useCounting(32768, { exitedCapacity: 8 });

  test("nobody's 10 exits at once take at most half of 8 records: root's exit is still recorded", async () => {
    counting().kernel.drainExited();
    const nobody = await TrafficChild.startAsNobody('spawn', '10');
    const root = await TrafficChild.start('basic');
    await nobody.finish(); // its 10 children and itself exit
    await root.finish();
    const records = counting().kernel.drainExited();
    const byNobody = records.filter((info) => info.uid === NOBODY_UID).length;
    expect(byNobody).toBeLessThanOrEqual(4);
    expect(records.some((info) => info.tgid === root.pid)).toBe(true);
    expect(counting().kernel.readStats().exitedFull).toBe(10 - byNobody); // the children sent; the parent never did
  });
});
