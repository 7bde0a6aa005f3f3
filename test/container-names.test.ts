// Containers named by their runtimes, for real: containerd (ctr), Docker and
// Podman each run a container from a root file system made here (busybox and
// the static traffic fixture; nothing pulled), with state of their own that
// the daemon is pointed at. Each container is named exactly (runtime, id,
// name, image) and its traffic is exact, in the API's rows and filters, in
// /metrics' labels and in `netacct ps`.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { apiGet, tcpGet } from './helpers/api-client.js';
import { netacct } from './helpers/cli-run.js';
import { PODMAN_LIMITS, ScratchContainerd, ScratchDocker, ScratchPodman, cgroupOf, imageRoot, removeCgroupEverywhere, runtimesMissing } from './helpers/containers.js';
import { TestDaemon } from './helpers/daemon.js';
import { scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

/** test/fixtures/traffic.c "loop N": N TCP/IPv4 sends of 64 bytes over loopback, each received. */
const tcpLoop = (n: number) => ({ tcp: { send: { calls: n, bytes: 64 * n }, recv: { calls: n, bytes: 64 * n } }, udp: { send: { calls: 0, bytes: 0 }, recv: { calls: 0, bytes: 0 } } });

const missing = runtimesMissing();
if (missing && process.env['CI'] === 'true') throw new Error(`CI=true, but the container runtime tests cannot run: ${missing}`);

describeWithBpf(`containers named by containerd, Docker and Podman${missing ? ` (skipped: ${missing})` : ''}`, () => {
  if (missing) {
    test.skip(missing, () => {});
    return;
  }
  let daemon: TestDaemon;
  let containerd: ScratchContainerd;
  let docker: ScratchDocker;
  const podman = new ScratchPodman();
  const ctrNamespace = `netacct-test-${process.pid}`;
  const image = imageRoot();

  beforeAll(async () => {
    [containerd, docker] = await Promise.all([ScratchContainerd.start(), ScratchDocker.start()]);
    const config = path.join(scratchDir('config'), 'config.json');
    fs.writeFileSync(config, JSON.stringify({ containerState: { containerd: containerd.state, docker: docker.dataRoot, containersStorage: [podman.storage] } }));
    daemon = await TestDaemon.start(['--config', config, '--listen', '127.0.0.1:0', '--no-history']);
    await Promise.all([docker.docker('import', image.tar, 'localhost/netacct-test:docker'), podman.podman('import', image.tar, 'localhost/netacct-test:podman')]);
  }, 120_000);

  afterAll(async () => {
    await podman.stop();
    await docker?.docker('rm', '--force', 'netacct-web').catch(() => {});
    await containerd?.ctr('--namespace', ctrNamespace, 'task', 'kill', '--signal', 'SIGKILL', 'netacct-ctr').catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 500));
    await containerd?.ctr('--namespace', ctrNamespace, 'task', 'delete', '--force', 'netacct-ctr').catch(() => {});
    await containerd?.ctr('--namespace', ctrNamespace, 'container', 'delete', 'netacct-ctr').catch(() => {});
    await Promise.all([containerd?.stop(), docker?.stop()]);
    removeCgroupEverywhere(ctrNamespace);
    if (daemon) expect(await daemon.stop()).toBe(0);
  }, 120_000);

  test('each container named exactly (runtime, id, name, image), its traffic exact: rows, filters, labels, netacct ps', async () => {
    // Docker: a container from an image imported here, no network but loopback.
    const dockerId = (await docker.docker('run', '--detach', '--network', 'none', '--name', 'netacct-web', 'localhost/netacct-test:docker', '/bin/busybox', 'sleep', '600')).stdout.trim();
    // Podman: the same, with its own storage.
    const podmanId = (await podman.podman('run', '--detach', '--network', 'none', ...PODMAN_LIMITS, '--name', 'netacct-pod-web', 'localhost/netacct-test:podman', '/bin/busybox', 'sleep', '600')).stdout.trim();
    // containerd: a container from the root file system as it is (ctr has no image to import it from).
    await containerd.ctr('--namespace', ctrNamespace, 'run', '--detach', '--null-io', '--runc-root', containerd.runcRoot, '--rootfs', image.dir, 'netacct-ctr', '/bin/busybox', 'sleep', '600');

    await docker.docker('exec', 'netacct-web', '/traffic', 'loop', '11');
    await podman.podman('exec', 'netacct-pod-web', '/traffic', 'loop', '13');
    // ctr keeps an exec's stdin open (the fixture would wait for its end): the shell gives it /dev/null.
    await containerd.ctr('--namespace', ctrNamespace, 'task', 'exec', '--exec-id', 'traffic', 'netacct-ctr', '/bin/busybox', 'sh', '-c', '/traffic loop 17 </dev/null');

    const dockerPid = Number((await docker.docker('inspect', '--format', '{{.State.Pid}}', 'netacct-web')).stdout);
    const podmanPid = Number((await podman.podman('inspect', '--format', '{{.State.Pid}}', 'netacct-pod-web')).stdout);
    const ctrPid = Number((await containerd.ctr('--namespace', ctrNamespace, 'task', 'ls')).stdout.split('\n').find((l) => l.startsWith('netacct-ctr'))!.split(/\s+/)[1]);
    const expected = [
      { cgroup: cgroupOf(dockerPid), container: { runtime: 'docker', id: dockerId, name: 'netacct-web', image: 'localhost/netacct-test:docker' }, counters: tcpLoop(11) },
      { cgroup: cgroupOf(podmanPid), container: { runtime: 'podman', id: podmanId, name: 'netacct-pod-web', image: 'localhost/netacct-test:podman' }, counters: tcpLoop(13) },
      { cgroup: cgroupOf(ctrPid), container: { runtime: 'containerd', id: 'netacct-ctr', name: 'netacct-ctr', image: null }, counters: tcpLoop(17) },
    ];
    expect(expected.map((e) => e.cgroup)).toEqual([`/docker/${dockerId}`, `/libpod_parent/libpod-${podmanId}`, `/${ctrNamespace}/netacct-ctr`]);

    const { body } = await apiGet(daemon.apiSocketPath, '/v1/cgroups');
    for (const { cgroup, container, counters } of expected) {
      const row = body.cgroups.find((c: any) => c.path === cgroup);
      expect(row?.container).toEqual({ ...container, pod: null, namespace: null, podUid: null, qos: null });
      const { ipv4, ipv6, ...both } = row.counters;
      expect(both).toEqual(counters);
      // The filter by container name: that container's cgroup and its processes only.
      const named = await apiGet(daemon.apiSocketPath, `/v1/cgroups?container=${container.name}`);
      expect(named.body.cgroups.map((c: any) => c.path)).toEqual([cgroup]);
      const processes = await apiGet(daemon.apiSocketPath, `/v1/processes?container=${container.name}`);
      const traffic = processes.body.processes.filter((p: any) => p.command === 'traffic');
      expect(traffic).toHaveLength(1);
      expect(traffic[0].cgroup.container.name).toBe(container.name);
    }

    // /metrics: the container's name as a label, never its id.
    const { text } = await tcpGet(daemon.tcpPort, '/metrics');
    for (const { cgroup, container, counters } of expected) {
      const line = text.split('\n').find((l) => l.startsWith(`netacct_cgroup_sent_bytes_total{cgroup="${cgroup}",`) && l.includes('protocol="tcp"'));
      expect(line).toBe(`netacct_cgroup_sent_bytes_total{cgroup="${cgroup}",unit="",namespace="",pod="",container="${container.name}",protocol="tcp"} ${counters.tcp.send.bytes}`);
    }
    expect(text).not.toMatch(/container_id=|pod_uid=/);

    // netacct ps: the container's name in its column.
    const ps = await netacct('ps', '--container', 'netacct-web', '--api-socket', daemon.apiSocketPath);
    expect(ps.code).toBe(0);
    expect(ps.stdout.split('\n')[0]).toMatch(/^\s*PID\s+COMMAND\s+UID\s+STATE\s+CONTAINER\s/);
    expect(ps.stdout).toMatch(/\btraffic\s+0\s+exited\s+netacct-web\s+704B/);
  }, 120_000);
});
