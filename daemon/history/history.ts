// History, on by default: at the end of each base bucket (a minute), what
// every process part and unattributed row counted since the last flush is
// written, per workload, into the history file, with the daemon's position,
// in one transaction (history-store.ts). A failed write (a full disk, a
// read-only file system) pauses history, says so once, and leaves the
// ledger as it was: the next flush that succeeds writes all of it.
// Counting and every live answer never wait for it.
import type { CgroupNames } from '../accounting/cgroup-names.js';
import type { Collector } from '../accounting/collector.js';
import type { ForgottenTotals } from '../accounting/forgotten-totals.js';
import type { ProcessTable } from '../accounting/process-table.js';
import type { Logger } from '../common/log.js';
import { type FlushPlan, PositionLedger, type WorkloadTraffic } from './position-ledger.js';
import { type PeerFlushPlan, PeerLedger, type PeerTraffic } from './peer-ledger.js';
import type { ProcessEntry } from '../accounting/process-table.js';
import { HistoryFileError, HistoryStore, type NamedPeerTraffic, type NamedTraffic, type StoredPosition, type TierSetting, historyFileError, moveAside } from './history-store.js';
import { type HistoryAnswer, type HistoryQuery, queryHistory } from './history-query.js';

export interface HistoryOptions {
  file: string;
  /** The group that may read the file (allProcessesGroup), or null; SIGHUP may change it (setReaderGroup). */
  readerGroup: number | null;
  tiers: readonly TierSetting[];
  /** The tiers that hold per-peer rows (empty: per-peer counting is off). */
  peerTiers: readonly TierSetting[];
  rowsPerBucket: number;
  maxBytes: number;
}

/** What history reads: the table, the unattributed rows, the forgotten totals, the names of cgroups. */
export interface HistorySources {
  table: ProcessTable;
  collector: Collector;
  forgotten: ForgottenTotals;
  cgroupNames: CgroupNames;
  /** Which kernel counters these are: a file whose positions are of others starts over from them. */
  countersIdentity: string;
  /** Whether this daemon made the kernel's maps (its counters began with it), rather than found them pinned. */
  mapsCreated: boolean;
}

export interface HistoryStatus {
  file: string;
  state: 'writing' | 'paused';
  /** Why it is paused, or null. */
  reason: string | null;
  lastFlushAt: string | null;
  lastFlushSeconds: number;
  flushes: number;
  failedFlushes: number;
  fileBytes: number;
}

/** After a bucket ends, its flush waits this long: exits of its last moments are read with it. */
const FLUSH_DELAY_MS = 50;
/** Events kept for the ledger while the file cannot be read yet. */
const MAX_EARLY_EVENTS = 200_000;
/** A wall clock that moved this much more (or less) than the monotonic one since the last flush has jumped. */
const CLOCK_JUMP_MS = 60_000;

export class History {
  private store: HistoryStore | null = null;
  private ledger: PositionLedger | null = null;
  /** Per-peer positions, when per-peer counting is on. */
  private peerLedger: PeerLedger | null = null;
  /** The next flush writes every position (a file just opened may hold none, or another's). */
  private writeAllPositions = true;
  /** The first flush writes no traffic: what the counters held when a new file was started is not history's. */
  private baseline = false;
  /** The base bucket in progress (its start, Unix seconds): the next flush counts into it. */
  private bucket: number;
  private timer: NodeJS.Timeout | null = null;
  private pausedReason: string | null = null;
  private lastFlushAtMs: number | null = null;
  private lastFlushMs = 0;
  private flushes = 0;
  private failedFlushes = 0;

  /**
   * What the table told before the file could be read (a full disk, a
   * read-only file system at start): applied, in order, to the ledger the
   * file gives; past MAX_EARLY_EVENTS, dropped (said once: what they were
   * is then written as unseen, or not at all).
   */
  private early: Array<(ledger: PositionLedger, peers: PeerLedger | null) => void> = [];
  private earlyDropped = false;
  /** The wall clock and the monotonic clock at the last flush: a jump of the first is not taken for time gone by. */
  private lastFlushClocks: { wallMs: number; monotonicMs: number } | null = null;

  constructor(
    private readonly options: HistoryOptions,
    private readonly sources: HistorySources,
    private readonly log: Logger,
  ) {
    this.bucket = this.bucketOf(Date.now());
    sources.table.onForget = (entry) => {
      const event = PositionLedger.forgetting(entry);
      const rows = sources.collector.peers?.exitedRows(entry.tgid, entry.startNs);
      this.toLedger((ledger, peers) => {
        ledger.onForget(event);
        peers?.onForget(entry, rows);
      });
    };
    sources.table.onForgottenAdded = (cgroupId, counters, settledFrom, ofForgotten) => {
      const event = PositionLedger.handing(cgroupId, counters, settledFrom, ofForgotten);
      this.toLedger((ledger) => ledger.onForgottenAdded(event));
    };
  }

