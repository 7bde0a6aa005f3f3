// cgroup ids to names: paths of real cgroups this test creates, systemd units
// and container ids derived from the path, names kept after removal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, test } from 'vitest';
import { CgroupNames, cgroup2Mount, describeCgroupPath } from '../daemon/accounting/cgroup-names.js';
import { ScratchCgroup } from './helpers/cgroup.js';
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
  expect(describeCgroupPath(path)).toEqual({ path, ...expected });
});

test('the cgroup2 mount comes from mountinfo, wherever it is', () => {
  const line = (id: number, mount: string, type: string): string => `${id} 1 0:${id} / ${mount} rw,relatime - ${type} ${type} rw`;
  expect(cgroup2Mount([line(30, '/sys/fs/cgroup', 'tmpfs'), line(31, '/sys/fs/cgroup/unified', 'cgroup2')].join('\n'))).toBe('/sys/fs/cgroup/unified');
  expect(cgroup2Mount(line(40, '/sys/fs/cgroup', 'cgroup2'))).toBe('/sys/fs/cgroup');
  expect(cgroup2Mount(line(30, '/sys/fs/cgroup/memory', 'cgroup'))).toBeNull();
});

describeWithBpf('names of real cgroups (root: the test creates them)', () => {
  test('a new cgroup is found on a miss, and its name is kept after it is removed', async () => {
    const names = new CgroupNames();
    expect(names.nameOf(1)?.path).toBe('/');
    const scratch = ScratchCgroup.create(`names.slice/docker-${ID}.scope`);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1100)); // past the rescan interval
      expect(names.nameOf(scratch.id)).toEqual({ path: scratch.relativePath, unit: `docker-${ID}.scope`, containerId: ID });
    } finally {
      scratch.remove();
    }
    expect(names.nameOf(scratch.id)?.path).toBe(scratch.relativePath);
    expect(names.nameOf(2 ** 40)).toBeNull();
  });
});

test('removedOf: one walk for every id asked; a live one never, a removed or never seen one yes', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-cgroups-'));
  try {
    for (const dir of ['a', 'b', 'a/c']) fs.mkdirSync(path.join(root, dir));
    const id = (dir: string): number => fs.statSync(path.join(root, dir)).ino;
    const [a, b, c] = [id('a'), id('b'), id('a/c')];
    const names = new CgroupNames(root);
    expect(names.nameOf(b)?.path).toBe('/b');
    fs.rmdirSync(path.join(root, 'b'));
    expect([...names.removedOf([a, b, c, 999_999_999])].sort()).toEqual([b, 999_999_999].sort());
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
