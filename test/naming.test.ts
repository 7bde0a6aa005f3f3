// The naming module's parts on their own: what each cgroup layout says, how an
// OCI config's cgroupsPath maps to a cgroup, the budget of lookups, and state
// files planted to mislead a root reader (links, FIFOs, huge or foreign
// files), each refused without being read.
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { cgroupLayout } from '../daemon/naming/cgroup-layout.js';
import { ContainerNames, LATER } from '../daemon/naming/container-names.js';
import { MAX_STATE_FILE_BYTES, RuntimeState, cgroupOfConfig } from '../daemon/naming/runtimes.js';
import { StateFileError, readStateFile } from '../daemon/naming/state-files.js';
import { NOBODY_UID, scratchDir } from './helpers/fixtures.js';

const ID = 'ab'.repeat(32);
const UID = '1f2e3d4c-0000-4111-8222-123456789abc';
const UID_ = UID.replace(/-/g, '_');
const asRoot = process.getuid?.() === 0;

test.each([
  [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`, { runtime: 'containerd', id: ID, pod: { uid: UID, qos: 'burstable' } }],
  [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/crio-${ID}.scope`, { runtime: 'cri-o', id: ID, pod: { uid: UID, qos: 'besteffort' } }],
  [`/kubepods.slice/kubepods-pod${UID_}.slice/docker-${ID}.scope`, { runtime: 'docker', id: ID, pod: { uid: UID, qos: 'guaranteed' } }],
  [`/kubepods/burstable/pod${UID}/${ID}`, { runtime: null, id: ID, pod: { uid: UID, qos: 'burstable' } }],
  [`/kubepods/pod${UID}/${ID}`, { runtime: null, id: ID, pod: { uid: UID, qos: 'guaranteed' } }],
  [`/system.slice/docker-${ID}.scope`, { runtime: 'docker', id: ID, pod: null }],
  [`/docker/${ID}`, { runtime: 'docker', id: ID, pod: null }],
  [`/machine.slice/libpod-${ID}.scope`, { runtime: 'podman', id: ID, pod: null }],
  [`/libpod_parent/libpod-${ID}`, { runtime: 'podman', id: ID, pod: null }],
  [`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`, { runtime: 'podman', id: ID, pod: null, rootless: true }],
  ['/machine.slice/machine-web\\x2d1.scope', { runtime: 'systemd-nspawn', id: 'web-1', pod: null }],
  ['/default/my-container', { runtime: 'containerd', id: 'my-container', pod: null, containerdNamespace: 'default' }],
])('%s', (cgroupPath, expected) => {
  expect(cgroupLayout(cgroupPath)).toEqual({ rootless: false, containerdNamespace: null, ...expected });
});

test.each([
  '/',
  '/system.slice/nginx.service',
  '/user.slice/user-1000.slice',
  `/machine.slice/libpod-conmon-${ID}.scope`, // Podman's monitor, not the container
  `/kubepods/burstable/pod${UID}`, // a pod's own cgroup holds no container
  // A user's delegated cgroups named like kubelet's or Docker's: kubelet's tree is at the top only.
  `/user.slice/user-1000.slice/user@1000.service/kubepods/burstable/pod${UID}/${ID}`,
  `/system.slice/evil.service/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`,
  // …and exactly as deep as kubelet's: not inside a pod's own container (a pod with its own systemd).
  `/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${'cd'.repeat(32)}.scope/kubepods-besteffort-pod${UID_}.slice/docker-${ID}.scope`,
  `/kubepods/pod${UID}/${'cd'.repeat(32)}/kubepods/pod${UID}/${ID}`,
  `/kubepods/burstable/extra/pod${UID}/${ID}`,
  `/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`, // the class's slice and the pod's disagree
])('no container: %s', (cgroupPath) => {
  expect(cgroupLayout(cgroupPath)).toBeNull();
});

