// The accounting table: every process that has sent or received, live or
// recently exited, identified by (tgid, start time) so that a reused PID is
// always a new entry. A process's counters come in parts, per cgroup: its
// slot as last read, its overflow entries as last read, and slots already
// read for the last time (settled). Exited processes keep their final
// counters until every connected atop client has been served them.
import { addInto, addUnder, zeroCounters } from './counter-math.js';
import { COUNTERS } from '../kernel/layout.js';
import type { OverflowSample, ProcInfoSample, SlotVisitor } from '../kernel/kernel-counters.js';
import { SlotState } from '../kernel/layout.js';
import { ForgottenTotals } from './forgotten-totals.js';
import { ExitedEntries, isForgotten } from './exited-entries.js';
import type { ServedExits } from '../../protocol/netatop-server.js';

export interface ProcessEntry {
  readonly tgid: number;
  readonly startNs: number;
  /** Whether a live read or an exit record has said who it is (uid, comm). */
  known: boolean;
  uid: number;
  comm: string;
  /** cgroup v2 id the process is in now (or was in when it exited). */
  cgroupId: number;
  /** Counters of slots read for the last time, by cgroup id (null until there are any). */
  settled: Map<number, number[]> | null;
  /** Whether it holds a slot; then its slot's cgroup and counters as last read. */
  hasSlot: boolean;
  /** The slot index it was last seen in (bySlot), or -1. */
  slotIndex: number;
  slotCgroupId: number;
  readonly slotCounters: number[];
  /** Its overflow entries as last read, by cgroup id (null when none), and as read (for deleting them). */
  overflow: Map<number, ArrayLike<number>> | null;
  overflowParts: OverflowSample[];
  /** All parts summed: what clients are served. Never decreases. */
  readonly total: number[];
  /** Per-second rates of the 16 counters over the table's last sampling interval; null until sampled twice. */
  rates: number[] | null;
  /** Totals at the last sampling, the base of the next rates. */
  rateBase: number[] | null;
  /** Set once the process has exited; seq orders exits for delivery; uid: the user it is kept for (its uid then). */
  exit: { seq: number; atMs: number; lost: boolean; readonly uid: number } | null;
  /** Consecutive live reads that did not list this process. */
  missedReads: number;
}

/** One read of the kernel; null parts were not read this time. */
export interface KernelRead {
  exited: readonly ProcInfoSample[];
  /** Calls the visitor for every slot in use (KernelCounters.visitSlots). */
  slots: ((visit: SlotVisitor) => void) | null;
  overflow: readonly OverflowSample[] | null;
  live: readonly ProcInfoSample[] | null;
}

/** What the caller must do in the kernel after a read was applied. */
export interface KernelChores {
  /** Slots read for the last time: free them. */
  freeSlots: number[];
  /** Overflow entries of exited processes: delete them. */
  deleteOverflow: OverflowSample[];
  /**
   * The parts read for the last time: once freed and deleted in the kernel,
   * handed to the forgotten totals (handToForgotten). In that order: a
   * daemon killed before the kernel frees them reads them again (counted
   * once), never counts them in both places.
   */
  settled: Array<{ entry: ProcessEntry; cgroupId: number; counters: ArrayLike<number>; ofForgotten: boolean }>;
}

export interface ProcessTableOptions {
  /** Exited entries are kept at least this long, so a reconnecting client still gets them. */
  exitedRetentionMs: number;
  /** Hard bound on exited entries kept for clients that never ask. */
  maxExited: number;
  /** Hard bound on one user's (but root's) exited entries kept for its clients; default maxExited. */
  maxExitedPerUser?: number;
  /** Rates are sampled on reads at least this far apart. */
  rateIntervalMs: number;
  /**
   * An EXITED or MOVED slot is read for the last time only after staying so
   * this long, so that an add that passed its owner check just before the
   * state changed has landed.
   */
  slotSettleMs: number;
}

/** How long rates keep being sampled after a client last asked for them. */
const RATES_WANTED_MS = 60_000;

/** A live process that live reads stop listing without an exit record exited unseen. */
const MISSED_READS_BEFORE_LOST = 2;

/**
 * A process's counters per cgroup id, all parts summed; without its settled
 * parts when `withSettled` is false (they are in the forgotten totals already).
 */
export function countersByCgroup(entry: ProcessEntry, withSettled = true): Map<number, number[]> {
  const byCgroup = new Map<number, number[]>();
  if (withSettled) for (const [cgroupId, counters] of entry.settled ?? []) addUnder(byCgroup, cgroupId, counters);
  if (entry.hasSlot) addUnder(byCgroup, entry.slotCgroupId, entry.slotCounters);
  for (const [cgroupId, counters] of entry.overflow ?? []) addUnder(byCgroup, cgroupId, counters);
  return byCgroup;
}

