// A real netacct daemon (bin/netacct.js, compiled by `npm test`) on its own
// socket path, so that tests run side by side without touching the defaults.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempPath } from './fixtures.js';

export const NETACCT = path.join(import.meta.dirname, '..', '..', 'bin', 'netacct.js');

const pinDirs: string[] = [];
process.once('exit', () => {
  for (const dir of pinDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A pin directory of this test run's own (removed when the test process exits). */
export function scratchPinDir(): string {
  const dir = `/sys/fs/bpf/netacct-test-${process.pid}-${pinDirs.length + 1}`;
  pinDirs.push(dir);
  return dir;
}

function emptyConfig(): string {
  const file = path.join(path.dirname(tempPath('config')), 'empty.json');
  fs.writeFileSync(file, '{}');
  return file;
}

export class TestDaemon {
  log = '';

  private constructor(
    readonly child: ChildProcess,
    readonly socketPath: string,
  ) {
    child.stderr!.on('data', (chunk: Buffer) => (this.log += chunk.toString()));
  }

  static async start(extraArgs: string[] = []): Promise<TestDaemon> {
    const socketPath = tempPath('atop');
    // Never the host's /etc/netacct/config.json: an empty one unless the test gives its own.
    const config = extraArgs.includes('--config') ? [] : ['--config', emptyConfig()];
    // Never the default pin directory: maps of its own unless the test gives a directory.
    if (!extraArgs.includes('--pin-dir')) config.push('--pin-dir', scratchPinDir());
    // Through the bin's shebang, with the node flags a deployed daemon has.
    const child = spawn(NETACCT, ['daemon', '--atop-socket', socketPath, ...config, ...extraArgs], {
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    const daemon = new TestDaemon(child, socketPath);
    await daemon.waitForLog(/serving atop on/);
    return daemon;
  }

  waitForLog(pattern: RegExp, timeoutMs = 15_000): Promise<void> {
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
        reject(new Error(`daemon did not log ${pattern} within ${timeoutMs} ms:\n${this.log}`));
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

  /** The daemon's resident memory, MiB. */
  rssMiB(): number {
    const status = fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]) / 1024;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and resolves with the exit code. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    return new Promise((resolve) => {
      if (!this.running) return resolve(this.child.exitCode);
      this.child.once('exit', (code) => resolve(code));
      this.child.kill(signal);
    });
  }
}
