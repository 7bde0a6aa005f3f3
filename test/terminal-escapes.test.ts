// What users name their processes and cgroups reaches root's terminal only
// escaped: a process named "\e[2J\e]0;pwn\a" must not clear root's screen or
// set its window title when root lists processes, in any human-readable
// output (ps, cgroups, peers, stats, top, error messages, the daemon's log);
// --json stays exact.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { printable } from '../daemon/common/printable.js';
import { createLogger } from '../daemon/common/log.js';
import { NETACCT, TestDaemon } from './helpers/daemon.js';
import { scratchDir, fixture } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';
import { ScratchCgroup } from './helpers/cgroup.js';
import { TrafficChild } from './helpers/traffic.js';

/** Characters a terminal may act on: C0 (but the line feed that ends a line), DEL, C1. */
const TERMINAL_CONTROLS = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;
const C0 = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i));
const C1 = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i));

test('printable escapes every C0 control, DEL, every C1 control, bidi and invisible characters, lone surrogates; leaves the rest', () => {
  for (const control of [...C0, '\x7f', ...C1]) {
    const shown = printable(`a${control}b`);
    expect(shown).not.toMatch(TERMINAL_CONTROLS);
    const code = control.charCodeAt(0);
    expect(shown).toBe(code < 0x80 ? `a\\x${code.toString(16).padStart(2, '0')}b` : `a\\u00${code.toString(16)}b`);
  }
  expect(printable('\u202eevil\u2066')).toBe('\\u202eevil\\u2066');
  expect(printable('ss\u200bhd\u00ad\ufeff\u2060')).toBe('ss\\u200bhd\\u00ad\\ufeff\\u2060'); // invisible: would pass for sshd
  expect(printable('x\u{e0041}y')).toBe('x\\u{e0041}y'); // a tag character
  expect(printable('half \ud800 and \udc00')).toBe('half \\ud800 and \\udc00');
  expect(printable('bad byte \ufffd')).toBe('bad byte ?'); // invalid UTF-8, as decoded, shown as ps(1) does
  const ordinary = 'nginx: worker ✓ 😀 système.slice/dev-disk-by\\x2duuid.device ~!@#$%^&*()[]{}<>|;:\'",.?/ ';
  expect(printable(ordinary)).toBe(ordinary);
});

test('the daemon log: one line per message, whatever the message holds', () => {
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => written.push(chunk)) as typeof process.stderr.write;
  try {
    createLogger({ verbose: false, journal: true }).warn(`refused ${C0.join('')}\x7f${C1.join('')}\n<3>forged`);
  } finally {
    process.stderr.write = write;
  }
  expect(written).toHaveLength(1);
  expect(written[0]!.endsWith('\n')).toBe(true);
  expect(written[0]!.slice(0, -1)).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
  expect(written[0]).toContain('\\x0a<3>forged');
});

/**
 * Names a process can take (its executable's name, the first 15 bytes): every
 * control character, in pieces. (Bytes that are not UTF-8 are in the cgroup's
 * name below: a program's path reaches execve through Node as UTF-8.)
 */
const PROCESS_NAMES: string[] = [
  '\x1b[2J\x1b]0;pwn\x07x', // the reported attack: clear the screen, set the title
  C0.slice(1, 16).join(''), // 0x01-0x0f
  C0.slice(16, 31).join(''), // 0x10-0x1e
  '\x1f\x7fx', // 0x1f, DEL
  ...[0, 7, 14, 21, 28].map((start) => C1.slice(start, start + 7).join('')), // C1 as UTF-8, 7 a name
  '\x1b]52;c;cHduZWQ=\x07', // OSC 52: write the clipboard
];

