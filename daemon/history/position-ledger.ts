// What history has already written of every counter the daemon reads, so
// that each counted call lands in history exactly once: the traffic of a
// flush is, per process part (process, cgroup) and per unattributed row,
// what it counts now minus what was written before (its position).
//
// Nothing is lost between flushes either:
// - a process the table forgets (exited, served) hands over its last
//   traffic at that moment (onForget), kept in memory until the next flush;
// - whatever reached the kernel's forgotten totals without being seen here
//   (the daemon killed before it flushed what it forgot, a part that
//   vanished across a restart, an unattributed row folded) is the growth of
//   those totals that no position explains: it is written per cgroup, as
//   "(exited unseen)".
//
// A flush is planned without changing anything (plan), written, and only
// then committed: a flush that failed (a full disk) leaves the ledger as it
// was, and the next one writes all of it.
import { COUNTERS, Direction, Family, Kind, Protocol, counterIndex } from '../kernel/layout.js';
import { type ProcessEntry, countersByCgroup } from '../accounting/process-table.js';
import { addInto, addUnder } from '../accounting/counter-math.js';
import type { UnattributedSample } from '../kernel/kernel-counters.js';
import { HOST_UID } from '../kernel/layout.js';
import { HISTORY_COUNTER_COUNT } from './schema.js';

/** What a workload is: processes of one command and user in one cgroup; uid null for rows of many users. */
export interface Workload {
  cgroupId: number;
  command: string;
  uid: number | null;
}

/** A workload's traffic in one flush. */
export interface WorkloadTraffic extends Workload {
  counters: number[];
  /** A few of its processes' pids (a hint). */
  pids: number[];
}

/** Where a counter comes from: a process's part in one cgroup (kind 0), or an unattributed row (kind 1). */
export interface PositionKey {
  kind: 0 | 1;
  a: number;
  b: number;
  cgroupId: number;
}

/**
 * What history has written of a counter (process part or unattributed row),
 * and of a process part, how much of it the table handed to the forgotten
 * totals (null: none).
 */
export interface Position {
  written: number[];
  settled: number[] | null;
}

/** One flush, planned: what to write, and the ledger's state once it is written. */
export interface FlushPlan {
  traffic: Map<string, WorkloadTraffic>;
  /** Positions that changed (new values), and positions to delete. */
  changed: Map<string, Position>;
  removed: Set<string>;
  /** The kernel's forgotten totals, as now accounted. */
  forgotten: Map<number, number[]>;
  /** The processes looked at, with their counters summed. */
  sums: Map<ProcessEntry, number>;
}

export const UNATTRIBUTED_COMMAND = '(unattributed)';
/** Forgotten processes' traffic past MAX_PENDING workloads between two flushes (a churn of names, a long pause). */
const MANY_COMMAND = '(many commands)';
/** Workloads of forgotten processes, and forgotten slots, kept between two flushes at most. */
const MAX_PENDING = 50_000;
export const UNSEEN_COMMAND = '(exited unseen)';
const UNKNOWN_COMMAND = '(unknown)';
const PIDS_KEPT = 4;

/** The daemon's 16 counters (family × protocol × direction × kind) → history's 8 (both families summed). */
const TO_HISTORY = new Array<number>(COUNTERS);
for (const family of [Family.ipv4, Family.ipv6])
  for (const [p, protocol] of [Protocol.tcp, Protocol.udp].entries())
    for (const [d, direction] of [Direction.send, Direction.recv].entries())
      for (const [k, kind] of [Kind.calls, Kind.bytes].entries()) TO_HISTORY[counterIndex(family, protocol, direction, kind)] = p * 4 + d * 2 + k;

export function historyCounters(counters: ArrayLike<number>): number[] {
  const folded = new Array<number>(HISTORY_COUNTER_COUNT).fill(0);
  for (let i = 0; i < COUNTERS; i++) folded[TO_HISTORY[i]!]! += counters[i]!;
  return folded;
}

export function positionKey(key: PositionKey): string {
  return `${key.kind}:${key.a}:${key.b}:${key.cgroupId}`;
}

export function parsePositionKey(text: string): PositionKey {
  const [kind, a, b, cgroupId] = text.split(':').map(Number) as [0 | 1, number, number, number];
  return { kind, a, b, cgroupId };
}

export function workloadKey(workload: Workload): string {
  return `${workload.cgroupId}\u0000${workload.uid ?? ''}\u0000${workload.command}`;
}

