// cgroup v2 ids (what the kernel reports) to names: the directory whose inode
// number is the id, under the cgroup2 mount found in /proc/self/mountinfo
// (/sys/fs/cgroup on most hosts, /sys/fs/cgroup/unified on hybrid ones).
// Names are cached; an id never seen triggers a rescan at once (a cgroup
// just created must not show up nameless), an id still missing after a scan
// (removed before it could be seen) only one a second, so that such ids
// cannot make the daemon walk the tree in a loop; the name of a cgroup that
// was removed is kept.
import fs from 'node:fs';
import path from 'node:path';

export function cgroup2Mount(mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): string | null {
  for (const line of mountinfo.split('\n')) {
    const [mountFields, superFields] = line.split(' - ');
    if (superFields?.split(' ')[0] === 'cgroup2') return mountFields!.split(' ')[4]!;
  }
  return null;
}

export interface CgroupName {
  /** Path under the cgroup2 mount, "/" for the root. */
  path: string;
  /** The innermost systemd unit (*.service, *.scope, *.slice), if any. */
  unit: string | null;
  /** A container's 64-hex id (docker-, cri-containerd-, crio-, libpod- scopes or a bare id), if any. */
  containerId: string | null;
}

const UNIT = /\.(service|scope|slice)$/;
const CONTAINER = /^(?:docker-|cri-containerd-|crio-|libpod-)?([0-9a-f]{64})(?:\.scope)?$/;

export function describeCgroupPath(cgroupPath: string): CgroupName {
  const parts = cgroupPath.split('/').filter(Boolean);
  const unit = [...parts].reverse().find((part) => UNIT.test(part)) ?? null;
  const containerId = parts.map((part) => CONTAINER.exec(part)?.[1]).find((id) => id !== undefined) ?? null;
  return { path: cgroupPath, unit, containerId };
}

const RESCAN_INTERVAL_MS = 1000;
/** Ids remembered as not found; beyond, an unknown id waits for the next timed rescan anyway. */
const MAX_MISSING = 10_000;

export class CgroupNames {
  private readonly byId = new Map<number, CgroupName>();
  /** Ids that a scan did not find. */
  private readonly missing = new Set<number>();
  private lastScanMs = -Infinity;

  constructor(private readonly mount: string | null = cgroup2Mount()) {}

  /** The cgroup's name, or null when no cgroup2 hierarchy has it (yet). */
  nameOf(id: number): CgroupName | null {
    let name = this.byId.get(id);
    const neverLooked = !this.missing.has(id) && this.missing.size < MAX_MISSING;
    if (!name && this.mount && (neverLooked || performance.now() - this.lastScanMs >= RESCAN_INTERVAL_MS)) {
      this.scan(this.mount);
      name = this.byId.get(id);
      if (name) this.missing.delete(id);
      else if (this.missing.size < MAX_MISSING) this.missing.add(id);
    }
    return name ?? null;
  }

  /**
   * Whether the cgroup is gone: its directory no longer has its inode, or no
   * scan ever found it. (Without a cgroup2 mount nothing is known: not gone.)
   */
  isRemoved(id: number): boolean {
    if (!this.mount) return false;
    const name = this.nameOf(id);
    if (!name) return true;
    try {
      return fs.statSync(path.join(this.mount, name.path)).ino !== id;
    } catch (err) {
      return gone(err);
    }
  }

  /**
   * Whether each of `ids` is gone, walking the hierarchy at most once for
   * all of them (however many were never seen): an id a walk does not find
   * was removed before it could be seen.
   */
  removedOf(ids: readonly number[]): Set<number> {
    const removed = new Set<number>();
    if (!this.mount) return removed;
    // A walk that could not read a directory (a user's chmod 700 on its delegated cgroup) proves no absence.
    const complete = ids.some((id) => !this.byId.has(id)) ? this.scan(this.mount) : true;
    for (const id of ids) if (this.byId.has(id) ? this.isRemoved(id) : complete) removed.add(id);
    return removed;
  }

  /** Drops the names of removed cgroups that `referenced` no longer needs, so that churning cgroups leave nothing behind. */
  retain(referenced: (id: number) => boolean): void {
    for (const id of this.byId.keys()) if (!referenced(id) && this.isRemoved(id)) this.byId.delete(id);
    this.missing.clear();
  }

  /** Walks the hierarchy; names of cgroups removed since stay known. False when a directory could not be read (not for being gone). */
  private scan(mount: string): boolean {
    this.lastScanMs = performance.now();
    let complete = true;
    const visit = (dir: string, relative: string): void => {
      let stat: fs.Stats;
      let entries: fs.Dirent[];
      try {
        stat = fs.statSync(dir);
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch (err) {
        if (!gone(err)) complete = false;
        return; // removed while we walked, or not ours to read
      }
      this.byId.set(stat.ino, describeCgroupPath(relative || '/'));
      for (const entry of entries) {
        if (entry.isDirectory()) visit(path.join(dir, entry.name), `${relative}/${entry.name}`);
      }
    };
    visit(mount, '');
    return complete;
  }
}

/** Whether a file system error says the path is gone (not unreadable). */
function gone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
