// Runs a command line to its end: its exit code and output, whether it
// succeeded or not (the CLI's failures are what some tests check).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NETACCT } from './daemon.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCommand(command: string, args: string[]): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(command, args);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as CommandResult;
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** `netacct ARGS` as root (the test's user). */
export function netacct(...args: string[]): Promise<CommandResult> {
  return runCommand(NETACCT, args);
}
