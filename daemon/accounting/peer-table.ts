// Per-peer counters (opt-in), as the API serves them. The kernel's `peers`
// hash holds each live process's counters per peer, and `peer_overflow` a
// row per process whose pairs did not fit; both only grow while the process
// lives. Once the process has exited, its rows are read a last time, kept
// here as long as the process's own record is, and deleted from the kernel.
// So a process's rows, live or exited, always add up to its counters.
import type { PeerSample } from '../kernel/kernel-counters.js';
import { addInto, zeroCounters } from './counter-math.js';

export interface PeerRecord {
  /** The peer (address: 16 bytes, IPv4 as ::ffff:a.b.c.d, all zero when not known; ports 0 when not kept), or null for the overflow row. */
  peer: { address: Buffer; remotePort: number; localPort: number } | null;
  counters: number[];
}

const processKey = (tgid: number, startNs: number): string => `${tgid}:${startNs}`;

/** One process's rows. */
interface ProcessPeers {
  tgid: number;
  startNs: number;
  rows: PeerRecord[];
}

export class PeerTable {
  /** Live processes' rows as of the last read, by "tgid:startNs". */
  private live = new Map<string, ProcessPeers>();
  /** Exited processes' final rows. */
  private readonly exited = new Map<string, ProcessPeers>();
  private exitedRowCount = 0;
  /** Processes with rows that the process table did not list, by the reads in a row that found them so. */
  private unlisted = new Map<string, number>();
  /** Exited processes whose rows were folded into one overflow row (capacity reached). */
  foldedExited = 0;

  constructor(
    /** Rows of exited processes kept; beyond, an exited process's rows are summed into its overflow row. */
    private readonly exitedCapacity: number,
  ) {}

  /**
   * Applies a read of the kernel maps. `exited(tgid, startNs)` says whether
   * that process has exited; `kept(tgid, startNs)` whether its record is
   * still in the process table. Returns the samples of exited processes,
   * whose entries the caller deletes from the kernel.
   */
  apply(samples: readonly PeerSample[], exited: (tgid: number, startNs: number) => boolean, kept: (tgid: number, startNs: number) => boolean): PeerSample[] {
    const live = new Map<string, ProcessPeers>();
    const final = new Map<string, ProcessPeers>();
    const done: PeerSample[] = [];
    const unlisted = new Map<string, number>();
    for (const sample of samples) {
      const key = processKey(sample.tgid, sample.startNs);
      // A process the table does not list yet was counted after the table's
      // last read; one it still does not list a read later was forgotten
      // with its rows left behind (a failed read at its exit): drop them.
      if (!kept(sample.tgid, sample.startNs)) {
        const reads = (this.unlisted.get(key) ?? 0) + 1;
        if (reads > 1) {
          done.push(sample);
          continue;
        }
        unlisted.set(key, reads);
      }
      const isExited = exited(sample.tgid, sample.startNs);
      const into = isExited ? final : live;
      let process = into.get(key);
      if (!process) into.set(key, (process = { tgid: sample.tgid, startNs: sample.startNs, rows: [] }));
      process.rows.push({ peer: sample.peer, counters: sample.counters });
      if (isExited) done.push(sample);
    }
    this.live = live;
    this.unlisted = unlisted;
    for (const [key, process] of final) this.keepExited(key, process);
    for (const [key, process] of this.exited) {
      if (kept(process.tgid, process.startNs)) continue;
      this.exited.delete(key);
      this.exitedRowCount -= process.rows.length;
    }
    return done;
  }

  private keepExited(key: string, process: ProcessPeers): void {
    if (this.exitedRowCount + process.rows.length > this.exitedCapacity && process.rows.length > 1) {
      const sum = zeroCounters();
      for (const row of process.rows) addInto(sum, row.counters);
      process.rows = [{ peer: null, counters: sum }];
      this.foldedExited++;
    }
    this.exited.set(key, process);
    this.exitedRowCount += process.rows.length;
  }

  /** A process's rows (live or exited); empty when it has none. */
  peersOf(tgid: number, startNs: number): PeerRecord[] {
    const key = processKey(tgid, startNs);
    return (this.live.get(key) ?? this.exited.get(key))?.rows ?? [];
  }

  /** Calls `visit` for every process that has rows, live ones first. */
  forEachProcess(visit: (tgid: number, startNs: number, rows: PeerRecord[]) => void): void {
    for (const { tgid, startNs, rows } of this.live.values()) visit(tgid, startNs, rows);
    for (const { tgid, startNs, rows } of this.exited.values()) visit(tgid, startNs, rows);
  }

  /** (process, peer) pairs of live processes as of the last read: the kernel's `peers` entries. */
  get livePairs(): number {
    let pairs = 0;
    for (const process of this.live.values()) for (const row of process.rows) if (row.peer) pairs++;
    return pairs;
  }

  get exitedRows(): number {
    return this.exitedRowCount;
  }
}