/** Adds `counters` (and a pid) to `workload`'s traffic in `into`. */
export function addTraffic(into: Map<string, WorkloadTraffic>, workload: Workload, counters: ArrayLike<number>, pids: readonly number[]): void {
  const key = workloadKey(workload);
  let traffic = into.get(key);
  if (!traffic) into.set(key, (traffic = { ...workload, counters: new Array<number>(HISTORY_COUNTER_COUNT).fill(0), pids: [] }));
  for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) traffic.counters[i]! += counters[i]!;
  for (const pid of pids) if (traffic.pids.length < PIDS_KEPT && !traffic.pids.includes(pid)) traffic.pids.push(pid);
}

/** Whether any counter of `now` is above `before`'s. */
function grew(now: readonly number[], before: readonly number[] | undefined): boolean {
  for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) if (now[i]! > (before?.[i] ?? 0)) return true;
  return false;
}

/** A process's 16 counters summed: they never go down, so an equal sum is an equal set. */
function totalOf(total: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < total.length; i++) sum += total[i]!;
  return sum;
}

/** The key of a process's slot part, made once per process. */
const slotKeys = new WeakMap<ProcessEntry, { cgroupId: number; key: string }>();
function slotKeyOf(entry: ProcessEntry): string {
  const cached = slotKeys.get(entry);
  if (cached?.cgroupId === entry.slotCgroupId) return cached.key;
  const key = positionKey({ kind: 0, a: entry.tgid, b: entry.startNs, cgroupId: entry.slotCgroupId });
  slotKeys.set(entry, { cgroupId: entry.slotCgroupId, key });
  return key;
}

/** `now − before`, each counter at least 0; null when nothing grew. */
export function growth(now: readonly number[], before: readonly number[] | undefined): number[] | null {
  let grew = false;
  const delta = new Array<number>(HISTORY_COUNTER_COUNT);
  for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) {
    delta[i] = Math.max(0, now[i]! - (before?.[i] ?? 0));
    if (delta[i]! > 0) grew = true;
  }
  return grew ? delta : null;
}

function processWorkload(entry: ProcessEntry, cgroupId: number): Workload {
  return { cgroupId, command: entry.comm || UNKNOWN_COMMAND, uid: entry.known ? entry.uid : null };
}

/** A process the table forgets, as the ledger needs it: its parts (what the kernel held of each) and a slot it still held. */
export interface ForgetEvent {
  pid: number;
  parts: Array<{ key: string; inKernel: number[] | null; workload: Workload }>;
  heldSlot: { key: string; counters: number[] } | null;
}

/** A part the table adds to the forgotten totals: its cgroup, counters, position key (a settled part's) and whether its process was forgotten already. */
export interface HandOverEvent {
  cgroupId: number;
  counters: number[];
  key: string | null;
  ofForgotten: boolean;
}

/** What the ledger reads at a flush: the table, the unattributed rows, the forgotten totals. */
export interface LedgerSources {
  forEachEntry(visit: (entry: ProcessEntry) => void): void;
  unattributed: readonly UnattributedSample[];
  forgotten: Map<number, number[]>;
}

export class PositionLedger {
  /** Forgotten processes' last traffic since the last flush. */
  private readonly pending = new Map<string, WorkloadTraffic>();
  /** Their positions, to delete at the next flush. */
  private readonly pendingRemoved = new Set<string>();
  /** Positions whose settled part grew since the last flush (the file must have it). */
  private readonly settledSince = new Set<string>();
  /** Per cgroup, what the table handed to the forgotten totals of processes followed here. */
  private readonly handedOver = new Map<number, number[]>();
  /** The positions the file holds: only those are deleted from it. */
  private readonly inFile: Set<string>;
  /**
   * Parts of processes forgotten while they still held their slot (dropped
   * past the table's bound): the slot's counters written then, which the
   * slot's last read hands to the forgotten totals later; kept until that
   * read (at most MAX_PENDING; past it such a slot's later growth is unseen).
   */
  private readonly writtenAtForget = new Map<string, number[]>();
  /** Each process's counters summed at the last committed plan: one that did not grow is skipped. */
  private readonly sums = new WeakMap<ProcessEntry, number>();
  /** Whether a plan was committed (the first looks at every part, for those gone across a restart). */
  private checkedAll = false;

