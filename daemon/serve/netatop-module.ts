// Serves atop before 2.10 as the netatop kernel module and netatopd did:
// the module's getsockopt answers (published into the kernel for
// bpf/netatop-sockopt.bpf.c to copy out), and netatopd's semaphore and exit
// file, with each finished process's final counters written once.
//
// Only while atops follow the exit file (the semaphore counts them) does it
// cost anything: the answers are refreshed every refreshMs and exits are
// drained every exitPollMs. Otherwise it holds no answers and sets no timer
// of its own: an atop joins by taking the semaphore, then opens the exit
// file, and that open wakes the daemon at once (daemon/kernel/open-watch.ts);
// the daemon's heartbeat reads the semaphore too, in case the watch cannot.
import { AnswerEncoder, RECORD_SIZE, commandEncoder } from '../../protocol/netatop-record.js';
import { ExitFile } from '../../protocol/netatopd-exit-file.js';
import { NetatopdSemaphore } from '../../protocol/netatopd-semaphore.js';
import type { ServedExits } from '../../protocol/netatop-server.js';
import { type Logger, type RateLimitedLog, guarded, rateLimited } from '../common/log.js';
import { startEpochSeconds } from '../kernel/boot-time.js';
import { NetatopAnswer, NetatopKind } from '../kernel/layout.js';
import { type NetatopAnswerEntry, type NetatopCalls, NetatopSockopt, type RequestHook, answerKey, netatopProbeAnswered } from '../kernel/netatop-sockopt.js';
import { cgroup2Mount } from '../accounting/cgroup-names.js';
import type { Collector } from '../accounting/collector.js';
import type { Ticker } from '../common/heartbeat.js';
import { OpenWatch } from '../kernel/open-watch.js';
import type { ProcessEntry, ProcessTable } from '../accounting/process-table.js';

export interface NetatopModuleOptions {
  /** How old the getsockopt answers may be while atops follow (the bpf socket's are read per request). */
  refreshMs: number;
  /** How soon after its exit a process's final counters are in the exit file, at most (plus the slot's settling). */
  exitPollMs: number;
}

export interface NetatopModuleStatus {
  /** atops that follow the exit file now. */
  clients: number;
  /** What notes atop's requests at the system call (daemon/kernel/netatop-sockopt.ts). */
  requestHook: RequestHook;
  calls: NetatopCalls;
  exitFile: { records: number; bytes: number; restartsForSize: number };
  /** Answers published at the last refresh, and when (ms since the epoch; null: not yet). */
  answers: number;
  refreshedAtMs: number | null;
}

/** How often the semaphore is read while no atop follows, in case the exit file's watch missed a join. */
const IDLE_CHECK_MS = 1000;

export interface NetatopModuleSettings extends NetatopModuleOptions {
  bpfObject: string;
  exitFile: string;
  exitFileMaxBytes: number;
  semaphoreKey: number;
  /** Answers the kernel holds at most: processes, and threads when counted. */
  capacity: number;
  allProcessesGroup: number | null;
}

/**
 * Why the interface cannot be served here, or null when it can: checked
 * before anything is changed, so that a real netatop module or netatopd keeps
 * the host (they serve atop themselves).
 */
export function netatopModuleObstacle(settings: Pick<NetatopModuleSettings, 'semaphoreKey'>): string | null {
  if (!cgroup2Mount()) return 'no cgroup2 mount (the answering program attaches to its root)';
  const semaphoreProblem = NetatopdSemaphore.problem(settings.semaphoreKey);
  if (semaphoreProblem) return semaphoreProblem;
  if (netatopProbeAnswered()) return 'the netatop kernel module is loaded and answers atop';
  return null;
}

/** The interface served, or why not. */
export type NetatopModuleState = { module: NetatopModule; inactive: null } | { module: null; inactive: string };

