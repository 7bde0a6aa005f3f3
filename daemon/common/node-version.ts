// The Node.js version check at start. Written to run on any Node.js that
// loads ES modules, since its whole point is to speak before newer syntax or
// APIs fail in obscure ways.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from './package-root.js';

/** Why `version` does not satisfy `range` (">=MAJOR[.MINOR[.PATCH]]", as in package.json engines), or null. */
export function nodeVersionProblem(version: string, range: string): string | null {
  const wanted = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  if (!wanted) throw new Error(`unsupported engines.node range '${range}'`);
  const need = [1, 2, 3].map((i) => Number(wanted[i] ?? 0));
  const have = version.replace(/^v/, '').split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((have[i] ?? 0) > need[i]!) return null;
    if ((have[i] ?? 0) < need[i]!) return `netacct needs Node.js ${range.trim()}, this is ${version}`;
  }
  return null;
}

/** The engines.node range of the package this file belongs to. */
export function requiredNodeRange(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
}