  constructor(
    private readonly positions: Map<string, Position>,
    /** The forgotten totals (history's 8 counters) as last accounted. */
    private forgottenAccounted: Map<number, number[]>,
  ) {
    this.inFile = new Set(positions.keys());
  }

  /**
   * A process part's counters: what the kernel still holds of it (its slot
   * and overflow parts, as the table read them) and what went to the
   * forgotten totals, as the ledger saw it go (settled): across a restart the
   * table knows only the first, the file keeps the second.
   */
  private partValue(key: string, inKernel: ArrayLike<number> | undefined): number[] {
    return this.withSettled(key, inKernel ? historyCounters(inKernel) : null);
  }

  /** `inKernel` (history's 8 counters, or null for none) plus what the ledger saw `key` settle. */
  private withSettled(key: string, inKernel: readonly number[] | null): number[] {
    const value = inKernel ? [...inKernel] : new Array<number>(HISTORY_COUNTER_COUNT).fill(0);
    const settled = this.positions.get(key)?.settled;
    if (settled) addInto(value, settled, HISTORY_COUNTER_COUNT);
    return value;
  }

  /** The keys of `entry`'s parts, with what the kernel holds of each. */
  private static parts(entry: ProcessEntry): Map<string, ArrayLike<number> | undefined> {
    const parts = new Map<string, ArrayLike<number> | undefined>();
    const inKernel = countersByCgroup(entry, false);
    for (const cgroupId of new Set([...inKernel.keys(), ...(entry.settled?.keys() ?? [])])) {
      parts.set(positionKey({ kind: 0, a: entry.tgid, b: entry.startNs, cgroupId }), inKernel.get(cgroupId));
    }
    return parts;
  }

  /** What the ledger needs of a process the table forgets, taken at that moment. */
  static forgetting(entry: ProcessEntry): ForgetEvent {
    const parts = [...PositionLedger.parts(entry)].map(([key, inKernel]) => ({
      key,
      inKernel: inKernel ? historyCounters(inKernel) : null,
      workload: processWorkload(entry, parsePositionKey(key).cgroupId),
    }));
    const heldSlot = entry.hasSlot ? { key: positionKey({ kind: 0, a: entry.tgid, b: entry.startNs, cgroupId: entry.slotCgroupId }), counters: historyCounters(entry.slotCounters) } : null;
    return { pid: entry.tgid, parts, heldSlot };
  }

  /** What the ledger needs of a part the table adds to the forgotten totals, taken at that moment. */
  static handing(cgroupId: number, counters: ArrayLike<number>, settledFrom: ProcessEntry | null, ofForgotten: boolean): HandOverEvent {
    const key = settledFrom ? positionKey({ kind: 0, a: settledFrom.tgid, b: settledFrom.startNs, cgroupId }) : null;
    return { cgroupId, counters: historyCounters(counters), key, ofForgotten };
  }

  /** As the table forgets an exited process: its last traffic. */
  onForget(event: ForgetEvent): void {
    for (const { key, inKernel, workload } of event.parts) {
      const value = this.withSettled(key, inKernel);
      const position = this.positions.get(key);
      const delta = growth(value, position?.written);
      if (delta) this.addPending(workload, delta, event.pid);
      if (event.heldSlot?.key === key && this.writtenAtForget.size < MAX_PENDING) {
        // Its slot is still in the kernel (read for the last time later, or by the next daemon, which must find
        // what was written of it): the position stays, written up to now, until that last read.
        this.positions.set(key, { written: value.map((v, i) => Math.max(v, position?.written[i] ?? 0)), settled: position?.settled ? [...position.settled] : null });
        this.settledSince.add(key);
        this.writtenAtForget.set(key, event.heldSlot.counters);
        continue;
      }
      this.positions.delete(key);
      if (this.inFile.has(key)) this.pendingRemoved.add(key);
      this.settledSince.delete(key);
    }
  }

  /** A forgotten process's last traffic, until the next flush; past MAX_PENDING workloads, in one row per cgroup. */
  private addPending(workload: Workload, delta: number[], pid: number): void {
    const bounded = this.pending.size < MAX_PENDING || this.pending.has(workloadKey(workload)) ? workload : { cgroupId: workload.cgroupId, command: MANY_COMMAND, uid: null };
    addTraffic(this.pending, bounded, delta, [pid]);
  }

