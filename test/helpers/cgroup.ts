// Scratch cgroups under the cgroup2 mount, found from /proc/self/mountinfo
// (/sys/fs/cgroup on most hosts, /sys/fs/cgroup/unified on hybrid ones).
import fs from 'node:fs';
import path from 'node:path';

export function cgroup2Mount(): string {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [beforeSeparator, afterSeparator] = line.split(' - ');
    if (afterSeparator?.split(' ')[0] === 'cgroup2') return beforeSeparator!.split(' ')[4]!;
  }
  throw new Error('no cgroup2 mount in /proc/self/mountinfo');
}

export class ScratchCgroup {
  readonly id: number;

  constructor(readonly dir: string) {
    fs.mkdirSync(dir);
    this.id = fs.statSync(dir).ino; // a cgroup v2 id is its directory's inode number
  }

  static create(name: string): ScratchCgroup {
    return new ScratchCgroup(path.join(cgroup2Mount(), `netacct-test-${process.pid}-${name}`));
  }

  add(pid: number): void {
    fs.writeFileSync(path.join(this.dir, 'cgroup.procs'), `${pid}\n`);
  }

  remove(): void {
    // Move anything left to the root first: a cgroup with members cannot be removed.
    const procs = fs.readFileSync(path.join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    for (const pid of procs) fs.writeFileSync(path.join(cgroup2Mount(), 'cgroup.procs'), `${pid}\n`);
    fs.rmdirSync(this.dir);
  }
}
