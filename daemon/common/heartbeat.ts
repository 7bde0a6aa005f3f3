// The daemon's periodic work on one timer. Each job (draining exits,
// forgetting served ones, checking socket files, folding removed cgroups…)
// with a timer of its own would wake the daemon once per job, at its own
// phase; on one timer, an idle daemon wakes once a period, whatever the jobs.

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

  constructor(
    private readonly periodMs: number,
    /** A job that throws: the others still run, and it runs again at its next turn. */
    private readonly onError: (err: Error) => void,
  ) {}

  every(everyMs: number, run: () => void): () => void {
    const job: Job = { everyMs, run, lastMs: performance.now() };
    this.jobs.add(job);
    this.timer ??= setInterval(() => this.beat(), this.periodMs);
    return () => {
      this.jobs.delete(job);
      if (this.jobs.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  private beat(): void {
    const now = performance.now();
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
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.jobs.clear();
  }
}