  private toLedger(apply: (ledger: PositionLedger, peers: PeerLedger | null) => void): void {
    if (this.ledger) return apply(this.ledger, this.peerLedger);
    if (this.early.length < MAX_EARLY_EVENTS) this.early.push(apply);
    else if (!this.earlyDropped) {
      this.earlyDropped = true;
      this.log.warn(`history: more than ${MAX_EARLY_EVENTS} exits before ${this.options.file} could be read: what the processes after them did is written per cgroup as unseen`);
    }
  }

  private get baseSeconds(): number {
    return this.options.tiers[0]!.bucketSeconds;
  }

  private bucketOf(ms: number): number {
    return Math.floor(ms / 1000 / this.baseSeconds) * this.baseSeconds;
  }

  /** Opens the file and starts flushing at each bucket's end. */
  start(): void {
    this.open();
    this.schedule();
  }

  private schedule(): void {
    const next = (this.bucketOf(Date.now()) + this.baseSeconds) * 1000 + FLUSH_DELAY_MS;
    this.timer = setTimeout(() => {
      try {
        this.flush();
      } catch (err) {
        // A bug: logged, and history goes on at the next bucket (the daemon never dies of it).
        this.log.error(`history: a flush failed (retried at the next bucket): ${(err as Error).stack ?? String(err)}`);
      }
      this.schedule();
    }, Math.max(0, next - Date.now()));
    this.timer.unref();
  }

  /** Opens the file, or notes why it cannot be now (tried again at the next flush). */
  private open(): boolean {
    if (this.store) return true;
    try {
      this.store = HistoryStore.open(this.options.file, this.options, (message) => this.log.warn(message));
    } catch (err) {
      this.pause(historyFileError(err));
      return false;
    }
    this.writeAllPositions = true;
    if (this.ledger) return true; // reopened after a pause: the ledger in memory is exact
    let stored: StoredPosition;
    try {
      stored = this.store.readPosition();
    } catch (err) {
      const error = historyFileError(err);
      this.store.close();
      this.store = null;
      if (error.corrupt) this.moveCorruptAside(error);
      this.pause(error);
      return false;
    }
    const { countersIdentity, mapsCreated } = this.sources;
    const peersOn = this.options.peerTiers.length > 0;
    if (stored.identity === countersIdentity) {
      this.ledger = new PositionLedger(stored.positions, stored.forgotten);
      this.peerLedger = peersOn ? new PeerLedger(stored.peerPositions) : null;
      this.log.info(`history: ${this.options.file}, continuing where it stopped (what was counted meanwhile goes into the bucket in progress)`);
    } else {
      this.ledger = new PositionLedger(new Map(), new Map());
      this.peerLedger = peersOn ? new PeerLedger(new Map()) : null;
      this.baseline = !mapsCreated;
      const why = stored.identity === null ? 'a new file' : 'its positions are of counters this kernel no longer has (a reboot, or maps made anew)';
      this.log.info(`history: ${this.options.file}, ${why}: ${this.baseline ? 'history starts now (what the pinned counters held before is not in it)' : 'history starts with these counters'}`);
    }
    // A bucket written under a clock that was ahead (and set back since) is not waited for.
    if (stored.lastBucket !== null && stored.lastBucket <= this.bucketOf(Date.now()) + this.baseSeconds) this.bucket = Math.max(this.bucket, stored.lastBucket);
    for (const apply of this.early) apply(this.ledger, this.peerLedger);
    this.early = [];
    return true;
  }

  private moveCorruptAside(error: HistoryFileError): void {
    try {
      this.log.warn(`history: ${this.options.file} is corrupt (${error.message}): moved to ${moveAside(this.options.file)}; a new one is started`);
    } catch (moveErr) {
      this.log.error(`history: ${this.options.file} is corrupt and cannot be moved aside: ${(moveErr as Error).message}`);
    }
  }

  /** allProcessesGroup changed (SIGHUP): the file's group follows. */
  setReaderGroup(group: number | null): void {
    this.options.readerGroup = group;
    this.store?.setReaderGroup(group);
  }

