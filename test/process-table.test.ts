// The accounting table's rules on identity and exited processes, fed with the
// samples the kernel side produces.
import { expect, test } from 'vitest';
import type { ProcSample } from '../daemon/kernel-counters.js';
import { COUNTERS } from '../daemon/layout.js';
import { ProcessTable } from '../daemon/process-table.js';

function sample(tgid: number, startNs: number, calls: number): ProcSample {
  const counters = new Float64Array(COUNTERS);
  counters[0] = calls;
  return { tgid, startNs, uid: 0, cgroupId: 1, comm: 'p', counters };
}

const table = (): ProcessTable => new ProcessTable({ exitedRetentionMs: 0, maxExited: 1000 });

test('a reused PID is a new process: its traffic never adds to the exited one', () => {
  const t = table();
  t.apply({ exited: [], moved: [], live: [sample(100, 1_000, 7)] }, 0);
  // The old process exited and PID 100 was reused before its exit record was drained.
  t.apply({ exited: [], moved: [], live: [sample(100, 2_000, 3)] }, 0);
  expect(t.live.get(100)!.startNs).toBe(2_000);
  expect(t.live.get(100)!.total[0]).toBe(3);
  const retired = t.exitedAfter(0);
  expect(retired.map((e) => [e.tgid, e.startNs, e.total[0]])).toEqual([[100, 1_000, 7]]);
  // Its exit record arriving late does not touch the new process; it
  // corrects the exited entry, which is served again with its true final counters.
  t.apply({ exited: [sample(100, 1_000, 9)], moved: [], live: null }, 0);
  expect(t.live.get(100)!.total[0]).toBe(3);
  expect(t.exitedAfter(1).map((e) => [e.tgid, e.startNs, e.total[0]])).toEqual([[100, 1_000, 9]]);
  expect(t.exitedCount).toBe(1);
  expect(t.lostExits).toBe(0);
});

test('an exit record carries the final counters of the live entry it closes', () => {
  const t = table();
  t.apply({ exited: [], moved: [], live: [sample(5, 10, 1)] }, 0);
  t.apply({ exited: [sample(5, 10, 4)], moved: [], live: null }, 0);
  expect(t.live.has(5)).toBe(false);
  expect(t.exitedAfter(0).map((e) => e.total[0])).toEqual([4]);
});

test('a live process missing from two full reads without an exit record is retired as lost', () => {
  const t = table();
  t.apply({ exited: [], moved: [], live: [sample(5, 10, 2)] }, 0);
  t.apply({ exited: [], moved: [], live: [] }, 0); // its exit record may still be on its way
  expect(t.live.has(5)).toBe(true);
  t.apply({ exited: [], moved: [], live: [] }, 0);
  expect(t.live.has(5)).toBe(false);
  expect(t.lostExits).toBe(1);
  expect(t.exitedAfter(0).map((e) => e.total[0])).toEqual([2]);
});

test('counters served never go backwards', () => {
  const t = table();
  t.apply({ exited: [], moved: [], live: [sample(5, 10, 8)] }, 0);
  t.apply({ exited: [], moved: [], live: [sample(5, 10, 6)] }, 0); // a read racing a cgroup move
  expect(t.live.get(5)!.total[0]).toBe(8);
});

test('exited entries stay until every connected client was served them and the retention passed', () => {
  const t = new ProcessTable({ exitedRetentionMs: 1000, maxExited: 1000 });
  t.apply({ exited: [sample(1, 1, 1), sample(2, 2, 1)], moved: [], live: null }, 0);
  expect(t.latestExitSeq).toBe(2);
  t.forgetServedExits(1, 5000); // one client has had only the first
  expect(t.exitedAfter(0).map((e) => e.tgid)).toEqual([2]);
  t.forgetServedExits(2, 500); // all served, but younger than the retention
  expect(t.exitedCount).toBe(1);
  t.forgetServedExits(null, 1000); // no client connected, retention passed
  expect(t.exitedCount).toBe(0);
});

test('beyond maxExited the oldest exited entries are dropped and counted', () => {
  const t = new ProcessTable({ exitedRetentionMs: 0, maxExited: 2 });
  t.apply({ exited: [1, 2, 3, 4].map((pid) => sample(pid, pid, 1)), moved: [], live: null }, 0);
  t.forgetServedExits(0, 0); // a client that never asks
  expect(t.exitedAfter(0).map((e) => e.tgid)).toEqual([3, 4]);
  expect(t.droppedExits).toBe(2);
});