export class ProcessTable {
  /** Every entry, live or exited, by tgid (more than one after a PID reuse), in order of first sight. */
  private readonly entries = new Map<number, ProcessEntry[]>();
  /** Live entries not yet known by name. */
  private readonly unknown = new Set<ProcessEntry>();
  /** The entry that last held each slot index: most reads find it here. */
  private readonly bySlot: Array<ProcessEntry | undefined> = [];
  /** Exited entries kept for clients, in exit order and per user. */
  private readonly exited = new ExitedEntries<ProcessEntry>();
  private entryCount = 0;
  /** When rates were last sampled (ms), and the interval they cover (s). */
  private lastRateSampleMs: number | null = null;
  rateIntervalSeconds: number | null = null;
  /** Rates are sampled only while someone asks for them (they cost memory per process). */
  private ratesWantedUntilMs = -Infinity;
  /** Entries whose totals must be added up again in this apply(); reused. */
  private readonly touched: ProcessEntry[] = [];
  /** EXITED or MOVED slots waiting to settle: index → first seen so (ms). */
  private settling = new Map<number, number>();
  private lastExitSeq = 0;
  /** Exited processes whose exit record never came (the kernel's exited map was full). */
  lostExits = 0;
  /** Processes retired as lost and then seen alive (the kernel stopped listing a live process: a bug). */
  revived = 0;
  /** Exited entries dropped before every client had them (maxExited reached). */
  droppedExits = 0;
  /** Told of each process just before it is forgotten, its counters final (history takes its last traffic). */
  onForget: ((entry: ProcessEntry) => void) | null = null;
  /**
   * Told of what the table adds to the forgotten totals (history: that growth
   * is accounted for): a part read for the last time (settledFrom: its
   * process), or what is left of a process forgotten; and whether it is of a
   * process already forgotten (one dropped while it held its slot, whose slot
   * is read for the last time later).
   */
  onForgottenAdded: ((cgroupId: number, counters: ArrayLike<number>, settledFrom: ProcessEntry | null, ofForgotten: boolean) => void) | null = null;
  constructor(
    private readonly options: ProcessTableOptions,
    /** Per cgroup, the counters of exited processes already forgotten. */
    readonly forgotten: ForgottenTotals = new ForgottenTotals(),
  ) {}

  /**
   * At shutdown: adds to the forgotten totals (which survive a restart) what
   * the kernel will not hold after it: the overflow parts of exited
   * processes (deleted from the kernel). Settled parts are there already,
   * and slots and live processes' overflow entries stay in the pinned maps.
   */
  handOver(): void {
    this.forEachEntry((entry) => {
      if (entry.exit) for (const [cgroupId, counters] of entry.overflow ?? []) this.toForgotten(cgroupId, counters);
    });
  }

  /**
   * Adds to the forgotten totals, which are pinned: at once for a part read
   * for the last time (settled), so that a daemon killed before it forgets
   * the process loses nothing; the rest when it is forgotten.
   */
  private toForgotten(cgroupId: number, counters: ArrayLike<number>, settledFrom: ProcessEntry | null = null, ofForgotten = false): void {
    this.forgotten.add(cgroupId, counters);
    this.onForgottenAdded?.(cgroupId, counters, settledFrom, ofForgotten);
  }

  /** A part of a process read for the last time: kept with the process, and for the forgotten totals once the kernel let it go. */
  private settle(entry: ProcessEntry, cgroupId: number, counters: ArrayLike<number>, chores: KernelChores): void {
    entry.settled ??= new Map();
    addUnder(entry.settled, cgroupId, counters);
    chores.settled.push({ entry, cgroupId, counters: Array.from(counters), ofForgotten: isForgotten(entry) });
  }

  /** The parts of `chores.settled`, freed in the kernel: now in the forgotten totals (pinned), so that a daemon killed later loses none. */
  handToForgotten(chores: KernelChores): void {
    for (const { entry, cgroupId, counters, ofForgotten } of chores.settled) this.toForgotten(cgroupId, counters, entry, ofForgotten);
  }

  /** The cgroups that processes in the table are or were counted in. */
  cgroupsInUse(): Set<number> {
    const ids = new Set<number>();
    for (const sameTgid of this.entries.values()) {
      for (const entry of sameTgid) for (const cgroupId of countersByCgroup(entry).keys()) ids.add(cgroupId);
    }
    return ids;
  }

