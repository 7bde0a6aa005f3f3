// C test programs (test/fixtures/*.c), compiled with cc once per test run.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A new directory that every user may enter, in the run's scratch directory
 * (test/global-setup.ts removes it, whatever the tests did).
 */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(process.env['NETACCT_TEST_SCRATCH'] ?? os.tmpdir(), `${prefix}-`));
  fs.chmodSync(dir, 0o755);
  return dir;
}

const outDir = scratchDir('fixtures'); // tests run the fixtures as other users too
const built = new Map<string, string>();

/** Libraries a fixture links with, besides libc. */
const LIBRARIES: Record<string, string[]> = { 'io-uring': ['-luring'] };

export function fixture(name: 'traffic' | 'atop-client' | 'notify-listener' | 'netatop-query' | 'io-uring'): string {
  let binary = built.get(name);
  if (!binary) {
    binary = path.join(outDir, name);
    const source = path.join(import.meta.dirname, '..', 'fixtures', `${name}.c`);
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', binary, source, ...(LIBRARIES[name] ?? [])]);
    built.set(name, binary);
  }
  return binary;
}

/** The traffic fixture linked statically: it runs in a container's root file system, which has no libc. */
export function staticFixture(name: 'traffic'): string {
  const key = `${name}-static`;
  let binary = built.get(key);
  if (!binary) {
    binary = path.join(outDir, key);
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-static', '-o', binary, path.join(import.meta.dirname, '..', 'fixtures', `${name}.c`)]);
    built.set(key, binary);
  }
  return binary;
}

/** A path in a new directory that every user may enter. */
export function tempPath(prefix: string): string {
  return path.join(scratchDir(prefix), 'socket');
}

/** User nobody's uid. */
export const NOBODY_UID = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));

/** The command line that runs `command` as user nobody (group nogroup, no other groups). */
export function asNobody(command: string, ...args: string[]): [string, string[]] {
  return ['setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', command, ...args]];
}

/** The Node.js the tests run on, as other users can run it (test/global-setup.ts). */
export const NODE_FOR_OTHERS = process.env['NETACCT_TEST_NODE_FOR_OTHERS'] ?? process.execPath;
