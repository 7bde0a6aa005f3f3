// Where each runtime keeps what names a container, read from the node's own
// files (no runtime's API, no Kubernetes API server):
// - containerd: the task's OCI bundle, <containerd>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json;
//   its CRI plugin writes the pod's and container's names into the annotations.
// - CRI-O: the container's OCI config, <storage>/overlay-containers/<id>/userdata/config.json, with
//   kubelet's io.kubernetes.pod.* and io.kubernetes.container.name among the annotations.
// - Docker: <docker>/containers/<id>/config.v2.json (cri-dockerd puts kubelet's labels there).
// - Podman: containers/storage's list, <storage>/overlay-containers/containers.json (names, image).
// A runtime's file is believed only where it agrees with the cgroup: an OCI
// config's cgroupsPath must be the cgroup's path, Docker's containers sit
// where dockerd puts them, so that a user's delegated cgroup named like
// another's container takes no name from it.
import fs from 'node:fs';
import path from 'node:path';
import type { CgroupLayout, QosClass, Runtime } from './cgroup-layout.js';
import { listStateDirectory, readStateFile } from './state-files.js';

export interface ContainerName {
  runtime: Runtime | null;
  id: string;
  /** The container's name: Docker's and Podman's, Kubernetes' container name ("POD" for a pod's sandbox), containerd's id. */
  name: string | null;
  image: string | null;
  /** Kubernetes: the pod's name, namespace and uid, and its QoS class (from the cgroup path). */
  pod: string | null;
  namespace: string | null;
  podUid: string | null;
  qos: QosClass | null;
}

/** Where the runtimes keep their state on this host; null: that runtime's files are not read. */
export interface RuntimeStateRoots {
  /** containerd's state directory (its bundles are under io.containerd.runtime.v2.task/). */
  containerd: string | null;
  /** Docker's data root. */
  docker: string | null;
  /** containers/storage's roots (Podman, CRI-O): the graph root and the run root. */
  containersStorage: string[];
}

/** Past this a state file is not read (an OCI config with a seccomp profile is some tens of KiB). */
export const MAX_STATE_FILE_BYTES = 1024 * 1024;
/** containers/storage's list of every container: larger, and read once per change. */
export const MAX_CONTAINER_LIST_BYTES = 16 * 1024 * 1024;
/**
 * containers/storage's list is parsed again at most this often: on a host
 * that makes and removes containers all the time it changes with each, and a
 * list of 10,000 takes some 60 ms to parse.
 */
const CONTAINER_LIST_REPARSE_MS = 5000;
/** containerd namespaces looked in for a pod's container id (k8s.io first). */
const MAX_CONTAINERD_NAMESPACES = 16;

type Annotations = Record<string, unknown>;

const text = (value: unknown): string | null => (typeof value === 'string' && value.length > 0 && value.length <= 253 ? value : null);

/** An OCI config's annotations and cgroupsPath, or null when it is not one. */
function ociConfig(json: string): { annotations: Annotations; cgroupsPath: string | null } | null {
  const config = JSON.parse(json) as { annotations?: unknown; linux?: { cgroupsPath?: unknown } } | null;
  if (typeof config !== 'object' || config === null) return null;
  const annotations = typeof config.annotations === 'object' && config.annotations !== null ? (config.annotations as Annotations) : {};
  return { annotations, cgroupsPath: typeof config.linux?.cgroupsPath === 'string' ? config.linux.cgroupsPath : null };
}

/**
 * The cgroup an OCI config's cgroupsPath puts the container in: "/a/b/c"
 * (cgroupfs driver) as it is, "slice:prefix:name" (systemd driver) as systemd
 * lays it out: "a-b.slice" is /a.slice/a-b.slice, the scope "<prefix>-<name>.scope".
 */
export function cgroupOfConfig(cgroupsPath: string): string {
  const systemd = /^([^:/]*):([^:/]+):([^:/]+)$/.exec(cgroupsPath);
  if (!systemd) return `/${cgroupsPath.split('/').filter(Boolean).join('/')}`;
  const slice = systemd[1] || 'system.slice';
  const words = slice.replace(/\.slice$/, '').split('-');
  const slices = slice === '-.slice' ? [] : words.map((_, i) => `${words.slice(0, i + 1).join('-')}.slice`);
  return `/${[...slices, `${systemd[2]}-${systemd[3]}.scope`].join('/')}`;
}

/**
 * Whether an OCI config puts its container in this very cgroup. Exactly: a
 * user's delegated cgroup named like a container's (".../kubepods/…/<id>")
 * takes no name from it.
 */
function sameCgroup(cgroupsPath: string | null, cgroupPath: string): boolean {
  return cgroupsPath !== null && cgroupOfConfig(cgroupsPath) === `/${cgroupPath.split('/').filter(Boolean).join('/')}`;
}