  /** Applied from the next forgetServedExits (configuration reload). */
  setExitedRetention(ms: number): void {
    this.options.exitedRetentionMs = ms;
  }

  get exitedCount(): number {
    return this.exited.size;
  }

  get latestExitSeq(): number {
    return this.lastExitSeq;
  }

  /**
   * Counters per cgroup id: of every process in the table that `include`
   * admits and, when `withForgotten`, of exited processes already forgotten
   * (and the parts already settled, which the forgotten totals hold).
   */
  cgroupTotals(include: (entry: ProcessEntry) => boolean, withForgotten: boolean): Map<number, number[]> {
    const totals = new Map<number, number[]>();
    if (withForgotten) for (const [cgroupId, counters] of this.forgotten.entries()) addUnder(totals, cgroupId, counters);
    this.forEachEntry((entry) => {
      if (include(entry)) for (const [cgroupId, counters] of countersByCgroup(entry, !withForgotten)) addUnder(totals, cgroupId, counters);
    });
    return totals;
  }

  /** Whether a live process is not yet known by name (it has overflow entries only). */
  hasUnknownLive(): boolean {
    return this.unknown.size > 0;
  }

  /** Slots that must be read again before they can be freed. */
  get settlingSlots(): number {
    return this.settling.size;
  }

  /** Calls `visit` for each live process, in order of first sight, allocating nothing. */
  forEachLive(visit: (entry: ProcessEntry) => void): void {
    for (const sameTgid of this.entries.values()) {
      for (let i = 0; i < sameTgid.length; i++) if (!sameTgid[i]!.exit) visit(sameTgid[i]!);
    }
  }

  /** Calls `visit` for each process in the table, live or exited. */
  forEachEntry(visit: (entry: ProcessEntry) => void): void {
    for (const sameTgid of this.entries.values()) for (let i = 0; i < sameTgid.length; i++) visit(sameTgid[i]!);
  }

  /** How many processes are live. */
  get liveCount(): number {
    return this.entryCount - this.exited.size;
  }

  /** The entry of process (tgid, startNs), if the table has it. */
  find(tgid: number, startNs: number): ProcessEntry | undefined {
    return this.entries.get(tgid)?.find((entry) => entry.startNs === startNs);
  }

  private entry(tgid: number, startNs: number): ProcessEntry {
    let sameTgid = this.entries.get(tgid);
    if (!sameTgid) this.entries.set(tgid, (sameTgid = []));
    for (const entry of sameTgid) if (entry.startNs === startNs) return entry;
    const entry: ProcessEntry = {
        tgid,
        startNs,
        known: false,
        uid: 0,
        comm: '',
        cgroupId: 0,
        settled: null,
        hasSlot: false,
        slotIndex: -1,
        slotCgroupId: 0,
        slotCounters: zeroCounters(),
        overflow: null,
        overflowParts: [],
        total: zeroCounters(),
        rates: null,
        rateBase: null,
        exit: null,
        missedReads: 0,
      };
    sameTgid.push(entry);
    this.entryCount++;
    this.unknown.add(entry);
    return entry;
  }

  private forget(entry: ProcessEntry): void {
    const sameTgid = this.entries.get(entry.tgid)!;
    sameTgid.splice(sameTgid.indexOf(entry), 1);
    if (sameTgid.length === 0) this.entries.delete(entry.tgid);
    // A later claim of the slot by the same process (one retired as lost
    // that was not gone) must make a new entry, not add to a forgotten one.
    // One forgotten while it still held its slot (dropped past maxExited)
    // keeps it: the slot's later reads must not count again in a new entry.
    if (!entry.hasSlot && entry.slotIndex >= 0 && this.bySlot[entry.slotIndex] === entry) this.bySlot[entry.slotIndex] = undefined;
    this.entryCount--;
    this.unknown.delete(entry);
  }

