// How many connections a socket holds, and how many of them one user may
// hold: every local user can connect to the daemon's sockets, so one of them
// must never take every descriptor or lock the others out. The last places
// are kept for root (its atop and its scripts always get in).

export interface ClientLimits {
  /** Connections a socket holds at most. */
  total: number;
  /** Connections one non-root user (on TCP: one client key, all of loopback one) holds at most. */
  perUser: number;
  /** Of `total`, the places only root may take. */
  reservedForRoot: number;
}

/** Why a connection was refused, as counted in /metrics. */
export type RefusalReason = 'per_user' | 'total';

/** Who holds a connection: a uid on a Unix socket, a client key on TCP (tcp-client-keys.ts). */
export interface ClientOwner {
  /** The key its connections are counted under ("uid 1000", "loopback", "192.0.2.7"). */
  key: string;
  /** Whether it may use the places kept for root. */
  root: boolean;
}

export class ClientCounts {
  private readonly byOwner = new Map<string, number>();
  private count = 0;
  readonly refused: Record<RefusalReason, number> = { per_user: 0, total: 0 };

  constructor(public limits: ClientLimits) {}

  get connections(): number {
    return this.count;
  }

  /** Takes a place for `owner`, or says why there is none (and counts the refusal). */
  admit(owner: ClientOwner): RefusalReason | null {
    const held = this.byOwner.get(owner.key) ?? 0;
    const { total, perUser, reservedForRoot } = this.limits;
    let refusal: RefusalReason | null = null;
    if (owner.root) refusal = this.count >= total ? 'total' : null;
    else if (held >= perUser) refusal = 'per_user';
    else if (this.count >= total - reservedForRoot) refusal = 'total';
    if (refusal) {
      this.refused[refusal]++;
      return refusal;
    }
    this.byOwner.set(owner.key, held + 1);
    this.count++;
    return null;
  }

  release(owner: ClientOwner): void {
    const held = (this.byOwner.get(owner.key) ?? 1) - 1;
    if (held === 0) this.byOwner.delete(owner.key);
    else this.byOwner.set(owner.key, held);
    this.count--;
  }
}
