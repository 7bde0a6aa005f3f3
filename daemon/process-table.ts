// The accounting table: every process that has sent or received, live or
// recently exited, identified by (tgid, start time) so that a reused PID is
// always a new entry. Exited processes keep their final counters until every
// connected atop client has been served them (see retire/forgetServedExits).
import { COUNTERS } from './layout.js';
import type { MovedSample, ProcSample } from './kernel-counters.js';

export interface ProcessEntry {
  readonly tgid: number;
  readonly startNs: number;
  uid: number;
  comm: string;
  /** cgroup v2 id the process is in now (or was in when it exited). */
  cgroupId: number;
  /** Counters gathered in the current cgroup. */
  readonly current: Float64Array;
  /** Counters gathered in cgroups the process left, by cgroup id. */
  moved: Map<number, Float64Array>;
  /** current + moved: what clients are served. Never decreases. */
  readonly total: Float64Array;
  /** Set once the process has exited; seq orders exits for delivery. */
  exit: { seq: number; atMs: number; lost: boolean } | null;
  /** Consecutive full reads that did not see this live process. */
  missedReads: number;
}

/** What one read of the kernel returned; `live` is null for a drain of exits only. */
export interface KernelRead {
  exited: readonly ProcSample[];
  moved: readonly MovedSample[];
  live: readonly ProcSample[] | null;
}

export interface ProcessTableOptions {
  /** Exited entries are kept at least this long, so a reconnecting client still gets them. */
  exitedRetentionMs: number;
  /** Hard bound on exited entries kept for clients that never ask. */
  maxExited: number;
}

/** A live process that full reads stop seeing without an exit record exited unseen. */
const MISSED_READS_BEFORE_LOST = 2;

function identity(tgid: number, startNs: number): string {
  return `${tgid}:${startNs}`;
}

export class ProcessTable {
  readonly live = new Map<number, ProcessEntry>();
  /** Exited entries in exit order (seq ascending). */
  private exited: ProcessEntry[] = [];
  /** The same entries by identity, to match exit records that arrive late. */
  private readonly exitedByIdentity = new Map<string, ProcessEntry>();
  private lastExitSeq = 0;
  /** Exited processes whose exit record never came (the kernel's exited map was full). */
  lostExits = 0;
  /** Exited entries dropped before every client had them (maxExited reached). */
  droppedExits = 0;

  constructor(private readonly options: ProcessTableOptions) {}

  get exitedCount(): number {
    return this.exited.length;
  }

  get latestExitSeq(): number {
    return this.lastExitSeq;
  }

  /**
   * Merges one kernel read. Returns the moved-map keys that belong to exited
   * processes: their counters are now in the table and the caller deletes them.
   */
  apply(read: KernelRead, nowMs: number): Buffer[] {
    const movedByProcess = new Map<string, MovedSample[]>();
    for (const sample of read.moved) {
      const key = identity(sample.tgid, sample.startNs);
      const list = movedByProcess.get(key);
      if (list) list.push(sample);
      else movedByProcess.set(key, [sample]);
    }
    const finishedMovedKeys: Buffer[] = [];
    const takeMoved = (entry: ProcessEntry, finished: boolean): void => {
      const samples = movedByProcess.get(identity(entry.tgid, entry.startNs));
      if (!samples) return;
      entry.moved = new Map(samples.map((s) => [s.cgroupId, s.counters]));
      if (finished) for (const s of samples) finishedMovedKeys.push(s.key);
    };

    for (const sample of read.exited) {
      const known = this.live.get(sample.tgid);
      const retiredAsLost = this.exitedByIdentity.get(identity(sample.tgid, sample.startNs));
      let entry: ProcessEntry;
      if (known?.startNs === sample.startNs) {
        entry = known;
        this.live.delete(sample.tgid);
      } else if (retiredAsLost) {
        // Retired without its exit record; the record came after all: serve
        // the true final counters again, under a new exit seq.
        entry = retiredAsLost;
        this.exited.splice(this.exited.indexOf(entry), 1);
        this.lostExits--;
      } else {
        entry = newEntry(sample);
      }
      updateFromSample(entry, sample);
      takeMoved(entry, true);
      recomputeTotal(entry);
      this.retire(entry, nowMs, false);
    }

    if (read.live) {
      const seen = new Set<number>();
      for (const sample of read.live) {
        let entry = this.live.get(sample.tgid);
        if (entry && entry.startNs !== sample.startNs) {
          // The PID was reused before the old process's exit record arrived.
          this.live.delete(sample.tgid);
          this.retire(entry, nowMs, true);
          entry = undefined;
        }
        if (!entry) {
          entry = newEntry(sample);
          this.live.set(sample.tgid, entry);
        }
        updateFromSample(entry, sample);
        takeMoved(entry, false);
        recomputeTotal(entry);
        entry.missedReads = 0;
        seen.add(sample.tgid);
      }
      for (const entry of this.live.values()) {
        if (seen.has(entry.tgid)) continue;
        entry.missedReads++;
        if (entry.missedReads >= MISSED_READS_BEFORE_LOST) {
          this.live.delete(entry.tgid);
          takeMoved(entry, true);
          recomputeTotal(entry);
          this.retire(entry, nowMs, true);
        }
      }
    }
    return finishedMovedKeys;
  }