  /** Merges one kernel read and says what to free in the kernel. */
  apply(read: KernelRead, nowMs: number): KernelChores {
    const chores: KernelChores = { freeSlots: [], deleteOverflow: [], settled: [] };
    const exiting = new Set<ProcessEntry>();

    for (const info of read.exited) {
      const entry = this.entry(info.tgid, info.startNs);
      this.describe(entry, info);
      exiting.add(entry);
    }

    const touched = this.touched;
    touched.length = 0;
    if (read.slots) {
      const settling = new Map<number, number>();
      read.slots((index, state, tgid, startNs, cgroupId, counters, claimedBy) => {
        let entry = this.bySlot[index];
        if (!entry || entry.tgid !== tgid || entry.startNs !== startNs) {
          entry = this.entry(tgid, startNs);
          this.bySlot[index] = entry;
          entry.slotIndex = index;
        }
        if (state === SlotState.active && entry.exit?.lost && !isForgotten(entry)) this.revive(entry);
        touched.push(entry);
        if (!entry.known) {
          const { uid, comm } = claimedBy(index);
          this.describe(entry, { tgid, startNs, uid, comm, cgroupId });
        }
        if (state === SlotState.active) entry.cgroupId = cgroupId;
        // An EXITED slot proves the exit even when no exit record came (the
        // exited map was full, or the process exited while no daemon ran).
        if (state === SlotState.exited && !entry.exit) exiting.add(entry);
        const since = state === SlotState.active ? nowMs : (this.settling.get(index) ?? nowMs);
        if (state !== SlotState.active && nowMs - since >= this.options.slotSettleMs) {
          this.settle(entry, cgroupId, counters, chores);
          entry.hasSlot = false;
          chores.freeSlots.push(index);
        } else {
          let changed = !entry.hasSlot || entry.slotCgroupId !== cgroupId;
          for (let i = 0; i < COUNTERS; i++) {
            if (entry.slotCounters[i] !== counters[i]) {
              entry.slotCounters[i] = counters[i]!;
              changed = true;
            }
          }
          entry.hasSlot = true;
          entry.slotCgroupId = cgroupId;
          if (state !== SlotState.active) settling.set(index, since);
          if (!changed) touched.pop(); // nothing to add up again: most processes are idle between reads
        }
      });
      this.settling = settling;
    }

    if (read.overflow) {
      // A read's parts replace an entry's last ones: a live process's only
      // grow; an exited one's were deleted from the kernel at its last read
      // (settled, below), unless late parts came after.
      const readNow = new Set<ProcessEntry>();
      for (const part of read.overflow) {
        const entry = this.entry(part.tgid, part.startNs);
        if (!readNow.has(entry)) {
          readNow.add(entry);
          entry.overflow = new Map();
          entry.overflowParts = [];
        }
        // Threads of one process under different uids have a part each in the same cgroup: they add up.
        const sameCgroup = entry.overflow!.get(part.cgroupId);
        const counters = sameCgroup ? Array.from(sameCgroup) : part.counters; // the common case is not copied
        if (sameCgroup) addInto(counters as number[], part.counters);
        entry.overflow!.set(part.cgroupId, counters);
        entry.overflowParts.push(part);
        touched.push(entry);
      }
    }

    const lost = new Set<ProcessEntry>();
    if (read.live) {
      const seen = new Set<ProcessEntry>();
      for (const info of read.live) {
        const entry = this.entry(info.tgid, info.startNs);
        this.describe(entry, info);
        if (entry.exit?.lost && !isForgotten(entry)) this.revive(entry);
        entry.missedReads = 0;
        seen.add(entry);
      }
      this.forEachLive((entry) => {
        if (!seen.has(entry) && !exiting.has(entry) && ++entry.missedReads >= MISSED_READS_BEFORE_LOST) lost.add(entry);
      });
    }

    const addUp = (entry: ProcessEntry): void => {
      const grew = recomputeTotal(entry);
      // A late part of an exited process (not of one already forgotten: dropped while its slot settled, it stays gone).
      if (grew && entry.exit && !exiting.has(entry) && !isForgotten(entry)) this.requeueExit(entry);
    };
    for (let i = 0; i < touched.length; i++) addUp(touched[i]!);
    exiting.forEach(addUp);
    lost.forEach(addUp);
    for (const entry of exiting) {
      if (entry.exit?.lost) {
        // Retired as lost, then its exit record came after all.
        entry.exit.lost = false;
        this.lostExits--;
        this.requeueExit(entry);
      } else if (!entry.exit) {
        this.retire(entry, nowMs, false);
      }
    }
    for (const entry of lost) this.retire(entry, nowMs, true);
    if (read.slots) this.sampleRates(nowMs);
    for (const group of [exiting, lost]) {
      for (const entry of group) {
        chores.deleteOverflow.push(...entry.overflowParts);
        entry.overflowParts = [];
        // Read for the last time: settled, so that a process revived after all adds its new parts on top.
        for (const [cgroupId, counters] of entry.overflow ?? []) this.settle(entry, cgroupId, counters, chores);
        entry.overflow = null;
      }
    }
    return chores;
  }

