// Real container runtimes for the naming tests, each with state of its own in
// a scratch directory (so a test's daemon is pointed at that state, and
// nothing of the host's runtimes is touched): containerd with ctr, Docker's
// dockerd, Podman, and runc alone for kubelet's layouts. Images are made
// here from local files (busybox and the static traffic fixture): nothing is
// pulled. Everything started is stopped at the end of the file.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { scratchDir, staticFixture } from './fixtures.js';
import { stopAtFileEnd } from './leftovers.js';

/** Runs a runtime's command with stdin closed (`exec` passes it on: the traffic fixture waits for its end), its output on failure. */
export function runContainerTool(command: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${command} ${args.join(' ')}: exit ${code}: ${stderr.slice(-2000)}`))));
  });
}

/** Why the runtimes cannot run here, or null (Debian's runc, containerd, docker.io, podman and busybox-static). */
export function runtimesMissing(): string | null {
  const missing = ['/usr/sbin/runc', '/usr/bin/containerd', '/usr/bin/ctr', '/usr/sbin/dockerd', '/usr/bin/docker', '/usr/bin/podman', '/usr/bin/busybox'].filter(
    (file) => !fs.existsSync(file),
  );
  if (process.getuid?.() !== 0) return 'needs root to run containers';
  return missing.length > 0 ? `needs ${missing.join(', ')} (apt-get install runc containerd docker.io podman busybox-static)` : null;
}

/** A root file system: busybox, and /traffic (test/fixtures/traffic.c, static); and a tar of it. */
export function imageRoot(): { dir: string; tar: string } {
  const dir = path.join(scratchDir('image'), 'rootfs');
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'tmp'));
  fs.copyFileSync('/usr/bin/busybox', path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  fs.copyFileSync(staticFixture('traffic'), path.join(dir, 'traffic'));
  fs.chmodSync(path.join(dir, 'traffic'), 0o755);
  const tar = path.join(path.dirname(dir), 'rootfs.tar');
  execFileSync('tar', ['-C', dir, '-cf', tar, '.']);
  return { dir, tar };
}

/** Removes a cgroup a runtime left (in every hierarchy: this host mounts cgroup v1 ones beside cgroup2), children first. */
export function removeCgroupEverywhere(relative: string): void {
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => / - cgroup2? /.test(line))
    .map((line) => line.split(' ')[4]!);
  for (const mount of mounts) {
    const dir = path.join(mount, relative);
    if (!fs.existsSync(dir)) continue;
    for (const child of fs.readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) removeCgroupEverywhere(path.join(relative, child.name));
    try {
      fs.rmdirSync(dir);
    } catch {
      // busy (a process still in it) or gone: the leftover check says so
    }
  }
}

/** Unmounts whatever is mounted at or below `dir` (deepest first). */
export function unmountUnder(dir: string): void {
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((mount): mount is string => mount !== undefined && (mount === dir || mount.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const mount of mounts) spawnSync('umount', ['--lazy', mount], { stdio: 'ignore' });
}

/** The pid's cgroup v2 path ("0::/…" in /proc/PID/cgroup). */
export function cgroupOf(pid: number): string {
  const line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  return line!.slice(3);
}

/** A daemon process (containerd, dockerd) started for a test, stopped (SIGTERM, then SIGKILL) at the end. */
class Server {
  private readonly exited: Promise<void>;

  /** Unregisters the stop at the file's end (for an owner whose own stop must come first). */
  readonly forgetAtFileEnd: () => void;

  constructor(
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.forgetAtFileEnd = stopAtFileEnd(() => this.stop());
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const killed = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(killed);
  }
}

/** Polls `check` until it holds, for `timeoutMs` at most; then fails, with the end of the server's log if given. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not ready in ${timeoutMs} ms${logFile ? `: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function startServer(command: string, args: string[], dir: string): Server {
  const logFile = path.join(dir, `${path.basename(command)}.log`);
  const log = fs.openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  return new Server(child, logFile);
}

/**
 * The CRI plugin's settings for a node like kubelet's with the cgroupfs
 * driver: runc (runc.v2 shim) without systemd cgroups, the pod sandbox image
 * given (a local one: nothing is pulled), no CNI network configured (pods are
 * host-network pods), and the streaming server on a port of its own.
 */
function criPluginConfig(dir: string, sandboxImage: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    `[${cri}]`,
    `  sandbox_image = "${sandboxImage}"`,
    // Not below containerd's own oom_score_adj (the sandbox's -998 needs CAP_SYS_RESOURCE, which this machine withholds).
    '  restrict_oom_score_adj = true',
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    `[${cri}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = "${dir}/cni"`,
    `[${cri}.containerd]`,
    '  default_runtime_name = "runc"',
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.runc.options]`,
    '  SystemdCgroup = false',
    `  Root = "${dir}/runc"`, // ScratchContainerd.runcRoot
    '',
  ].join('\n');
}

/**
 * containerd with its own root, state and socket; ctr against it. Its CRI
 * plugin (what kubelet talks to) is off unless `cri` gives the pod sandbox
 * image: then test/helpers/cri.ts drives it as kubelet does.
 */
export class ScratchContainerd {
  readonly state: string;
  readonly socket: string;
  /** runc's state, for its containers (the CRI's, and ctr's with --runc-root): not in the host's /run/containerd/runc. */
  readonly runcRoot: string;

  private constructor(
    private readonly dir: string,
    private readonly server: Server,
  ) {
    this.state = path.join(dir, 'state');
    this.socket = path.join(dir, 'containerd.sock');
    this.runcRoot = path.join(dir, 'runc');
    // Its own stop at the file's end, not the server's: the tasks go first, while containerd still answers.
    server.forgetAtFileEnd();
    stopAtFileEnd(() => this.stop());
  }

  static async start(cri: { sandboxImage: string } | null = null): Promise<ScratchContainerd> {
    const dir = scratchDir('containerd');
    const socket = path.join(dir, 'containerd.sock');
    const config = path.join(dir, 'config.toml');
    if (cri) fs.mkdirSync(path.join(dir, 'cni')); // no network configured: host-network pods only
    fs.writeFileSync(
      config,
      `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\n${cri ? '' : 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'}[grpc]\n  address = "${socket}"\n` +
        (cri ? criPluginConfig(dir, cri.sandboxImage) : ''),
    );
    const server = startServer('/usr/bin/containerd', ['--config', config], dir);
    const containerd = new ScratchContainerd(dir, server);
    await waitFor('containerd', () => fs.existsSync(socket), 30_000, server.logFile);
    return containerd;
  }

  ctr(...args: string[]): Promise<{ stdout: string }> {
    return runContainerTool('/usr/bin/ctr', ['--address', this.socket, ...args]);
  }

  /**
   * Deletes every task it runs, in every namespace (a test that failed half-way
   * leaves CRI pods or ctr containers: their shims and processes outlive
   * containerd), stops it, and unmounts what it left mounted.
   */
  async stop(): Promise<void> {
    if (this.server.running) {
      const listed = async (...args: string[]): Promise<string[]> => (await this.ctr(...args).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean);
      for (const namespace of await listed('namespaces', 'ls', '--quiet')) {
        for (const task of await listed('--namespace', namespace, 'tasks', 'ls', '--quiet')) {
          await this.ctr('--namespace', namespace, 'tasks', 'delete', '--force', task).catch(() => {});
        }
      }
    }
    await this.server.stop();
    unmountUnder(this.dir);
  }
}

