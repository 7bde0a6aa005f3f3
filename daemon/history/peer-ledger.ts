// Per-peer history (the daemon runs with --peers): what each process's peer
// rows counted since the last flush, per (workload, peer, port). As for
// the workload rows (position-ledger.ts), a row's traffic is what it counts
// now minus what was written before; a process the table forgets hands over
// its last rows; a plan changes nothing until it is committed.
//
// Peer rows are a breakdown of a process's counters: they add up to them
// while the daemon keeps the process's rows (an exited process's rows are
// kept in memory only, as the API keeps them: a daemon killed meanwhile
// loses them from the peer rows, never from the workload rows).
import type { ProcessEntry } from '../accounting/process-table.js';
import type { PeerRecord } from '../accounting/peer-table.js';
import { peerAddress } from '../accounting/peer-table.js';
import { growth, historyCounters } from './position-ledger.js';
import { HISTORY_COUNTER_COUNT } from './schema.js';

/** A workload's traffic with one peer in one flush. */
export interface PeerTraffic {
  cgroupId: number;
  command: string;
  uid: number | null;
  peer: string;
  port: number;
  counters: number[];
}

export interface PeerFlushPlan {
  traffic: Map<string, PeerTraffic>;
  changed: Map<string, number[]>;
  removed: Set<string>;
}

/** The kernel's key of a row, within its process: stable while the process lives. */
function rowKey(record: PeerRecord): string {
  return record.peer ? `${record.peer.address.toString('hex')}/${record.peer.remotePort}/${record.peer.localPort}` : 'overflow';
}

/** A position's key: the process and its row. */
export function peerPositionKey(tgid: number, startNs: number, row: string): string {
  return `${tgid}:${startNs}:${row}`;
}

/** How a row is named in the file: the address ("(unknown)", "(overflow)") and the port that says which service. */
function peerOf(record: PeerRecord): { peer: string; port: number } {
  if (!record.peer) return { peer: '(overflow)', port: 0 };
  return { peer: peerAddress(record.peer.address) ?? '(unknown)', port: record.peer.remotePort || record.peer.localPort };
}

function addPeerTraffic(into: Map<string, PeerTraffic>, entry: ProcessEntry, record: PeerRecord, delta: readonly number[]): void {
  const { peer, port } = peerOf(record);
  const uid = entry.known ? entry.uid : null;
  const key = `${entry.cgroupId}\u0000${uid ?? ''}\u0000${entry.comm}\u0000${peer}\u0000${port}`;
  let traffic = into.get(key);
  if (!traffic) into.set(key, (traffic = { cgroupId: entry.cgroupId, command: entry.comm || '(unknown)', uid, peer, port, counters: new Array<number>(HISTORY_COUNTER_COUNT).fill(0) }));
  for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) traffic.counters[i]! += delta[i]!;
}


export class PeerLedger {
  private readonly pending = new Map<string, PeerTraffic>();
  private readonly pendingRemoved = new Set<string>();
  /** Positions by process ("tgid:startNs"), then by row: a forgotten process's are found without a scan. */
  private readonly byProcess = new Map<string, Map<string, number[]>>();

  constructor(positions: Map<string, number[]>) {
    for (const [key, counters] of positions) this.set(key, counters);
  }

  private static split(key: string): [string, string] {
    const second = key.indexOf(':', key.indexOf(':') + 1);
    return [key.slice(0, second), key.slice(second + 1)];
  }

  private get(key: string): number[] | undefined {
    const [process, row] = PeerLedger.split(key);
    return this.byProcess.get(process)?.get(row);
  }

  private set(key: string, counters: number[]): void {
    const [process, row] = PeerLedger.split(key);
    let rows = this.byProcess.get(process);
    if (!rows) this.byProcess.set(process, (rows = new Map()));
    rows.set(row, counters);
  }

  private delete(key: string): void {
    const [process, row] = PeerLedger.split(key);
    const rows = this.byProcess.get(process);
    rows?.delete(row);
    if (rows?.size === 0) this.byProcess.delete(process);
  }

  /** Every position, keyed as the file keys them. */
  private *entries(): IterableIterator<[string, number[]]> {
    for (const [process, rows] of this.byProcess) for (const [row, counters] of rows) yield [`${process}:${row}`, counters];
  }

  /** As the table forgets a process: its last rows (`rows`: its final ones, or none kept). */
  onForget(entry: ProcessEntry, rows: readonly PeerRecord[] | undefined): void {
    for (const record of rows ?? []) {
      const delta = growth(historyCounters(record.counters), this.get(peerPositionKey(entry.tgid, entry.startNs, rowKey(record))));
      if (delta) addPeerTraffic(this.pending, entry, record, delta);
    }
    const process = `${entry.tgid}:${entry.startNs}`;
    for (const row of this.byProcess.get(process)?.keys() ?? []) this.pendingRemoved.add(`${process}:${row}`);
    this.byProcess.delete(process);
  }

  /** What grew since the last flush: `rows` has every process of the table's rows, by process key. */
  plan(entries: readonly ProcessEntry[], rows: Map<string, PeerRecord[]>): PeerFlushPlan {
    const traffic = new Map<string, PeerTraffic>();
    for (const [key, pending] of this.pending) traffic.set(key, { ...pending, counters: [...pending.counters] });
    const changed = new Map<string, number[]>();
    for (const entry of entries) {
      for (const record of rows.get(`${entry.tgid}:${entry.startNs}`) ?? []) {
        const key = peerPositionKey(entry.tgid, entry.startNs, rowKey(record));
        const now = historyCounters(record.counters);
        const before = this.get(key);
        const delta = growth(now, before);
        if (!delta) continue;
        addPeerTraffic(traffic, entry, record, delta);
        changed.set(key, now.map((value, i) => Math.max(value, before?.[i] ?? 0)));
      }
    }
    // Only a process gone from the table loses its positions: a row not read this time (an exited process's, between
    // its exit and its rows' last read) keeps its own, or it would be written twice.
    const removed = new Set(this.pendingRemoved);
    const processes = new Set(entries.map((entry) => `${entry.tgid}:${entry.startNs}`));
    for (const [process, rowsOf] of this.byProcess) if (!processes.has(process)) for (const row of rowsOf.keys()) removed.add(`${process}:${row}`);
    return { traffic, changed, removed };
  }

  positionsAfter(plan: PeerFlushPlan): Map<string, number[]> {
    const after = new Map(this.entries());
    for (const [key, position] of plan.changed) after.set(key, position);
    for (const key of plan.removed) after.delete(key);
    return after;
  }

  commit(plan: PeerFlushPlan): void {
    for (const [key, position] of plan.changed) this.set(key, position);
    for (const key of plan.removed) this.delete(key);
    this.pending.clear();
    this.pendingRemoved.clear();
  }
}
