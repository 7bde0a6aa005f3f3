// The history ledger's bookkeeping, fed by the real accounting table with
// the samples the kernel side produces: whatever happens between flushes
// (cgroup moves, exits, forgetting, a restart, a daemon killed before it
// flushed, a failed write, a fold), the traffic written adds up to exactly
// what the host counted.
import { expect, test } from 'vitest';
import type { ProcInfoSample, SlotVisitor } from '../daemon/kernel/kernel-counters.js';
import { COUNTERS, SlotState } from '../daemon/kernel/layout.js';
import { ProcessTable, countersByCgroup } from '../daemon/accounting/process-table.js';
import { ForgottenTotals, type TotalsStore } from '../daemon/accounting/forgotten-totals.js';
import { type FlushPlan, PositionLedger, type Position, UNSEEN_COMMAND, historyCounters } from '../daemon/history/position-ledger.js';

type Slot = Parameters<SlotVisitor>;
const calls = (n: number): Float64Array => {
  const c = new Float64Array(COUNTERS);
  c[0] = n;
  return c;
};
const slot = (index: number, tgid: number, n: number, state: number, cgroupId: number): Slot => [index, state, tgid, tgid * 10, cgroupId, calls(n), () => ({ uid: 0, comm: `p${tgid}` })];
const exitOf = (tgid: number, cgroupId: number): ProcInfoSample => ({ tgid, startNs: tgid * 10, uid: 0, cgroupId, comm: `p${tgid}` });

/** The pinned cgroup_totals map, as a store that outlives one daemon's table. */
class PinnedTotals implements TotalsStore {
  readonly map = new Map<number, number[]>();
  readCgroupTotals(): Map<number, number[]> {
    return new Map([...this.map].map(([id, counters]) => [id, [...counters]]));
  }
  writeCgroupTotals(cgroupId: number, counters: ArrayLike<number>): boolean {
    this.map.set(cgroupId, Array.from(counters));
    return true;
  }
  deleteCgroupTotals(cgroupId: number): void {
    this.map.delete(cgroupId);
  }
}

/** One daemon: its table on the pinned totals, and its ledger on what the file held. */
class Daemon {
  readonly table: ProcessTable;
  readonly ledger: PositionLedger;
  constructor(pinned: PinnedTotals, file: { positions: Map<string, Position>; forgotten: Map<number, number[]> }, table = { maxExited: 1000, slotSettleMs: 0 }) {
    this.table = new ProcessTable({ exitedRetentionMs: 0, rateIntervalMs: 1000, ...table }, new ForgottenTotals(pinned));
    this.ledger = new PositionLedger(new Map(file.positions), new Map(file.forgotten));
    this.table.onForget = (entry) => this.ledger.onForget(PositionLedger.forgetting(entry));
    this.table.onForgottenAdded = (cgroupId, counters, from, ofForgotten) => this.ledger.onForgottenAdded(PositionLedger.handing(cgroupId, counters, from, ofForgotten));
  }

  /** A read of the kernel at `nowMs`, as the collector applies it (the kernel frees, then the totals take the parts). */
  read(slots: Slot[], exited: ProcInfoSample[] = [], nowMs = 0): void {
    const chores = this.table.apply({ exited, slots: (visit) => slots.forEach((s) => visit(...s)), overflow: [], live: null }, nowMs);
    this.table.handToForgotten(chores);
  }

  forgetExited(): void {
    this.table.forgetServedExits({ all: Number.MAX_SAFE_INTEGER, byUid: new Map() }, 1_000_000);
  }

  plan(): FlushPlan {
    return this.ledger.plan({ forEachEntry: (visit) => this.table.forEachEntry(visit), unattributed: [], forgotten: new Map(this.table.forgotten.entries()) });
  }

