// The C programs of test/fixtures, compiled for a benchmark run.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../daemon/common/package-root.js';

const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-bench-'));
fs.chmodSync(outDir, 0o755); // benchmarks run them as nobody too
process.on('exit', () => fs.rmSync(outDir, { recursive: true, force: true })); // the compiled programs, whatever the benchmark did

export function compileFixture(name: 'traffic' | 'atop-client' | 'netatop-query'): string {
  const binary = path.join(outDir, name);
  if (!fs.existsSync(binary)) {
    execFileSync('cc', ['-O2', '-o', binary, path.join(packageRoot(), 'test', 'fixtures', `${name}.c`)]);
  }
  return binary;
}