function netacct(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(NETACCT, args, { encoding: 'utf8' }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describeWithBpf('names chosen by nobody, shown to root (real daemon, real processes and cgroups)', () => {
  let daemon: TestDaemon;
  let dir: string;
  let cgroup: ScratchCgroup;
  const children: TrafficChild[] = [];
  /** The cgroup's last part: every control byte but the line feed, and invalid UTF-8 (a directory name may hold any byte but / and NUL). */
  const cgroupName = Buffer.concat([Buffer.from('evil'), Buffer.from(Array.from({ length: 0x1f }, (_, i) => i + 1).filter((b) => b !== 0x0a)), Buffer.from([0x7f, 0x9b, 0xff]), Buffer.from(C1.join(''))]);

  beforeAll(async () => {
    daemon = await TestDaemon.start(['--peers']);
    dir = scratchDir('escapes');
    cgroup = ScratchCgroup.create('escapes');
    // A cgroup named by a user (systemd delegates a subtree to each one): made here as root, the name is what matters.
    const evilDir = Buffer.concat([Buffer.from(`${cgroup.dir}/`), cgroupName]);
    fs.mkdirSync(evilDir);
    for (const name of PROCESS_NAMES) {
      const link = path.join(dir, name);
      fs.symlinkSync(fixture('traffic'), link);
      const child = await TrafficChild.startIn(cgroup, 'interactive', { asNobody: true, executable: link });
      children.push(child);
      await child.exchange(2);
    }
    // One process inside the evil cgroup too (its directory's name is not UTF-8: written by a path as bytes).
    fs.writeFileSync(Buffer.concat([evilDir, Buffer.from('/cgroup.procs')]), `${children[0]!.pid}\n`);
    await children[0]!.exchange(2);
  });
  afterAll(async () => {
    for (const child of children) await child.finish();
    if (cgroup) {
      const evilDir = Buffer.concat([Buffer.from(`${cgroup.dir}/`), cgroupName]);
      if (fs.existsSync(evilDir)) fs.rmdirSync(evilDir);
      cgroup.remove();
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (daemon) await daemon.stop();
  });

  test('ps, peers and cgroups escape them; --json has them exactly', async () => {
    const pids = children.map((child) => String(child.pid));
    const ps = await netacct('ps', '--uid', String(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()), '--api-socket', daemon.apiSocketPath);
    expect(ps.code, ps.stderr).toBe(0);
    expect(ps.stdout).not.toMatch(TERMINAL_CONTROLS);
    expect(ps.stdout).toContain('\\x1b[2J\\x1b]0;pwn\\x07x');
    expect(ps.stdout).toContain('\\x1f\\x7fx');
    expect(ps.stdout).toContain('\\u0080\\u0081\\u0082\\u0083\\u0084\\u0085\\u0086');
    for (const pid of pids) expect(ps.stdout).toMatch(new RegExp(`^\\s*${pid} `, 'm'));

    const json = JSON.parse((await netacct('ps', '--json', '--pid', pids[0]!, '--api-socket', daemon.apiSocketPath)).stdout);
    expect(json.processes[0].command).toBe('\x1b[2J\x1b]0;pwn\x07x');

    const peers = await netacct('peers', '--pid', pids[1]!, '--api-socket', daemon.apiSocketPath);
    expect(peers.code, peers.stderr).toBe(0);
    expect(peers.stdout).not.toMatch(TERMINAL_CONTROLS);
    expect(peers.stdout).toContain('\\x01\\x02\\x03');

    const cgroups = await netacct('cgroups', '--api-socket', daemon.apiSocketPath);
    expect(cgroups.stdout).not.toMatch(TERMINAL_CONTROLS);
    expect(cgroups.stdout).toContain(`${cgroup.relativePath}/evil\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\x09\\x0b`);
    expect(cgroups.stdout).toContain('\\x1e\\x1f\\x7f??\\u0080\\u0081'); // 0x9b and 0xff are not UTF-8: each "?"
    const exact = JSON.parse((await netacct('cgroups', '--json', '--api-socket', daemon.apiSocketPath)).stdout);
    expect(exact.cgroups.map((c: { path: string }) => c.path)).toContain(`${cgroup.relativePath}/${cgroupName.toString('utf8')}`);
  });

  test('an error message that repeats what was asked is escaped', async () => {
    const result = await netacct('ps', '--\x1b]0;pwn\x07', '--api-socket', daemon.apiSocketPath);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^netacct: .*\\x1b\]0;pwn\\x07/);
    expect(result.stderr).not.toMatch(TERMINAL_CONTROLS);
  });

  test('top in a real terminal: the screen is not cleared, the title not set', async () => {
    const session = `netacct-escapes-${process.pid}`;
    const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });
    try {
      tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '40', `${NETACCT} top --api-socket ${daemon.apiSocketPath}`);
      tmux('set-option', '-t', session, 'set-titles', 'on');
      let screen = '';
      for (let i = 0; i < 40 && !screen.includes('\\x1b]0;pwn'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        screen = tmux('capture-pane', '-p', '-t', session);
      }
      expect(screen).toContain('\\x1b[2J\\x1b]0;pwn'); // the name, shown as text (cut at 15 characters)
      expect(screen).toMatch(/netacct top — processes/); // still on screen: no \e[2J ran after it
      expect(tmux('display-message', '-p', '-t', session, '#{pane_title}').trim()).not.toBe('pwn');
    } finally {
      execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' });
    }
  });
});
