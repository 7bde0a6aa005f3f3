// cgroup v2 ids (what the kernel reports) to names: the cgroup's path under
// the cgroup2 mount found in /proc/self/mountinfo (/sys/fs/cgroup on most
// hosts, /sys/fs/cgroup/unified on hybrid ones), opened from the id alone
// (kernel/cgroup-handles.ts): a lookup costs one system call however many
// cgroups users make, where walking the tree let one user's 10,000 empty
// cgroups stall every answer. Names are cached, the cache is bounded; the
// name of a removed cgroup stays known while something counted in it does
// (retain drops what nothing needs), and an id found gone is remembered as
// gone.
import fs from 'node:fs';
import { CgroupHandles } from '../kernel/cgroup-handles.js';
import { type ContainerNames, LATER } from '../naming/container-names.js';
import type { ContainerName } from '../naming/runtimes.js';

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
  /** The container it holds, named by its runtime (daemon/naming/), or null. */
  container: ContainerName | null;
}

/** A cached name whose container is still to be looked up (the naming budget was spent). */
interface CachedName extends CgroupName {
  containerPending?: true;
}

const UNIT = /\.(service|scope|slice)$/;
const CONTAINER = /^(?:docker-|cri-containerd-|crio-|libpod-)?([0-9a-f]{64})(?:\.scope)?$/;

export function describeCgroupPath(cgroupPath: string): CgroupName {
  const parts = cgroupPath.split('/').filter(Boolean);
  const unit = [...parts].reverse().find((part) => UNIT.test(part)) ?? null;
  const containerId = parts.map((part) => CONTAINER.exec(part)?.[1]).find((id) => id !== undefined) ?? null;
  return { path: cgroupPath, unit, containerId, container: null };
}

/** Names cached at most: past it, the least recently looked up is dropped (and looked up again if asked). */
const MAX_NAMES = 100_000;
/** Ids remembered as gone, at most (the oldest forgotten first: asking again costs one system call). */
const MAX_GONE = 10_000;

export class CgroupNames {
  /** In the order of the last lookup, so the least recently used is first. */
  private readonly byId = new Map<number, CachedName>();
  /** Ids whose cgroup was gone before it could be named. */
  private readonly gone = new Set<number>();
  private readonly handles: CgroupHandles | null;
  /** Why names are unknown here (no cgroup2 mount, handles refused), for the log; null when they are known. */
  readonly unavailable: string | null;

  /**
   * `onError`: a lookup that failed otherwise than by the cgroup being gone
   * (out of descriptors, a cgroup outside the mount as this process sees it):
   * that id is unnamed this time, and asked again next time.
   */
  constructor(
    mount: string | null = cgroup2Mount(),
    private readonly onError: (message: string) => void = () => {},
    private readonly containers: ContainerNames | null = null,
  ) {
    let handles: CgroupHandles | null = null;
    let unavailable: string | null = null;
    if (!mount) unavailable = 'no cgroup2 hierarchy is mounted';
    else {
      try {
        handles = CgroupHandles.open(mount);
      } catch (err) {
        unavailable = (err as Error).message;
      }
    }
    this.handles = handles;
    this.unavailable = unavailable;
  }

  /** The cgroup's name, or null when it was gone before it could be named (or names are unavailable). */
  nameOf(id: number): CgroupName | null {
    const cached = this.byId.get(id);
    if (cached) {
      const name = cached.containerPending ? this.withContainer(cached) : cached;
      this.byId.delete(id);
      this.byId.set(id, name);
      return name;
    }
    if (!this.handles || this.gone.has(id)) return null;
    let found: string | null;
    try {
      found = this.handles.pathOf(id);
    } catch (err) {
      this.onError((err as Error).message);
      return null;
    }
    if (found === null) {
      this.gone.add(id);
      if (this.gone.size > MAX_GONE) this.gone.delete(this.gone.values().next().value!);
      return null;
    }
    const name = this.withContainer(describeCgroupPath(found));
    this.byId.set(id, name);
    if (this.byId.size > MAX_NAMES) this.byId.delete(this.byId.keys().next().value!);
    return name;
  }

  /** `name` with its container looked up, or marked to be looked up when asked again. */
  private withContainer(name: CgroupName): CachedName {
    const container = this.containers?.nameOf(name.path) ?? null;
    if (container === LATER) return { ...name, container: null, containerPending: true };
    return { path: name.path, unit: name.unit, containerId: name.containerId, container };
  }

  /** Which of `ids` are gone (without names, or where a lookup fails, nothing is known: not gone). */
  removedOf(ids: readonly number[]): Set<number> {
    const removed = new Set<number>();
    if (this.handles) for (const id of ids) if (this.gone.has(id) || !this.exists(this.handles, id)) removed.add(id);
    return removed;
  }

  private exists(handles: CgroupHandles, id: number): boolean {
    try {
      return handles.exists(id);
    } catch (err) {
      this.onError((err as Error).message);
      return true;
    }
  }

  /**
   * Drops the names `referenced` no longer needs, so that churning cgroups
   * leave nothing behind: without a system call per name (a user's cgroups by
   * the thousand would cost one each, every pass); a live one dropped is
   * looked up again when asked.
   */
  retain(referenced: (id: number) => boolean): void {
    for (const id of this.byId.keys()) if (!referenced(id)) this.byId.delete(id);
  }

  close(): void {
    this.handles?.close();
  }
}
