// What a cgroup's path alone says about a container: the runtime that made it,
// the container's id, and for Kubernetes the pod's uid and QoS class. Each
// runtime and kubelet lay their cgroups out in a known way (systemd and
// cgroupfs drivers); this reads those layouts and nothing else. The path is
// not trusted: a delegated user may name its cgroups like a runtime's, so
// what is found here is only where to look (daemon/naming/runtimes.ts), never
// a name shown as such unless the runtime's own state agrees.

export type Runtime = 'containerd' | 'cri-o' | 'docker' | 'podman' | 'systemd-nspawn';
export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';

export interface CgroupLayout {
  /** The runtime the path names (a prefix such as "cri-containerd-"), or null when only the id is known (kubelet's cgroupfs driver). */
  runtime: Runtime | null;
  /** The container's id: 64 hex digits, or a containerd container's or nspawn machine's name. */
  id: string;
  /** For a pod's container: the pod's uid and QoS class, as kubelet laid them out. */
  pod: { uid: string; qos: QosClass } | null;
  /** Rootless (a user's own runtime under user@UID.service): its state is the user's, never read. */
  rootless: boolean;
  /** For containerd outside Kubernetes: the containerd namespace the path names ("/<namespace>/<id>"). */
  containerdNamespace: string | null;
}

const HEX_ID = '[0-9a-f]{64}';
/** "<runtime>-<id>.scope" (systemd drivers), and for Podman's cgroupfs driver "libpod-<id>". */
const SCOPE = new RegExp(`^(docker|cri-containerd|crio|libpod)-(${HEX_ID})(?:\\.scope)?$`);
const PREFIX_RUNTIME: Record<string, Runtime> = { docker: 'docker', 'cri-containerd': 'containerd', crio: 'cri-o', libpod: 'podman' };
const BARE_ID = new RegExp(`^${HEX_ID}$`);
/** kubelet's pod cgroup: "pod<uid>" (cgroupfs) or "kubepods[-<qos>]-pod<uid with _>.slice" (systemd). */
const POD_CGROUPFS = /^pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
const POD_SYSTEMD = /^kubepods(?:-(besteffort|burstable))?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice$/;
/** A containerd namespace or container id (containerd's identifier rule, shortened). */
const CONTAINERD_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,75}$/;
/** systemd-machined's scope: "machine-<escaped name>.scope" under machine.slice. */
const MACHINE = /^machine-(.+)\.scope$/;

/** systemd's unit-name escaping undone ("\x2d" → "-"). */
function unescapeUnit(text: string): string {
  return text.replace(/\\x([0-9a-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The QoS class kubelet's cgroupfs layout gives: "/kubepods/besteffort/pod…" or "/kubepods/pod…" (Guaranteed). */
function cgroupfsQos(parent: string | undefined): QosClass | null {
  if (parent === 'besteffort' || parent === 'burstable') return parent;
  if (parent === 'kubepods') return 'guaranteed';
  return null;
}

/**
 * Whether the cgroups above a pod's are kubelet's, exactly: at the top of the
 * hierarchy, "kubepods[.slice]" and for Burstable and BestEffort the class's
 * own. Anything deeper is a cgroup someone made inside another (a user's
 * delegated tree, a pod with its own systemd) and named like kubelet's.
 */
function kubeletTree(above: string[], qos: QosClass, systemd: boolean): boolean {
  const top = systemd ? 'kubepods.slice' : 'kubepods';
  const expected = qos === 'guaranteed' ? [top] : [top, systemd ? `kubepods-${qos}.slice` : qos];
  return above.length === expected.length && above.every((part, i) => part === expected[i]);
}

/** The container a cgroup path names, or null when it names none. */
export function cgroupLayout(cgroupPath: string): CgroupLayout | null {
  const parts = cgroupPath.split('/').filter(Boolean);
  const last = parts.at(-1);
  if (last === undefined) return null;
  const rootless = parts.some((part) => /^user@\d+\.service$/.test(part));
  const base = { rootless, containerdNamespace: null };

  // A pod's container: the pod cgroup, then the container's directly under it.
  const podAt = parts.length - 2;
  const podPart = parts[podAt];
  const systemdPod = podPart !== undefined ? POD_SYSTEMD.exec(podPart) : null;
  const cgroupfsPod = podPart !== undefined ? POD_CGROUPFS.exec(podPart) : null;
  if (systemdPod || cgroupfsPod) {
    const scope = SCOPE.exec(last);
    const id = scope?.[2] ?? (BARE_ID.test(last) ? last : null);
    const qos = systemdPod ? ((systemdPod[1] as QosClass | undefined) ?? 'guaranteed') : cgroupfsQos(parts[podAt - 1]);
    if (id === null || qos === null || !kubeletTree(parts.slice(0, podAt), qos, systemdPod !== null)) return null;
    const uid = systemdPod ? systemdPod[2]!.replace(/_/g, '-') : cgroupfsPod![1]!;
    return { ...base, runtime: scope ? PREFIX_RUNTIME[scope[1]!]! : null, id, pod: { uid, qos } };
  }

  const scope = SCOPE.exec(last);
  if (scope) return { ...base, runtime: PREFIX_RUNTIME[scope[1]!]!, id: scope[2]!, pod: null };
  // Docker's cgroupfs driver: "/docker/<id>".
  if (parts.length === 2 && parts[0] === 'docker' && BARE_ID.test(last)) return { ...base, runtime: 'docker', id: last, pod: null };
  const machine = parts.at(-2) === 'machine.slice' ? MACHINE.exec(last) : null;
  if (machine) return { ...base, runtime: 'systemd-nspawn', id: unescapeUnit(machine[1]!), pod: null };
  // containerd outside Kubernetes (ctr, nerdctl): "/<namespace>/<id>".
  if (parts.length === 2 && CONTAINERD_NAME.test(parts[0]!) && CONTAINERD_NAME.test(last) && !/\.(slice|scope|service)$/.test(parts[0]!)) {
    return { ...base, runtime: 'containerd', id: last, pod: null, containerdNamespace: parts[0]! };
  }
  return null;
}
