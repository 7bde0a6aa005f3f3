// Each user's share of the kernel maps it can fill (bpf/netacct.h:
// netacct_share). The programs count the entries they create per uid in
// share_created; the daemon, the only one that deletes entries, counts what
// it deletes in share_released. Each map has one writer, so neither count can
// lose an update; a user holds created - released. Both maps are pinned with
// the others: the shares survive a restart as the entries do.
import { HELD_SIZE, OTHERS_UID, SHARES, Settings } from './layout.js';
import { native } from './libbpf.js';

/** A map a user fills, by its enum netacct_share index. */
export type ShareKind = number;

export interface ShareOptions {
  /** Percent of each map one user other than root may hold. */
  perUserPercent: number;
  /** Percent of each map every user but root may hold together: the rest is kept for root. */
  othersPercent: number;
}

export const DEFAULT_SHARES: ShareOptions = { perUserPercent: 50, othersPercent: 90 };

/** Uids the share maps count (user namespaces give a user many); a uid beyond gets no entry but root's. */
export const SHARE_UIDS = 16384;

/** A share map's entries (share_created, share_released) by uid, from a batch read's (keys, values, index). */
export function decodeHeld(keys: Buffer, values: Buffer, i: number): [number, bigint[]] {
  return [keys.readUInt32LE(i * 4), Array.from({ length: SHARES }, (_, kind) => values.readBigUInt64LE(i * HELD_SIZE + kind * 8))];
}

/** Writes the shares of maps of `capacities` (by share kind) into the programs' settings (.rodata). */
export function writeShares(rodata: Buffer, capacities: readonly number[], options: ShareOptions): void {
  for (let kind = 0; kind < SHARES; kind++) {
    const capacity = capacities[kind]!;
    rodata.writeUInt32LE(Math.max(1, Math.floor((capacity * options.perUserPercent) / 100)), Settings.userShare + kind * 4);
    rodata.writeUInt32LE(Math.max(1, Math.floor((capacity * options.othersPercent) / 100)), Settings.othersShare + kind * 4);
  }
}

export class ShareLedger {
  /** share_released as this daemon wrote it (read back at start from pinned maps), by uid. */
  private readonly released = new Map<number, bigint[]>();
  /** Uids whose counts changed since the last flush. */
  private readonly dirty = new Set<number>();
  private readonly key = Buffer.alloc(4);
  private readonly value = Buffer.alloc(HELD_SIZE);

  constructor(private readonly releasedFd: number) {}

  /**
   * Makes what each user holds (share_created - share_released) what the
   * maps hold now, `held` (counted from their keys): a daemon killed between
   * deleting entries and writing their release left users charged for
   * entries gone. `created` is share_created, read before `held`, so that an
   * entry made in between is charged, never given for free.
   */
  reconcile(created: ReadonlyMap<number, readonly bigint[]>, held: ReadonlyMap<number, readonly number[]>): void {
    const othersHeld = new Array<number>(SHARES).fill(0); // every user but root together
    for (const [uid, holds] of held) if (uid !== 0) holds.forEach((count, kind) => (othersHeld[kind]! += count));
    for (const [uid, made] of created) {
      const holds = uid === OTHERS_UID ? othersHeld : held.get(uid);
      this.released.set(uid, made.map((count, kind) => (count > BigInt(holds?.[kind] ?? 0) ? count - BigInt(holds?.[kind] ?? 0) : 0n)));
      this.dirty.add(uid);
    }
    this.flush();
  }

  /** An entry of `kind` created for `uid` was deleted (root holds no share). */
  release(kind: ShareKind, uid: number): void {
    if (uid === 0) return;
    for (const key of [uid, OTHERS_UID]) {
      let held = this.released.get(key);
      if (!held) this.released.set(key, (held = new Array<bigint>(SHARES).fill(0n)));
      held[kind]! += 1n;
      this.dirty.add(key);
    }
  }

  /**
   * Writes what changed: after deleting, so that a share is given back only
   * for entries really gone. Never throws (it runs on every drain): a uid
   * whose count cannot be written now stays to be written at the next flush.
   */
  flush(): void {
    for (const key of this.dirty) {
      const held = this.released.get(key)!;
      this.key.writeUInt32LE(key);
      for (let kind = 0; kind < SHARES; kind++) this.value.writeBigUInt64LE(held[kind]!, kind * 8);
      if (native.updateElem(this.releasedFd, this.key, this.value, 0) === 0) this.dirty.delete(key);
    }
  }
}
