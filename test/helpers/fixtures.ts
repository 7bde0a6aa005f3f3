// C test programs (test/fixtures/*.c), compiled with cc once per test run.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-fixtures-'));
const built = new Map<string, string>();

export function fixture(name: 'traffic' | 'atop-client'): string {
  let binary = built.get(name);
  if (!binary) {
    binary = path.join(outDir, name);
    const source = path.join(import.meta.dirname, '..', 'fixtures', `${name}.c`);
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', binary, source]);
    built.set(name, binary);
  }
  return binary;
}

export function tempPath(prefix: string): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), `netacct-${prefix}-`)), 'socket');
}
