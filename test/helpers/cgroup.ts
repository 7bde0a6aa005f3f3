// Scratch cgroups under the cgroup2 mount (found as the daemon finds it).
import fs from 'node:fs';
import path from 'node:path';
import { cgroup2Mount as findCgroup2Mount } from '../../daemon/accounting/cgroup-names.js';

export function cgroup2Mount(): string {
  const mount = findCgroup2Mount();
  if (!mount) throw new Error('no cgroup2 mount in /proc/self/mountinfo');
  return mount;
}

export class ScratchCgroup {
  readonly id: number;

  constructor(readonly dir: string) {
    fs.mkdirSync(dir);
    this.id = fs.statSync(dir).ino; // a cgroup v2 id is its directory's inode number
  }

  /** `name` may be nested ("a.slice/b.scope"): each level is created. */
  static create(name: string): ScratchCgroup {
    const [top, ...rest] = name.split('/');
    let dir = path.join(cgroup2Mount(), `netacct-test-${process.pid}-${top}`);
    for (const part of rest) {
      if (!fs.existsSync(dir)) fs.mkdirSync(dir);
      dir = path.join(dir, part);
    }
    return new ScratchCgroup(dir);
  }

  /** Path under the cgroup2 mount. */
  get relativePath(): string {
    return this.dir.slice(cgroup2Mount().length);
  }

  add(pid: number): void {
    fs.writeFileSync(path.join(this.dir, 'cgroup.procs'), `${pid}\n`);
  }

  remove(): void {
    // Move anything left to the root first: a cgroup with members cannot be removed.
    const procs = fs.readFileSync(path.join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    for (const pid of procs) fs.writeFileSync(path.join(cgroup2Mount(), 'cgroup.procs'), `${pid}\n`);
    // Remove it and the scratch parents created for it.
    for (let dir = this.dir; path.basename(dir) !== path.basename(cgroup2Mount()); dir = path.dirname(dir)) {
      fs.rmdirSync(dir);
      if (path.basename(dir).startsWith('netacct-test-')) break;
    }
  }
}
