// Kubernetes' Container Runtime Interface, spoken to containerd's CRI plugin
// as kubelet speaks it (gRPC, runtime.v1): a pod sandbox, containers in it,
// their removal. The image is made here (a docker-archive of a root file
// system, imported into containerd's k8s.io namespace, where kubelet's images
// live): nothing is pulled. gRPC is @grpc/grpc-js, the protocol's maintained
// JavaScript implementation; the messages are the part of the CRI that
// test/fixtures/cri/runtime-v1.proto declares.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type ScratchContainerd, waitFor } from './containers.js';
import { stopAtFileEnd } from './leftovers.js';

const PROTO = path.join(import.meta.dirname, '..', 'fixtures', 'cri', 'runtime-v1.proto');

/** NamespaceMode NODE: the host's namespace (a host-network pod). */
const NODE = 2;
/** NamespaceMode CONTAINER. */
const CONTAINER = 1;
/**
 * The pod's namespaces: the host's network (traffic over the host's
 * loopback), and the host's IPC (so the CRI mounts no /dev/shm of its own, a
 * mount more to leave behind if a test fails); a PID namespace per container,
 * as kubelet asks by default.
 */
const NAMESPACES = { network: NODE, pid: CONTAINER, ipc: NODE };

export const CONTAINER_RUNNING = 1;

/** No call may hang a test: kubelet's own runtime requests time out too (2 min); here a hung one fails sooner. */
const CALL_TIMEOUT_MS = 30_000;

/** OCI's name of this machine's architecture. */
const OCI_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };

/**
 * A docker-archive (`docker save`'s format) of `rootfsTar` as image
 * `reference` whose default command is `cmd`, written next to the tar: what
 * `ctr images import` reads.
 */
export function dockerArchive(rootfsTar: string, reference: string, cmd: string[]): string {
  const dir = fs.mkdtempSync(path.join(path.dirname(rootfsTar), 'archive-'));
  fs.copyFileSync(rootfsTar, path.join(dir, 'layer.tar'));
  const diffId = `sha256:${createHash('sha256').update(fs.readFileSync(rootfsTar)).digest('hex')}`;
  const config = { architecture: OCI_ARCH[process.arch] ?? process.arch, os: 'linux', config: { Cmd: cmd }, rootfs: { type: 'layers', diff_ids: [diffId] } };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [reference], Layers: ['layer.tar'] }]));
  const archive = `${dir}.tar`;
  execFileSync('tar', ['-C', dir, '-cf', archive, 'manifest.json', 'config.json', 'layer.tar']);
  fs.rmSync(dir, { recursive: true });
  return archive;
}

/** A pod as kubelet describes it to the runtime. */
export interface CriPod {
  name: string;
  namespace: string;
  uid: string;
  /** kubelet's cgroup for the pod, cgroupfs form (/kubepods/besteffort/pod<uid>). */
  cgroupParent: string;
  logDirectory: string;
}

type Call = (request: object, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, response: any) => void) => void;
type Service = grpc.Client & Record<string, Call>;

/** kubelet's side of the CRI, against `containerd`'s socket. */
export class CriClient {
  private readonly runtime: Service;
  private readonly images: Service;
  private readonly forgetAtFileEnd: () => void;

  constructor(containerd: ScratchContainerd) {
    const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
    const api = grpc.loadPackageDefinition(definition) as any;
    this.runtime = new api.runtime.v1.RuntimeService(`unix://${containerd.socket}`, grpc.credentials.createInsecure());
    this.images = new api.runtime.v1.ImageService(`unix://${containerd.socket}`, grpc.credentials.createInsecure());
    this.forgetAtFileEnd = stopAtFileEnd(() => this.close());
  }

  private call(service: Service, method: string, request: object): Promise<any> {
    return new Promise((resolve, reject) => {
      service[method]!.call(service, request, { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, response) =>
        err ? reject(new Error(`CRI ${method}: ${err.details || err.message}`)) : resolve(response),
      );
    });
  }

  /**
   * Until the CRI plugin answers and has `image`: containerd's socket is up
   * before its CRI plugin has started, and an image imported by ctr reaches
   * the plugin's own image store a moment later.
   */
  async waitReady(image: string): Promise<void> {
    const ready = async (): Promise<boolean> => {
      await this.call(this.runtime, 'Version', { version: 'v1' });
      return Boolean((await this.call(this.images, 'ImageStatus', { image: { image } })).image);
    };
    await waitFor(`the CRI plugin with ${image}`, () => ready().catch(() => false));
  }

  private static sandboxConfig(pod: CriPod): object {
    return {
      metadata: { name: pod.name, uid: pod.uid, namespace: pod.namespace, attempt: 0 },
      log_directory: pod.logDirectory,
      labels: { 'io.kubernetes.pod.name': pod.name, 'io.kubernetes.pod.namespace': pod.namespace, 'io.kubernetes.pod.uid': pod.uid },
      linux: { cgroup_parent: pod.cgroupParent, security_context: { namespace_options: NAMESPACES } },
    };
  }

  /** RunPodSandbox: the pod's sandbox (pause) container, running; its id. */
  async runPodSandbox(pod: CriPod): Promise<string> {
    return (await this.call(this.runtime, 'RunPodSandbox', { config: CriClient.sandboxConfig(pod) })).pod_sandbox_id;
  }

  /** CreateContainer and StartContainer: `name` from `image` running `command` in the pod; its id. */
  async startContainer(sandboxId: string, pod: CriPod, name: string, image: string, command: string[]): Promise<string> {
    const config = {
      metadata: { name, attempt: 0 },
      image: { image },
      command,
      log_path: `${name}.log`,
      linux: { security_context: { namespace_options: NAMESPACES } },
    };
    const id: string = (await this.call(this.runtime, 'CreateContainer', { pod_sandbox_id: sandboxId, config, sandbox_config: CriClient.sandboxConfig(pod) })).container_id;
    await this.call(this.runtime, 'StartContainer', { container_id: id });
    return id;
  }

  /** ContainerStatus: its state (CONTAINER_RUNNING…) and why. */
  async containerStatus(id: string): Promise<{ state: number; reason: string; message: string }> {
    return (await this.call(this.runtime, 'ContainerStatus', { container_id: id })).status;
  }

  /** StopPodSandbox and RemovePodSandbox, as kubelet removes a pod: its containers go with it. */
  async removePod(sandboxId: string): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { pod_sandbox_id: sandboxId });
    await this.call(this.runtime, 'RemovePodSandbox', { pod_sandbox_id: sandboxId });
  }

  close(): void {
    this.forgetAtFileEnd();
    this.runtime.close();
    this.images.close();
  }
}