  /**
   * Rates of every live process over the interval since the last sampling,
   * taken when a read comes at least rateIntervalMs after it: a client that
   * asks every second gets per-second rates; reads in between do not shorten
   * the interval.
   */
  private sampleRates(nowMs: number): void {
    if (nowMs > this.ratesWantedUntilMs) {
      if (this.lastRateSampleMs !== null) this.dropRates();
      return;
    }
    const last = this.lastRateSampleMs;
    if (last !== null && nowMs - last < this.options.rateIntervalMs) return;
    const seconds = last === null ? null : (nowMs - last) / 1000;
    this.forEachLive((entry) => {
      if (seconds !== null && entry.rateBase) {
        entry.rates ??= zeroCounters();
        for (let i = 0; i < COUNTERS; i++) entry.rates[i] = (entry.total[i]! - entry.rateBase[i]!) / seconds;
      }
      entry.rateBase ??= zeroCounters();
      for (let i = 0; i < COUNTERS; i++) entry.rateBase[i] = entry.total[i]!;
    });
    this.lastRateSampleMs = nowMs;
    this.rateIntervalSeconds = seconds;
  }

  /** A client asks for rates: sample them for the next RATES_WANTED_MS. */
  wantRates(nowMs: number): void {
    this.ratesWantedUntilMs = nowMs + RATES_WANTED_MS;
  }

  private dropRates(): void {
    this.forEachLive((entry) => {
      entry.rates = null;
      entry.rateBase = null;
    });
    this.lastRateSampleMs = null;
    this.rateIntervalSeconds = null;
  }

  private describe(entry: ProcessEntry, info: ProcInfoSample): void {
    entry.known = true;
    entry.uid = info.uid;
    entry.comm = info.comm;
    entry.cgroupId = info.cgroupId;
    this.unknown.delete(entry);
  }

  private retire(entry: ProcessEntry, nowMs: number, lost: boolean): void {
    this.unknown.delete(entry);
    entry.exit = { seq: ++this.lastExitSeq, atMs: nowMs, lost, uid: entry.uid };
    if (lost) this.lostExits++;
    this.exited.add(entry);
  }

  /** Serves an exited entry again, to every client, with what it has now. */
  private requeueExit(entry: ProcessEntry): void {
    entry.exit!.seq = ++this.lastExitSeq;
    this.exited.moved(entry);
  }

  /**
   * A process retired as lost (live reads stopped listing it, and no exit
   * record came) is seen alive after all: it is live again, never an exited
   * row beside a live one.
   */
  private revive(entry: ProcessEntry): void {
    const { uid } = entry.exit!;
    entry.exit = null;
    this.exited.removed(uid);
    entry.missedReads = 0;
    this.lostExits--;
    this.revived++;
  }

  /** Exited entries a client that was served up to `servedSeq` has not had yet. */
  exitedAfter(servedSeq: number): ProcessEntry[] {
    return this.exited.after(servedSeq);
  }

  /**
   * Forgets exited entries that every connected client that may see them has
   * been served (a client that sees only its own user's processes holds only
   * those), once they are older than the retention and their slot has been
   * read for the last time; and the oldest beyond maxExited. Costs what it
   * forgets, not what clients hold (exited-entries.ts).
   */
  forgetServedExits(served: ServedExits, nowMs: number): void {
    this.droppedExits += this.exited.forgetServed(
      served,
      nowMs,
      this.options.exitedRetentionMs,
      { maxKept: this.options.maxExited, maxPerUser: this.options.maxExitedPerUser ?? this.options.maxExited },
      (entry) => !entry.hasSlot,
      (entry) => {
        this.onForget?.(entry);
        // Settled parts are there already; a slot still held (an entry dropped past maxExited) goes there when it settles.
        for (const [cgroupId, counters] of entry.overflow ?? []) this.toForgotten(cgroupId, counters);
        this.forget(entry);
      },
    );
  }
}


const scratchSum = zeroCounters();

/** Returns whether any counter grew. */
function recomputeTotal(entry: ProcessEntry): boolean {
  const sum = scratchSum;
  for (let i = 0; i < COUNTERS; i++) sum[i] = entry.hasSlot ? entry.slotCounters[i]! : 0;
  if (entry.settled) for (const counters of entry.settled.values()) addInto(sum, counters);
  if (entry.overflow) for (const counters of entry.overflow.values()) addInto(sum, counters);
  let grew = false;
  for (let i = 0; i < COUNTERS; i++) {
    // Never serve a smaller value than before: atop would take the whole
    // counter as the delta.
    if (sum[i]! > entry.total[i]!) {
      entry.total[i] = sum[i]!;
      grew = true;
    }
  }
  return grew;
}
