// cgroup ids to names: paths of real cgroups this test creates, systemd units
// and container ids derived from the path, names kept after removal, a
// user's 10,000 cgroups each found from its id.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, test } from 'vitest';
import { CgroupNames, cgroup2Mount, describeCgroupPath } from '../daemon/accounting/cgroup-names.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { NOBODY_UID, asNobody } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

const ID = 'a3f1c2d4e5b60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef0';

test.each([
  ['/', { unit: null, containerId: null }],
  ['/system.slice/nginx.service', { unit: 'nginx.service', containerId: null }],
  ['/user.slice/user-1000.slice/session-3.scope', { unit: 'session-3.scope', containerId: null }],
  [`/system.slice/docker-${ID}.scope`, { unit: `docker-${ID}.scope`, containerId: ID }],
  [`/kubepods.slice/kubepods-pod1.slice/cri-containerd-${ID}.scope`, { unit: `cri-containerd-${ID}.scope`, containerId: ID }],
  [`/machine.slice/libpod-${ID}.scope/container`, { unit: `libpod-${ID}.scope`, containerId: ID }],
  [`/kubepods/burstable/pod1/crio-${ID}.scope`, { unit: `crio-${ID}.scope`, containerId: ID }],
  [`/docker/${ID}`, { unit: null, containerId: ID }],
  ['/system.slice/not-a-container-1234.scope', { unit: 'not-a-container-1234.scope', containerId: null }],
])('%s', (path, expected) => {
  expect(describeCgroupPath(path)).toEqual({ path, ...expected, container: null });
});

test('the cgroup2 mount comes from mountinfo, wherever it is', () => {
  const line = (id: number, mount: string, type: string): string => `${id} 1 0:${id} / ${mount} rw,relatime - ${type} ${type} rw`;
  expect(cgroup2Mount([line(30, '/sys/fs/cgroup', 'tmpfs'), line(31, '/sys/fs/cgroup/unified', 'cgroup2')].join('\n'))).toBe('/sys/fs/cgroup/unified');
  expect(cgroup2Mount(line(40, '/sys/fs/cgroup', 'cgroup2'))).toBe('/sys/fs/cgroup');
  expect(cgroup2Mount(line(30, '/sys/fs/cgroup/memory', 'cgroup'))).toBeNull();
});

describeWithBpf('names of real cgroups (root: the test creates them)', () => {
  test('a new cgroup is named from its id at once, and keeps its name after it is removed', () => {
    const names = new CgroupNames();
    expect(names.unavailable).toBeNull();
    expect(names.nameOf(fs.statSync(cgroup2Mount()!).ino)?.path).toBe('/');
    const scratch = ScratchCgroup.create(`names.slice/docker-${ID}.scope`);
    try {
      expect(names.nameOf(scratch.id)).toEqual({ path: scratch.relativePath, unit: `docker-${ID}.scope`, containerId: ID, container: null });
    } finally {
      scratch.remove();
    }
    expect(names.nameOf(scratch.id)?.path).toBe(scratch.relativePath);
    expect(names.nameOf(2 ** 40)).toBeNull();
    names.close();
  });

  test('removedOf: live ones not, removed and never existing ones yes; retain forgets the unreferenced (a live one is looked up again)', () => {
    const names = new CgroupNames();
    const [a, b, c] = ['a', 'b', 'c'].map((name) => ScratchCgroup.create(`removed-${name}`));
    try {
      expect(names.nameOf(b!.id)?.path).toBe(b!.relativePath);
      b!.remove();
      c!.remove(); // never named
      expect([...names.removedOf([a!.id, b!.id, c!.id, 2 ** 40])].sort()).toEqual([b!.id, c!.id, 2 ** 40].sort());
      expect(names.nameOf(c!.id)).toBeNull();
      names.retain((id) => id === a!.id);
      expect(names.nameOf(b!.id)).toBeNull(); // forgotten: gone, and nothing counted in it is kept
      expect(names.nameOf(a!.id)?.path).toBe(a!.relativePath);
    } finally {
      a!.remove();
      names.close();
    }
  });

  test("10,000 cgroups of a user's delegated subtree: each named from its id, a removed one gone", () => {
    const names = new CgroupNames();
    const subtree = ScratchCgroup.create('delegated');
    const ids: number[] = [];
    try {
      // What systemd does for a user: the subtree is theirs, they make what they like in it.
      fs.chownSync(subtree.dir, NOBODY_UID, NOBODY_UID);
      for (const file of ['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) fs.chownSync(path.join(subtree.dir, file), NOBODY_UID, NOBODY_UID);
      execFileSync(...asNobody('sh', '-c', 'cd "$1" && seq 10000 | xargs mkdir', 'sh', subtree.dir));
      for (let i = 1; i <= 10_000; i++) ids.push(fs.statSync(path.join(subtree.dir, String(i))).ino);
      for (const i of [1, 5000, 10_000]) expect(names.nameOf(ids[i - 1]!)?.path).toBe(`${subtree.relativePath}/${i}`);
      fs.rmdirSync(path.join(subtree.dir, '2'));
      expect(names.nameOf(ids[1]!)).toBeNull();
      expect(names.removedOf(ids.slice(0, 3))).toEqual(new Set([ids[1]]));
    } finally {
      execFileSync('sh', ['-c', 'cd "$1" && ls | grep -E "^[0-9]+$" | xargs -r rmdir', 'sh', subtree.dir]);
      subtree.remove();
      names.close();
    }
  });
});

test('without a cgroup2 hierarchy: names are unknown, nothing is said removed, and why is given', () => {
  const names = new CgroupNames(null);
  expect(names.unavailable).toBe('no cgroup2 hierarchy is mounted');
  expect(names.nameOf(1)).toBeNull();
  expect(names.removedOf([1, 2])).toEqual(new Set());
  const notCgroup = new CgroupNames(os.tmpdir());
  expect(notCgroup.unavailable).toMatch(/open_by_handle_at|does not open/);
});