test('an OCI cgroupsPath is the cgroup it names: cgroupfs as it is, systemd slices expanded', () => {
  expect(cgroupOfConfig(`/kubepods/burstable/pod${UID}/${ID}`)).toBe(`/kubepods/burstable/pod${UID}/${ID}`);
  expect(cgroupOfConfig(`kubepods-burstable-pod${UID_}.slice:cri-containerd:${ID}`)).toBe(
    `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
  );
  expect(cgroupOfConfig(`kubepods-pod${UID_}.slice:crio:${ID}`)).toBe(`/kubepods.slice/kubepods-pod${UID_}.slice/crio-${ID}.scope`);
  expect(cgroupOfConfig(`:docker:${ID}`)).toBe(`/system.slice/docker-${ID}.scope`);
});

test.skipIf(!asRoot)('the reading budget: 500 files at once, then 50 a second; cgroups named like containers no runtime knows cost nothing', () => {
  const docker = scratchDir('docker-state');
  const id = (i: number) => i.toString(16).padStart(64, '0');
  for (let i = 0; i < 700; i++) {
    fs.mkdirSync(path.join(docker, 'containers', id(i)), { recursive: true });
    fs.writeFileSync(path.join(docker, 'containers', id(i), 'config.v2.json'), JSON.stringify({ ID: id(i), Name: `/c${i}`, Config: { Image: 'img' } }));
  }
  let nowMs = 0;
  const names = new ContainerNames({ containerd: null, docker, containersStorage: [] }, () => {}, () => nowMs);
  const answers = Array.from({ length: 600 }, (_, i) => names.nameOf(`/docker/${id(i)}`));
  expect(answers.filter((a) => a === LATER)).toHaveLength(100);
  expect(answers[499]).toMatchObject({ runtime: 'docker', name: 'c499' });
  // Spent, yet what no runtime knows is answered at once: nothing was read.
  expect(names.nameOf(`/docker/${'e'.repeat(64)}`)).toBeNull();
  expect(names.nameOf(`/system.slice/docker-${'e'.repeat(64)}.scope`)).toBeNull();
  expect(names.nameOf('/system.slice/nginx.service')).toBeNull();
  nowMs = 1000;
  const later = Array.from({ length: 60 }, (_, i) => names.nameOf(`/docker/${id(600 + i)}`));
  expect(later.filter((a) => a !== LATER)).toHaveLength(50);
});

test("crun's inner cgroup: a container's processes in \"<scope>/container\" are named as the container", () => {
  expect(cgroupLayout(`/machine.slice/libpod-${ID}.scope/container`)).toBeNull();
  const names = new ContainerNames({ containerd: null, docker: null, containersStorage: [] }, () => {});
  // Named from its path: the pod's uid and class, for the scope's and for its inner cgroup alike.
  const scope = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`;
  expect(names.nameOf(`${scope}/container`)).toEqual(names.nameOf(scope));
  expect(names.nameOf(`${scope}/container`)).toMatchObject({ id: ID, podUid: UID, qos: 'burstable' });
});

/** A state root with a containerd bundle at k8s.io/<id> holding `config` (its cgroupsPath the cgroupfs layout). */
function containerdRoot(): { root: string; bundle: string; cgroup: string } {
  const root = scratchDir('containerd-state');
  const bundle = path.join(root, 'io.containerd.runtime.v2.task', 'k8s.io', ID);
  fs.mkdirSync(bundle, { recursive: true });
  return { root, bundle, cgroup: `/kubepods/besteffort/pod${UID}/${ID}` };
}
const config = (cgroup: string) =>
  JSON.stringify({ linux: { cgroupsPath: cgroup }, annotations: { 'io.kubernetes.cri.sandbox-name': 'web', 'io.kubernetes.cri.sandbox-namespace': 'prod', 'io.kubernetes.cri.container-name': 'app' } });

test.skipIf(!asRoot)('a planted state file is never followed nor read whole: links (file and directory), a FIFO, a huge or sparse file, another user\'s file', () => {
  const outside = path.join(scratchDir('outside'), 'config.json');
  const { root, bundle, cgroup } = containerdRoot();
  fs.writeFileSync(outside, config(cgroup)); // names that must not be taken from outside the state
  const state = new RuntimeState({ containerd: root, docker: null, containersStorage: [] });
  const layout = cgroupLayout(cgroup)!;
  const configFile = path.join(bundle, 'config.json');
  const refused = (why: RegExp) => {
    expect(() => state.describe(layout, cgroup)).toThrow(why);
    expect(() => readStateFile(path.join(root, 'io.containerd.runtime.v2.task'), ['k8s.io', ID, 'config.json'], MAX_STATE_FILE_BYTES)).toThrow(StateFileError);
  };

  fs.symlinkSync(outside, configFile);
  refused(/symbolic link/);
  fs.unlinkSync(configFile);

  fs.rmdirSync(bundle);
  fs.symlinkSync(path.dirname(outside), bundle); // the bundle directory itself a link
  refused(/symbolic link/);
  fs.unlinkSync(bundle);
  fs.mkdirSync(bundle);

  execFileSync('mkfifo', [configFile]); // a writer-less FIFO: opening it must not block
  refused(/not a regular file/);
  fs.unlinkSync(configFile);

  fs.writeFileSync(configFile, '');
  fs.truncateSync(configFile, 64 * 1024 ** 3); // 64 GiB, sparse: read whole, it would take the daemon down
  refused(/past the 1048576 read/);
  fs.unlinkSync(configFile);

  fs.writeFileSync(configFile, config(cgroup));
  fs.chownSync(configFile, NOBODY_UID, NOBODY_UID);
  refused(/not root's/);
  fs.chownSync(configFile, 0, 0);

  // As the runtime writes it: named. With another cgroup's cgroupsPath: not believed.
  expect(state.describe(layout, cgroup)).toMatchObject({ runtime: 'containerd', name: 'app', pod: 'web', namespace: 'prod' });
  fs.writeFileSync(configFile, config(`/kubepods/besteffort/pod${UID}/${'cd'.repeat(32)}`));
  expect(state.describe(layout, cgroup)).toBeNull();
});

test.skipIf(!asRoot)('names a state file gives are bounded, and JSON that is not a config names nothing', () => {
  const { root, bundle, cgroup } = containerdRoot();
  const state = new RuntimeState({ containerd: root, docker: null, containersStorage: [] });
  const layout = cgroupLayout(cgroup)!;
  const long = 'x'.repeat(10_000);
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ linux: { cgroupsPath: cgroup }, annotations: { 'io.kubernetes.cri.sandbox-name': long, 'io.kubernetes.cri.container-name': 42 } }));
  expect(state.describe(layout, cgroup)).toMatchObject({ pod: null, name: ID }); // past 253 characters, or not text: not a name
  for (const text of ['null', '[]', '"config"', '{"linux": 7}']) {
    fs.writeFileSync(path.join(bundle, 'config.json'), text);
    expect(state.describe(layout, cgroup)).toBeNull();
  }
  fs.writeFileSync(path.join(bundle, 'config.json'), `{"annotations": ${randomBytes(8).toString('hex')}`);
  expect(() => state.describe(layout, cgroup)).toThrow(SyntaxError); // ContainerNames reports it and names from the path
});
