// A real netacct daemon (bin/netacct.js, compiled by `npm test`) on its own
// socket path, so that tests run side by side without touching the defaults.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { scratchDir, tempPath } from './fixtures.js';
import { PATIENCE } from './patience.js';
import { stopAtFileEnd } from './leftovers.js';

/** The unit of /proc/PID/stat's times. */
const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

export const NETACCT = path.join(import.meta.dirname, '..', '..', 'bin', 'netacct.js');

/** The same CLI as users other than root can run it (test/global-setup.ts copies it where the checkout is not theirs to read). */
export const NETACCT_FOR_OTHERS = process.env['NETACCT_TEST_CLI_FOR_OTHERS'] ?? NETACCT;

/** The systemd unit the package installs. */
export const UNIT_FILE = path.join(import.meta.dirname, '..', '..', 'packaging', 'netacct.service');

/** The unit's CapabilityBoundingSet. */
export function unitCapabilities(): string[] {
  return /^CapabilityBoundingSet=(.*)$/m.exec(fs.readFileSync(UNIT_FILE, 'utf8'))![1]!.split(/\s+/);
}

/** A launcher for TestDaemon.start: the daemon with only the unit's capabilities, as systemd runs it. */
export function unitCapabilitiesLauncher(): string[] {
  const caps = unitCapabilities().map((cap) => `+${cap.slice(4).toLowerCase()}`).join(',');
  return ['setpriv', `--bounding-set=-all,${caps}`, '--inh-caps=-all', '--'];
}

const SCRATCH_PIN_PREFIX = '/sys/fs/bpf/netacct-test-';
let pinDirs = 0;

/**
 * A pin directory of this test's own. Pinned maps outlive processes and hold
 * kernel memory: remove it with removePinDir (test/global-setup.ts sweeps
 * what a failed run left).
 */
export function scratchPinDir(): string {
  return `${SCRATCH_PIN_PREFIX}${process.pid}-${++pinDirs}`;
}

export function removePinDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

function emptyConfig(): string {
  const file = path.join(path.dirname(tempPath('config')), 'empty.json');
  fs.writeFileSync(file, '{}');
  return file;
}

/** The attach mode the suites are run in (NETACCT_TEST_ATTACH_MODE), or undefined for the daemon's own choice. */
export function testAttachMode(): 'tracepoint' | 'fexit' | undefined {
  const mode = process.env['NETACCT_TEST_ATTACH_MODE'];
  if (mode === undefined || mode === '' || mode === 'auto') return undefined;
  if (mode !== 'tracepoint' && mode !== 'fexit') throw new Error(`NETACCT_TEST_ATTACH_MODE=${mode}: auto, tracepoint or fexit`);
  return mode;
}

/** The state and CPU time (utime + stime, seconds) in /proc/…/stat of a process or thread: the fields after the command, which may hold spaces and parentheses. */
function statOf(file: string): { state: string; cpuSeconds: number } {
  const text = fs.readFileSync(file, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND };
}

/**
 * Where each of a process's threads is: its state, CPU time and kernel stack
 * (root only), so that a daemon that stops answering says whether it spins,
 * waits in the kernel, or waits on its own event loop.
 */
function whereStuck(pid: number): string {
  const read = (file: string): string => {
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      return `(${(err as NodeJS.ErrnoException).code})`;
    }
  };
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .map((tid) => {
        const task = `/proc/${pid}/task/${tid}`;
        const { state, cpuSeconds } = statOf(`${task}/stat`);
        const stack = read(`${task}/stack`).split('\n').slice(0, 8).join(' < ');
        return `thread ${tid} (${read(`${task}/comm`)}) state ${state} cpu ${cpuSeconds.toFixed(2)} s wchan ${read(`${task}/wchan`)}: ${stack}`;
      })
      .join('\n');
  } catch (err) {
    return `process ${pid}: ${(err as Error).message}`; // gone meanwhile
  }
}

export class TestDaemon {
  log = '';

  private constructor(
    readonly child: ChildProcess,
    readonly socketPath: string,
    readonly apiSocketPath: string,
    private readonly ownPinDir: string | null,
  ) {
    child.stderr!.on('data', (chunk: Buffer) => (this.log += chunk.toString()));
  }

