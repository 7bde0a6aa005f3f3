// Exited processes kept until every client that may see them was served
// them: in exit order (seq) for the answers, and per user for forgetting. A
// client of one user holds only that user's exits, so forgetting walks each
// user's queue from its oldest and stops at the first exit still owed: its
// cost is the exits forgotten plus one step per user, never the exits held.
// A user's idle atop client holding 100,000 exits costs nothing per
// connection, answer or disconnect of anyone else.
//
// An exit served again (a late part of an exited process) gets a new seq and
// goes to the end; a process revived gives its exit up. Their old places stay
// in the arrays as stale references (an entry whose exit seq is no longer the
// one recorded there), skipped as met and dropped when the arrays compact.
import type { ServedExits } from '../../protocol/netatop-server.js';

/** What an exited entry needs to be kept here: its exit, with the user it is kept for (fixed while kept). */
export interface ExitedEntry {
  exit: { seq: number; atMs: number; readonly uid: number } | null;
}

interface ExitRef<T> {
  entry: T;
  seq: number;
}

/** A FIFO of references with a moving head (shift() would copy the array). */
class RefQueue<T extends ExitedEntry> {
  refs: Array<ExitRef<T>> = [];
  head = 0;
  /** Entries with a current reference here. */
  kept = 0;

  /** Drops the references before the head and the stale ones, once they outnumber the current ones (amortised: O(1) a reference). */
  compact(current: (ref: ExitRef<T>) => boolean): void {
    if (this.refs.length - this.kept < this.kept + 1024) return;
    this.refs = this.refs.slice(this.head).filter(current);
    this.head = 0;
  }
}

/** A forgotten entry's seq: no reference is current for it any more. */
const FORGOTTEN = -1;

/** Whether `entry` was forgotten here (its exit no longer kept). */
export function isForgotten(entry: ExitedEntry): boolean {
  return entry.exit?.seq === FORGOTTEN;
}

export class ExitedEntries<T extends ExitedEntry> {
  /** Every kept exit, seq ascending (with stale references). */
  private readonly bySeq = new RefQueue<T>();
  /** Each user's kept exits, seq ascending (with stale references). */
  private readonly byUid = new Map<number, RefQueue<T>>();

  private readonly current = (ref: ExitRef<T>): boolean => ref.entry.exit?.seq === ref.seq;

  /** Exits kept now. */
  get size(): number {
    return this.bySeq.kept;
  }

  /** Keeps `entry`, whose exit (with its seq, above every kept one) was just set. */
  add(entry: T): void {
    this.append(entry).kept++;
    this.bySeq.kept++;
  }

  /** `entry`'s exit got a new seq (above every kept one): it moves to the end. */
  moved(entry: T): void {
    this.append(entry);
    this.bySeq.compact(this.current);
    this.compactQueue(entry.exit!.uid);
  }

  /** The exit kept for `uid` was taken back (its entry's exit set to null): it is no longer kept. */
  removed(uid: number): void {
    this.release(uid);
    this.bySeq.compact(this.current);
    this.compactQueue(uid);
  }

  /** Appends a reference to `entry`'s exit; returns its user's queue. */
  private append(entry: T): RefQueue<T> {
    const ref = { entry, seq: entry.exit!.seq };
    this.bySeq.refs.push(ref);
    let queue = this.byUid.get(entry.exit!.uid);
    if (!queue) this.byUid.set(entry.exit!.uid, (queue = new RefQueue()));
    queue.refs.push(ref);
    return queue;
  }

  /** One fewer kept for `uid` and in all. */
  private release(uid: number): void {
    this.bySeq.kept--;
    const queue = this.byUid.get(uid);
    if (queue) queue.kept--;
  }

  /** Compacts `uid`'s queue, dropped once it keeps nothing. */
  private compactQueue(uid: number): void {
    const queue = this.byUid.get(uid);
    if (!queue) return;
    if (queue.kept === 0) this.byUid.delete(uid);
    else queue.compact(this.current);
  }

  /** The kept exits with a seq above `servedSeq`, in seq order. */
  after(servedSeq: number): T[] {
    const { refs } = this.bySeq;
    const found: T[] = [];
    for (let i = refs.length - 1; i >= this.bySeq.head && refs[i]!.seq > servedSeq; i--) {
      if (this.current(refs[i]!)) found.push(refs[i]!.entry);
    }
    return found.reverse();
  }

  /**
   * Forgets, calling `forget` for each, the exits that every client that may
   * see them was served (`served`), older than `retentionMs`, for which
   * `done` holds (their slot read for the last time); then, however owed, a
   * user's oldest beyond `maxPerUser` (root's exempt: a user's idle client
   * holds only its own user's exits, which cost the daemon ~2 KiB each) and
   * the oldest beyond `maxKept`. Returns how many were dropped owed.
   */
  forgetServed(
    served: ServedExits,
    nowMs: number,
    retentionMs: number,
    limits: { maxKept: number; maxPerUser: number },
    done: (entry: T) => boolean,
    forget: (entry: T) => void,
  ): number {
    let dropped = 0;
    for (const [uid, queue] of this.byUid) {
      const ownUser = served.byUid.get(uid);
      const watermark = Math.min(served.all ?? Infinity, ownUser ?? Infinity);
      for (; queue.head < queue.refs.length; queue.head++) {
        const ref = queue.refs[queue.head]!;
        if (!this.current(ref)) continue;
        if (ref.seq > watermark || nowMs - ref.entry.exit!.atMs < retentionMs || !done(ref.entry)) break;
        this.drop(ref.entry, forget);
      }
      for (; uid !== 0 && queue.kept > limits.maxPerUser && queue.head < queue.refs.length; queue.head++) {
        const ref = queue.refs[queue.head]!;
        if (!this.current(ref)) continue;
        this.drop(ref.entry, forget);
        dropped++;
      }
      this.compactQueue(uid);
    }
    for (; this.bySeq.kept > limits.maxKept && this.bySeq.head < this.bySeq.refs.length; this.bySeq.head++) {
      const ref = this.bySeq.refs[this.bySeq.head]!;
      if (!this.current(ref)) continue;
      const { uid } = ref.entry.exit!;
      this.drop(ref.entry, forget);
      dropped++;
      this.compactQueue(uid); // never bySeq here: its head is this loop's
    }
    this.bySeq.compact(this.current);
    return dropped;
  }

  private drop(entry: T, forget: (entry: T) => void): void {
    this.release(entry.exit!.uid);
    entry.exit!.seq = FORGOTTEN;
    forget(entry);
  }
}
