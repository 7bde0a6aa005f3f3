// Calls that no process row could take (a process whose slot was taken found
// the overflow map full): the kernel counts them per (real uid, cgroup), or
// in the host's row when even that map is full (bpf/netacct.h). They add to
// the cgroups' totals, so that a cgroup's, a user's and the host's sums stay
// exact however hard processes churn; only per-process detail degrades.
//
// The kernel's rows are cumulative and only the daemon deletes one: the row
// of a removed cgroup, which no process can add to any more, after its last
// read, its counters handed to the forgotten totals (pinned): so churning
// cgroups never fill the map, and nothing is lost across a restart.
import { addUnder } from './counter-math.js';
import type { ForgottenTotals } from './forgotten-totals.js';
import { HOST_UID } from '../kernel/layout.js';
import type { UnattributedSample } from '../kernel/kernel-counters.js';

/** What the rows need of the kernel (KernelCounters). */
export interface UnattributedStore {
  readUnattributed(): UnattributedSample[];
  deleteUnattributed(uid: number, cgroupId: number): void;
}

export class UnattributedRows {
  /** The rows as last read. */
  private rows: UnattributedSample[] = [];

  constructor(private readonly store: UnattributedStore) {}

  /** The kernel's count of calls put in these rows when they were last read. */
  private readAtCount = -1;

  /**
   * Reads the kernel's rows when calls were added to them since the last
   * read (`addedCount`: the kernel's count of such calls), else keeps them.
   */
  read(addedCount: number): void {
    if (addedCount === this.readAtCount) return;
    this.rows = this.store.readUnattributed();
    this.readAtCount = addedCount;
  }

  /** The rows as last read: a (uid, cgroup) pair each, and the host's (uid HOST_UID, cgroup 0). */
  get all(): readonly UnattributedSample[] {
    return this.rows;
  }

  /**
   * Adds the rows of users `mayRead` admits (the host's row: only for a
   * client that sees every user) to `totals`, by cgroup id. The host's and
   * the users' own rows are cgroup 0, the bucket of removed cgroups
   * (forgotten-totals.ts): their cgroup is not known either.
   */
  addTo(totals: Map<number, number[]>, mayRead: (uid: number) => boolean, seesAll: boolean): void {
    for (const row of this.rows) {
      if (row.uid === HOST_UID ? !seesAll : !mayRead(row.uid)) continue;
      if (row.counters.every((value) => value === 0)) continue;
      addUnder(totals, row.cgroupId, row.counters);
    }
  }

  /** The cgroups the rows count in (their names must stay known). */
  cgroupIds(): Set<number> {
    return new Set(this.rows.map((row) => row.cgroupId).filter((id) => id !== 0));
  }

  /**
   * Hands the rows of cgroups `removedOf` says are gone to `forgotten` and
   * deletes them from the kernel, read afresh just before: a removed cgroup
   * has no process left that could add to them in between. The host's and
   * the users' own rows (cgroup 0) are never deleted: programs add to them.
   */
  foldRemoved(removedOf: (cgroupIds: number[]) => Set<number>, forgotten: ForgottenTotals): void {
    let folded = 0;
    const rows = this.store.readUnattributed().filter((row) => row.uid !== HOST_UID && row.cgroupId !== 0);
    const removed = removedOf([...new Set(rows.map((row) => row.cgroupId))]);
    for (const row of rows) {
      if (!removed.has(row.cgroupId)) continue;
      forgotten.add(row.cgroupId, row.counters);
      this.store.deleteUnattributed(row.uid, row.cgroupId);
      folded++;
    }
    if (folded > 0) this.rows = this.store.readUnattributed(); // else the folded rows would count twice until the next read
  }
}
