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

/** The cgroup key the host's row adds to: the bucket of removed cgroups (forgotten-totals.ts), as its cgroup is not known either. */
const HOST_ROW_CGROUP = 0;

/** What the rows need of the kernel (KernelCounters). */
export interface UnattributedStore {
  readUnattributed(): UnattributedSample[];
  deleteUnattributed(uid: number, cgroupId: number): void;
}

export class UnattributedRows {
  /** The rows as last read. */
  private rows: UnattributedSample[] = [];

  constructor(private readonly store: UnattributedStore) {}

  /** Reads the kernel's rows (one hash lookup batch: on a host that never filled the overflow map, just the host's row). */
  read(): void {
    this.rows = this.store.readUnattributed();
  }

  /** The rows as last read: a (uid, cgroup) pair each, and the host's (uid HOST_UID, cgroup 0). */
  get all(): readonly UnattributedSample[] {
    return this.rows;
  }

  /** Adds the rows of users `mayRead` admits (the host's row: only for a client that sees every user) to `totals`, by cgroup id. */
  addTo(totals: Map<number, number[]>, mayRead: (uid: number) => boolean, seesAll: boolean): void {
    for (const row of this.rows) {
      if (row.uid === HOST_UID ? !seesAll : !mayRead(row.uid)) continue;
      if (row.counters.every((value) => value === 0)) continue;
      addUnder(totals, row.uid === HOST_UID ? HOST_ROW_CGROUP : row.cgroupId, row.counters);
    }
  }

  /** The cgroups the rows count in (their names must stay known). */
  cgroupIds(): Set<number> {
    return new Set(this.rows.filter((row) => row.uid !== HOST_UID).map((row) => row.cgroupId));
  }

  /**
   * Hands the rows of cgroups `isRemoved` says are gone to `forgotten` and
   * deletes them from the kernel, read afresh just before: a removed cgroup
   * has no process left that could add to them in between.
   */
  foldRemoved(isRemoved: (cgroupId: number) => boolean, forgotten: ForgottenTotals): number {
    let folded = 0;
    for (const row of this.store.readUnattributed()) {
      if (row.uid === HOST_UID || !isRemoved(row.cgroupId)) continue;
      forgotten.add(row.cgroupId, row.counters);
      this.store.deleteUnattributed(row.uid, row.cgroupId);
      folded++;
    }
    if (folded > 0) this.read();
    return folded;
  }
}