/** Kubernetes' names from containerd's CRI annotations or kubelet's labels (CRI-O, cri-dockerd). */
function kubernetesNames(annotations: Annotations): { pod: string | null; namespace: string | null; podUid: string | null; name: string | null; image: string | null } {
  const cri = (key: string) => text(annotations[`io.kubernetes.cri.${key}`]);
  const kubelet = (key: string) => text(annotations[`io.kubernetes.${key}`]);
  const sandbox = cri('container-type') === 'sandbox' || text(annotations['io.kubernetes.cri-o.ContainerType']) === 'sandbox';
  return {
    pod: cri('sandbox-name') ?? kubelet('pod.name'),
    namespace: cri('sandbox-namespace') ?? kubelet('pod.namespace'),
    podUid: cri('sandbox-uid') ?? kubelet('pod.uid'),
    // A pod's sandbox ("pause") container is "POD", as kubelet has always called it.
    name: sandbox ? 'POD' : (cri('container-name') ?? kubelet('container.name')),
    image: cri('image-name') ?? text(annotations['io.kubernetes.cri-o.ImageName']),
  };
}

/** containers/storage's metadata of a container: JSON in a string; {} when it is not. */
function containerMetadata(value: unknown): Annotations {
  try {
    const parsed = typeof value === 'string' ? (JSON.parse(value) as unknown) : null;
    return typeof parsed === 'object' && parsed !== null ? (parsed as Annotations) : {};
  } catch {
    return {}; // a container without readable metadata keeps its name from `names`
  }
}

/** A container the runtime's files do not show yet, where they may soon (a list parsed a moment ago): asked again later. */
export class NotYet extends Error {}

export class RuntimeState {
  /** containers/storage's parsed list per file, with the file's stamp (inode, size, time) and when it was parsed. */
  private readonly lists = new Map<string, { stamp: string; parsedAtMs: number; byId: Map<string, { name: string | null; image: string | null }> }>();

  /**
   * `admit`: told each file's size before it is read; it throws to refuse
   * (the caller's budget of reading, charged only for files that exist: a
   * user naming cgroups like containers that do not exist costs nothing).
   */
  constructor(
    private readonly roots: RuntimeStateRoots,
    private readonly admit: (bytes: number) => void = () => {},
  ) {}

  private read(root: string, names: readonly string[], maxBytes: number): string | null {
    return readStateFile(root, names, maxBytes, this.admit);
  }