  /**
   * Writes what was counted since the last flush into the bucket in
   * progress (at the end of a bucket, and once more at shutdown: a partial
   * bucket, which a later flush adds to).
   */
  flush(): void {
    const nowMs = Date.now();
    const monotonicMs = performance.now();
    const previous = this.lastFlushClocks;
    const jumpMs = previous === null ? 0 : nowMs - previous.wallMs - (monotonicMs - previous.monotonicMs);
    const clockJumped = Math.abs(jumpMs) > CLOCK_JUMP_MS;
    if (clockJumped) this.log.warn(`history: the clock jumped by ${Math.round(jumpMs / 1000)} s since the last flush: nothing ages out of history at this flush`);
    this.lastFlushClocks = { wallMs: nowMs, monotonicMs };
    const into = this.bucket;
    // A clock set back never writes behind what the coarser tiers have summed.
    this.bucket = Math.max(this.bucket, this.bucketOf(nowMs));
    if (!this.open()) return;
    const store = this.store!;
    const ledger = this.ledger!;
    const started = performance.now();
    let plan: FlushPlan;
    let peerPlan: PeerFlushPlan | null = null;
    try {
      this.sources.collector.readCounters();
      plan = ledger.plan({
        forEachEntry: (visit) => this.sources.table.forEachEntry(visit),
        unattributed: this.sources.collector.unattributed.all,
        forgotten: new Map(this.sources.forgotten.entries()),
      });
      if (this.peerLedger) {
        const entries: ProcessEntry[] = [];
        this.sources.table.forEachEntry((entry) => entries.push(entry));
        peerPlan = this.peerLedger.plan(entries, this.sources.collector.peersOf(entries) ?? new Map());
      }
    } catch (err) {
      this.log.error(`history: reading the counters failed (retried at the next flush): ${(err as Error).message}`);
      return;
    }
    const allPositions = this.writeAllPositions;
    try {
      store.write({
        identity: this.sources.countersIdentity,
        bucket: into,
        nowSeconds: Math.floor(nowMs / 1000),
        expire: !clockJumped,
        traffic: this.baseline ? [] : [...plan.traffic.values()].map((traffic) => this.named(traffic)),
        changed: allPositions ? ledger.positionsAfter(plan) : plan.changed,
        removed: plan.removed,
        replacePositions: allPositions,
        forgottenBefore: ledger.forgottenAccountedNow,
        forgottenAfter: plan.forgotten,
        peers:
          peerPlan && this.peerLedger
            ? {
                traffic: this.baseline ? [] : [...peerPlan.traffic.values()].map((traffic) => this.namedPeer(traffic)),
                changed: allPositions ? this.peerLedger.positionsAfter(peerPlan) : peerPlan.changed,
                removed: peerPlan.removed,
                replacePositions: allPositions,
              }
            : null,
      });
      ledger.commit(plan);
      if (peerPlan) this.peerLedger?.commit(peerPlan);
      store.enforceBound();
    } catch (err) {
      this.failedFlushes++;
      const error = historyFileError(err);
      this.pause(error);
      store.close();
      this.store = null;
      // The ledger in memory goes on into a new file, from the next flush.
      if (error.corrupt) this.moveCorruptAside(error);
      return;
    }
    this.baseline = false;
    this.writeAllPositions = false;
    this.lastFlushAtMs = nowMs;
    this.lastFlushMs = performance.now() - started;
    this.flushes++;
    if (this.pausedReason !== null) {
      this.log.info(`history: writing again to ${this.options.file}`);
      this.pausedReason = null;
    }
  }

  private pause(error: HistoryFileError): void {
    if (this.pausedReason === null) this.log.warn(`history: paused, ${this.options.file} cannot be written (${error.message}); counting and live answers go on, history resumes by itself`);
    this.pausedReason = error.message;
  }

  private named(traffic: WorkloadTraffic): NamedTraffic {
    return { ...this.cgroupNamed(traffic.cgroupId), command: traffic.command, uid: traffic.uid, counters: traffic.counters, pids: traffic.pids };
  }

  private namedPeer(traffic: PeerTraffic): NamedPeerTraffic {
    const { cgroupId, ...rest } = traffic;
    return { ...this.cgroupNamed(cgroupId), ...rest };
  }

  /** A cgroup as the file names it: its path, unit, container id and its container's names. */
  private cgroupNamed(cgroupId: number): Pick<NamedTraffic, 'cgroup' | 'unit' | 'container' | 'containerName' | 'pod' | 'namespace'> {
    const name = cgroupId === 0 ? null : this.sources.cgroupNames.nameOf(cgroupId);
    const container = name?.container ?? null;
    return {
      cgroup: name?.path ?? (cgroupId === 0 ? '(unknown)' : '(removed)'),
      unit: name?.unit ?? null,
      container: name?.containerId ?? null,
      containerName: container?.name ?? null,
      pod: container?.pod ?? null,
      namespace: container?.namespace ?? null,
    };
  }

  /** Answers a question; throws HistoryQueryError for a bad one, HistoryFileError when the file cannot be read now. */
  query(query: Omit<HistoryQuery, 'nowSeconds'>): HistoryAnswer {
    if (!this.open()) throw new HistoryFileError(`history is paused: ${this.pausedReason}`, false);
    try {
      const tiers = query.by === 'peer' ? this.options.peerTiers : this.options.tiers;
      return queryHistory(this.store!.reader, tiers, { ...query, nowSeconds: Math.floor(Date.now() / 1000) });
    } catch (err) {
      if (err instanceof Error && 'errcode' in err) throw historyFileError(err);
      throw err;
    }
  }

  status(): HistoryStatus {
    return {
      file: this.options.file,
      state: this.pausedReason === null ? 'writing' : 'paused',
      reason: this.pausedReason,
      lastFlushAt: this.lastFlushAtMs === null ? null : new Date(this.lastFlushAtMs).toISOString(),
      lastFlushSeconds: this.lastFlushMs / 1000,
      flushes: this.flushes,
      failedFlushes: this.failedFlushes,
      fileBytes: this.store?.sizeBytes() ?? 0,
    };
  }

  /** At shutdown: the bucket in progress is written as far as it went, and the file closed. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flush();
    this.store?.close();
    this.store = null;
    this.sources.table.onForget = null;
    this.sources.table.onForgottenAdded = null;
  }
}
