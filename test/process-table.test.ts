// The accounting table's rules on identity, parts and exited processes, fed
// with the samples the kernel side produces.
import { expect, test } from 'vitest';
import type { OverflowSample, ProcInfoSample, SlotVisitor } from '../daemon/kernel/kernel-counters.js';
import { COUNTERS, HOST_UID, SlotState } from '../daemon/kernel/layout.js';
import { ProcessTable } from '../daemon/accounting/process-table.js';
import { ForgottenTotals } from '../daemon/accounting/forgotten-totals.js';
import { UnattributedRows } from '../daemon/accounting/unattributed-rows.js';
import type { ServedExits } from '../protocol/netatop-server.js';
import { liveOf } from './helpers/live.js';

const info = (tgid: number, startNs: number): ProcInfoSample => ({ tgid, startNs, uid: 0, cgroupId: 1, comm: 'p' });

function counters(calls: number): Float64Array {
  const c = new Float64Array(COUNTERS);
  c[0] = calls;
  return c;
}

type Slot = Parameters<SlotVisitor>;

const claimedBy = (): { uid: number; comm: string } => ({ uid: 0, comm: 'p' });

function slot(index: number, tgid: number, startNs: number, calls: number, state: number = SlotState.active, cgroupId = 1): Slot {
  return [index, state, tgid, startNs, cgroupId, counters(calls), claimedBy];
}

/** The slots of a read, as KernelCounters.visitSlots presents them. */
const slots = (...list: Slot[]) => (visit: SlotVisitor) => list.forEach((s) => visit(...s));

function part(tgid: number, startNs: number, calls: number, cgroupId = 1): OverflowSample {
  return { tgid, uid: 0, startNs, cgroupId, counters: counters(calls), startLow: startNs, startHigh: 0, cgroupLow: cgroupId, cgroupHigh: 0 };
}

/** Served up to `seq` to every client, all of which see every process (null: no client). */
const servedToAll = (seq: number | null): ServedExits => ({ all: seq, byUid: new Map() });
const table = (settleMs = 0): ProcessTable => new ProcessTable({ exitedRetentionMs: 0, maxExited: 1000, slotSettleMs: settleMs, rateIntervalMs: 1000 });
const liveCalls = (t: ProcessTable): Array<[number, number, number]> => [...liveOf(t)].map((e) => [e.tgid, e.startNs, e.total[0]!]);
const exitedCalls = (t: ProcessTable, after = 0): Array<[number, number, number]> =>
  t.exitedAfter(after).map((e) => [e.tgid, e.startNs, e.total[0]!]);

test('a process is the sum of its slot and its overflow parts, named by its slot', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 7)), overflow: [part(5, 10, 3, 2)], live: null }, 0);
  expect(liveCalls(t)).toEqual([[5, 10, 10]]);
  expect(liveOf(t)[0]!.comm).toBe('p');
  expect(t.hasUnknownLive()).toBe(false);
});

test('a process with overflow entries only is unnamed until a live read names it', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(), overflow: [part(5, 10, 3)], live: null }, 0);
  expect(t.hasUnknownLive()).toBe(true);
  t.apply({ exited: [], slots: slots(), overflow: [part(5, 10, 3)], live: [{ ...info(5, 10), comm: 'named' }] }, 0);
  expect(t.hasUnknownLive()).toBe(false);
  expect(liveOf(t)[0]!.comm).toBe('named');
});

test('a reused PID is a new process: its traffic never adds to the exited one', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(slot(100, 100, 1_000, 7)), overflow: [], live: [info(100, 1_000)] }, 0);
  // The old process exited (its slot is EXITED) and PID 100 was reused: the new
  // process counts in the overflow map until the old slot is freed.
  const chores = t.apply(
    {
      exited: [info(100, 1_000)],
      slots: slots(slot(100, 100, 1_000, 7, SlotState.exited)),
      overflow: [part(100, 2_000, 3)],
      live: [info(100, 2_000)],
    },
    0,
  );
  expect(chores.freeSlots).toEqual([100]);
  expect(liveCalls(t)).toEqual([[100, 2_000, 3]]);
  expect(exitedCalls(t)).toEqual([[100, 1_000, 7]]);
});

