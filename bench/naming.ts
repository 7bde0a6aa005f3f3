// What naming containers costs the daemon's one thread (daemon/naming/), on
// runtime state made here as the runtimes write it:
// 1. a node's 500 pods named at once when the daemon starts: containerd
//    bundles whose config.json is 40 KiB (an OCI config with a seccomp
//    profile is some tens of KiB), in kubelet's systemd layout;
// 2. Podman's containers.json with 10,000 containers: the first lookup
//    parses it, the next ones use the parsed list until the file changes;
// 3. 10,000 cgroups named like containers that no runtime knows (a user's
//    churn): each costs a failed lstat, and no budget.
// Run as root (state files must be root's). Printed: time per lookup.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainerNames, LATER } from '../daemon/naming/container-names.js';

const PODS = 500;
const PODMAN_CONTAINERS = 10_000;
const UNKNOWN = 10_000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-bench-naming-'));
try {
  // 1. containerd bundles, kubelet's systemd layout.
  const containerd = path.join(dir, 'containerd');
  const seccomp = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: Array.from({ length: 400 }, (_, i) => ({ names: [`syscall_${i}_padding_name`], action: 'SCMP_ACT_ALLOW', args: [] })) };
  const paths: string[] = [];
  for (let i = 0; i < PODS; i++) {
    const id = randomBytes(32).toString('hex');
    const uid = randomUUID().replace(/-/g, '_');
    const slice = `kubepods-burstable-pod${uid}.slice`;
    const bundle = path.join(containerd, 'io.containerd.runtime.v2.task', 'k8s.io', id);
    fs.mkdirSync(bundle, { recursive: true });
    const annotations = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.container-name': 'app', 'io.kubernetes.cri.sandbox-name': `web-${i}`, 'io.kubernetes.cri.sandbox-namespace': 'shop', 'io.kubernetes.cri.image-name': 'registry.example/web:1' };
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', annotations, linux: { cgroupsPath: `${slice}:cri-containerd:${id}`, seccomp } }));
    paths.push(`/kubepods.slice/kubepods-burstable.slice/${slice}/cri-containerd-${id}.scope`);
  }
  const bundleBytes = fs.statSync(path.join(containerd, 'io.containerd.runtime.v2.task', 'k8s.io', fs.readdirSync(path.join(containerd, 'io.containerd.runtime.v2.task', 'k8s.io'))[0]!, 'config.json')).size;
  const names = new ContainerNames({ containerd, docker: null, containersStorage: [] }, (message) => console.error(message));
  let started = performance.now();
  const named = paths.map((p) => names.nameOf(p));
  const podsMs = performance.now() - started;
  const namedCount = named.filter((n) => n !== null && n !== LATER && n.pod !== null).length;
  console.log(`${PODS} pods at start (containerd bundles of ${(bundleBytes / 1024).toFixed(0)} KiB): ${podsMs.toFixed(0)} ms, ${((podsMs * 1000) / PODS).toFixed(0)} µs a pod; ${namedCount} named`);

  // 2. Podman: containers/storage's list of 10,000 containers.
  const storage = path.join(dir, 'storage');
  const ids = Array.from({ length: PODMAN_CONTAINERS }, () => randomBytes(32).toString('hex'));
  fs.mkdirSync(path.join(storage, 'overlay-containers'), { recursive: true });
  fs.writeFileSync(
    path.join(storage, 'overlay-containers', 'containers.json'),
    JSON.stringify(ids.map((id, i) => ({ id, names: [`c${i}`], image: randomBytes(32).toString('hex'), layer: randomBytes(32).toString('hex'), metadata: JSON.stringify({ 'image-name': 'localhost/app:1', name: `c${i}`, 'created-at': 1796600000 }), created: '2026-12-07T10:00:00Z', flags: {} }))),
  );
  const listBytes = fs.statSync(path.join(storage, 'overlay-containers', 'containers.json')).size;
  for (const id of ids.slice(0, 101)) {
    fs.mkdirSync(path.join(storage, 'overlay-containers', id, 'userdata'), { recursive: true });
    fs.writeFileSync(path.join(storage, 'overlay-containers', id, 'userdata', 'config.json'), JSON.stringify({ linux: { cgroupsPath: `/libpod_parent/libpod-${id}` } }));
  }
  const podman = new ContainerNames({ containerd: null, docker: null, containersStorage: [storage] }, (message) => console.error(message));
  started = performance.now();
  podman.nameOf(`/libpod_parent/libpod-${ids[0]}`);
  const firstMs = performance.now() - started;
  started = performance.now();
  for (const id of ids.slice(1, 101)) podman.nameOf(`/libpod_parent/libpod-${id}`);
  const nextMs = (performance.now() - started) / 100;
  console.log(`Podman, ${PODMAN_CONTAINERS} containers (containers.json ${(listBytes / 1024 / 1024).toFixed(1)} MiB): first lookup ${firstMs.toFixed(0)} ms (parses the list), then ${(nextMs * 1000).toFixed(0)} µs each`);

  // 3. Cgroups named like containers no runtime knows.
  const unknown = new ContainerNames({ containerd, docker: path.join(dir, 'docker'), containersStorage: [storage] }, () => {});
  started = performance.now();
  let later = 0;
  for (let i = 0; i < UNKNOWN; i++) if (unknown.nameOf(`/system.slice/docker-${randomBytes(32).toString('hex')}.scope`) === LATER) later++;
  const unknownMs = performance.now() - started;
  console.log(`${UNKNOWN} cgroups named like Docker containers no runtime knows: ${((unknownMs * 1000) / UNKNOWN).toFixed(1)} µs each, ${later} left for later (no budget spent)`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
