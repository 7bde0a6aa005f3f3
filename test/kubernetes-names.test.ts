// Pods as kubelet lays them out, run by a real runtime (runc), named from the
// files containerd's CRI and CRI-O write: for each cgroup driver (systemd,
// cgroupfs) and QoS class (Guaranteed, Burstable, BestEffort) a pod with its
// sandbox and an app container, whose OCI config (annotations, cgroupsPath in
// the driver's form) sits where containerd or CRI-O keeps it. The pods are
// host-network pods (the case atop names "host-----------"): their traffic
// goes over the host's loopback. Pod, namespace and container are exact in
// the API, by pod and by namespace, and in /metrics; a removed pod's series
// fold into cgroup="(removed)". Then the same for real with containerd's CRI
// plugin, driven over gRPC as kubelet drives it (cgroupfs driver: this
// machine's PID 1 is not systemd): what it writes names its pods exactly.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { apiGet, tcpGet } from './helpers/api-client.js';
import { imageRoot, removeCgroupEverywhere, runtimesMissing, runContainerTool, ScratchContainerd } from './helpers/containers.js';
import { CONTAINER_RUNNING, CriClient, dockerArchive } from './helpers/cri.js';
import { TestDaemon } from './helpers/daemon.js';
import { netacct } from './helpers/cli-run.js';
import { printable } from '../daemon/common/printable.js';
import { historyOf, historyUntil } from './helpers/history.js';
import { scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

type Driver = 'systemd' | 'cgroupfs';
type Qos = 'guaranteed' | 'burstable' | 'besteffort';
type CriRuntime = 'containerd' | 'cri-o';

interface Pod {
  driver: Driver;
  qos: Qos;
  runtime: CriRuntime;
  name: string;
  namespace: string;
  uid: string;
  sandboxId: string;
  appId: string;
  /** TCP exchanges of the app container (test/fixtures/traffic.c "loop N"). */
  exchanges: number;
}

const IMAGE = 'registry.example/team/web:1.2';
const PODS: Pod[] = (
  [
    ['systemd', 'guaranteed', 'containerd'],
    ['systemd', 'burstable', 'cri-o'],
    ['systemd', 'besteffort', 'containerd'],
    ['cgroupfs', 'guaranteed', 'cri-o'],
    ['cgroupfs', 'burstable', 'containerd'],
    ['cgroupfs', 'besteffort', 'cri-o'],
  ] as Array<[Driver, Qos, CriRuntime]>
).map(([driver, qos, runtime], i) => ({
  driver,
  qos,
  runtime,
  name: `web-${driver}-${qos}`,
  namespace: `team-${i % 2}`,
  uid: randomUUID(),
  sandboxId: randomBytes(32).toString('hex'),
  appId: randomBytes(32).toString('hex'),
  exchanges: 3 + i,
}));

/** The cgroup kubelet's driver gives the container `id` of `pod`, and the cgroupsPath the runtime writes into its OCI config. */
function placement(pod: Pod, id: string): { cgroup: string; cgroupsPath: string } {
  if (pod.driver === 'cgroupfs') {
    const cgroup = `/kubepods/${pod.qos === 'guaranteed' ? '' : `${pod.qos}/`}pod${pod.uid}/${id}`;
    return { cgroup, cgroupsPath: cgroup };
  }
  const podSlice = `kubepods-${pod.qos === 'guaranteed' ? '' : `${pod.qos}-`}pod${pod.uid.replace(/-/g, '_')}.slice`;
  const prefix = pod.runtime === 'containerd' ? 'cri-containerd' : 'crio';
  const cgroup = `/kubepods.slice/${pod.qos === 'guaranteed' ? '' : `kubepods-${pod.qos}.slice/`}${podSlice}/${prefix}-${id}.scope`;
  return { cgroup, cgroupsPath: `${podSlice}:${prefix}:${id}` };
}

/** The annotations containerd's CRI plugin or CRI-O writes for a pod's sandbox or container. */
function annotations(pod: Pod, kind: 'sandbox' | 'container'): Record<string, string> {
  if (pod.runtime === 'containerd') {
    return {
      'io.kubernetes.cri.container-type': kind,
      'io.kubernetes.cri.sandbox-id': pod.sandboxId,
      'io.kubernetes.cri.sandbox-name': pod.name,
      'io.kubernetes.cri.sandbox-namespace': pod.namespace,
      'io.kubernetes.cri.sandbox-uid': pod.uid,
      ...(kind === 'container' ? { 'io.kubernetes.cri.container-name': 'app', 'io.kubernetes.cri.image-name': IMAGE } : {}),
    };
  }
  return {
    'io.container.manager': 'cri-o',
    'io.kubernetes.cri-o.ContainerType': kind,
    'io.kubernetes.cri-o.SandboxID': pod.sandboxId,
    'io.kubernetes.pod.name': pod.name,
    'io.kubernetes.pod.namespace': pod.namespace,
    'io.kubernetes.pod.uid': pod.uid,
    'io.kubernetes.container.name': kind === 'sandbox' ? 'POD' : 'app',
    ...(kind === 'container' ? { 'io.kubernetes.cri-o.ImageName': IMAGE } : {}),
  };
}

/** Polls the API until `done` holds (the traffic runs as the containers start), for 20 s at most; then fails with the last answer. */
async function until<T>(ask: () => Promise<T>, done: (answer: T) => boolean): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const answer = await ask();
    if (done(answer)) return answer;
    if (Date.now() > deadline) throw new Error(`not so within 20 s; the last answer: ${JSON.stringify(answer).slice(0, 4000)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * A container's command: `n` TCP exchanges (test/fixtures/traffic.c), then
 * the traffic process waits for its stdin to end (a sleep's pipe): it stays
 * listed with its final counters however late the test asks.
 */
const trafficThenWait = (n: number): string => `/bin/busybox sleep 600 | /traffic loop ${n}`;

const tcp = (n: number) => ({ send: { calls: n, bytes: 64 * n }, recv: { calls: n, bytes: 64 * n } });

let sharedImage: ReturnType<typeof imageRoot> | null = null;
/** The root file system both kinds of pods run (made once). */
const image = (): ReturnType<typeof imageRoot> => (sharedImage ??= imageRoot());

const missing = runtimesMissing();
if (missing && process.env['CI'] === 'true') throw new Error(`CI=true, but the Kubernetes layout tests cannot run: ${missing}`);

describeWithBpf(`Kubernetes pods in kubelet's layouts, run by runc${missing ? ` (skipped: ${missing})` : ''}`, () => {
  if (missing) {
    test.skip(missing, () => {});
    return;
  }
  let daemon: TestDaemon;
  const dir = scratchDir('kubernetes');
  const runcRoot = path.join(dir, 'runc');
  const containerdState = path.join(dir, 'containerd');
  const crioStorage = path.join(dir, 'containers-storage');
  const started: Array<{ id: string; cgroup: string }> = [];
  const runc = (...args: string[]) => runContainerTool('/usr/sbin/runc', ['--root', runcRoot, ...args]);

  /**
   * Runs `command` in a container of `pod`, in its cgroup, and writes its OCI
   * config where its runtime keeps it (or lets `plant` put something else there).
   */
  async function runContainer(pod: Pod, id: string, kind: 'sandbox' | 'container', command: string, plant?: (configFile: string) => void): Promise<void> {
    const { cgroup, cgroupsPath } = placement(pod, id);
    const bundle = path.join(dir, 'bundles', id);
    fs.mkdirSync(bundle, { recursive: true });
    await runContainerTool('/usr/sbin/runc', ['spec', '--bundle', bundle]);
    const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
    spec.process.args = ['/bin/busybox', 'sh', '-c', `exec </dev/null >/dev/null 2>&1; ${command}`];
    spec.process.terminal = false;
    spec.root = { path: image().dir, readonly: true };
    // A host-network pod: the host's network namespace.
    spec.linux.namespaces = spec.linux.namespaces.filter((ns: { type: string }) => ns.type !== 'network');
    // runc here has no systemd to ask: the cgroupfs driver, at the path systemd would give.
    spec.linux.cgroupsPath = cgroup;
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
    // What the runtime keeps: the same config with its annotations and the cgroupsPath in the driver's form.
    const kept = { ...spec, annotations: annotations(pod, kind), linux: { ...spec.linux, cgroupsPath } };
    const stateDir = pod.runtime === 'containerd' ? path.join(containerdState, 'io.containerd.runtime.v2.task', 'k8s.io', id) : path.join(crioStorage, 'overlay-containers', id, 'userdata');
    fs.mkdirSync(stateDir, { recursive: true });
    if (plant) plant(path.join(stateDir, 'config.json'));
    else fs.writeFileSync(path.join(stateDir, 'config.json'), JSON.stringify(kept));
    await runc('run', '--detach', '--bundle', bundle, id);
    started.push({ id, cgroup });
  }

  beforeAll(async () => {
    const config = path.join(scratchDir('config'), 'config.json');
    fs.writeFileSync(config, JSON.stringify({ exitedRetentionMs: 0, containerState: { containerd: containerdState, docker: null, containersStorage: [crioStorage] } }));
    daemon = await TestDaemon.start(['--config', config, '--listen', '127.0.0.1:0', '--history-tiers', '2s:1h,10s:1d', '--removed-cgroup-fold-ms', '1000']);
    for (const pod of PODS) {
      // A sandbox does no traffic of its own; here one exchange, so that it shows in the listings.
      await runContainer(pod, pod.sandboxId, 'sandbox', trafficThenWait(1));
      await runContainer(pod, pod.appId, 'container', trafficThenWait(pod.exchanges));
    }
  }, 120_000);

  afterAll(async () => {
    for (const { id } of started) await runc('delete', '--force', id).catch(() => {});
    removeCgroupEverywhere('kubepods');
    removeCgroupEverywhere('kubepods.slice');
    if (daemon) expect(await daemon.stop()).toBe(0);
  }, 60_000);


  test('each driver and QoS class: pod, namespace, uid, QoS, container and image exact; traffic exact per pod and namespace; /metrics labels', async () => {
    for (const pod of PODS) {
      const sandbox = placement(pod, pod.sandboxId).cgroup;
      const app = placement(pod, pod.appId).cgroup;
      const processes = await until(
        () => apiGet(daemon.apiSocketPath, `/v1/processes?namespace=${pod.namespace}&pod=${pod.name}&container=app`),
        ({ body }) => body.processes.some((p: any) => p.command === 'traffic'),
      );
      const traffic = processes.body.processes.find((p: any) => p.command === 'traffic');
      const names = { pod: pod.name, namespace: pod.namespace, podUid: pod.uid, qos: pod.qos };
      expect(traffic.cgroup.path).toBe(app);
      expect(traffic.cgroup.container).toEqual({ runtime: pod.runtime, id: pod.appId, name: 'app', image: IMAGE, ...names });
      expect(traffic.counters.tcp).toEqual(tcp(pod.exchanges));
      // The sandbox: "POD", as kubelet calls it.
      const sandboxes = await until(
        () => apiGet(daemon.apiSocketPath, `/v1/processes?namespace=${pod.namespace}&pod=${pod.name}&container=POD`),
        ({ body }) => body.processes.some((p: any) => p.command === 'traffic'),
      );
      const inSandbox = sandboxes.body.processes.filter((p: any) => p.command === 'traffic');
      expect(inSandbox).toHaveLength(1);
      expect(inSandbox[0].cgroup).toEqual({ id: inSandbox[0].cgroup.id, path: sandbox, unit: pod.driver === 'systemd' ? path.basename(sandbox) : null, containerId: pod.sandboxId, container: { runtime: pod.runtime, id: pod.sandboxId, name: 'POD', image: null, ...names } });
      expect(inSandbox[0].counters.tcp).toEqual(tcp(1));
    }

    const byPod = await apiGet(daemon.apiSocketPath, '/v1/cgroups?by=pod&sort=name');
    for (const pod of PODS) {
      const row = byPod.body.pods.find((r: any) => r.pod === pod.name && r.namespace === pod.namespace);
      expect(row.counters.tcp).toEqual(tcp(pod.exchanges + 1));
    }
    // netacct cgroups --by pod: a row per pod, its bytes in human units.
    const table = await netacct('cgroups', '--by', 'pod', '--namespace', 'team-0', '--api-socket', daemon.apiSocketPath);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]!.split(/\s{2,}/)).toEqual(['NAMESPACE', 'POD', 'CGROUPS', 'TCP SENT', 'TCP RECV', 'UDP SENT', 'UDP RECV']);
    expect(lines.slice(1).map((line) => line.split(/\s+/).slice(0, 4))).toEqual(
      PODS.filter((pod) => pod.namespace === 'team-0')
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((pod) => ['team-0', pod.name, '2', `${64 * (pod.exchanges + 1)}B`]),
    );
    const byNamespace = await apiGet(daemon.apiSocketPath, '/v1/cgroups?by=namespace');
    for (const namespace of ['team-0', 'team-1']) {
      const exchanges = PODS.filter((pod) => pod.namespace === namespace).reduce((sum, pod) => sum + pod.exchanges + 1, 0);
      expect(byNamespace.body.namespaces.find((r: any) => r.namespace === namespace).counters.tcp).toEqual(tcp(exchanges));
    }
    // What is in no pod adds up in one row (namespace null): every row together is every cgroup's.
    expect(byNamespace.body.namespaces.filter((r: any) => r.namespace === null).length).toBeLessThanOrEqual(1);
    // The host's other traffic (suites running alongside) goes on between two answers: compared in a moment
    // when every cgroup's total was the same before and after the answer by namespace.
    const sent = (rows: any[]) => rows.reduce((sum, row) => sum + row.counters.tcp.send.bytes + row.counters.udp.send.bytes, 0);
    const cgroupsSent = async () => sent((await apiGet(daemon.apiSocketPath, '/v1/cgroups')).body.cgroups);
    const [before, byNamespaces] = await until(
      async () => [await cgroupsSent(), sent((await apiGet(daemon.apiSocketPath, '/v1/cgroups?by=namespace')).body.namespaces), await cgroupsSent()],
      ([first, , last]) => first === last,
    );
    expect(byNamespaces).toBe(before);

    const { text } = await tcpGet(daemon.tcpPort, '/metrics');
    for (const pod of PODS) {
      const app = placement(pod, pod.appId).cgroup;
      const line = text.split('\n').find((l) => l.startsWith(`netacct_cgroup_sent_bytes_total{cgroup="${app}",`) && l.includes('protocol="tcp"'));
      expect(line).toBe(`netacct_cgroup_sent_bytes_total{cgroup="${app}",unit="${pod.driver === 'systemd' ? path.basename(app) : ''}",namespace="${pod.namespace}",pod="${pod.name}",container="app",protocol="tcp"} ${64 * pod.exchanges}`);
    }
    expect(text).not.toContain(PODS[0]!.uid);
  }, 60_000);

  test("history by pod, by namespace and by container: each pod's bytes exact, under its names", async () => {
    const podBytes = (pod: Pod) => 2 * 64 * (pod.exchanges + 1); // sent and received, app and sandbox
    const byPod = await historyUntil(daemon, { from: '-10m', by: 'pod', limit: '100' }, (answer) =>
      PODS.every((pod) => answer.groups.some((g: any) => g.pod === pod.name && g.total.bytes === podBytes(pod))),
    );
    for (const pod of PODS) expect(byPod.groups.find((g: any) => g.pod === pod.name && g.namespace === pod.namespace)?.total.bytes).toBe(podBytes(pod));
    const byNamespace = await historyOf(daemon, { from: '-10m', by: 'namespace', namespace: 'team-1' });
    expect(byNamespace.groups.map((g: any) => [g.namespace, g.total.bytes])).toEqual([['team-1', PODS.filter((pod) => pod.namespace === 'team-1').reduce((sum, pod) => sum + podBytes(pod), 0)]]);
    const byContainer = await historyOf(daemon, { from: '-10m', by: 'container', pod: PODS[1]!.name });
    expect(byContainer.groups.map((g: any) => ({ ...g, counters: undefined, series: undefined, total: g.total.bytes })).sort((a: any, b: any) => a.total - b.total)).toEqual([
      { container: PODS[1]!.sandboxId, containerName: 'POD', pod: PODS[1]!.name, namespace: PODS[1]!.namespace, counters: undefined, series: undefined, total: 2 * 64 },
      { container: PODS[1]!.appId, containerName: 'app', pod: PODS[1]!.name, namespace: PODS[1]!.namespace, counters: undefined, series: undefined, total: 2 * 64 * PODS[1]!.exchanges },
    ]);
  }, 60_000);

  test('a bundle whose config.json is a link out of the state, or 64 GiB: not read; the pod is named from its path, its traffic exact, the daemon unaffected', async () => {
    const outside = path.join(scratchDir('outside'), 'config.json');
    const planted = (name: string, plant: (configFile: string) => void) => ({ plant, pod: { ...PODS[4]!, name, uid: randomUUID(), appId: randomBytes(32).toString('hex'), driver: 'cgroupfs' as const, qos: 'besteffort' as const, runtime: 'containerd' as const, exchanges: 2 } });
    const hostile = [
      planted('linked', (configFile) => fs.symlinkSync(outside, configFile)),
      planted('huge', (configFile) => {
        fs.writeFileSync(configFile, '');
        fs.truncateSync(configFile, 64 * 1024 ** 3);
      }),
    ];
    for (const { pod, plant } of hostile) {
      fs.writeFileSync(outside, JSON.stringify({ linux: { cgroupsPath: placement(pod, pod.appId).cgroup }, annotations: annotations({ ...pod, name: 'taken-from-outside' }, 'container') }));
      await runContainer(pod, pod.appId, 'container', trafficThenWait(pod.exchanges), plant);
    }
    for (const { pod } of hostile) {
      const cgroup = placement(pod, pod.appId).cgroup;
      const { body } = await until(
        () => apiGet(daemon.apiSocketPath, '/v1/processes?command=traffic'),
        (answer) => answer.body.processes.some((p: any) => p.cgroup.path === cgroup),
      );
      const traffic = body.processes.find((p: any) => p.cgroup.path === cgroup);
      expect(traffic.cgroup.container).toEqual({ runtime: null, id: pod.appId, name: null, image: null, pod: null, namespace: null, podUid: pod.uid, qos: 'besteffort' });
      expect(traffic.counters.tcp).toEqual(tcp(pod.exchanges));
    }
    // By pod: each by its uid, apart from what is in no pod.
    const byPod = await apiGet(daemon.apiSocketPath, '/v1/cgroups?by=pod');
    for (const { pod } of hostile) expect(byPod.body.pods.find((row: any) => row.podUid === pod.uid)).toMatchObject({ namespace: null, pod: null, cgroups: 1, counters: { tcp: tcp(pod.exchanges) } });
    // Said once (the log is rate-limited per kind of message: a user's planted files cannot flood it).
    expect(daemon.log.match(/naming a container: .*(is a symbolic link|past the 1048576 read)/g)).toHaveLength(1);
    expect(daemon.running).toBe(true);
  }, 60_000);

  test("a pod and namespace named with terminal escapes (a runtime writes what it is given): exact in the API, escaped in root's tables", async () => {
    const escapes = '\x1b[2J\x1b]0;pwn\x07\x9b1m';
    const pod: Pod = { ...PODS[4]!, name: `web${escapes}`, namespace: `ns${escapes}`, uid: randomUUID(), sandboxId: randomBytes(32).toString('hex'), appId: randomBytes(32).toString('hex'), exchanges: 2 };
    await runContainer(pod, pod.appId, 'container', trafficThenWait(pod.exchanges));
    const { body } = await until(
      () => apiGet(daemon.apiSocketPath, `/v1/processes?namespace=${encodeURIComponent(pod.namespace)}&command=traffic`),
      (answer) => answer.body.processes.length === 1,
    );
    expect(body.processes[0].cgroup.container).toMatchObject({ pod: pod.name, namespace: pod.namespace, name: 'app' });
    const listings = [
      await netacct('ps', '--api-socket', daemon.apiSocketPath),
      await netacct('cgroups', '--api-socket', daemon.apiSocketPath),
      await netacct('cgroups', '--by', 'pod', '--namespace', pod.namespace, '--api-socket', daemon.apiSocketPath),
    ];
    for (const { code, stdout } of listings) {
      expect(code).toBe(0);
      expect(stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/); // nothing a terminal acts on
    }
    expect(listings[0]!.stdout).toContain(`${printable(pod.namespace)}/${printable(pod.name)}/app`);
    expect(listings[2]!.stdout.trim().split('\n')[1]!.split(/\s+/).slice(0, 3)).toEqual([printable(pod.namespace), printable(pod.name), '1']);
  }, 60_000);

  test('a pod removed: its series fold into cgroup="(removed)", its bytes kept there', async () => {
    const pod = PODS[0]!;
    const before = await tcpGet(daemon.tcpPort, '/metrics');
    for (const id of [pod.sandboxId, pod.appId]) await runc('delete', '--force', id);
    removeCgroupEverywhere(path.dirname(placement(pod, pod.appId).cgroup));
    await expectFolded(daemon, before.text, pod.name, 64 * (pod.exchanges + 1));
    // The other pods keep theirs.
    const after = await tcpGet(daemon.tcpPort, '/metrics');
    expect(after.text).toContain(`pod="${PODS[1]!.name}"`);
  }, 60_000);
});