  /**
   * As the table adds a part to the forgotten totals: that growth is
   * accounted for (the part's traffic is written from its counters), and a
   * part read for the last time (its key) is noted as settled. Of a process
   * already forgotten, only what was written of its slot when it was.
   */
  onForgottenAdded(event: HandOverEvent): void {
    const { cgroupId, counters, key } = event;
    if (event.ofForgotten) {
      // What was written of that slot when its process was forgotten is accounted for; its growth since is not
      // (unseen); its position, kept for this read, goes now.
      const written = key ? this.writtenAtForget.get(key) : undefined;
      if (!written) return;
      this.writtenAtForget.delete(key!);
      addUnder(this.handedOver, cgroupId, counters.map((value, i) => Math.min(value, written[i]!)), HISTORY_COUNTER_COUNT);
      this.positions.delete(key!);
      this.settledSince.delete(key!);
      if (this.inFile.has(key!)) this.pendingRemoved.add(key!);
      return;
    }
    addUnder(this.handedOver, cgroupId, counters, HISTORY_COUNTER_COUNT);
    if (!key) return;
    // Replaced, never changed in place: a plan or a file's copy may hold the old one.
    const position = this.positions.get(key);
    const settled = position?.settled ? [...position.settled] : new Array<number>(HISTORY_COUNTER_COUNT).fill(0);
    for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) settled[i]! += counters[i]!;
    this.positions.set(key, { written: position?.written ?? new Array<number>(HISTORY_COUNTER_COUNT).fill(0), settled });
    this.settledSince.add(key);
  }

  /** What has grown since the last flush, and the state after it; changes nothing. */
  plan(sources: LedgerSources): FlushPlan {
    const traffic = new Map<string, WorkloadTraffic>();
    for (const [key, pending] of this.pending) traffic.set(key, { ...pending, counters: [...pending.counters], pids: [...pending.pids] });
    const changed = new Map<string, Position>();
    for (const key of this.settledSince) {
      const position = this.positions.get(key);
      if (position) changed.set(key, copyPosition(position));
    }
    const seen = new Set<string>();
    const sums = new Map<ProcessEntry, number>();
    const account = (key: string, now: number[], workload: () => Workload, pids: readonly number[]): void => {
      seen.add(key);
      const position = this.positions.get(key);
      if (!grew(now, position?.written)) return;
      addTraffic(traffic, workload(), growth(now, position?.written)!, pids);
      changed.set(key, { written: now.map((value, i) => Math.max(value, position?.written[i] ?? 0)), settled: position?.settled ? [...position.settled] : null });
    };
    sources.forEachEntry((entry) => {
      // A process whose counters did not grow since the last flush has nothing to write, and its parts are as they were
      // (within one run, a part leaves only with its process: forgotten). The first plan looks at every one.
      const sum = totalOf(entry.total);
      if (this.checkedAll && this.sums.get(entry) === sum) return;
      sums.set(entry, sum);
      const pids = [entry.tgid];
      if (!entry.settled && !entry.overflow) {
        // The common case: one part, its slot.
        if (!entry.hasSlot) return;
        const key = slotKeyOf(entry);
        account(key, this.partValue(key, entry.slotCounters), () => processWorkload(entry, entry.slotCgroupId), pids);
        return;
      }
      for (const [key, inKernel] of PositionLedger.parts(entry)) {
        account(key, this.partValue(key, inKernel), () => processWorkload(entry, parsePositionKey(key).cgroupId), pids);
      }
    });
    for (const row of sources.unattributed) {
      const uid = row.uid === HOST_UID ? null : row.uid;
      account(positionKey({ kind: 1, a: row.uid, b: 0, cgroupId: row.cgroupId }), historyCounters(row.counters), () => ({ cgroupId: row.cgroupId, command: UNATTRIBUTED_COMMAND, uid }), []);
    }
    // Parts gone without a forget (across a restart, folded rows): what was
    // written of them beyond what was settled is in the forgotten totals'
    // growth (they went there), and accounted for.
    const removed = new Set(this.pendingRemoved);
    const explained = new Map<number, number[]>();
    for (const [cgroupId, counters] of this.handedOver) addUnder(explained, cgroupId, counters, HISTORY_COUNTER_COUNT);
    for (const [key, position] of this.positions) {
      // After the first plan only unattributed rows can go unseen (folded): a process's parts go with its forget.
      if (seen.has(key) || (this.checkedAll && !key.startsWith('1:')) || this.writtenAtForget.has(key)) continue;
      if (this.inFile.has(key)) removed.add(key);
      changed.delete(key);
      addUnder(explained, parsePositionKey(key).cgroupId, position.written.map((value, i) => Math.max(0, value - (position.settled?.[i] ?? 0))), HISTORY_COUNTER_COUNT);
    }
    // A key forgotten and then made again (a new entry of the same process and cgroup) is written, not deleted.
    for (const key of changed.keys()) removed.delete(key);
    const forgotten = new Map<number, number[]>();
    for (const [cgroupId, counters] of sources.forgotten) forgotten.set(cgroupId, historyCounters(counters));
    for (const [cgroupId, unseen] of unexplainedGrowth(forgotten, this.forgottenAccounted, explained)) {
      addTraffic(traffic, { cgroupId, command: UNSEEN_COMMAND, uid: null }, unseen, []);
    }
    return { traffic, changed, removed, forgotten, sums };
  }

  /** The forgotten totals as last accounted (what the file holds). */
  get forgottenAccountedNow(): Map<number, number[]> {
    return this.forgottenAccounted;
  }

  /** Every position once `plan` is committed: for a file that must be given all of them. */
  positionsAfter(plan: FlushPlan): Map<string, Position> {
    const after = new Map(this.positions);
    for (const [key, position] of plan.changed) after.set(key, position);
    for (const key of plan.removed) after.delete(key);
    return after;
  }

  /** The plan was written: it is now the ledger's state. */
  commit(plan: FlushPlan): void {
    for (const [entry, sum] of plan.sums) this.sums.set(entry, sum);
    this.checkedAll = true;
    for (const key of plan.changed.keys()) this.inFile.add(key);
    for (const key of plan.removed) {
      this.inFile.delete(key);
      this.settledSince.delete(key);
    }
    // Vanished parts that were never in the file go too.
    for (const key of this.positions.keys()) if (!this.inFile.has(key) && !plan.changed.has(key) && !this.settledSince.has(key)) this.positions.delete(key);
    for (const key of this.settledSince) if (!this.positions.has(key)) this.settledSince.delete(key);
    for (const [key, position] of plan.changed) {
      const current = this.positions.get(key);
      // A part settled again between the plan and now keeps what it settled since.
      if (current?.settled && position.settled && current.settled.some((value, i) => value !== position.settled![i])) position.settled = [...current.settled];
      else this.settledSince.delete(key);
      this.positions.set(key, position);
    }
    for (const key of plan.removed) this.positions.delete(key);
    this.pending.clear();
    this.pendingRemoved.clear();
    this.handedOver.clear();
    this.forgottenAccounted = plan.forgotten;
  }
}