export class NetatopModule {
  /**
   * Starts serving, or says in one line why it does not (nothing is left
   * behind then): the caller logs it and goes on without this part.
   */
  static open(
    settings: NetatopModuleSettings,
    table: ProcessTable,
    collector: Collector,
    bootEpoch: number,
    log: Logger,
    ticker: Ticker,
  ): NetatopModuleState {
    const undo: Array<() => void> = [];
    try {
      const obstacle = netatopModuleObstacle(settings);
      if (obstacle) return { module: null, inactive: obstacle };
      const semaphore = NetatopdSemaphore.claim(settings.semaphoreKey);
      undo.push(() => semaphore.release());
      let module: NetatopModule | null = null;
      const report = rateLimited(log);
      const joins = OpenWatch.start(
        () => module?.checkClients(),
        (message) => report('warn', 'open watch', `the netatop exit file: ${message}; an atop that joins is noticed at the next heartbeat (within 2 s) instead`),
      );
      undo.push(() => joins?.close());
      const exitFile = new ExitFile({
        path: settings.exitFile,
        group: settings.allProcessesGroup,
        pid: process.pid,
        maxBytes: settings.exitFileMaxBytes,
        onCreated: () => joins?.watch(settings.exitFile),
      });
      undo.push(() => exitFile.remove());
      const sockopt = NetatopSockopt.open(settings.bpfObject, settings.capacity, cgroup2Mount()!, settings.allProcessesGroup);
      module = new NetatopModule(sockopt, semaphore, exitFile, joins, table, collector, bootEpoch, settings, report);
      module.start(ticker);
      return { module, inactive: null };
    } catch (err) {
      for (const step of undo.reverse()) step();
      return { module: null, inactive: (err as Error).message };
    }
  }

  /** Runs every exitPollMs while atops follow; null while none does. */
  private timer: NodeJS.Timeout | null = null;
  private stopIdleCheck: (() => void) | null = null;
  /** Exits up to this sequence number are in the exit file (or were skipped: no atop followed). */
  private writtenSeq: number;
  /** Entries written already: one whose counters grow later (a late part) is not written twice. */
  private written = new WeakSet<ProcessEntry>();
  private lastRefreshMs = -Infinity;
  private refreshedAtMs: number | null = null;
  private answers = 0;
  private clients = 0;
  private readonly command = commandEncoder();
  private readonly guardedTick: () => void;

  private constructor(
    private readonly sockopt: NetatopSockopt,
    private readonly semaphore: NetatopdSemaphore,
    private readonly exitFile: ExitFile,
    private readonly joins: OpenWatch | null,
    private readonly table: ProcessTable,
    private readonly collector: Collector,
    private readonly bootEpoch: number,
    private readonly settings: NetatopModuleSettings,
    private readonly report: RateLimitedLog,
  ) {
    this.writtenSeq = table.latestExitSeq;
    this.guardedTick = guarded(report, 'serving the netatop module interface', () => this.tick());
  }

  private start(ticker: Ticker): void {
    // After the heartbeat's drain: exits drained while nobody follows are marked as skipped.
    this.stopIdleCheck = ticker.every(IDLE_CHECK_MS, () => this.checkClients());
  }

  /** While no atop follows: has one joined? (An open of the exit file, or the heartbeat, asks.) */
  checkClients(): void {
    if (!this.timer) this.guardedTick();
  }

  /** What the exit file still needs: ProcessTable.forgetServedExits keeps those. */
  servedExits(others: ServedExits): ServedExits {
    return { all: others.all === null ? this.writtenSeq : Math.min(others.all, this.writtenSeq), byUid: others.byUid };
  }

  status(): NetatopModuleStatus {
    return {
      clients: this.clients,
      requestHook: this.sockopt.hook,
      calls: this.sockopt.calls(),
      exitFile: { records: this.exitFile.records, bytes: this.exitFile.bytes, restartsForSize: this.exitFile.restartsForSize },
      answers: this.answers,
      refreshedAtMs: this.refreshedAtMs,
    };
  }

  setAllProcessesGroup(gid: number | null): void {
    this.sockopt.setAllProcessesGroup(gid);
  }

