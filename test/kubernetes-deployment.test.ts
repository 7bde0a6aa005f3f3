// The deployment for fleets: packaging/kubernetes's manifests validated
// against the Kubernetes API's schema (and the Prometheus Operator's for the
// ServiceMonitor), their least privilege checked; and the image built from the
// project's own package (packaging/container/build.sh), run with Podman with
// exactly the DaemonSet's capabilities, host PID namespace, mounts and
// configuration: it counts a host process's traffic exactly and names another
// container.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, Service } from 'kubernetes-models/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { resolveConfig } from '../daemon/service/config.js';
import { apiGet } from './helpers/api-client.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { PODMAN_LIMITS, ScratchPodman, imageRoot, runContainerTool, runtimesMissing, unmountUnder } from './helpers/containers.js';
import { removePinDir } from './helpers/daemon.js';
import { scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const KUBERNETES = path.join(import.meta.dirname, '..', 'packaging', 'kubernetes');
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/DaemonSet': DaemonSet,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Every document of a manifest file, parsed (a YAML error fails here). */
function manifest(file: string): any[] {
  return parseAllDocuments(fs.readFileSync(path.join(KUBERNETES, file), 'utf8')).map((document) => {
    expect(document.errors).toEqual([]);
    return document.toJS();
  });
}

const objects = [...manifest('netacct.yaml'), ...manifest('servicemonitor.yaml')];
const daemonSet = objects.find((o) => o.kind === 'DaemonSet');
const container = daemonSet.spec.template.spec.containers[0];
const configMap = objects.find((o) => o.kind === 'ConfigMap');

describe('packaging/kubernetes', () => {
  test.each(objects.map((o) => [`${o.kind} ${o.metadata.name}`, o]))('%s is valid for the Kubernetes API schema', (_, object) => {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`];
    expect(Model, `no schema for ${object.apiVersion} ${object.kind}`).toBeDefined();
    expect(() => new Model!(object).validate()).not.toThrow();
  });

  test('the schema check is real: a DaemonSet with a wrong field type, or without its selector, is refused', () => {
    const wrongType = structuredClone(daemonSet);
    wrongType.spec.template.spec.hostPID = 'yes';
    expect(() => new DaemonSet(wrongType).validate()).toThrow(/hostPID/);
    const noSelector = structuredClone(daemonSet);
    delete noSelector.spec.selector;
    expect(() => new DaemonSet(noSelector).validate()).toThrow(/selector/);
  });

  test('least privilege: not privileged, every capability dropped but the five it needs, host PID but not host network, runtimes read-only, liveness on /healthz', () => {
    const pod = daemonSet.spec.template.spec;
    expect(container.securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect([...container.securityContext.capabilities.add].sort()).toEqual(['BPF', 'CHOWN', 'DAC_READ_SEARCH', 'NET_ADMIN', 'PERFMON']);
    expect(pod.hostPID).toBe(true);
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.hostIPC).toBeUndefined();
    expect(pod.automountServiceAccountToken).toBe(false);
    // bpf() with CAP_BPF alone needs it (the runtimes' default profiles want CAP_SYS_ADMIN): the daemon's own test runs it so.
    expect(container.securityContext.seccompProfile).toEqual({ type: 'Unconfined' });
    const mounts = new Map<string, any>(container.volumeMounts.map((m: any) => [m.name, m]));
    for (const name of ['containerd-tasks', 'containers-storage', 'containers-run', 'docker-containers', 'cgroup', 'tracefs', 'config']) expect(mounts.get(name).readOnly, name).toBe(true);
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(daemonSet.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9817' });
  });

  test("the ServiceMonitor drops the operator's namespace, pod and container target labels: the series' own are the traffic's", () => {
    const monitor = objects.find((o) => o.kind === 'ServiceMonitor');
    const [endpoint] = monitor.spec.endpoints;
    expect(endpoint.honorLabels).toBeUndefined();
    const drop = endpoint.relabelings.find((r: any) => r.action === 'labeldrop');
    for (const label of ['namespace', 'pod', 'container']) expect(new RegExp(`^(?:${drop.regex})$`).test(label), label).toBe(true);
    expect(new RegExp(`^(?:${drop.regex})$`).test('node')).toBe(false);
  });

  test("the ConfigMap's config.json is a valid daemon configuration, its paths the DaemonSet's mounts", () => {
    const config = resolveConfig(JSON.parse(configMap.data['config.json']), {});
    const mountPaths: string[] = container.volumeMounts.map((m: any) => m.mountPath);
    for (const file of [config.apiSocket!, config.atopSocket, config.historyFile, config.pinDir!]) {
      expect(mountPaths.some((mount) => file.startsWith(`${mount}/`)), file).toBe(true);
    }
    expect(config.listen).toBe('0.0.0.0:9817');
    // The port is a scraper's: a NetworkPolicy does not keep the node's own users from it.
    expect(config.listenMetricsOnly).toBe(true);
    expect(container.ports[0].containerPort).toBe(9817);
    // The runtimes' state the daemon looks in is what the DaemonSet mounts.
    expect(mountPaths).toEqual(expect.arrayContaining([`${config.containerState.containerd}/io.containerd.runtime.v2.task`, `${config.containerState.docker}/containers`, ...config.containerState.containersStorage.map((root) => `${root}/overlay-containers`)]));
  });
});

const missing = runtimesMissing();
describeWithBpf(`the image, run with the DaemonSet's privileges${missing ? ` (skipped: ${missing})` : ''}`, () => {
  if (missing) {
    if (process.env['CI'] === 'true') throw new Error(`CI=true, but the image test cannot run: ${missing}`);
    test.skip(missing, () => {});
    return;
  }
  const podman = new ScratchPodman();
  const dir = scratchDir('image-run');
  const pinDir = `/sys/fs/bpf/netacct-image-test-${process.pid}`;
  const sockets = path.join(dir, 'run');
  let image = '';

  /**
   * The host directory a hostPath volume mounts: the test's own where it
   * holds state; where a DirectoryOrCreate path is missing (a runtime this
   * host has never run), an empty directory, as kubelet would create it (here
   * not in the host's own /var/lib or /run).
   */
  function hostSide(hostPath: { path: string; type?: string }, hostPaths: Record<string, string>): string {
    const mapped = hostPaths[hostPath.path];
    if (mapped) return mapped;
    if (hostPath.type !== 'DirectoryOrCreate' || fs.existsSync(hostPath.path)) return hostPath.path;
    const empty = path.join(dir, 'created', hostPath.path);
    fs.mkdirSync(empty, { recursive: true });
    return empty;
  }

  /** podman run arguments for the DaemonSet's pod: its capabilities, PID namespace, security context and volumes (host paths mapped to the test's own where they hold state). */
  function daemonSetRun(config: string, hostPaths: Record<string, string>): string[] {
    const security = container.securityContext;
    const args = ['--detach', '--name', `netacct-image-test-${process.pid}`, '--network', 'none', ...PODMAN_LIMITS, '--cap-drop', 'all', '--cap-add', security.capabilities.add.join(',')];
    if (daemonSet.spec.template.spec.hostPID) args.push('--pid', 'host');
    if (security.readOnlyRootFilesystem) args.push('--read-only');
    if (!security.allowPrivilegeEscalation) args.push('--security-opt', 'no-new-privileges');
    if (security.privileged) args.push('--privileged');
    if (security.seccompProfile?.type === 'Unconfined') args.push('--security-opt', 'seccomp=unconfined');
    const volumes = new Map<string, any>(daemonSet.spec.template.spec.volumes.map((v: any) => [v.name, v]));
    for (const mount of container.volumeMounts) {
      const volume = volumes.get(mount.name);
      const options = mount.readOnly ? ':ro' : '';
      if (volume.configMap) args.push('-v', `${config}:${mount.mountPath}${options}`);
      else if (volume.emptyDir) args.push('--tmpfs', mount.mountPath);
      else args.push('-v', `${hostSide(volume.hostPath, hostPaths)}:${mount.mountPath}${options}`);
    }
    return args;
  }

  beforeAll(async () => {
    const built = execFileSync('bash', [path.join(KUBERNETES, '..', 'container', 'build.sh'), path.join(dir, 'out')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const [built_image, archive] = built.trim().split('\n').slice(-2) as [string, string];
    // Into the test's own storage, from the archive a registry would get; out of the host's (build.sh imported it there).
    const loaded = await podman.podman('load', '--input', archive);
    image = /Loaded image(?:\(s\))?: (\S+)/.exec(loaded.stdout)![1]!;
    await runContainerTool('/usr/bin/podman', ['rmi', built_image]);
  }, 600_000);

  afterAll(async () => {
    await podman.stop();
    unmountUnder(dir);
    removePinDir(pinDir);
  }, 60_000);

  test('it counts a host process exactly and names another container', async () => {
    // What the DaemonSet's ConfigMap says, but for the test's own pin directory.
    const configDir = path.join(dir, 'config');
    fs.mkdirSync(configDir);
    fs.writeFileSync(path.join(configDir, 'config.json'), JSON.stringify({ ...JSON.parse(configMap.data['config.json']), pinDir }));
    fs.mkdirSync(sockets, { mode: 0o755 });
    const history = path.join(dir, 'history');
    fs.mkdirSync(history, { mode: 0o755 });
    // The other container: Podman's, in storage of its own, which the daemon reads as the host's.
    const other = imageRoot();
    await podman.podman('import', other.tar, 'localhost/netacct-test:other');
    const otherId = (await podman.podman('run', '--detach', '--network', 'none', ...PODMAN_LIMITS, '--name', 'netacct-other', 'localhost/netacct-test:other', '/bin/busybox', 'sleep', '600')).stdout.trim();

    const storage = path.join(podman.storage, 'overlay-containers');
    const args = daemonSetRun(configDir, { '/run/netacct': sockets, '/var/lib/netacct': history, '/var/lib/containers/storage/overlay-containers': storage });
    await podman.podman('run', ...args, image, ...container.args);
    const apiSocket = path.join(sockets, 'api.sock');
    const deadline = Date.now() + 30_000;
    while (!fs.existsSync(apiSocket)) {
      if (Date.now() > deadline) throw new Error(`the image's daemon did not start: ${(await podman.podman('logs', `netacct-image-test-${process.pid}`)).stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect((await apiGet(apiSocket, '/healthz')).status).toBe(200);

    // A host process, in a cgroup of its own.
    const cgroup = ScratchCgroup.create('image-host.scope');
    try {
      const child = await TrafficChild.startIn(cgroup, 'loop', { args: ['21'] });
      await child.finish();
      await podman.podman('exec', 'netacct-other', '/traffic', 'loop', '5');
      const { body } = await apiGet(apiSocket, '/v1/processes?command=traffic');
      const host = body.processes.find((p: any) => p.pid === child.pid);
      expect(host.counters.tcp).toEqual({ send: { calls: 21, bytes: 21 * 64 }, recv: { calls: 21, bytes: 21 * 64 } });
      expect(host.cgroup.path).toBe(cgroup.relativePath);
      const inOther = body.processes.filter((p: any) => p.cgroup.container?.id === otherId);
      expect(inOther).toHaveLength(1);
      expect(inOther[0].cgroup.container).toEqual({ runtime: 'podman', id: otherId, name: 'netacct-other', image: 'localhost/netacct-test:other', pod: null, namespace: null, podUid: null, qos: null });
      expect(inOther[0].counters.tcp).toEqual({ send: { calls: 5, bytes: 5 * 64 }, recv: { calls: 5, bytes: 5 * 64 } });
    } finally {
      cgroup.remove();
      await podman.podman('stop', '--time', '15', `netacct-image-test-${process.pid}`).catch(() => {});
    }
    const logs = await podman.podman('logs', `netacct-image-test-${process.pid}`);
    expect(logs.stderr).not.toMatch(/ error /);
  }, 120_000);
});
