// How much of the daemon's one thread each non-root user may take. Every
// local user may ask for answers as fast as it likes (32 connections back to
// back, 16 streams at 250 ms, atop requests in a loop), and an answer over
// thousands of processes costs milliseconds: without a share, one user could
// keep the daemon busy and make root's atop wait. Each owner's answers are
// charged the time spent building them against a balance that refills at
// `msPerSecond` up to `burstMs`; while it is below zero the owner waits
// (atop), is refused with Retry-After (HTTP, after a wait) or skipped
// (streams). An answer is charged as it is built, so what an owner may have
// in progress at once is bounded too (the servers' limits per user): that
// bounds what it can overdraw. Root is never charged: its atop and scripts
// come first.
import type { ClientOwner } from './client-limits.js';

export interface TimeBudgetLimits {
  /** Milliseconds of answer building an owner earns per second. */
  msPerSecond: number;
  /** The most an owner can save up: one answer at most this costly is built at once. */
  burstMs: number;
}

/** Owners tracked at most: past it, those whose balance is full again (the same as untracked) are dropped, then the oldest. */
const TRACKED_OWNERS = 1024;

export class TimeBudgets {
  /** Balances below full, by owner key: ms left (negative: owed) as of atMs. */
  private readonly balances = new Map<string, { ms: number; atMs: number }>();
  /** Requests made to wait, refused or skipped because their owner's balance was spent (counted by the servers). */
  throttled = 0;

  constructor(
    public limits: TimeBudgetLimits,
    private readonly now: () => number = () => performance.now(),
  ) {}

  private balanceOf(key: string, nowMs: number): number {
    const held = this.balances.get(key);
    if (!held) return this.limits.burstMs;
    return Math.min(this.limits.burstMs, held.ms + ((nowMs - held.atMs) * this.limits.msPerSecond) / 1000);
  }

  /** 0 when `owner` may have an answer built now; else how many ms it must wait. */
  waitMs(owner: ClientOwner): number {
    if (owner.root) return 0;
    const balance = this.balanceOf(owner.key, this.now());
    return balance >= 0 ? 0 : Math.ceil((-balance * 1000) / this.limits.msPerSecond);
  }

  /** Charges `owner` the `ms` an answer took to build. */
  charge(owner: ClientOwner, ms: number): void {
    if (owner.root) return;
    const nowMs = this.now();
    const left = this.balanceOf(owner.key, nowMs) - ms;
    this.balances.delete(owner.key); // set again: the map is in the order of the last charge
    this.balances.set(owner.key, { ms: left, atMs: nowMs });
    if (this.balances.size <= TRACKED_OWNERS) return;
    for (const [key] of this.balances) if (this.balanceOf(key, nowMs) >= this.limits.burstMs) this.balances.delete(key);
    // Still too many (addresses by the thousand on TCP): the longest uncharged are forgotten, a fresh balance each.
    for (const [key] of this.balances) {
      if (this.balances.size <= TRACKED_OWNERS) break;
      this.balances.delete(key);
    }
  }

  /** Runs `build` and charges `owner` its time; returns what it returned (and charges it if it throws). */
  timed<T>(owner: ClientOwner, build: () => T): T {
    const started = this.now();
    try {
      return build();
    } finally {
      this.charge(owner, this.now() - started);
    }
  }
}
