// Keeps the process table in step with the kernel: a full read (exits, slots,
// overflow parts, live processes through the task iterator) for every answer whose
// request arrived after the last read began, so that an answer always covers
// every exit before its request (atop looks exited PIDs up in that very
// answer) while a burst of simultaneous requests shares one read; and a cheap
// periodic check (one drain and one stats lookup when idle) that reads the
// slots only when processes exited or moved, so that their slots are freed
// and exits never pile up in the kernel while no client asks.
import type { KernelCounters, KernelStats, ProcInfoSample } from '../kernel/kernel-counters.js';
import { type Logger, type RateLimitedLog, rateLimited } from '../common/log.js';
import type { KernelRead, ProcessTable } from './process-table.js';
import type { ThreadRecord, ThreadTable } from './thread-table.js';
import { type PeerRecord, type PeerTable, processKey, rowsByProcess } from './peer-table.js';
import type { ProcessEntry } from './process-table.js';
import { UnattributedRows } from './unattributed-rows.js';
import { Stat } from '../kernel/layout.js';

export interface CollectorOptions {
  /** How often every process's peers are read, to drop rows of processes forgotten without them (default 60 s). */
  peerSweepMs?: number;
  /**
   * How often the task iterator says who the live processes are (slots
   * already name who claimed them): follows renames at exec and notices
   * processes whose exit record was lost. Sooner when a process is unnamed.
   */
  liveInfoIntervalMs: number;
}

/** Every process's peers are read this often (the rest of the time, only those of processes that exit). */
const DEFAULT_PEER_SWEEP_MS = 60_000;

export class Collector {
  /** performance.now() when the last full read began. */
  private lastFullReadStartMs = -Infinity;
  /** performance.now() of the last read of every process's peers. */
  private lastPeerSweepMs = -Infinity;
  private lastLiveInfoMs = -Infinity;
  private reportedStats: KernelStats = {
    unattributed: 0,
    unattributedFull: 0,
    lost: 0,
    overShare: 0,
    exitedFull: 0,
    noStorage: 0,
    slotsRetired: 0,
    threadsFull: 0,
    threadsExited: 0,
    peersFull: 0,
    peersLost: 0,
  };
  /** Calls no process row could take, per (uid, cgroup): read with every read of the table. */
  readonly unattributed: UnattributedRows;
  /** The slots are read in place, while the table applies them. */
  private readonly slots: KernelRead['slots'] = (visit) => this.kernel.visitSlots(visit);
  /** Counts full reads: answers built from the same read can be shared. */
  readGeneration = 0;
  /** How long the last read of the kernel's maps took, ms. */
  lastReadMs = 0;
  /** Overflow entries at the last read. */
  overflowEntries = 0;
  private readonly report: RateLimitedLog;

  constructor(
    private readonly kernel: KernelCounters,
    private readonly table: ProcessTable,
    private readonly options: CollectorOptions,
    private readonly log: Logger,
    /** Per-thread counters, or null when per-thread counting is off. */
    readonly threads: ThreadTable | null = null,
    /** Per-peer counters, or null when per-peer counting is off. */
    readonly peers: PeerTable | null = null,
  ) {
    this.report = rateLimited(log);
    this.unattributed = new UnattributedRows(kernel);
  }

  /** Reads everything from the kernel unless a read began after `requestedAtMs` (performance.now()). */
  ensureReadSince(requestedAtMs: number): void {
    if (this.lastFullReadStartMs < requestedAtMs) this.readAll();
  }

  readAll(): void {
    const started = performance.now();
    this.lastFullReadStartMs = started;
    this.readGeneration++;
    // Order matters: exits first, then the overflow parts and the slots
    // (complete for every process drained just before), then the live processes.
    const exited = this.kernel.drainExited();
    const overflow = this.kernel.readOverflow();
    const liveDue = started - this.lastLiveInfoMs >= this.options.liveInfoIntervalMs || this.table.hasUnknownLive();
    const live = liveDue ? this.readLive(started) : null;
    this.finish({ exited, slots: this.slots, overflow, live });
    this.lastReadMs = performance.now() - started;
  }

  /**
   * Every counter read now, without asking who the live processes are (the
   * iterator, the costly part of a full read): for history's flush.
   */
  readCounters(): void {
    this.readParts(this.kernel.drainExited());
  }