test('an EXITED or MOVED slot is freed only once it has stayed so for slotSettleMs', () => {
  const t = table(10);
  t.apply({ exited: [], slots: slots(slot(1, 1, 1, 4)), overflow: [], live: [info(1, 1)] }, 0);
  let chores = t.apply({ exited: [], slots: slots(slot(1, 1, 1, 4, SlotState.moved)), overflow: [], live: [info(1, 1)] }, 100);
  expect(chores.freeSlots).toEqual([]);
  expect(t.settlingSlots).toBe(1);
  chores = t.apply({ exited: [], slots: slots(slot(1, 1, 1, 5, SlotState.moved)), overflow: [], live: [info(1, 1)] }, 110);
  expect(chores.freeSlots).toEqual([1]);
  // The process claims its slot again in the new cgroup: the moved counts stay.
  t.apply({ exited: [], slots: slots(slot(1, 1, 1, 2, SlotState.active, 9)), overflow: [], live: [info(1, 1)] }, 120);
  expect(liveCalls(t)).toEqual([[1, 1, 7]]);
});

test('exited processes: overflow entries deleted at the exit, final parts kept', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(), overflow: [part(5, 10, 2)], live: [info(5, 10)] }, 0);
  const chores = t.apply({ exited: [info(5, 10)], slots: slots(), overflow: [part(5, 10, 4)], live: [] }, 0);
  expect(chores.deleteOverflow.map((p) => [p.tgid, p.startNs, p.cgroupId])).toEqual([[5, 10, 1]]);
  t.apply({ exited: [], slots: slots(), overflow: [], live: [] }, 0); // deleted from the kernel
  expect(exitedCalls(t)).toEqual([[5, 10, 4]]);
});

test('an EXITED slot retires its process even without an exit record', () => {
  const t = table(10);
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 2)), overflow: [], live: null }, 0);
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 3, SlotState.exited)), overflow: [], live: null }, 1);
  expect(liveCalls(t)).toEqual([]);
  expect(exitedCalls(t)).toEqual([[5, 10, 3]]);
  expect(t.lostExits).toBe(0);
});

test('a live process missing from two live reads without an exit record is retired as lost; a late record corrects it', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 2)), overflow: [], live: [info(5, 10)] }, 0);
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 2)), overflow: [], live: [] }, 0); // its exit record may be on its way
  expect(liveCalls(t)).toEqual([[5, 10, 2]]);
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 2)), overflow: [], live: [] }, 0);
  expect(t.lostExits).toBe(1);
  expect(exitedCalls(t)).toEqual([[5, 10, 2]]);
  // Served to a client (seq 1); then the exit record and the final slot arrive.
  t.apply({ exited: [info(5, 10)], slots: slots(slot(5, 5, 10, 3, SlotState.exited)), overflow: [], live: [] }, 0);
  expect(t.lostExits).toBe(0);
  expect(exitedCalls(t, 1)).toEqual([[5, 10, 3]]);
  expect(t.exitedCount).toBe(1);
});

test('counters served never go backwards', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 8)), overflow: [], live: [info(5, 10)] }, 0);
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 6)), overflow: [], live: [info(5, 10)] }, 0);
  expect(liveCalls(t)).toEqual([[5, 10, 8]]);
});

test('exited entries stay until every connected client was served them, the retention passed and their slot was freed', () => {
  const t = new ProcessTable({ exitedRetentionMs: 1000, maxExited: 1000, slotSettleMs: 0, rateIntervalMs: 1000 });
  t.apply({ exited: [info(1, 1), info(2, 2)], slots: slots(), overflow: [part(1, 1, 1), part(2, 2, 1)], live: null }, 0);
  expect(t.latestExitSeq).toBe(2);
  t.forgetServedExits(servedToAll(1), 5000); // one client has had only the first
  expect(exitedCalls(t).map(([pid]) => pid)).toEqual([2]);
  t.forgetServedExits(servedToAll(2), 500); // all served, but younger than the retention
  expect(t.exitedCount).toBe(1);
  t.forgetServedExits(servedToAll(null), 1000); // no client connected, retention passed
  expect(t.exitedCount).toBe(0);
});

