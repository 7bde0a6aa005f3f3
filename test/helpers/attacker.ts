// The hostile client (test/fixtures/attacker.mjs) as user nobody, and what it reports.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { asNobody, NODE_FOR_OTHERS } from './fixtures.js';
import { stopAtFileEnd } from './leftovers.js';

const SCRIPT = fs.readFileSync(path.join(import.meta.dirname, '..', 'fixtures', 'attacker.mjs'), 'utf8');

export class Attacker<Report = Record<string, number>> {
  private constructor(
    private readonly child: ChildProcess,
    /** Its report, once it had the daemon's answer (each mode's shape: attacker.mjs). */
    readonly report: Report,
  ) {}

  /** Starts `mode` as nobody and waits for its report (see attacker.mjs). */
  static async start<Report = Record<string, number>>(...args: string[]): Promise<Attacker<Report>> {
    const [command, commandArgs] = asNobody(NODE_FOR_OTHERS, '--input-type=module', '-e', SCRIPT, ...args);
    const child = spawn(command, commandArgs, { stdio: ['pipe', 'pipe', 'inherit'] });
    child.once('exit', stopAtFileEnd(() => child.kill('SIGKILL')));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        readline.createInterface({ input: child.stdout! }).once('line', resolve);
        child.once('exit', (code) => reject(new Error(`attacker ${args.join(' ')} exited (${code}) before reporting`)));
      });
      return new Attacker<Report>(child, JSON.parse(line) as Report);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  /** Closes its connections and waits for its exit. */
  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill('SIGKILL');
    });
  }
}
