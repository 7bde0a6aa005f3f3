// The Debian package: packaging/build-deb.sh builds it, dpkg -x installs it
// into a scratch root, and netacct runs from there: --version, and the
// daemon's dry run against the package's own configuration and BPF object.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { scratchDir } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

const ROOT_DIR = path.join(import.meta.dirname, '..');
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'package.json'), 'utf8')).version as string;

let work: string;
let deb: string;
let root: string;

beforeAll(() => {
  work = scratchDir('deb');
  const output = execFileSync(path.join(ROOT_DIR, 'packaging', 'build-deb.sh'), [path.join(work, 'out')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  deb = output.trim().split('\n').at(-1)!;
  root = path.join(work, 'root');
  execFileSync('dpkg', ['-x', deb, root]);
}, 300_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const netacct = (...args: string[]) => spawnSync(path.join(root, 'usr', 'bin', 'netacct'), args, { encoding: 'utf8', timeout: 60_000 });

describe('the Debian package', () => {
  test('control: name, version, architecture, and the Debian dependencies nodejs and libbpf1', () => {
    expect(path.basename(deb)).toBe(`netacct_${VERSION}_${execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim()}.deb`);
    const field = (name: string): string => execFileSync('dpkg-deb', ['--field', deb, name], { encoding: 'utf8' }).trim();
    expect(field('Package')).toBe('netacct');
    expect(field('Version')).toBe(VERSION);
    expect(field('Depends')).toBe('nodejs (>= 20.19), libbpf1');
    expect(execFileSync('dpkg-deb', ['--ctrl-tarfile', deb]).length).toBeGreaterThan(0);
  });

  test('contents: daemon, production dependencies only, BPF object, web page, unit, conffile, man page', () => {
    for (const file of [
      'usr/lib/netacct/dist/cli/main.js',
      'usr/lib/netacct/bpf/netacct.bpf.o',
      'usr/lib/netacct/web/index.html',
      'usr/lib/netacct/node_modules/koffi/package.json',
      'usr/lib/netacct/node_modules/zod/package.json',
      'lib/systemd/system/netacct.service',
      'etc/netacct/config.json',
      'usr/share/man/man8/netacct.8.gz',
      'usr/share/doc/netacct/examples/grafana-dashboard.json',
    ]) {
      expect(fs.existsSync(path.join(root, file)), file).toBe(true);
    }
    for (const dev of ['vitest', 'typescript', 'playwright-core']) {
      expect(fs.existsSync(path.join(root, 'usr/lib/netacct/node_modules', dev)), dev).toBe(false);
    }
    expect(fs.readFileSync(path.join(root, 'usr/lib/netacct/bpf/netacct.bpf.o'))).toEqual(fs.readFileSync(path.join(ROOT_DIR, 'bpf/netacct.bpf.o')));
    expect(fs.readlinkSync(path.join(root, 'usr/bin/netacct'))).toBe('../lib/netacct/bin/netacct.js');
    const conffiles = execFileSync('sh', ['-c', `dpkg-deb --ctrl-tarfile '${deb}' | tar -xO ./conffiles`], { encoding: 'utf8' });
    expect(conffiles.trim()).toBe('/etc/netacct/config.json');
  });

  test('netacct --version runs from the scratch root', () => {
    const result = netacct('--version');
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).toEqual({ status: 0, stdout: `netacct ${VERSION}\n`, stderr: '' });
  });

  test('the installed unit passes systemd-analyze verify against the installed binary', () => {
    const unit = path.join(work, 'netacct.service');
    const installed = fs.readFileSync(path.join(root, 'lib/systemd/system/netacct.service'), 'utf8');
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

  describeWithBpf('installed', () => {
    test('netacct daemon --check: every check passes with the package configuration and BPF object, nothing attached', () => {
      const socketsBefore = ['/run/netatop-bpf-socket', '/run/netacct/api.sock'].map((p) => fs.existsSync(p));
      const result = netacct('daemon', '--check', '--config', path.join(root, 'etc/netacct/config.json'));
      expect(result.status, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toContain(`ok   BPF programs: ${path.join(root, 'usr/lib/netacct/bpf/netacct.bpf.o')}: accepted by the kernel's verifier`);
      expect(result.stdout.trim().split('\n').at(-1)).toBe('netacct daemon can start with this configuration');
      // A dry run creates no socket.
      expect(['/run/netatop-bpf-socket', '/run/netacct/api.sock'].map((p) => fs.existsSync(p))).toEqual(socketsBefore);
    });

    test('netacct daemon --check names what is wrong and exits 1', () => {
      const result = netacct('daemon', '--check', '--config', path.join(root, 'etc/netacct/config.json'), '--bpf-object', '/nonexistent.bpf.o');
      expect(result.status).toBe(1);
      expect(result.stdout).toMatch(/^FAIL BPF programs: opening \/nonexistent.bpf.o: /m);
    });
  });
});