  /** What the host counted: the forgotten totals and what the table holds beyond them. */
  hostCalls(): number {
    let sum = 0;
    for (const [, counters] of this.table.forgotten.entries()) sum += counters[0]!;
    this.table.forEachEntry((entry) => {
      for (const counters of countersByCgroup(entry, false).values()) sum += counters[0]!;
    });
    return sum;
  }
}

/** The history file: what was written, and the position committed with it. */
class File {
  written = 0;
  unseen = 0;
  positions = new Map<string, Position>();
  forgotten = new Map<number, number[]>();
  flush(daemon: Daemon): void {
    const plan = daemon.plan();
    for (const traffic of plan.traffic.values()) {
      this.written += traffic.counters[0]!;
      if (traffic.command === UNSEEN_COMMAND) this.unseen += traffic.counters[0]!;
    }
    this.positions = daemon.ledger.positionsAfter(plan);
    this.forgotten = plan.forgotten;
    daemon.ledger.commit(plan);
  }
}

test('moves, exits, a restart, a daemon killed before it flushed, a failed write, a fold: the written traffic is what the host counted', () => {
  const pinned = new PinnedTotals();
  const file = new File();
  let daemon = new Daemon(pinned, file);
  expect(historyCounters(calls(5))[0]).toBe(5); // the 16 counters' first is history's first (TCP send calls)

  daemon.read([slot(0, 1, 5, SlotState.active, 100)]);
  file.flush(daemon);
  expect(file.written).toBe(5);

  daemon.read([slot(0, 1, 8, SlotState.active, 100), slot(1, 2, 3, SlotState.active, 200)]);
  file.flush(daemon);
  expect(file.written).toBe(11);

  // p1 moves from cgroup 100 to 200: its old slot is read a last time (9) and a new one counts in 200.
  daemon.read([slot(0, 1, 9, SlotState.moved, 100), slot(1, 2, 3, SlotState.active, 200)]);
  daemon.read([slot(2, 1, 1, SlotState.active, 200), slot(1, 2, 3, SlotState.active, 200)]);
  expect(pinned.map.get(100)?.[0]).toBe(9); // in the pinned totals at once
  file.flush(daemon);
  expect(file.written).toBe(13);
  expect(file.written).toBe(daemon.hostCalls());

  // p2 exits with 4 and is forgotten before the next flush: its last call is written as its own.
  daemon.read([slot(2, 1, 1, SlotState.active, 200), slot(1, 2, 4, SlotState.exited, 200)], [exitOf(2, 200)]);
  daemon.forgetExited();
  file.flush(daemon);
  expect(file.written).toBe(14);
  expect(file.unseen).toBe(0);
  expect(file.written).toBe(daemon.hostCalls());

  // A failed write: the plan is not committed; the next one writes it all.
  daemon.read([slot(2, 1, 6, SlotState.active, 200)]);
  const failed = daemon.plan();
  expect([...failed.traffic.values()].reduce((sum, t) => sum + t.counters[0]!, 0)).toBe(5);
  daemon.read([slot(2, 1, 7, SlotState.active, 200)]);
  file.flush(daemon);
  expect(file.written).toBe(20);

  // A restart: the new table knows only what the kernel holds (p1's slot in 200); the file knows the rest.
  daemon = new Daemon(pinned, file);
  daemon.read([slot(2, 1, 9, SlotState.active, 200)]);
  file.flush(daemon);
  expect(file.written).toBe(22);
  expect(file.written).toBe(daemon.hostCalls());
  expect(file.unseen).toBe(0);

  // Killed before its next flush: p1 moved back to 100 (its part in 200 went to the pinned totals at 12),
  // p3 started, counted 7, exited and was forgotten. The next daemon writes all of it, once.
  daemon.read([slot(2, 1, 12, SlotState.moved, 200)]);
  daemon.read([slot(3, 3, 7, SlotState.exited, 300)], [exitOf(3, 300)]);
  daemon.forgetExited();
  daemon = new Daemon(pinned, file);
  daemon.read([slot(4, 1, 2, SlotState.active, 100)]);
  file.flush(daemon);
  expect(file.written).toBe(daemon.hostCalls());
  expect(file.written).toBe(22 + 3 + 7 + 2);
  expect(file.unseen).toBe(3 + 7); // what the killed daemon never wrote, per cgroup

  // A removed cgroup folds into the removed bucket: nothing new to write.
  daemon.table.forgotten.foldRemoved(() => new Set([300]));
  daemon.table.forgotten.foldRemoved(() => new Set([300]));
  expect(pinned.map.has(300)).toBe(false);
  file.flush(daemon);
  expect(file.written).toBe(34);
  expect(file.written).toBe(daemon.hostCalls());
});

