// The daemon's record of exited threads: kept for the retention time, the
// oldest dropped (and counted) beyond the cap, exited slots and entries handed
// back for deletion from the kernel.
import { expect, test } from 'vitest';
import type { ThreadSample } from '../daemon/kernel/kernel-counters.js';
import { ThreadTable } from '../daemon/accounting/thread-table.js';

function sample(tid: number, exited: boolean): ThreadSample {
  return { tid, tgid: 100, startNs: tid * 10, processStartNs: 1, comm: `t${tid}`, exited, counters: new Array(16).fill(tid), where: { slot: tid } };
}

test('exited threads are handed back for deletion and kept for the retention time', () => {
  const table = new ThreadTable(1000, 100);
  const done = table.apply([sample(1, false), sample(2, true)], 0);
  expect(done.map((s) => s.tid)).toEqual([2]);
  expect(table.threadsOf(100, 1).map((t) => [t.tid, t.exitedAtMs])).toEqual([[1, null], [2, 0]]);
  table.apply([sample(1, false)], 999); // the exited one is no longer in the kernel
  expect(table.threadsOf(100, 1).map((t) => t.tid)).toEqual([1, 2]);
  table.apply([sample(1, false)], 1000);
  expect(table.threadsOf(100, 1).map((t) => t.tid)).toEqual([1]);
  expect(table.threadsOf(100, 2)).toEqual([]); // another process (same tgid, other start)
});

test('beyond the cap the oldest exited threads are dropped, and counted', () => {
  const table = new ThreadTable(60_000, 3);
  table.apply([1, 2, 3, 4, 5].map((tid) => sample(tid, true)), 0);
  expect(table.exitedCount).toBe(3);
  expect(table.droppedExited).toBe(2);
  expect(table.threadsOf(100, 1).map((t) => t.tid)).toEqual([3, 4, 5]);
});
