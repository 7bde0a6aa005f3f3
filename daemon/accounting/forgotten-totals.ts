// The traffic of processes the table has forgotten, per cgroup id, so that
// a cgroup's totals include every process it ever had. Kept in a pinned
// kernel map (cgroup_totals) when the maps are pinned, so that they survive a
// daemon restart as the slots do: cgroup counters never go backwards.
//
// Bounded whatever cgroups churn: a cgroup that was removed (and holds no
// process the table still has) keeps its own totals for one fold interval,
// so that scrapes see its last values, then folds into REMOVED_CGROUPS, one
// bucket for every cgroup removed since. A cgroup the store has no room for
// (as many live cgroups with forgotten processes as it holds) keeps its
// totals here only, never folded while it lives (its counters would drop, a
// reset to Prometheus), until a fold pass frees room in the store.
import { addInto, addUnder, zeroCounters } from './counter-math.js';

/** The key of the bucket of cgroups removed since (no cgroup has id 0). */
const REMOVED_CGROUPS = 0;

/** Where the totals persist: the pinned map, through KernelCounters. */
export interface TotalsStore {
  readCgroupTotals(): Map<number, number[]>;
  /** False when the store is full. */
  writeCgroupTotals(cgroupId: number, counters: ArrayLike<number>): boolean;
  deleteCgroupTotals(cgroupId: number): void;
}

/** At most this many removed cgroups wait for their fold; past it the oldest fold at once. */
const MAX_REMOVED_WAITING = 1000;

export class ForgottenTotals {
  private readonly byCgroup: Map<number, number[]>;
  /** Removed cgroups seen at the last fold pass: folded at the next one. */
  private removedAtLastPass = new Set<number>();
  /** Cgroups whose totals the store had no room for: kept here only (not across a restart) until it has. */
  private readonly unpersisted = new Set<number>();

  constructor(private readonly store: TotalsStore | null = null) {
    this.byCgroup = store?.readCgroupTotals() ?? new Map();
    if (!this.byCgroup.has(REMOVED_CGROUPS)) {
      this.byCgroup.set(REMOVED_CGROUPS, zeroCounters());
      this.persist(REMOVED_CGROUPS);
    }
  }

  get size(): number {
    return this.byCgroup.size;
  }

  has(cgroupId: number): boolean {
    return this.byCgroup.has(cgroupId);
  }

  /** Every cgroup's totals; the removed bucket only once something was folded into it. */
  *entries(): IterableIterator<[number, number[]]> {
    for (const entry of this.byCgroup) if (entry[0] !== REMOVED_CGROUPS || entry[1].some((value) => value > 0)) yield entry;
  }

  /** Adds a forgotten process's counters in `cgroupId`. */
  add(cgroupId: number, counters: ArrayLike<number>): void {
    addUnder(this.byCgroup, cgroupId, counters);
    if (this.persist(cgroupId)) this.unpersisted.delete(cgroupId);
    else this.unpersisted.add(cgroupId);
  }

  /** Cgroups whose totals would not survive a restart now (the store is full). */
  get unpersistedCount(): number {
    return this.unpersisted.size;
  }

  private persist(cgroupId: number): boolean {
    return this.store?.writeCgroupTotals(cgroupId, this.byCgroup.get(cgroupId)!) ?? true;
  }

  /** Moves a cgroup's totals into the removed bucket. */
  private fold(cgroupId: number): void {
    const counters = this.byCgroup.get(cgroupId);
    if (!counters || cgroupId === REMOVED_CGROUPS) return;
    const removed = this.byCgroup.get(REMOVED_CGROUPS);
    if (removed) addInto(removed, counters);
    else this.byCgroup.set(REMOVED_CGROUPS, Array.from(counters));
    this.byCgroup.delete(cgroupId);
    this.unpersisted.delete(cgroupId);
    this.store?.deleteCgroupTotals(cgroupId);
    this.persist(REMOVED_CGROUPS); // its key exists from the start: never refused for space
  }

  /**
   * One fold pass (every minute): cgroups that `removedOf` says are gone, and
   * that were already gone at the last pass, fold into the removed bucket;
   * returns the ids folded (their names may be forgotten).
   */
  foldRemoved(removedOf: (cgroupIds: number[]) => Set<number>): number[] {
    const gone = removedOf([...this.byCgroup.keys()].filter((id) => id !== REMOVED_CGROUPS)); // asked once, for all
    const removed = [...this.byCgroup.keys()].filter((id) => gone.has(id));
    const folded = removed.filter((id, i) => this.removedAtLastPass.has(id) || removed.length - i > MAX_REMOVED_WAITING);
    for (const id of folded) this.fold(id);
    const waiting = new Set(removed);
    for (const id of folded) waiting.delete(id);
    this.removedAtLastPass = waiting;
    for (const id of this.unpersisted) if (this.persist(id)) this.unpersisted.delete(id); // room freed by the folds
    return folded;
  }
}
