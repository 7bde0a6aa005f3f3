// The packages: packaging/build.sh builds the .deb and the .rpm from one staged
// tree, twice (same bytes). Each is unpacked into a scratch root and run from
// there; the .deb is also installed with apt-get in fresh chroots of Debian
// 11, 12 and 13 and Ubuntu 22.04 and 24.04 (debootstrap, no Node.js in them),
// where its daemon counts real traffic exactly.
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { apiGet } from './helpers/api-client.js';
import { BASIC_SCENARIO_API } from './helpers/expected.js';
import { scratchDir } from './helpers/fixtures.js';
import { stopAtFileEnd } from './helpers/leftovers.js';
import { bpfSkipReason, describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const ROOT_DIR = path.join(import.meta.dirname, '..');
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'package.json'), 'utf8')).version as string;
const DEB_ARCH = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
const RPM_ARCH = execFileSync('rpm', ['--eval', '%{_arch}'], { encoding: 'utf8' }).trim();
/** The libbpf the packages carry: this machine's, e.g. "1:1.1.2-0+deb12u1" → "1.1". */
const LIBBPF_VERSION = /^(?:\d+:)?(\d+\.\d+)/.exec(execFileSync('dpkg-query', ['-W', '-f=${Version}', 'libbpf1'], { encoding: 'utf8' }))![1];
/** Where debootstrap keeps the Debian packages it downloaded, between runs. */
const DEBOOTSTRAP_CACHE = '/var/cache/netacct-debootstrap';

/** The releases the .deb is installed in: Debian 11 to 13, Ubuntu 22.04 (libbpf 0.x only) and 24.04 (libelf1t64). */
const RELEASES = [
  { name: 'Debian 12', suite: 'bookworm', mirror: 'http://deb.debian.org/debian', comesWith: ['libatomic1', 'libelf1'] },
  { name: 'Debian 11', suite: 'bullseye', mirror: 'http://deb.debian.org/debian', comesWith: ['libatomic1', 'libelf1'] },
  { name: 'Debian 13', suite: 'trixie', mirror: 'http://deb.debian.org/debian', comesWith: ['libatomic1', 'libelf1t64'] },
  // Debian has no Ubuntu keyring: debootstrap fetches unchecked, apt in the chroot checks with Ubuntu's own.
  { name: 'Ubuntu 22.04', suite: 'jammy', mirror: 'http://archive.ubuntu.com/ubuntu', comesWith: ['libatomic1', 'libelf1'], debootstrap: ['--no-check-gpg'] },
  // Debian 12's debootstrap predates noble: gutsy's script is the one every Ubuntu suite uses.
  { name: 'Ubuntu 24.04', suite: 'noble', mirror: 'http://archive.ubuntu.com/ubuntu', comesWith: ['libatomic1', 'libelf1t64'], debootstrap: ['--no-check-gpg'], script: '/usr/share/debootstrap/scripts/gutsy' },
];

let work: string;
let deb: string;
let rpm: string;
const run = promisify(execFile);

/** Runs packaging/build.sh into `out`; returns [deb, rpm]. */
async function buildPackages(out: string): Promise<[string, string]> {
  const { stdout } = await run(path.join(ROOT_DIR, 'packaging', 'build.sh'), [out], { encoding: 'utf8', maxBuffer: 16 * 2 ** 20 });
  const [built, builtRpm] = stdout.trim().split('\n').slice(-2);
  return [built!, builtRpm!];
}

/** Each release's fresh root (suite → its directory), once debootstrap has made it. */
const freshRoots = new Map<string, Promise<string>>();
/** Stops the debootstraps when the build fails: nothing would use them. */
const debootstraps = new AbortController();

/**
 * debootstraps every release, one after the other, while the packages build:
 * debootstrap mostly waits on the network and dpkg, the build on one xz thread.
 */
function debootstrapReleases(): void {
  fs.mkdirSync(DEBOOTSTRAP_CACHE, { recursive: true });
  let previous: Promise<unknown> = Promise.resolve();
  for (const release of RELEASES) {
    const root = path.join(work, release.suite);
    const args = ['--variant=minbase', `--cache-dir=${DEBOOTSTRAP_CACHE}`, ...(release.debootstrap ?? []), release.suite, root, release.mirror, ...(release.script ? [release.script] : [])];
    const made = previous.then(async () => {
      await debootstrap(args);
      return root;
    });
    made.catch(() => {}); // reported by the release's own beforeAll, which awaits it
    freshRoots.set(release.suite, made);
    previous = made.catch(() => {});
  }
}

