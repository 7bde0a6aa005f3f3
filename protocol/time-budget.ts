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

/**
 * Owners tracked at most. Past it, those whose balance is full again (the
 * same as untracked) are dropped; if all still owe time, a newcomer shares
 * one pooled balance with every other newcomer, so that a client with
 * addresses by the thousand (an IPv6 network) gets no fresh share per
 * address: what they all may take stays bounded.
 */
const TRACKED_OWNERS = 1024;
/** The balance newcomers share while every tracked owner owes time. */
const POOL = 'newcomers while 1024 others owe time';

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

  /** The balance `owner` is charged under: its own, or the pool while every tracked owner owes time. */
  private keyOf(owner: ClientOwner, nowMs: number): string {
    if (this.balances.has(owner.key) || this.balances.size < TRACKED_OWNERS) return owner.key;
    for (const [key] of this.balances) if (this.balanceOf(key, nowMs) >= this.limits.burstMs) this.balances.delete(key);
    return this.balances.size < TRACKED_OWNERS ? owner.key : POOL;
  }

  /** 0 when `owner` may have an answer built now; else how many ms it must wait. */
  waitMs(owner: ClientOwner): number {
    if (owner.root) return 0;
    const nowMs = this.now();
    const balance = this.balanceOf(this.keyOf(owner, nowMs), nowMs);
    return balance >= 0 ? 0 : Math.ceil((-balance * 1000) / this.limits.msPerSecond);
  }

  /** Charges `owner` the `ms` an answer took to build. */
  charge(owner: ClientOwner, ms: number): void {
    if (owner.root) return;
    const nowMs = this.now();
    const key = this.keyOf(owner, nowMs);
    const left = this.balanceOf(key, nowMs) - ms;
    this.balances.delete(key); // set again: the map is in the order of the last charge
    this.balances.set(key, { ms: left, atMs: nowMs });
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
