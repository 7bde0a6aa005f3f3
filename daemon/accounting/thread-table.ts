// Per-thread counters (opt-in), as the API serves them: the kernel's thread
// slots and `threads` hash hold live threads and those that exited since the
// last read; an exited thread's slot is freed (or its entry deleted) once
// read, and its final counters are kept here
// for the retention time of exited processes, so that a process's threads,
// live and exited, add up to the process's own counters.
import type { ThreadSample } from '../kernel/kernel-counters.js';

export interface ThreadRecord {
  tid: number;
  tgid: number;
  startNs: number;
  processStartNs: number;
  comm: string;
  /** Date.now() when the daemon saw the thread had exited, or null while it lives. */
  exitedAtMs: number | null;
  counters: number[];
}

export class ThreadTable {
  /** Final counters of exited threads, by "tid:startNs". */
  private readonly exited = new Map<string, ThreadRecord>();
  /** Live threads as of the last read. */
  private live: ThreadRecord[] = [];

  /** Exited threads dropped before their retention time ended, because more than maxExited were kept. */
  droppedExited = 0;

  constructor(
    private retentionMs: number,
    /** Bounds the memory a process that churns threads can take. */
    private readonly maxExited: number,
  ) {}

  /**
   * Applies a read of the kernel map; returns the exited threads' samples,
   * whose entries the caller deletes from the kernel.
   */
  apply(samples: readonly ThreadSample[], nowMs: number): ThreadSample[] {
    const done: ThreadSample[] = [];
    this.live = [];
    for (const sample of samples) {
      const record: ThreadRecord = {
        tid: sample.tid,
        tgid: sample.tgid,
        startNs: sample.startNs,
        processStartNs: sample.processStartNs,
        comm: sample.comm,
        exitedAtMs: sample.exited ? nowMs : null,
        counters: sample.counters,
      };
      if (sample.exited) {
        this.exited.set(`${sample.tid}:${sample.startNs}`, record);
        done.push(sample);
      } else {
        this.live.push(record);
      }
    }
    this.expire(nowMs);
    for (const key of this.exited.keys()) {
      if (this.exited.size <= this.maxExited) break;
      this.exited.delete(key); // the oldest first: a Map iterates in insertion order
      this.droppedExited++;
    }
    return done;
  }

  /** Forgets exited threads older than the retention time. */
  expire(nowMs: number): void {
    for (const [key, record] of this.exited) {
      if (nowMs - record.exitedAtMs! >= this.retentionMs) this.exited.delete(key);
    }
  }

  setRetention(ms: number): void {
    this.retentionMs = ms;
  }

  /** The threads of one process (tgid and start time), live ones first, each by tid. */
  threadsOf(tgid: number, processStartNs: number): ThreadRecord[] {
    const mine = (record: ThreadRecord): boolean => record.tgid === tgid && record.processStartNs === processStartNs;
    const byTid = (a: ThreadRecord, b: ThreadRecord): number => a.tid - b.tid;
    return [...this.live.filter(mine).sort(byTid), ...[...this.exited.values()].filter(mine).sort(byTid)];
  }

  forEachLive(visit: (record: ThreadRecord) => void): void {
    this.live.forEach(visit);
  }

  /** Live threads with counters, as of the last read. */
  get liveCount(): number {
    return this.live.length;
  }

  get exitedCount(): number {
    return this.exited.size;
  }
}