  private retire(entry: ProcessEntry, nowMs: number, lost: boolean): void {
    entry.exit = { seq: ++this.lastExitSeq, atMs: nowMs, lost };
    if (lost) this.lostExits++;
    this.exited.push(entry);
    this.exitedByIdentity.set(identity(entry.tgid, entry.startNs), entry);
  }

  /** Exited entries a client that was served up to `servedSeq` has not had yet. */
  exitedAfter(servedSeq: number): ProcessEntry[] {
    let first = this.exited.length;
    while (first > 0 && this.exited[first - 1]!.exit!.seq > servedSeq) first--;
    return this.exited.slice(first);
  }

  /**
   * Forgets exited entries that every connected client has been served
   * (all of them when `minServedSeq` is null: no client is connected) once
   * they are older than the retention, and the oldest beyond maxExited.
   */
  forgetServedExits(minServedSeq: number | null, nowMs: number): void {
    let drop = 0;
    for (const entry of this.exited) {
      const exit = entry.exit!;
      const served = minServedSeq === null || exit.seq <= minServedSeq;
      if (!served || nowMs - exit.atMs < this.options.exitedRetentionMs) break;
      drop++;
    }
    const overflow = this.exited.length - drop - this.options.maxExited;
    if (overflow > 0) {
      this.droppedExits += overflow;
      drop += overflow;
    }
    if (drop > 0) {
      for (const entry of this.exited.slice(0, drop)) this.exitedByIdentity.delete(identity(entry.tgid, entry.startNs));
      this.exited = this.exited.slice(drop);
    }
  }
}

function newEntry(sample: ProcSample): ProcessEntry {
  return {
    tgid: sample.tgid,
    startNs: sample.startNs,
    uid: sample.uid,
    comm: sample.comm,
    cgroupId: sample.cgroupId,
    current: new Float64Array(COUNTERS),
    moved: new Map(),
    total: new Float64Array(COUNTERS),
    exit: null,
    missedReads: 0,
  };
}

function updateFromSample(entry: ProcessEntry, sample: ProcSample): void {
  entry.uid = sample.uid;
  entry.comm = sample.comm;
  entry.cgroupId = sample.cgroupId;
  entry.current.set(sample.counters);
}

function recomputeTotal(entry: ProcessEntry): void {
  for (let i = 0; i < COUNTERS; i++) {
    let sum = entry.current[i]!;
    for (const counters of entry.moved.values()) sum += counters[i]!;
    // A read racing with a cgroup move can see counters in neither place for
    // an instant; never serve a smaller value than before (atop would take
    // the whole counter as the delta).
    if (sum > entry.total[i]!) entry.total[i] = sum;
  }
}