  /** The container `layout` names, from its runtime's state; null when no runtime knows it (or its state may not be read). */
  describe(layout: CgroupLayout, cgroupPath: string): ContainerName | null {
    if (layout.rootless) return null; // a user's own runtime: its files are the user's
    const pod = layout.pod;
    const base = { id: layout.id, podUid: pod?.uid ?? null, qos: pod?.qos ?? null };
    const tryRuntime = (runtime: Runtime): ContainerName | null => {
      switch (runtime) {
        case 'containerd':
          return this.containerd(layout, cgroupPath, base);
        case 'cri-o':
          return this.crio(layout, cgroupPath, base);
        case 'docker':
          return this.docker(layout, cgroupPath, base);
        case 'podman':
          return this.podman(layout, cgroupPath, base);
        case 'systemd-nspawn':
          return { ...base, runtime, name: layout.id, image: null, pod: null, namespace: null };
      }
    };
    // kubelet's cgroupfs driver gives no runtime: each is asked in turn (one's refusal does not stop the others).
    const runtimes: Runtime[] = layout.runtime ? [layout.runtime] : ['containerd', 'cri-o', 'docker'];
    let failure: unknown = null;
    for (const runtime of runtimes) {
      try {
        const found = tryRuntime(runtime);
        if (found) return found;
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure) throw failure;
    return null;
  }

  private containerd(layout: CgroupLayout, cgroupPath: string, base: Pick<ContainerName, 'id' | 'podUid' | 'qos'>): ContainerName | null {
    if (!this.roots.containerd) return null;
    const tasks = path.join(this.roots.containerd, 'io.containerd.runtime.v2.task');
    const namespaces = layout.containerdNamespace
      ? [layout.containerdNamespace]
      : ['k8s.io', ...listStateDirectory(tasks, MAX_CONTAINERD_NAMESPACES).filter((ns) => ns !== 'k8s.io')];
    for (const namespace of namespaces) {
      const json = this.read(tasks, [namespace, layout.id, 'config.json'], MAX_STATE_FILE_BYTES);
      const config = json === null ? null : ociConfig(json);
      if (!config || !sameCgroup(config.cgroupsPath, cgroupPath)) continue;
      const k8s = kubernetesNames(config.annotations);
      return { ...base, runtime: 'containerd', name: k8s.name ?? layout.id, image: k8s.image, pod: k8s.pod, namespace: k8s.namespace, podUid: k8s.podUid ?? base.podUid };
    }
    return null;
  }

  private crio(layout: CgroupLayout, cgroupPath: string, base: Pick<ContainerName, 'id' | 'podUid' | 'qos'>): ContainerName | null {
    for (const root of this.roots.containersStorage) {
      const json = this.read(root, ['overlay-containers', layout.id, 'userdata', 'config.json'], MAX_STATE_FILE_BYTES);
      const config = json === null ? null : ociConfig(json);
      if (!config || !sameCgroup(config.cgroupsPath, cgroupPath)) continue;
      if (text(config.annotations['io.container.manager']) === 'libpod') return null; // Podman's, not CRI-O's
      const k8s = kubernetesNames(config.annotations);
      return { ...base, runtime: 'cri-o', name: k8s.name, image: k8s.image, pod: k8s.pod, namespace: k8s.namespace, podUid: k8s.podUid ?? base.podUid };
    }
    return null;
  }

  private docker(layout: CgroupLayout, cgroupPath: string, base: Pick<ContainerName, 'id' | 'podUid' | 'qos'>): ContainerName | null {
    if (!this.roots.docker) return null;
    // dockerd's cgroups (cgroupfs and systemd drivers), or kubelet's (cri-dockerd): none in a user's delegated tree.
    const where = `/${cgroupPath.split('/').filter(Boolean).join('/')}`;
    if (layout.pod === null && where !== `/docker/${layout.id}` && where !== `/system.slice/docker-${layout.id}.scope`) return null;
    const json = this.read(path.join(this.roots.docker, 'containers'), [layout.id, 'config.v2.json'], MAX_STATE_FILE_BYTES);
    if (json === null) return null;
    const state = JSON.parse(json) as { ID?: unknown; Name?: unknown; Config?: { Image?: unknown; Labels?: unknown } } | null;
    if (typeof state !== 'object' || state === null || state.ID !== layout.id) return null;
    const labels = typeof state.Config?.Labels === 'object' && state.Config.Labels !== null ? (state.Config.Labels as Annotations) : {};
    const k8s = kubernetesNames(labels);
    const name = text(state.Name)?.replace(/^\//, '') ?? null;
    return { ...base, runtime: 'docker', name: k8s.name ?? name, image: text(state.Config?.Image), pod: k8s.pod, namespace: k8s.namespace, podUid: k8s.podUid ?? base.podUid };
  }

  private podman(layout: CgroupLayout, cgroupPath: string, base: Pick<ContainerName, 'id' | 'podUid' | 'qos'>): ContainerName | null {
    for (const root of this.roots.containersStorage) {
      const json = this.read(root, ['overlay-containers', layout.id, 'userdata', 'config.json'], MAX_STATE_FILE_BYTES);
      const config = json === null ? null : ociConfig(json);
      if (!config || !sameCgroup(config.cgroupsPath, cgroupPath)) continue;
      const list = this.containerList(root);
      const found = list?.byId.get(layout.id);
      if (!found && list?.stale) throw new NotYet();
      return { ...base, runtime: 'podman', name: found?.name ?? null, image: found?.image ?? null, pod: null, namespace: null };
    }
    return null;
  }

  /**
   * containers/storage's containers by id, parsed again only when the file
   * changed (its inode, size or time), and at most every
   * CONTAINER_LIST_REPARSE_MS: meanwhile the last parse, `stale`.
   */
  private containerList(root: string): { byId: Map<string, { name: string | null; image: string | null }>; stale: boolean } | null {
    const file = path.join(root, 'overlay-containers', 'containers.json');
    let stamp: string;
    try {
      const stat = fs.lstatSync(file);
      stamp = `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    } catch {
      this.lists.delete(file);
      return null;
    }
    const cached = this.lists.get(file);
    if (cached?.stamp === stamp) return { byId: cached.byId, stale: false };
    if (cached && performance.now() - cached.parsedAtMs < CONTAINER_LIST_REPARSE_MS) return { byId: cached.byId, stale: true };
    const json = this.read(root, ['overlay-containers', 'containers.json'], MAX_CONTAINER_LIST_BYTES);
    if (json === null) return null;
    const byId = new Map<string, { name: string | null; image: string | null }>();
    const list = JSON.parse(json) as unknown;
    for (const entry of Array.isArray(list) ? (list as Array<{ id?: unknown; names?: unknown; metadata?: unknown } | null>) : []) {
      if (typeof entry?.id !== 'string') continue;
      const metadata = containerMetadata(entry.metadata);
      const names = Array.isArray(entry.names) ? (entry.names as unknown[]) : [];
      byId.set(entry.id, { name: text(metadata.name) ?? text(names[0]), image: text(metadata['image-name']) });
    }
    this.lists.set(file, { stamp, parsedAtMs: performance.now(), byId });
    return { byId, stale: false };
  }
}
