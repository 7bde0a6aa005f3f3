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
import { HistoryFileError, HistoryStore, type NamedPeerTraffic, type NamedTraffic, type TierSetting, historyFileError, moveAside } from './history-store.js';
import { type HistoryAnswer, type HistoryQuery, queryHistory } from './history-query.js';

export interface HistoryOptions {
  file: string;
  tiers: readonly TierSetting[];
  /** The tiers that hold per-peer rows (empty: per-peer counting is off). */
  peerTiers: readonly TierSetting[];
  rowsPerBucket: number;
  maxBytes: number;
  /** The group that may read the file (allProcessesGroup), or null. */
  readerGroup: number | null;
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

  constructor(
    private readonly options: HistoryOptions,
    private readonly sources: HistorySources,
    private readonly log: Logger,
  ) {
    this.bucket = this.bucketOf(Date.now());
    sources.table.onForget = (entry) => {
      this.ledger?.onForget(entry);
      this.peerLedger?.onForget(entry, sources.collector.peers?.exitedRows(entry.tgid, entry.startNs));
    };
    sources.table.onForgottenAdded = (cgroupId, counters, settledFrom, ofForgotten) => this.ledger?.onForgottenAdded(cgroupId, counters, settledFrom, ofForgotten);
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
      this.flush();
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
    const stored = this.store.readPosition();
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
    if (stored.lastBucket !== null) this.bucket = Math.max(this.bucket, stored.lastBucket);
    return true;
  }

  /**
   * Writes what was counted since the last flush into the bucket in
   * progress (at the end of a bucket, and once more at shutdown: a partial
   * bucket, which a later flush adds to).
   */
  flush(): void {
    const nowMs = Date.now();
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
      this.sources.collector.readAll();
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
      if (error.corrupt) {
        // The ledger in memory goes on into a new file, from the next flush.
        try {
          this.log.warn(`history: ${this.options.file} is corrupt (${error.message}): moved to ${moveAside(this.options.file)}; a new one is started`);
        } catch (moveErr) {
          this.log.error(`history: ${this.options.file} is corrupt and cannot be moved aside: ${(moveErr as Error).message}`);
        }
      }
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

  /** A cgroup as the file names it: its path, unit and container. */
  private cgroupNamed(cgroupId: number): { cgroup: string; unit: string | null; container: string | null } {
    const name = cgroupId === 0 ? null : this.sources.cgroupNames.nameOf(cgroupId);
    return { cgroup: name?.path ?? (cgroupId === 0 ? '(unknown)' : '(removed)'), unit: name?.unit ?? null, container: name?.containerId ?? null };
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

  get tiers(): readonly TierSetting[] {
    return this.options.tiers;
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