// The same, for real: containerd's CRI plugin (what kubelet talks to) runs
// the pods, in its own state, and writes its bundles and annotations itself.
// In this file, after the runc pods: one daemon at a time sees pods removed.
describeWithBpf(`pods run by containerd's CRI, driven as kubelet drives it${missing ? ` (skipped: ${missing})` : ''}`, () => {
  if (missing) {
    test.skip(missing, () => {});
    return;
  }
  const CRI_IMAGE = 'localhost/netacct/traffic:1.0';
  const pods = (['besteffort', 'burstable'] as const).map((qos, i) => ({
    qos,
    name: `cri-${qos}`,
    namespace: 'cri-team',
    uid: randomUUID(),
    exchanges: 4 + i,
    sandboxId: '',
    appId: '',
  }));
  let containerd: ScratchContainerd;
  let cri: CriClient;
  let daemon: TestDaemon;
  const podCgroup = (pod: (typeof pods)[number]) => `/kubepods/${pod.qos}/pod${pod.uid}`;

  beforeAll(async () => {
    containerd = await ScratchContainerd.start({ sandboxImage: CRI_IMAGE });
    // kubelet's images live in containerd's k8s.io namespace. The image's own command is the sandbox's
    // pause process; here it makes one exchange first, so that the sandbox shows in the listings.
    const pause = ['/bin/busybox', 'sh', '-c', trafficThenWait(1)];
    await containerd.ctr('--namespace', 'k8s.io', 'images', 'import', dockerArchive(image().tar, CRI_IMAGE, pause));
    cri = new CriClient(containerd);
    await cri.waitReady(CRI_IMAGE);
    const config = path.join(scratchDir('config'), 'config.json');
    // Retention 0: an exited process does not hold its removed cgroup from folding.
    fs.writeFileSync(config, JSON.stringify({ exitedRetentionMs: 0, containerState: { containerd: containerd.state, docker: null, containersStorage: [] } }));
    daemon = await TestDaemon.start(['--config', config, '--listen', '127.0.0.1:0', '--removed-cgroup-fold-ms', '1000']);
    for (const pod of pods) {
      const described = { ...pod, cgroupParent: podCgroup(pod), logDirectory: scratchDir('pod-logs') };
      pod.sandboxId = await cri.runPodSandbox(described);
      pod.appId = await cri.startContainer(pod.sandboxId, described, 'web', CRI_IMAGE, ['/bin/busybox', 'sh', '-c', trafficThenWait(pod.exchanges)]);
    }
  }, 120_000);

  afterAll(async () => {
    try {
      for (const pod of pods) if (pod.sandboxId) await cri.removePod(pod.sandboxId).catch(() => {});
      cri?.close();
    } finally {
      await containerd?.stop(); // and whatever the CRI still ran
      removeCgroupEverywhere('kubepods');
      if (daemon) expect(await daemon.stop()).toBe(0);
    }
  }, 120_000);

  test('pod, namespace, uid, QoS, container and image exact, as the CRI wrote them; the traffic exact; a removed pod folds', async () => {
    for (const pod of pods) {
      const running = await cri.containerStatus(pod.appId);
      expect(running.state, `${running.reason} ${running.message}`).toBe(CONTAINER_RUNNING);
      const { body } = await until(
        () => apiGet(daemon.apiSocketPath, `/v1/processes?namespace=cri-team&pod=${pod.name}&container=web`),
        (answer) => answer.body.processes.some((p: any) => p.command === 'traffic' && p.counters.tcp.recv.calls === pod.exchanges),
      );
      const traffic = body.processes.find((p: any) => p.command === 'traffic');
      expect(traffic.cgroup.path).toBe(`${podCgroup(pod)}/${pod.appId}`);
      expect(traffic.cgroup.container).toEqual({ runtime: 'containerd', id: pod.appId, name: 'web', image: CRI_IMAGE, pod: pod.name, namespace: 'cri-team', podUid: pod.uid, qos: pod.qos });
      expect(traffic.counters.tcp).toEqual(tcp(pod.exchanges));
      // The sandbox's pause process: container "POD".
      const sandbox = await until(
        () => apiGet(daemon.apiSocketPath, `/v1/processes?pod=${pod.name}&container=POD`),
        (answer) => answer.body.processes.some((p: any) => p.command === 'traffic' && p.counters.tcp.recv.calls === 1),
      );
      expect(sandbox.body.processes.map((p: any) => [p.command, p.cgroup.path, p.cgroup.container, p.counters.tcp])).toEqual([
        ['traffic', `${podCgroup(pod)}/${pod.sandboxId}`, { runtime: 'containerd', id: pod.sandboxId, name: 'POD', image: null, pod: pod.name, namespace: 'cri-team', podUid: pod.uid, qos: pod.qos }, tcp(1)],
      ]);
    }
    const byPod = await apiGet(daemon.apiSocketPath, '/v1/cgroups?by=pod&namespace=cri-team');
    // (A named pod is one row across its incarnations: no uid.)
    expect(byPod.body.pods.map((row: any) => [row.pod, row.podUid, row.cgroups, row.counters.tcp])).toEqual(
      pods.map((pod) => [pod.name, null, 2, tcp(pod.exchanges + 1)]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );

    // kubelet removes the first pod: the CRI stops and removes its sandbox and container (runc their cgroups; the pod's own is kubelet's).
    const removed = pods[0]!;
    const before = await tcpGet(daemon.tcpPort, '/metrics');
    await cri.removePod(removed.sandboxId);
    removed.sandboxId = '';
    await expectFolded(daemon, before.text, removed.name, 64 * (removed.exchanges + 1));
    expect((await tcpGet(daemon.tcpPort, '/metrics')).text).toContain(`pod="${pods[1]!.name}"`);
    const cgroups = await apiGet(daemon.apiSocketPath, '/v1/cgroups');
    expect(cgroups.body.cgroups.filter((row: any) => row.path?.startsWith(`${podCgroup(removed)}/`))).toEqual([]);
    expect(daemon.log).not.toMatch(/naming a container/);
  }, 60_000);
});

/** TCP bytes sent in the /metrics series whose label `label` is `value`. */
function sentBytes(text: string, label: string, value: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith('netacct_cgroup_sent_bytes_total{') && l.includes(`${label}="${value}"`) && l.includes('protocol="tcp"'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/**
 * The removed pod `name` sent exactly `bytes` in its series (`before`), and
 * once its cgroups are gone they are: its series fold into cgroup="(removed)",
 * which grows by that much at least (the removed cgroups of suites running
 * alongside fold into the same series meanwhile).
 */
async function expectFolded(daemon: TestDaemon, before: string, name: string, bytes: number): Promise<void> {
  expect(sentBytes(before, 'pod', name)).toBe(bytes);
  const after = await until(
    () => tcpGet(daemon.tcpPort, '/metrics'),
    ({ text }) => !text.includes(`pod="${name}"`),
  );
  expect(sentBytes(after.text, 'cgroup', '(removed)') - sentBytes(before, 'cgroup', '(removed)')).toBeGreaterThanOrEqual(bytes);
}