  /** The slots and overflow parts, applied with the exits drained just before. */
  private readParts(exited: ProcInfoSample[]): void {
    const started = performance.now();
    this.finish({ exited, slots: this.slots, overflow: this.kernel.readOverflow(), live: null });
    this.lastReadMs = performance.now() - started;
  }

  /**
   * Who the live processes are, or null when the iterator cannot run now
   * (no file descriptor left, say): the exits already drained must still be
   * applied, and the next read tries again.
   */
  private readLive(started: number): ProcInfoSample[] | null {
    try {
      const live = this.kernel.readLive();
      this.lastLiveInfoMs = started;
      return live;
    } catch (err) {
      this.report('error', 'live', `reading the live processes failed (retried at the next read): ${(err as Error).message}`);
      return null;
    }
  }

  /** A process's threads, read from the kernel now; null when per-thread counting is off. */
  threadsOf(tgid: number, processStartNs: number): ThreadRecord[] | null {
    if (!this.threads) return null;
    this.readThreads(this.threads);
    return this.threads.threadsOf(tgid, processStartNs);
  }

  /** Every thread's counters, read from the kernel now; null when per-thread counting is off. */
  readAllThreads(): ThreadTable | null {
    if (this.threads) this.readThreads(this.threads);
    return this.threads;
  }

  /**
   * The peer rows of each of `entries`, by process key: an exited process's
   * from the peer table (once read after its exit), a live one's read from
   * the kernel now, decoding only theirs. Null when per-peer counting is
   * off.
   */
  peersOf(entries: readonly ProcessEntry[]): Map<string, PeerRecord[]> | null {
    if (!this.peers) return null;
    const rows = new Map<string, PeerRecord[]>();
    const fromKernel = new Set<number>();
    for (const entry of entries) {
      const final = entry.exit ? this.peers.exitedRows(entry.tgid, entry.startNs) : undefined;
      if (final) rows.set(processKey(entry.tgid, entry.startNs), final);
      else fromKernel.add(entry.tgid);
    }
    if (fromKernel.size > 0) {
      for (const [key, process] of rowsByProcess(this.kernel.readPeers((tgid) => fromKernel.has(tgid)))) {
        if (!rows.has(key)) rows.set(key, process.rows);
      }
    }
    return rows;
  }

  get countsPeers(): boolean {
    return this.peers !== null;
  }

  /** (process, peer) pairs in the kernel now; null when per-peer counting is off. */
  peerPairs(): number | null {
    return this.peers ? this.kernel.countPeers() : null;
  }

  /**
   * Keeps the final rows of exited processes and deletes them from the
   * kernel, so that they never fill the map: of `tgids` (those that just
   * exited: only theirs are decoded), or of every process (null: the sweep,
   * which also drops rows left by processes forgotten without them).
   */
  private readPeers(peers: PeerTable, tgids: ReadonlySet<number> | null): void {
    const exited = (tgid: number, startNs: number): boolean => this.table.find(tgid, startNs)?.exit != null;
    const kept = (tgid: number, startNs: number): boolean => this.table.find(tgid, startNs) !== undefined;
    const samples = this.kernel.readPeers(tgids ? (tgid) => tgids.has(tgid) : undefined);
    this.kernel.deletePeers(peers.apply(samples, exited, kept, tgids === null));
    if (!tgids) this.lastPeerSweepMs = performance.now();
  }

  private readThreads(threads: ThreadTable): void {
    this.kernel.deleteThreads(threads.apply(this.kernel.readThreads(), Date.now()));
  }