test("a client that sees only its own user's processes holds only their exits", () => {
  const t = new ProcessTable({ exitedRetentionMs: 0, maxExited: 1000, slotSettleMs: 0, rateIntervalMs: 1000 });
  const ofUid = (tgid: number, uid: number): ProcInfoSample => ({ ...info(tgid, tgid), uid });
  t.apply({ exited: [ofUid(1, 0), ofUid(2, 65534), ofUid(3, 1000)], slots: slots(), overflow: [], live: null }, 0);
  // root's client had everything; nobody's client never asked.
  t.forgetServedExits({ all: 3, byUid: new Map([[65534, 0]]) }, 0);
  expect(exitedCalls(t).map(([pid]) => pid)).toEqual([2]);
  t.forgetServedExits({ all: 3, byUid: new Map([[65534, 2]]) }, 0);
  expect(t.exitedCount).toBe(0);
});

test('beyond maxExited the oldest exited entries are dropped and counted', () => {
  const t = new ProcessTable({ exitedRetentionMs: 0, maxExited: 2, slotSettleMs: 0, rateIntervalMs: 1000 });
  t.apply({ exited: [1, 2, 3, 4].map((pid) => info(pid, pid)), slots: slots(), overflow: [], live: null }, 0);
  t.forgetServedExits(servedToAll(0), 0); // a client that never asks
  expect(exitedCalls(t).map(([pid]) => pid)).toEqual([3, 4]);
  expect(t.droppedExits).toBe(2);
});

test('rates: per second over the interval between samples at least rateIntervalMs apart', () => {
  const t = table();
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 100)), overflow: [], live: null }, 0);
  expect(t.rateIntervalSeconds).toBeNull(); // nobody asked: nothing sampled
  t.wantRates(0);
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 100)), overflow: [], live: null }, 0);
  expect(liveOf(t)[0]!.rates).toBeNull(); // sampled once
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 150)), overflow: [], live: null }, 500); // too soon: no sample
  expect(liveOf(t)[0]!.rates).toBeNull();
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 400)), overflow: [], live: null }, 2000);
  expect(t.rateIntervalSeconds).toBe(2);
  expect(liveOf(t)[0]!.rates![0]).toBe(150); // (400 - 100) / 2 s
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 400)), overflow: [], live: null }, 3000);
  expect(liveOf(t)[0]!.rates![0]).toBe(0); // idle: its rate falls to 0
  t.apply({ exited: [], slots: slots(slot(5, 5, 10, 400)), overflow: [], live: null }, 70_000);
  expect(liveOf(t)[0]!.rates).toBeNull(); // not asked for a minute: dropped
});

