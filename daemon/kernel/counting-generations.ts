// Counting goes on while no daemon runs, and across a restart or an upgrade
// with no call missed or counted twice (bpf/netacct.h: netacct_control).
// The links of the programs that count and follow processes are pinned under
// <maps dir>/links/<generation>/, beside the maps, so that they outlive the
// daemon. A daemon that starts loads its programs as the next generation,
// attaches and pins them (they count nothing yet), switches control[0] to
// their generation in one store, then removes every other generation's
// links, whose programs then detach. A start that dies half way leaves at
// most an idle generation, removed by the next start. Links are only removed
// otherwise when the user asks (netacct detach, package removal).
import fs from 'node:fs';
import path from 'node:path';
import { fail } from './bpf-object.js';
import type { BpfObject } from './bpf-object.js';
import { Control } from './layout.js';
import { type BpfLinkPtr, native } from './libbpf.js';

const ENOENT = 2;

const CONTROL_MAP = 'control';

/** The generation whose programs count on the maps pinned in `mapsDir` (0: none pinned yet). */
export function activeGeneration(mapsDir: string): number {
  const file = path.join(mapsDir, CONTROL_MAP);
  if (!fs.existsSync(file)) return 0;
  const fd: number = native.objGet(file);
  if (fd < 0) return 0; // not readable: treated as new; the maps' own check says more
  try {
    const value = Buffer.alloc(Control.size);
    return native.lookupElem(fd, Buffer.alloc(4), value) === 0 ? value.readUInt32LE(Control.generation) : 0;
  } finally {
    fs.closeSync(fd);
  }
}

/** The generation after `active` (never 0, the value of a new control map). */
export function nextGeneration(active: number): number {
  return (active + 1) >>> 0 || 1;
}

/** Where the links of the maps in `mapsDir` are pinned. */
export function linksDir(mapsDir: string): string {
  return path.join(mapsDir, 'links');
}

export interface TakeOver {
  /** Generations of programs that were left attached and are now removed. */
  retired: number;
  /** Programs whose link could not be pinned (a perf event link before Linux 5.15): they detach with this daemon. */
  unpinned: string[];
}

/**
 * Makes `generation` the one that counts: pins its `links` (by program name)
 * when `mapsDir` is set, switches control[0], and removes the links of every
 * other generation.
 */
export function takeOver(
  object: BpfObject,
  generation: number,
  links: ReadonlyMap<string, BpfLinkPtr>,
  mapsDir: string | null,
  /** Programs allowed to stay unpinned (perf event links); any other that cannot be pinned is an error. */
  mayStayUnpinned: readonly string[],
): TakeOver {
  const unpinned: string[] = [];
  if (mapsDir) {
    const dir = path.join(linksDir(mapsDir), String(generation));
    fs.rmSync(dir, { recursive: true, force: true }); // an idle one left by a start that died
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const [name, link] of links) {
      try {
        object.keepAttached(link, path.join(dir, name));
      } catch (err) {
        if (!mayStayUnpinned.includes(name)) throw err;
        unpinned.push(name);
      }
    }
  }
  const value = Buffer.alloc(Control.size);
  value.writeUInt32LE(generation, Control.generation);
  const ret: number = native.updateElem(object.mapFd(CONTROL_MAP), Buffer.alloc(4), value, 0);
  if (ret < 0) fail('switching counting to this generation of programs', -ret);
  return { retired: mapsDir ? detachExcept(mapsDir, String(generation)) : 0, unpinned };
}

/**
 * Removes the pinned links of every generation but `kept` (none: every one):
 * their programs detach. The kernel detaches a link from a work queue after
 * its last reference goes, its id gone first (an fexit link's trampoline was
 * still calling its program seconds later inside a guest kernel): with
 * `waitMs`, returns once every removed link's program is freed (or that long
 * has passed), so that nothing counts after.
 */
export function detachExcept(mapsDir: string, kept: string | null = null, waitMs = 0): number {
  const dir = linksDir(mapsDir);
  if (!fs.existsSync(dir)) return 0;
  let removed = 0;
  const ids: number[] = [];
  for (const generation of fs.readdirSync(dir)) {
    if (generation === kept) continue;
    if (waitMs > 0) for (const name of fs.readdirSync(path.join(dir, generation))) ids.push(...linkProgramId(path.join(dir, generation, name)));
    fs.rmSync(path.join(dir, generation), { recursive: true, force: true });
    removed++;
  }
  if (kept === null) fs.rmdirSync(dir);
  const until = performance.now() + waitMs;
  let left = ids;
  while (left.length > 0 && performance.now() < until) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    const still: number[] = [];
    for (const id of left) {
      const fd: number = native.programFdById(id);
      if (fd >= 0) {
        native.closeFd(fd);
        still.push(id);
      } else if (fd !== -ENOENT) {
        return removed; // cannot tell (no CAP_SYS_ADMIN to look a program up): no wait
      }
    }
    left = still;
  }
  return removed;
}

/** The id of the program of the link pinned at `file` ([] if it cannot be read). */
function linkProgramId(file: string): number[] {
  const fd: number = native.objGet(file);
  if (fd < 0) return [];
  try {
    const info = Buffer.alloc(64); // struct bpf_link_info: type, id, prog_id
    const length = Buffer.alloc(4);
    length.writeUInt32LE(info.length);
    return native.objGetInfoByFd(fd, info, length) === 0 ? [info.readUInt32LE(8)] : [];
  } finally {
    native.closeFd(fd);
  }
}
