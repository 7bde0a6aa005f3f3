// Around the whole run. Before: one scratch directory for every temporary file
// the tests make (test/helpers/fixtures.ts: scratchDir), which every user may
// enter, removed as a whole at the end. After: nothing else may be left
// behind by a test, even a failed one: a daemon or a child process still
// running, a pinned map, a cgroup. What is found is removed (processes
// killed), and the run fails, naming it. Another run side by side is left alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroup2Mount } from '../daemon/accounting/cgroup-names.js';

/** Pin directories and cgroups are named netacct-test-<worker pid>-…: a live worker's belong to another run. */
const SCRATCH_NAME = /^netacct-test-(\d+)-/;

function ofDeadWorker(name: string): boolean {
  const pid = SCRATCH_NAME.exec(name)?.[1];
  return pid !== undefined && !fs.existsSync(`/proc/${pid}`);
}

let scratchRoot = '';

const CHECKOUT = path.join(import.meta.dirname, '..');

export function setup(): void {
  scratchRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-test-run-'));
  fs.chmodSync(scratchRoot, 0o755); // tests run clients as nobody
  process.env['NETACCT_TEST_SCRATCH'] = scratchRoot; // the test workers inherit it
  const forOthers = packageForOthers();
  process.env['NETACCT_TEST_CLI_FOR_OTHERS'] = path.join(forOthers, 'bin', 'netacct.js');
  // The pinned Node.js the tests run on (package.json), as other users can run it.
  process.env['NETACCT_TEST_NODE_FOR_OTHERS'] = path.join(forOthers, 'node_modules', '.bin', 'node');
  // The CLI's #! line finds node on PATH: the pinned one first, for every user.
  process.env['PATH'] = `${path.join(forOthers, 'node_modules', '.bin')}:${process.env['PATH']}`;
}

/**
 * The package as other users can run it (tests run the CLI and Node.js as
 * nobody): the checkout itself when every user may read it, else a copy of
 * what runs (a clone in /root, mode 0700, is the usual case).
 */
function packageForOthers(): string {
  const readableByAll = (file: string): boolean => {
    for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      if ((fs.statSync(dir).mode & 0o001) === 0) return false;
    }
    return (fs.statSync(file).mode & 0o004) !== 0;
  };
  const node = path.join(CHECKOUT, 'node_modules', '.bin', 'node');
  if (readableByAll(path.join(CHECKOUT, 'bin', 'netacct.js')) && readableByAll(fs.realpathSync(node))) return CHECKOUT;
  const copy = path.join(scratchRoot, 'package');
  const bin = path.join(CHECKOUT, 'node_modules', '.bin');
  for (const part of ['bin', 'dist', 'node_modules', 'package.json']) {
    // .bin's links would be copied as files: node alone is linked again below.
    fs.cpSync(path.join(CHECKOUT, part), path.join(copy, part), { recursive: true, dereference: true, filter: (source) => source !== bin });
  }
  fs.mkdirSync(path.join(copy, 'node_modules', '.bin'));
  fs.symlinkSync(fs.readlinkSync(node), path.join(copy, 'node_modules', '.bin', 'node'));
  fs.chmodSync(copy, 0o755);
  return copy;
}

/**
 * Processes of this run still alive: a daemon whose arguments name the
 * scratch directory (every test daemon's sockets are there), or a program
 * built into it. Another run's, side by side, are not this run's.
 */
function leftProcesses(): Array<{ pid: number; what: string }> {
  const left: Array<{ pid: number; what: string }> = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cmdline: string;
    let exe = '';
    try {
      cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').trim();
      exe = fs.readlinkSync(`/proc/${name}/exe`);
    } catch {
      continue; // gone, or a kernel thread
    }
    if (scratchRoot && (cmdline.includes(`${scratchRoot}/`) || exe.startsWith(`${scratchRoot}/`))) left.push({ pid: Number(name), what: cmdline });
  }
  return left;
}

export function teardown(): void {
  const leaks: string[] = [];
  for (const { pid, what } of leftProcesses()) {
    leaks.push(`process ${pid} still running: ${what}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  const bpffs = '/sys/fs/bpf';
  if (fs.existsSync(bpffs)) {
    for (const name of fs.readdirSync(bpffs)) {
      if (!ofDeadWorker(name)) continue;
      leaks.push(`pinned maps left in ${path.join(bpffs, name)}`);
      fs.rmSync(path.join(bpffs, name), { recursive: true, force: true });
    }
  }
  const cgroups = cgroup2Mount();
  if (cgroups) {
    for (const name of fs.readdirSync(cgroups)) {
      if (!ofDeadWorker(name)) continue;
      leaks.push(`cgroup left: ${path.join(cgroups, name)}`);
      removeCgroupTree(path.join(cgroups, name));
    }
  }
  if (scratchRoot) fs.rmSync(scratchRoot, { recursive: true, force: true });
  if (leaks.length > 0) throw new Error(`the tests left things behind (now removed):\n${leaks.join('\n')}`);
}

/** rmdir of a cgroup and its children, deepest first (a cgroup with processes cannot go: left as it is). */
function removeCgroupTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(path.join(dir, entry.name));
  }
  try {
    fs.rmdirSync(dir);
  } catch {
    // processes still in it
  }
}
