// Per-peer counters (opt-in), as the API serves them. The kernel's `peers`
// hash holds each live process's counters per peer, and `peer_overflow` a
// row per process whose pairs did not fit; both only grow while the process
// lives, and a live process's rows are read from there when asked for. Once
// the process has exited, its rows are read a last time, kept here as long
// as the process's own record is, and deleted from the kernel. So a
// process's rows, live or exited, always add up to its counters.
import type { PeerAddress, PeerSample } from '../kernel/kernel-counters.js';
import { addInto, zeroCounters } from './counter-math.js';

export interface PeerRecord {
  /** The peer, or null for the process's overflow row. */
  peer: PeerAddress | null;
  counters: number[];
}

const MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** The peer's address as text: a.b.c.d for IPv4 (mapped or not), RFC 5952 for IPv6; null when not known (all zero). */
export function peerAddress(address: Buffer): string | null {
  if (address.every((byte) => byte === 0)) return null;
  if (address.subarray(0, 12).equals(MAPPED_PREFIX)) return [...address.subarray(12)].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(address.readUInt16BE(i).toString(16));
  // The WHATWG URL parser writes IPv6 hosts in RFC 5952's short form (zeros compressed).
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

export const processKey = (tgid: number, startNs: number): string => `${tgid}:${startNs}`;

/** One process's rows. */
export interface ProcessPeers {
  tgid: number;
  startNs: number;
  rows: PeerRecord[];
}

/** Samples as rows, by process key. */
export function rowsByProcess(samples: readonly PeerSample[]): Map<string, ProcessPeers> {
  const byProcess = new Map<string, ProcessPeers>();
  for (const { tgid, startNs, peer, counters } of samples) {
    const key = processKey(tgid, startNs);
    let process = byProcess.get(key);
    if (!process) byProcess.set(key, (process = { tgid, startNs, rows: [] }));
    process.rows.push({ peer, counters });
  }
  return byProcess;
}

export class PeerTable {
  /** Exited processes' final rows, by process key. */
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
   * Applies a full read of the kernel maps. `exited(tgid, startNs)` says
   * whether that process has exited; `kept(tgid, startNs)` whether its
   * record is still in the process table. Returns the samples whose entries
   * the caller deletes from the kernel: exited processes' (kept here), and
   * those of processes forgotten with their rows left behind.
   */
  apply(
    samples: readonly PeerSample[],
    exited: (tgid: number, startNs: number) => boolean,
    kept: (tgid: number, startNs: number) => boolean,
    /** A read of every process's rows, just after a full read of the process table: only it judges orphans. */
    sweep: boolean,
  ): PeerSample[] {
    const done: PeerSample[] = [];
    const final: PeerSample[] = [];
    const unlisted = new Map<string, number>();
    for (const sample of samples) {
      const key = processKey(sample.tgid, sample.startNs);
      // A process the table does not list yet was counted after the table's
      // last read; one it still does not list a read later was forgotten
      // with its rows left behind (a failed read at its exit): drop them.
      if (!kept(sample.tgid, sample.startNs)) {
        if (!sweep) continue; // a read of exited processes' rows says nothing of the others
        const reads = (this.unlisted.get(key) ?? 0) + 1;
        if (reads > 1) done.push(sample);
        else unlisted.set(key, reads);
        continue;
      }
      if (!exited(sample.tgid, sample.startNs)) continue;
      final.push(sample);
      done.push(sample);
    }
    if (sweep) this.unlisted = unlisted;
    for (const [key, process] of rowsByProcess(final)) this.keepExited(key, process);
    for (const [key, process] of this.exited) {
      if (kept(process.tgid, process.startNs)) continue;
      this.exited.delete(key);
      this.exitedRowCount -= process.rows.length;
    }
    return done;
  }

  private keepExited(key: string, process: ProcessPeers): void {
    const previous = this.exited.get(key);
    if (previous) {
      // Rows read after an earlier final read: the two add up (never the same entry twice: read ones are deleted).
      for (const row of previous.rows) process.rows.push(row);
      this.exitedRowCount -= previous.rows.length;
    }
    if (this.exitedRowCount + process.rows.length > this.exitedCapacity && process.rows.length > 1) {
      const sum = zeroCounters();
      for (const row of process.rows) addInto(sum, row.counters);
      process.rows = [{ peer: null, counters: sum }];
      this.foldedExited++;
    }
    this.exited.set(key, process);
    this.exitedRowCount += process.rows.length;
  }

  /** An exited process's final rows, or undefined when it has none here (live, or not read since its exit). */
  exitedRows(tgid: number, startNs: number): PeerRecord[] | undefined {
    return this.exited.get(processKey(tgid, startNs))?.rows;
  }

  get exitedRowTotal(): number {
    return this.exitedRowCount;
  }
}