  private tick(): void {
    const clients = this.semaphore.clients();
    const joined = clients > this.clients;
    this.clients = clients;
    if (clients > 0 && !this.timer) this.timer = setInterval(this.guardedTick, this.settings.exitPollMs);
    if (clients === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    if (clients === 0) {
      // As netatopd: with nobody following, the file starts over and exits are not kept for it.
      if (this.exitFile.records > 0) this.exitFile.startOver();
      // Nor are answers: they would only grow old (and the map holds kernel memory per entry).
      if (this.answers > 0) {
        this.sockopt.publish([]);
        this.answers = 0;
      }
      this.writtenSeq = this.table.latestExitSeq;
      return;
    }
    const now = performance.now();
    if (joined || now - this.lastRefreshMs >= this.settings.refreshMs) {
      this.lastRefreshMs = now;
      this.refresh(now);
    } else {
      this.collector.drain();
    }
    // Not on the tick of a join: the open that woke it is atop's, which then seeks to the file's end;
    // records written in between would be behind it. The next tick (exitPollMs later) writes them.
    if (!joined) this.writeExits();
  }

  /** Reads the kernel, as an answer on the bpf socket does, and publishes every process's answer. */
  private refresh(now: number): void {
    this.collector.ensureReadSince(now);
    const entries = new Map<number, NetatopAnswerEntry>();
    const uids = new Map<number, number>();
    const add = (kind: number, id: number, uid: number, startNs: number, comm: string, counters: ArrayLike<number>): void => {
      const encoder = new AnswerEncoder(1);
      encoder.add(id, startEpochSeconds(this.bootEpoch, startNs), this.command(comm), counters);
      const value = Buffer.alloc(NetatopAnswer.size);
      encoder.finish().copy(value, NetatopAnswer.task, 0, RECORD_SIZE);
      value.writeUInt32LE(uid, NetatopAnswer.uid);
      entries.set(answerKey(kind, id), { key: answerKey(kind, id), value });
    };
    const addProcess = (entry: ProcessEntry): void => {
      add(NetatopKind.process, entry.tgid, entry.uid, entry.startNs, entry.comm, entry.total);
      uids.set(entry.tgid, entry.uid);
    };
    // Live processes only: atop asks for the ones it found in /proc.
    this.table.forEachLive(addProcess);
    this.collector.readAllThreads()?.forEachLive((thread) => {
      const uid = uids.get(thread.tgid);
      if (uid !== undefined) add(NetatopKind.thread, thread.tid, uid, thread.startNs, thread.comm, thread.counters);
    });
    const all = [...entries.values()];
    if (all.length > this.settings.capacity) {
      this.report('warn', 'capacity', `${all.length} processes and threads, room for ${this.settings.capacity} netatop answers: the rest get none`);
    }
    this.sockopt.publish(all.slice(0, this.settings.capacity));
    this.answers = entries.size;
    this.refreshedAtMs = Date.now();
  }

  /**
   * Appends the processes that exited since the last call, in order, once
   * their last counters are read (an exit whose slot is still settling, and
   * every later one, waits for the next call).
   */
  private writeExits(): void {
    const pending = this.table.exitedAfter(this.writtenSeq);
    const encoder = new AnswerEncoder(pending.length);
    const fresh: ProcessEntry[] = [];
    let seq = this.writtenSeq;
    for (const entry of pending) {
      if (entry.hasSlot) break;
      if (!this.written.has(entry)) {
        encoder.add(entry.tgid, startEpochSeconds(this.bootEpoch, entry.startNs), this.command(entry.comm), entry.total);
        fresh.push(entry);
      }
      seq = entry.exit!.seq;
    }
    // Written first, then marked: a failed write (a full disk) is tried again at the next call.
    if (fresh.length > 0) this.exitFile.append(encoder.finish().subarray(0, fresh.length * RECORD_SIZE));
    for (const entry of fresh) this.written.add(entry);
    this.writtenSeq = seq;
  }

  /** Stops serving: atop's calls fail again, the semaphore says no netatopd, the file is gone. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.stopIdleCheck?.();
    this.joins?.close();
    this.sockopt.close();
    this.semaphore.release();
    this.exitFile.remove();
  }
}
