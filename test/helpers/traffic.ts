// Child processes that make known traffic (test/fixtures/traffic.c).
import { type ChildProcess, spawn } from 'node:child_process';
import readline from 'node:readline';
import { asNobody, fixture } from './fixtures.js';
import { stopAtFileEnd } from './leftovers.js';
import type { ScratchCgroup } from './cgroup.js';

export class TrafficChild {
  private readonly lines: AsyncIterator<string>;
  /** Lines printed before "ready" (the spawn scenario's children pids). */
  announced: string[] = [];

  private constructor(
    readonly child: ChildProcess,
    readonly pid: number,
  ) {
    this.lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  }

  static start(...args: string[]): Promise<TrafficChild> {
    return TrafficChild.run([fixture('traffic'), args]);
  }

  /** Started, not waited for: its traffic runs while the caller goes on (await expectLine('ready') for its end). */
  static launch(...args: string[]): TrafficChild {
    return TrafficChild.spawned([fixture('traffic'), args]);
  }

  /** The io_uring fixture (test/fixtures/io-uring.c), which speaks the same lines. */
  static startIoUring(): Promise<TrafficChild> {
    return TrafficChild.run([fixture('io-uring'), []]);
  }

  /** Runs the fixture through another path (a symlink): the process is named after it. */
  static startFrom(executable: string, ...args: string[]): Promise<TrafficChild> {
    return TrafficChild.run([executable, args]);
  }

  /** As user nobody (setpriv execs the program: the pid is the same). */
  static startAsNobody(...args: string[]): Promise<TrafficChild> {
    return TrafficChild.run(asNobody(fixture('traffic'), ...args));
  }

  /**
   * In `cgroup` from its first instruction (a shell joins it, then execs the
   * fixture: same pid), as root or as nobody, through another path (a symlink naming it) if given.
   */
  static startIn(cgroup: ScratchCgroup, scenario: string, options: { asNobody?: boolean; args?: string[]; executable?: string } = {}): Promise<TrafficChild> {
    const args = [scenario, ...(options.args ?? [])];
    const executable = options.executable ?? fixture('traffic'); // a symlink to it names the process
    const [command, commandArgs] = options.asNobody ? asNobody(executable, ...args) : [executable, args];
    return TrafficChild.run(['sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', cgroup.dir, command, ...commandArgs]]);
  }

  /** Spawned, killed at the end of the test file if still running. */
  private static spawned([command, args]: [string, string[]]): TrafficChild {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const forget = stopAtFileEnd(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    child.once('exit', forget);
    return new TrafficChild(child, child.pid!);
  }

  private static async run(command: [string, string[]]): Promise<TrafficChild> {
    const traffic = TrafficChild.spawned(command);
    traffic.announced = await traffic.expectLine('ready');
    return traffic;
  }

  async nextLine(): Promise<string> {
    const next = await this.lines.next();
    if (next.done) throw new Error(`traffic ${this.pid} ended its output early`);
    return next.value;
  }

  /** Lines until `expected` (returned without it). */
  async expectLine(expected: string): Promise<string[]> {
    const before: string[] = [];
    for (let line = await this.nextLine(); line !== expected; line = await this.nextLine()) before.push(line);
    return before;
  }

  /** interactive scenario: `calls` UDP/IPv4 exchanges of 100 bytes. */
  async exchange(calls: number): Promise<void> {
    this.child.stdin!.write(`${calls}\n`);
    await this.expectLine('done');
  }

  /** Closes stdin and waits for the exit; resolves with the exit code. */
  finish(): Promise<number | null> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve(this.child.exitCode);
      this.child.once('exit', (code) => resolve(code));
      this.child.stdin!.end();
    });
  }
}
