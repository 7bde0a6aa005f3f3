// Keeps the process table in step with the kernel: a full read (exits, moved
// counters, live processes through the task iterator) for every answer whose
// request arrived after the last read began, so that an answer always covers
// every exit before its request (atop looks exited PIDs up in that very
// answer) while a burst of simultaneous requests shares one read; and a cheap
// periodic drain of the exited map so that exits never pile up in the kernel
// while no client asks.
import type { KernelCounters, KernelStats } from './kernel-counters.js';
import type { Logger } from './log.js';
import type { ProcessTable } from './process-table.js';

export interface CollectorOptions {
  /** How often exited processes are drained from the kernel. */
  drainIntervalMs: number;
}

export class Collector {
  /** performance.now() when the last full read began. */
  private lastFullReadStartMs = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private reportedStats: KernelStats = { droppedNoStorage: 0, movedFull: 0, exitedFull: 0 };
  /** Duration of the last full read, for stats and benchmarks. */
  lastFullReadDurationMs = 0;

  constructor(
    private readonly kernel: KernelCounters,
    private readonly table: ProcessTable,
    private readonly options: CollectorOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.drainIntervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reads everything from the kernel unless a read began after `requestedAtMs` (performance.now()). */
  ensureReadSince(requestedAtMs: number): void {
    if (this.lastFullReadStartMs < requestedAtMs) this.readAll();
  }

  readAll(): void {
    const started = performance.now();
    this.lastFullReadStartMs = started;
    // Order matters: exits first, then the moved counters (complete for every
    // process drained just before), then the live processes.
    const exited = this.kernel.drainExited();
    const moved = this.kernel.readMoved();
    const live = this.kernel.readLive();
    this.finish({ exited, moved, live });
    this.lastFullReadDurationMs = performance.now() - started;
  }

  private tick(): void {
    try {
      const exited = this.kernel.drainExited();
      if (exited.length > 0) this.finish({ exited, moved: this.kernel.readMoved(), live: null });
      this.reportKernelDrops();
    } catch (err) {
      this.log.error(`draining exited processes failed: ${(err as Error).message}`);
    }
  }

  private finish(read: Parameters<ProcessTable['apply']>[0]): void {
    const finishedMoved = this.table.apply(read, Date.now());
    this.kernel.deleteMoved(finishedMoved);
  }

  private reportKernelDrops(): void {
    const stats = this.kernel.readStats();
    const before = this.reportedStats;
    if (stats.droppedNoStorage > before.droppedNoStorage)
      this.log.warn(`kernel: ${stats.droppedNoStorage - before.droppedNoStorage} events not counted (no task storage)`);
    if (stats.movedFull > before.movedFull)
      this.log.warn(`kernel: moved map full, ${stats.movedFull - before.movedFull} cgroup moves kept their counters on the new cgroup (raise movedCapacity)`);
    if (stats.exitedFull > before.exitedFull)
      this.log.warn(`kernel: exited map full, ${stats.exitedFull - before.exitedFull} exited processes lost their last counters (raise exitedCapacity)`);
    this.reportedStats = stats;
  }
}