test('a process retired as lost that is seen alive again is one live row; forgotten, its slot makes a new entry', () => {
  const t = table();
  const moved = { exited: [], slots: slots(), overflow: [], live: [] as ProcInfoSample[] };
  t.apply({ exited: [], slots: slots(slot(7, 7, 70, 5, SlotState.moved)), overflow: [], live: [info(7, 70)] }, 0);
  t.apply(moved, 0);
  t.apply(moved, 0); // two live reads without it and no exit record: retired as lost
  expect(exitedCalls(t)).toEqual([[7, 70, 5]]);
  expect(t.lostExits).toBe(1);
  // It claims its slot again: alive after all.
  t.apply({ exited: [], slots: slots(slot(7, 7, 70, 2)), overflow: [], live: [info(7, 70)] }, 0);
  expect(liveCalls(t)).toEqual([[7, 70, 7]]);
  expect(exitedCalls(t)).toEqual([]);
  expect([t.lostExits, t.revived]).toEqual([0, 1]);

  // Retired as lost again and forgotten: a later claim of the same slot is a new entry, and forgetting goes on working.
  t.apply({ exited: [], slots: slots(slot(7, 7, 70, 2, SlotState.moved)), overflow: [], live: [] }, 0);
  t.apply({ exited: [], slots: slots(), overflow: [], live: [] }, 0);
  t.apply({ exited: [], slots: slots(), overflow: [], live: [] }, 0);
  t.forgetServedExits(servedToAll(null), 0);
  expect(t.exitedCount).toBe(0);
  t.apply({ exited: [], slots: slots(slot(7, 7, 70, 4), slot(8, 8, 80, 1, SlotState.exited)), overflow: [], live: null }, 0);
  expect(liveCalls(t)).toEqual([[7, 70, 4]]);
  expect(exitedCalls(t)).toEqual([[8, 80, 1]]);
  t.forgetServedExits(servedToAll(null), 0);
});

test("a full totals store: a live cgroup's totals stay its own (never folded: its counter would drop), and are stored once a fold frees room", () => {
  const stored = new Map<number, number[]>();
  const store = {
    readCgroupTotals: () => new Map(stored),
    writeCgroupTotals: (id: number, counters: ArrayLike<number>) => {
      if (!stored.has(id) && stored.size >= 3) return false;
      stored.set(id, Array.from(counters));
      return true;
    },
    deleteCgroupTotals: (id: number) => void stored.delete(id),
  };
  const totals = new ForgottenTotals(store); // the removed bucket takes one place of 3
  totals.add(10, counters(1));
  totals.add(11, counters(2));
  totals.add(12, counters(3)); // no room
  expect(new Map([...totals.entries()].map(([id, c]) => [id, c[0]]))).toEqual(new Map([[10, 1], [11, 2], [12, 3]]));
  expect(totals.unpersistedCount).toBe(1);
  const ten = (ids: number[]): Set<number> => new Set(ids.filter((id) => id === 10));
  totals.foldRemoved(ten);
  totals.foldRemoved(ten); // removed at two passes: folded, its place freed
  expect(new Map([...totals.entries()].map(([id, c]) => [id, c[0]]))).toEqual(new Map([[0, 1], [11, 2], [12, 3]]));
  expect(totals.unpersistedCount).toBe(0);
  expect(stored.get(12)![0]).toBe(3);
});

test("unattributed rows: only a removed cgroup's rows fold into the forgotten totals and leave the kernel; users' own rows and the host's never", () => {
  const row = (uid: number, cgroupId: number, calls: number) => ({ uid, cgroupId, counters: Array.from(counters(calls)) });
  let kernelRows = [row(1000, 0, 1), row(HOST_UID, 0, 2), row(1000, 55, 3), row(1000, 66, 4), row(0, 55, 5)];
  const deleted: string[] = [];
  const rows = new UnattributedRows({
    readUnattributed: () => kernelRows,
    deleteUnattributed: (uid, cgroupId) => {
      deleted.push(`${uid}:${cgroupId}`);
      kernelRows = kernelRows.filter((r) => r.uid !== uid || r.cgroupId !== cgroupId);
    },
  });
  const forgotten = new ForgottenTotals();
  const asked: number[][] = [];
  rows.foldRemoved((ids) => (asked.push(ids), new Set(ids.filter((id) => id === 55 || id === 0))), forgotten);
  expect(asked).toEqual([[55, 66]]); // once, for every cgroup at a time; never cgroup 0
  expect(deleted).toEqual(['1000:55', '0:55']);
  expect(new Map([...forgotten.entries()].map(([id, c]) => [id, c[0]]))).toEqual(new Map([[55, 8]]));
  const totals = new Map<number, number[]>();
  rows.addTo(totals, () => true, true);
  expect(new Map([...totals].map(([id, c]) => [id, c[0]]))).toEqual(new Map([[0, 3], [66, 4]]));
});