/**
 * Whether a private mount namespace can be made here: not where / is no mount
 * point (a plain chroot), where debootstrap then runs in the run's own.
 */
const PRIVATE_MOUNTS = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status === 0;

/**
 * One debootstrap, in a process group and a mount namespace of its own: when
 * the build fails it is killed with everything it started (dpkg in the new
 * root), and the mounts it made there go with them, so the root can be removed.
 */
async function debootstrap(args: string[]): Promise<void> {
  debootstraps.signal.throwIfAborted();
  const command = PRIVATE_MOUNTS ? ['unshare', '--mount', '--propagation', 'private', 'debootstrap', ...args] : ['debootstrap', ...args];
  const child = spawn(command[0]!, command.slice(1), { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4096)));
  const stop = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // the group is gone already
    }
  };
  debootstraps.signal.addEventListener('abort', stop);
  try {
    const [status, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    if (status !== 0) throw new Error(`debootstrap ${args.join(' ')}: ${signal ?? `exit ${status}`}: ${stderr.trim()}`);
  } finally {
    debootstraps.signal.removeEventListener('abort', stop);
  }
}

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Every file and symlink under `root`: relative path → sha256 (or the link's target). */
function tree(root: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const entry of fs.readdirSync(root, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    if (entry.isSymbolicLink()) entries.set(path.relative(root, file), `-> ${fs.readlinkSync(file)}`);
    else if (entry.isFile()) entries.set(path.relative(root, file), sha256(file));
  }
  return entries;
}

const netacctIn = (root: string, ...args: string[]) =>
  spawnSync(path.join(root, 'usr', 'bin', 'netacct'), args, { encoding: 'utf8', timeout: 60_000 });

beforeAll(async () => {
  work = scratchDir('packages');
  if (!bpfSkipReason) debootstrapReleases();
  try {
    [deb, rpm] = await buildPackages(path.join(work, 'out'));
  } catch (err) {
    debootstraps.abort();
    const { stderr } = err as { stderr?: string };
    throw new Error(`packaging/build.sh failed: ${stderr?.trim() || (err as Error).message}`);
  }
}, 600_000);

afterAll(async () => {
  debootstraps.abort(); // one still running (a timed-out build, an interrupted run) is killed
  await Promise.allSettled(freshRoots.values());
  // --one-file-system: never into something mounted under a chroot.
  if (work) execFileSync('rm', ['-rf', '--one-file-system', work]);
});

test('packaging/build.sh is reproducible: a second build gives the same bytes', async () => {
  const [again, againRpm] = await buildPackages(path.join(work, 'again'));
  expect([path.basename(deb), path.basename(rpm)]).toEqual([`netacct_${VERSION}_${DEB_ARCH}.deb`, `netacct-${VERSION}-1.${RPM_ARCH}.rpm`]);
  expect([sha256(again), sha256(againRpm)]).toEqual([sha256(deb), sha256(rpm)]);
  const installedKiB = Number(execFileSync('dpkg-deb', ['--field', deb, 'Installed-Size'], { encoding: 'utf8' }));
  console.log(`packages: .deb ${(fs.statSync(deb).size / 2 ** 20).toFixed(1)} MiB, .rpm ${(fs.statSync(rpm).size / 2 ** 20).toFixed(1)} MiB, installed ${(installedKiB / 1024).toFixed(1)} MiB`);
}, 600_000);

describe('the Debian package', () => {
  let root: string;
  beforeAll(() => {
    root = path.join(work, 'deb-root');
    execFileSync('dpkg', ['-x', deb, root]);
  });

  test('control: name, version, and only libraries every Debian and Ubuntu with glibc >= 2.28 has', () => {
    const field = (name: string): string => execFileSync('dpkg-deb', ['--field', deb, name], { encoding: 'utf8' }).trim();
    expect(field('Package')).toBe('netacct');
    expect(field('Version')).toBe(VERSION);
    expect(field('Architecture')).toBe(DEB_ARCH);
    expect(field('Depends')).toBe('libc6 (>= 2.28), libatomic1, libelf1, libgcc-s1, libstdc++6, zlib1g');
    const conffiles = execFileSync('sh', ['-c', `dpkg-deb --ctrl-tarfile '${deb}' | tar -xO ./conffiles`], { encoding: 'utf8' });
    expect(conffiles.trim()).toBe('/etc/netacct/config.json');
  });

  test('contents: daemon, production dependencies only, its own Node.js and libbpf, BPF objects, web page, unit, conffile, man page', () => {
    for (const file of [
      'usr/lib/netacct/dist/cli/main.js',
      'usr/lib/netacct/bpf/netacct.bpf.o',
      'usr/lib/netacct/bpf/netatop-sockopt.bpf.o',
      'usr/lib/netacct/web/index.html',
      'usr/lib/netacct/node_modules/koffi/package.json',
      'usr/lib/netacct/node_modules/zod/package.json',
      'usr/lib/netacct/node/bin/node',
      'usr/lib/netacct/node/LICENSE',
      'usr/lib/netacct/lib/libbpf.so.1',
      'usr/lib/netacct/lib/libbpf.copyright',
      'usr/lib/systemd/system/netacct.service',
      'etc/netacct/config.json',
      'usr/share/man/man8/netacct.8.gz',
      'usr/share/doc/netacct/examples/grafana-dashboard.json',
    ]) {
      expect(fs.existsSync(path.join(root, file)), file).toBe(true);
    }
    for (const dev of ['vitest', 'typescript', 'playwright-core']) {
      expect(fs.existsSync(path.join(root, 'usr/lib/netacct/node_modules', dev)), dev).toBe(false);
    }
    expect([...tree(root).keys()].filter((file) => file.includes('musl'))).toEqual([]);
    expect(fs.readFileSync(path.join(root, 'usr/lib/netacct/bpf/netacct.bpf.o'))).toEqual(fs.readFileSync(path.join(ROOT_DIR, 'bpf/netacct.bpf.o')));
    expect(sha256(path.join(root, 'usr/lib/netacct/node/bin/node'))).toBe(sha256(fs.realpathSync(process.execPath)));
  });

  test('netacct --version runs from the scratch root', () => {
    const result = netacctIn(root, '--version');
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).toEqual({ status: 0, stdout: `netacct ${VERSION}\n`, stderr: '' });
  });

  test('the installed unit passes systemd-analyze verify against the installed binary', () => {
    const unit = path.join(work, 'netacct.service');
    const installed = fs.readFileSync(path.join(root, 'usr/lib/systemd/system/netacct.service'), 'utf8');
    fs.writeFileSync(unit, installed.replace('ExecStart=/usr/bin/netacct', `ExecStart=${path.join(root, 'usr/bin/netacct')}`));
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' });
    expect({ status: result.status, output: result.stdout + result.stderr }).toEqual({ status: 0, output: '' });
  });

  test('the man page renders without warnings', () => {
    const result = spawnSync('man', ['--warnings', '-E', 'UTF-8', '-l', path.join(root, 'usr/share/man/man8/netacct.8.gz')], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80' } });
    expect(result.status).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/netacct daemon --check/);
  });

  test("the default configuration is the daemon's defaults, valid for the daemon", () => {
    const config = JSON.parse(fs.readFileSync(path.join(root, 'etc/netacct/config.json'), 'utf8'));
    expect(config).toMatchObject({ atopSocket: '/run/netatop-bpf-socket', apiSocket: '/run/netacct/api.sock', listen: null, threads: false });
    expect(config).not.toHaveProperty('bpfObject');
  });

  describeWithBpf('unpacked', () => {
    test("netacct daemon --check: every check passes with the package's configuration, libbpf and BPF objects, nothing attached", () => {
      const socketsBefore = ['/run/netatop-bpf-socket', '/run/netacct/api.sock'].map((p) => fs.existsSync(p));
      const result = netacctIn(root, 'daemon', '--check', '--config', path.join(root, 'etc/netacct/config.json'));
      expect(result.status, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toContain(`ok   libbpf: ${LIBBPF_VERSION}: ${path.join(root, 'usr/lib/netacct/lib/libbpf.so.1')}\n`);
      expect(result.stdout).toContain(`ok   BPF programs: ${path.join(root, 'usr/lib/netacct/bpf/netacct.bpf.o')}: accepted by the kernel's verifier`);
      expect(result.stdout.trim().split('\n').at(-1)).toBe('netacct daemon can start with this configuration');
      // A dry run creates no socket.
      expect(['/run/netatop-bpf-socket', '/run/netacct/api.sock'].map((p) => fs.existsSync(p))).toEqual(socketsBefore);
    });

    test('netacct daemon --check names what is wrong and exits 1', () => {
      const result = netacctIn(root, 'daemon', '--check', '--config', path.join(root, 'etc/netacct/config.json'), '--bpf-object', '/nonexistent.bpf.o');
      expect(result.status).toBe(1);
      expect(result.stdout).toMatch(/^FAIL BPF programs: opening \/nonexistent.bpf.o: /m);
    });
  });
});

describe('the RPM package', () => {
  const query = (...args: string[]): string[] => execFileSync('rpm', ['-qp', ...args, rpm], { encoding: 'utf8' }).trim().split('\n');

  test('header: name, version, release, architecture, license, fixed build host', () => {
    expect(query('--qf', '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE} %{BUILDHOST}')).toEqual([`netacct ${VERSION} 1 ${RPM_ARCH} GPL-2.0-only reproducible`]);
  });

  test('rpm -qlp: the same files as the .deb, the configuration marked as such', () => {
    const debFiles = execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile '${deb}' | tar -t`], { encoding: 'utf8' }).trim().split('\n');
    const expected = debFiles.filter((line) => !line.endsWith('/')).map((line) => line.replace(/^\./, '')).sort();
    const rpmFiles = query('--qf', '[%{FILEMODES:perms} %{FILENAMES}\n]').filter((line) => !line.startsWith('d')).map((line) => line.slice(line.indexOf(' ') + 1)).sort();
    expect(rpmFiles).toEqual(expected);
    expect(query('--configfiles', '-l')).toEqual(['/etc/netacct/config.json']);
  });

  test('rpm -qp --scripts: reload systemd, follow the presets on install, stop and disable on erase, restart on upgrade; atop is only told', () => {
    const scripts = query('--scripts').join('\n');
    expect(scripts).toMatch(/postinstall scriptlet \(using \/bin\/sh\):[\s\S]*systemctl preset netacct\.service/);
    expect(scripts).toMatch(/preuninstall scriptlet[\s\S]*systemctl --no-reload disable --now netacct\.service/);
    expect(scripts).toMatch(/postuninstall scriptlet[\s\S]*systemctl try-restart netacct\.service/);
    expect(scripts).toContain('set LOGOPTS=\\"-K\\" in $atop_config');
    expect(scripts).not.toMatch(/sed |> *\/etc\/(sysconfig|default)\/atop/); // never edits atop's file
  });

  test('rpm -qp --requires: glibc >= 2.28, libstdc++, libgcc, libatomic, libelf and zlib by soname; no nodejs, no libbpf; provides only netacct', () => {
    const requires = query('--requires');
    for (const soname of ['libc.so.6(GLIBC_2.28)(64bit)', 'libstdc++.so.6()(64bit)', 'libgcc_s.so.1()(64bit)', 'libatomic.so.1()(64bit)', 'libelf.so.1()(64bit)', 'libz.so.1()(64bit)']) {
      expect(requires).toContain(soname);
    }
    expect(requires.filter((r) => /GLIBC_2\.(29|[3-9]\d)/.test(r))).toEqual([]);
    expect(requires.filter((r) => /node|bpf|musl/i.test(r))).toEqual([]);
    expect(query('--provides').sort()).toEqual([`netacct = ${VERSION}-1`, `netacct(${RPM_ARCH.replace('_', '-')}) = ${VERSION}-1`]);
  });

  describe('its payload, unpacked into a scratch root', () => {
    let root: string;
    beforeAll(() => {
      root = path.join(work, 'rpm-root');
      fs.mkdirSync(root);
      execFileSync('sh', ['-c', `rpm2cpio '${rpm}' | cpio --quiet -idm`], { cwd: root });
    });

    test("is the .deb's tree, file for file", () => {
      const debRoot = path.join(work, 'deb-root-for-rpm');
      execFileSync('dpkg', ['-x', deb, debRoot]);
      expect(tree(root)).toEqual(tree(debRoot));
    });

    test('netacct --version runs from it', () => {
      const result = netacctIn(root, '--version');
      expect({ status: result.status, stdout: result.stdout }).toEqual({ status: 0, stdout: `netacct ${VERSION}\n` });
    });

    describeWithBpf('with BPF', () => {
      test('netacct daemon --check passes with its own libbpf and BPF objects', () => {
        const result = netacctIn(root, 'daemon', '--check', '--config', path.join(root, 'etc/netacct/config.json'));
        expect(result.status, result.stdout + result.stderr).toBe(0);
        expect(result.stdout).toContain(`ok   libbpf: ${LIBBPF_VERSION}: ${path.join(root, 'usr/lib/netacct/lib/libbpf.so.1')}\n`);
      });
    });
  });
});


describe.each(RELEASES)('the .deb installed with apt-get in a fresh $name chroot (debootstrap, no Node.js repository)', (release) => {
  describeWithBpf(release.suite, () => {
    let chroot: string;
    let installLog: string;
    let packagesBefore: string[];
    const inChroot = (command: string): string => execFileSync('chroot', [chroot, 'sh', '-c', command], { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    const installedPackages = (): string[] => inChroot("dpkg-query -W -f='${Package}\\n'").trim().split('\n').sort();
    /**
     * `command` in the chroot, in a mount namespace of its own with /proc, /sys,
     * bpffs, cgroup2 and tracefs: they vanish with the process, whatever
     * happens (unshare's default propagation is private). The IPC namespace
     * is its own too (netatopd's semaphore).
     */
    const spawnInChroot = (command: string): ChildProcess => {
      const mounts = [
        `mount -t proc proc ${chroot}/proc`,
        `mount -t sysfs sysfs ${chroot}/sys`,
        `mount -t bpf bpf ${chroot}/sys/fs/bpf`,
        `mount -t cgroup2 cgroup2 ${chroot}/sys/fs/cgroup`,
        `mount -t tracefs tracefs ${chroot}/sys/kernel/tracing`,
      ].join(' && ');
      const child = spawn('unshare', ['--mount', '--ipc', 'sh', '-c', `${mounts} && exec chroot ${chroot} ${command}`], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      });
      const forget = stopAtFileEnd(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
      child.once('exit', forget);
      return child;
    };
    const runInChroot = (command: string): Promise<{ status: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawnInChroot(command);
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.once('exit', (status) => resolve({ status, stdout, stderr }));
      });

    beforeAll(async () => {
      chroot = await freshRoots.get(release.suite)!;
      fs.copyFileSync('/etc/resolv.conf', path.join(chroot, 'etc/resolv.conf'));
      fs.copyFileSync(deb, path.join(chroot, 'tmp', path.basename(deb)));
      packagesBefore = installedPackages();
      installLog = inChroot(`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y ./tmp/${path.basename(deb)} 2>&1`);
    }, 900_000);

    test(`apt-get install ./netacct_*.deb: only the release's own sources, and nothing but ${release.comesWith.join(', ')} comes with it`, () => {
      expect(fs.readdirSync(path.join(chroot, 'etc/apt/sources.list.d'))).toEqual([]);
      expect(fs.readFileSync(path.join(chroot, 'etc/apt/sources.list'), 'utf8').trim()).toBe(`deb ${release.mirror} ${release.suite} main`);
      const added = installedPackages().filter((name) => !packagesBefore.includes(name));
      expect(added, installLog).toEqual([...release.comesWith, 'netacct'].sort());
      expect(() => inChroot('command -v node')).toThrow(); // no Node.js but the package's own
    });

    test('netacct daemon --check passes there, with the package\'s Node.js and libbpf', async () => {
      const result = await runInChroot('netacct daemon --check');
      expect(result.status, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toContain(`ok   Node.js: ${process.versions.node} (needs >=26.12.1)\n`);
      expect(result.stdout).toContain(`ok   libbpf: ${LIBBPF_VERSION}: /usr/lib/netacct/lib/libbpf.so.1\n`);
      expect(result.stdout.trim().split('\n').at(-1)).toBe('netacct daemon can start with this configuration');
      expect(result.stderr).toBe(''); // no libbpf noise from the attempts allowed to fail
    }, 60_000);

    test('its daemon counts a generated transfer exactly', async () => {
      // The package's configuration, its sockets under the chroot's /run; the
      // netatop module interface (a program on the host's root cgroup) stays off.
      const daemon = spawnInChroot('netacct daemon --no-netatop-module');
      let log = '';
      await new Promise<void>((resolve, reject) => {
        daemon.stderr!.on('data', (chunk: Buffer) => {
          log += chunk.toString();
          if (/serving atop on/.test(log)) resolve();
        });
        daemon.once('exit', (code) => reject(new Error(`the chroot's daemon exited (${code}):\n${log}`)));
      });
      const traffic = await TrafficChild.start('basic');
      try {
        const { status, body } = await apiGet(path.join(chroot, 'run/netacct/api.sock'), `/v1/processes/${traffic.pid}`);
        expect(status).toBe(200);
        expect(body).toMatchObject({ pid: traffic.pid, command: 'traffic', counters: BASIC_SCENARIO_API });
      } finally {
        await traffic.finish();
        const exited = new Promise((resolve) => daemon.once('exit', resolve));
        daemon.kill('SIGTERM');
        expect(await exited, log).toBe(0);
      }
    }, 60_000);
  });
});