test("a process dropped past the table's bound while it still holds its slot: written once, its slot's later growth as unseen", () => {
  const pinned = new PinnedTotals();
  const file = new File();
  // No exited process kept, and a slot read for the last time only 100 ms after its exit.
  const daemon = new Daemon(pinned, file, { maxExited: 0, slotSettleMs: 100 });
  daemon.read([slot(0, 1, 5, SlotState.active, 100)], [], 0);
  file.flush(daemon);
  daemon.read([slot(0, 1, 6, SlotState.exited, 100)], [exitOf(1, 100)], 10);
  daemon.forgetExited(); // dropped at once, its slot still settling
  expect(daemon.table.find(1, 10)).toBeUndefined();
  file.flush(daemon);
  expect(file.written).toBe(6);
  // The slot's last read: one more call landed after the exit record (an add that passed its owner check).
  daemon.read([slot(0, 1, 7, SlotState.exited, 100)], [], 200);
  expect(pinned.map.get(100)?.[0]).toBe(7);
  file.flush(daemon);
  expect(file.written).toBe(7); // not 6 + 7
  expect(file.unseen).toBe(1);
});

test('a slot still held when its process was dropped: a daemon started before its last read writes only what came after', () => {
  const pinned = new PinnedTotals();
  const file = new File();
  let daemon = new Daemon(pinned, file, { maxExited: 0, slotSettleMs: 100 });
  daemon.read([slot(0, 1, 5, SlotState.active, 100)], [], 0);
  file.flush(daemon);
  daemon.read([slot(0, 1, 6, SlotState.exited, 100)], [exitOf(1, 100)], 10);
  daemon.forgetExited();
  file.flush(daemon);
  expect(file.written).toBe(6);
  expect(file.positions.get('0:1:10:100')?.written[0]).toBe(6); // kept for the slot's last read
  // Stopped before that read: the next daemon finds the slot (7 by now) and the file's position.
  daemon = new Daemon(pinned, file, { maxExited: 0, slotSettleMs: 100 });
  daemon.read([slot(0, 1, 7, SlotState.exited, 100)], [], 0);
  daemon.read([slot(0, 1, 7, SlotState.exited, 100)], [], 200);
  file.flush(daemon);
  expect(file.written).toBe(7);
  expect(file.written).toBe(daemon.hostCalls());
});

test('a process part forgotten and made again by a new entry of the same process (a late part) before the next flush: its position is written, not deleted', () => {
  const pinned = new PinnedTotals();
  const file = new File();
  const daemon = new Daemon(pinned, file);
  daemon.read([slot(0, 1, 4, SlotState.active, 100)], [], 0);
  file.flush(daemon);
  daemon.read([slot(0, 1, 5, SlotState.exited, 100)], [exitOf(1, 100)], 0);
  daemon.forgetExited();
  // The same process (tgid 1, same start) counted again in cgroup 100: a new entry, from 0.
  daemon.read([slot(1, 1, 3, SlotState.active, 100)], [], 0);
  file.flush(daemon);
  expect(file.written).toBe(5 + 3);
  daemon.read([slot(1, 1, 4, SlotState.active, 100)], [], 0);
  file.flush(daemon);
  expect(file.written).toBe(5 + 4); // one more call, not the whole 4 again
});