  /**
   * The periodic check, on the daemon's heartbeat (also run sooner by
   * whoever needs exits promptly); says whether it found work (exits, slots
   * to read), which keeps the heartbeat at its base period:
   * drains exited processes and, only when some exited or moved, reads the slots.
   */
  drain(): boolean {
    let found = false;
    try {
      const exited = this.kernel.drainExited();
      const stats = this.kernel.readStats();
      const slotsRetired = stats.slotsRetired !== this.reportedStats.slotsRetired;
      const slotsToRead = exited.length > 0 || slotsRetired || this.table.settlingSlots > 0;
      // Work found (a full exited map too): the next drain must come soon.
      found = slotsToRead || stats.threadsExited !== this.reportedStats.threadsExited || stats.exitedFull !== this.reportedStats.exitedFull;
      if (slotsToRead) this.readParts(exited);
      if (this.peers && performance.now() - this.lastPeerSweepMs >= (this.options.peerSweepMs ?? DEFAULT_PEER_SWEEP_MS)) {
        // The table must know every live process first (right after a start, or on a host where no client asked):
        // a process it does not list is taken for one forgotten, its rows for orphans.
        this.readAll();
        this.readPeers(this.peers, null);
      }
      // Exited threads' entries are deleted as soon as they are read, so that they never fill the map.
      if (this.threads && stats.threadsExited !== this.reportedStats.threadsExited) this.readThreads(this.threads);
      else this.threads?.expire(Date.now());
      this.reportKernelDrops(stats);
    } catch (err) {
      this.report('error', 'drain', `draining exited processes failed (retried at the next drain): ${(err as Error).message}`);
    }
    return found;
  }

  private finish(read: KernelRead): void {
    if (read.overflow) this.overflowEntries = read.overflow.length;
    this.unattributed.read(this.kernel.readStat(Stat.overflowFull)); // read again only when calls went there
    const { lostExits, droppedExits, latestExitSeq, revived } = this.table;
    const chores = this.table.apply(read, Date.now());
    this.kernel.freeSlots(chores.freeSlots);
    this.kernel.deleteOverflow(chores.deleteOverflow);
    // Only once the kernel let them go: a part both in the kernel and in the totals would count twice.
    this.table.handToForgotten(chores);
    // Processes exited: their peers are read a last time and leave the kernel.
    if (this.peers && this.table.latestExitSeq !== latestExitSeq) {
      this.readPeers(this.peers, new Set(this.table.exitedAfter(latestExitSeq).map((entry) => entry.tgid)));
    }
    if (this.table.lostExits > lostExits) {
      this.log.warn(`${this.table.lostExits - lostExits} processes ended without an exit record: retired with their last counters`);
    }
    if (this.table.revived > revived) {
      this.log.error(`${this.table.revived - revived} processes taken for exited were seen alive: live again (the kernel had stopped listing them)`);
    }
    if (this.table.droppedExits > droppedExits) {
      this.log.warn(`${this.table.droppedExits - droppedExits} exited processes dropped before every atop client had them (a client that never asks?)`);
    }
  }

  private reportKernelDrops(stats: KernelStats): void {
    const before = this.reportedStats;
    const grew = (name: keyof KernelStats): number => stats[name] - before[name];
    if (grew('unattributed') > 0)
      this.log.warn(`kernel: overflow map full, ${grew('unattributed')} calls counted per user and cgroup only, not per process (raise --overflow-capacity)`);
    if (grew('unattributedFull') > 0)
      this.log.warn(`kernel: unattributed map full too, ${grew('unattributedFull')} calls counted in the host's row only (raise --unattributed-capacity)`);
    if (grew('overShare') > 0)
      this.log.warn(`kernel: ${grew('overShare')} map entries refused to users past their share of a map (--map-share-per-user-percent): their calls count in coarser rows of their own`);
    if (grew('lost') > 0) this.log.error(`kernel: ${grew('lost')} calls not counted at all: the host's unattributed row is missing (a bug)`);
    if (grew('exitedFull') > 0)
      this.log.warn(`kernel: exited map full, ${grew('exitedFull')} exits not recorded: those processes are retired with their last counters (raise --exited-capacity)`);
    if (grew('peersFull') > 0)
      this.log.warn(`kernel: peers map full, ${grew('peersFull')} calls counted in their processes' overflow rows (raise --peer-capacity)`);
    if (grew('peersLost') > 0)
      this.log.warn(`kernel: peers map and overflow rows full, ${grew('peersLost')} calls not counted per peer (process counters are complete; raise --peer-capacity)`);
    if (grew('threadsFull') > 0)
      this.log.warn(`kernel: threads map full, ${grew('threadsFull')} calls not counted per thread (process counters are complete; raise --thread-capacity)`);
    if (grew('noStorage') > 0)
      this.log.warn(`kernel: ${grew('noStorage')} processes could not be marked for their exit (no task storage)`);
    this.reportedStats = stats;
  }
}