function copyPosition(position: Position): Position {
  return { written: [...position.written], settled: position.settled ? [...position.settled] : null };
}

/**
 * Per cgroup, the growth of the forgotten totals that `explained` does not
 * account for. A cgroup folded into the removed bucket (id 0) shrinks by
 * what that bucket grows: shrinking cgroups are netted against it. What
 * stays negative (parts the kernel lost when a daemon was killed, already
 * written here) is dropped.
 */
function unexplainedGrowth(now: Map<number, number[]>, before: Map<number, number[]>, explained: Map<number, number[]>): Map<number, number[]> {
  const diff = new Map<number, number[]>();
  for (const id of new Set([...now.keys(), ...before.keys(), ...explained.keys()])) {
    const counters = new Array<number>(HISTORY_COUNTER_COUNT);
    for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) counters[i] = (now.get(id)?.[i] ?? 0) - (before.get(id)?.[i] ?? 0) - (explained.get(id)?.[i] ?? 0);
    diff.set(id, counters);
  }
  const removedBucket = diff.get(0) ?? new Array<number>(HISTORY_COUNTER_COUNT).fill(0);
  for (const [id, counters] of diff) {
    if (id === 0 || !counters.some((value) => value < 0)) continue;
    for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) {
      if (counters[i]! < 0) {
        removedBucket[i]! += counters[i]!;
        counters[i] = 0;
      }
    }
  }
  diff.set(0, removedBucket);
  const unexplained = new Map<number, number[]>();
  for (const [id, counters] of diff) if (counters.some((value) => value > 0)) unexplained.set(id, counters.map((value) => Math.max(0, value)));
  return unexplained;
}
