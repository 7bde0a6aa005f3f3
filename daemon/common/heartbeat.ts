// The daemon's periodic work on one timer. Each job (draining exits,
// forgetting served ones, checking socket files, folding removed cgroups…)
// with a timer of its own would wake the daemon once per job, at its own
// phase; on one timer, the daemon wakes once a period, whatever the jobs. And
// the period stretches while nothing happens: on this kind of machine each
// wake-up of an idle Node.js costs ~0.7 ms of CPU (an empty 1 s interval:
// 0.07 % of a core), so an idle daemon beats every few seconds instead; the
// first beat that finds work (an exit to drain) brings it back to the base.

/** Schedules a job every `everyMs` (rounded to the heartbeat's period); returns what cancels it. */
export interface Ticker {
  every(everyMs: number, job: () => void): () => void;
}

interface Job {
  everyMs: number;
  run: () => void;
  lastMs: number;
}

export class Heartbeat implements Ticker {
  private readonly jobs = new Set<Job>();
  private timer: NodeJS.Timeout | null = null;
  /** The wait before the next beat: periodMs while there is work, up to idlePeriodMs while there is none. */
  private waitMs: number;
  private workFound = false;

  constructor(
    private readonly periodMs: number,
    private readonly idlePeriodMs: number,
    /** A job that throws: the others still run, and it runs again at its next turn. */
    private readonly onError: (err: Error) => void,
  ) {
    this.waitMs = periodMs;
  }

  every(everyMs: number, run: () => void): () => void {
    const job: Job = { everyMs, run, lastMs: performance.now() };
    this.jobs.add(job);
    if (!this.timer) this.schedule();
    return () => {
      this.jobs.delete(job);
      if (this.jobs.size === 0) this.stop();
    };
  }

  /** A job found work: the beats come every periodMs again, from the next one on. */
  busy(): void {
    this.workFound = true;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.beat(), this.waitMs);
  }

  private beat(): void {
    const now = performance.now();
    this.workFound = false;
    for (const job of [...this.jobs]) {
      if (!this.jobs.has(job)) continue; // cancelled by a job before it
      // Half a period early is on time: timers fire a little late or early, and a job due now must not wait a whole period more.
      if (now - job.lastMs < job.everyMs - this.periodMs / 2) continue;
      job.lastMs = now;
      try {
        job.run();
      } catch (err) {
        this.onError(err as Error);
      }
    }
    // One more second of quiet per quiet beat, up to idlePeriodMs.
    this.waitMs = this.workFound ? this.periodMs : Math.min(this.idlePeriodMs, this.waitMs + this.periodMs);
    if (this.jobs.size > 0) this.schedule();
    else this.timer = null;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.jobs.clear();
  }
}