/** dockerd with its own data root, exec root and socket, and no networks of its own (containers use --network none). */
export class ScratchDocker {
  private constructor(
    readonly dataRoot: string,
    private readonly socket: string,
    private readonly server: Server,
  ) {}

  static async start(): Promise<ScratchDocker> {
    const dir = scratchDir('docker');
    const socket = path.join(dir, 'docker.sock');
    const dataRoot = path.join(dir, 'data');
    const server = startServer(
      '/usr/sbin/dockerd',
      ['--data-root', dataRoot, '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'), '-H', `unix://${socket}`, '--bridge', 'none', '--iptables=false', '--ip6tables=false', '--ip-masq=false', '--userland-proxy=false'],
      dir,
    );
    const docker = new ScratchDocker(dataRoot, socket, server);
    await waitFor('dockerd', async () => fs.existsSync(socket) && (await docker.docker('version').then(() => true, () => false)), 60_000, server.logFile);
    return docker;
  }

  docker(...args: string[]): Promise<{ stdout: string }> {
    return runContainerTool('/usr/bin/docker', ['-H', `unix://${this.socket}`, ...args]);
  }

  stop(): Promise<void> {
    return this.server.stop();
  }
}

/** Podman with its own storage (graph root, run root), the cgroupfs manager (PID 1 is not systemd) and no network. */
export class ScratchPodman {
  readonly storage: string;
  private readonly options: string[];

  constructor() {
    const dir = scratchDir('podman');
    this.storage = path.join(dir, 'storage');
    this.options = ['--root', this.storage, '--runroot', path.join(dir, 'run'), '--tmpdir', path.join(dir, 'tmp'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
    stopAtFileEnd(() => this.stop());
  }

  /** Its containers removed, and the mounts its storage made (the overlay directory is bound onto itself) undone. */
  async stop(): Promise<void> {
    await this.podman('rm', '--force', '--all').catch(() => {});
    unmountUnder(path.dirname(this.storage));
  }

  podman(...args: string[]): Promise<{ stdout: string; stderr: string }> {
    return runContainerTool('/usr/bin/podman', [...this.options, ...args]);
  }
}

/**
 * The limits every runtime's container gets here: this sandbox's root may not
 * raise its hard limits (no CAP_SYS_RESOURCE), and the runtimes' defaults are
 * above them.
 */
export const PODMAN_LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