  /**
   * `launcher`: a command that execs the daemon (setpriv with fewer
   * capabilities, say); `env`: extra environment (NOTIFY_SOCKET);
   * `netatopModule`: serve atop before 2.10 too (off otherwise: its
   * semaphore, exit file and getsockopt answers are the host's, one daemon
   * at a time).
   */
  static async start(
    extraArgs: string[] = [],
    options: { launcher?: string[]; env?: Record<string, string>; netatopModule?: boolean } = {},
  ): Promise<TestDaemon> {
    const socketPath = tempPath('atop');
    // Never the host's /etc/netacct/config.json: an empty one unless the test gives its own.
    const config = extraArgs.includes('--config') ? [] : ['--config', emptyConfig()];
    // Never the default pin directory: maps of its own unless the test gives a directory.
    const ownPinDir = extraArgs.includes('--pin-dir') ? null : scratchPinDir();
    if (ownPinDir) config.push('--pin-dir', ownPinDir);
    // Never the default API socket either.
    const apiSocketPath = tempPath('api');
    if (!extraArgs.includes('--api-socket')) config.push('--api-socket', apiSocketPath);
    // Never the default history file: one of its own (history is on by default).
    if (!extraArgs.includes('--history-file') && !extraArgs.includes('--no-history')) config.push('--history-file', path.join(scratchDir('history'), 'history.db'));
    // Every workload its own rows: the other suites' processes (and a benchmark's) never push a test's into `other`.
    if (!extraArgs.includes('--history-rows-per-bucket') && !extraArgs.includes('--no-history')) config.push('--history-rows-per-bucket', '100000');
    // The suites inside guest kernels run once per attach mode (test/vm).
    if (!options.netatopModule) config.push('--no-netatop-module');
    const mode = testAttachMode();
    if (mode && !extraArgs.includes('--attach-mode')) config.push('--attach-mode', mode);
    // Through the bin's shebang, with the node flags a deployed daemon has.
    const [command, ...args] = [...(options.launcher ?? []), NETACCT, 'daemon', '--atop-socket', socketPath, ...config, ...extraArgs];
    const child = spawn(command!, args, { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, ...options.env } });
    const daemon = new TestDaemon(child, socketPath, apiSocketPath, ownPinDir);
    const forget = stopAtFileEnd(() => daemon.stop('SIGKILL'));
    child.once('exit', () => {
      forget();
      if (ownPinDir) removePinDir(ownPinDir);
    });
    await daemon.waitForLog(/serving atop on/);
    return daemon;
  }

  waitForLog(pattern: RegExp, timeoutMs = 15_000 * PATIENCE): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(this.log)) {
          cleanup();
          resolve();
        }
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`daemon exited (${code}) before logging ${pattern}:\n${this.log}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`daemon did not log ${pattern} within ${timeoutMs} ms:\n${this.log}\n${whereStuck(this.child.pid!)}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.child.stderr!.off('data', check);
        this.child.off('exit', onExit);
      };
      this.child.stderr!.on('data', check);
      this.child.once('exit', onExit);
      check();
    });
  }

  /** The TCP port of the API (started with --listen HOST:0), from the ready line. */
  get tcpPort(): number {
    const port = / tcp [^\s]*:(\d+)/.exec(this.log)?.[1];
    if (!port) throw new Error(`the daemon logged no TCP listener:\n${this.log}`);
    return Number(port);
  }

  /** CPU time the daemon used so far, user and system, in seconds. */
  cpuSeconds(): number {
    return statOf(`/proc/${this.child.pid}/stat`).cpuSeconds;
  }

  /** The daemon's resident memory, MiB. */
  rssMiB(): number {
    const status = fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) / 1024;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and resolves with the exit code; removes the maps it pinned in a directory of its own. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const code = await new Promise<number | null>((resolve) => {
      if (!this.running) return resolve(this.child.exitCode);
      this.child.once('exit', (exitCode) => resolve(exitCode));
      this.child.kill(signal);
    });
    if (this.ownPinDir) removePinDir(this.ownPinDir);
    return code;
  }
}
