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

/**
 * End of life of each Node.js LTS line (the Node.js release schedule,
 * github.com/nodejs/Release). A line absent here is not an LTS line, or is
 * newer than this table: the package build refuses both.
 */
const LTS_END_OF_LIFE: Readonly<Record<number, string>> = {
  20: '2026-04-30',
  22: '2027-04-30',
  24: '2028-04-30',
  26: '2029-04-30',
};

/** A runtime shipped to production hosts must have at least this much support left. */
const SUPPORT_LEFT_DAYS = 365;

/**
 * Why the runtime `version` must not be carried by a package built on
 * `today`: not an LTS line, or within a year of its end of life. Null if fine.
 */
export function runtimeSupportProblem(version: string, today: Date): string | null {
  const major = Number(version.replace(/^v/, '').split('.')[0]);
  const endOfLife = LTS_END_OF_LIFE[major];
  if (endOfLife === undefined) return `Node.js ${version} is not a known LTS line (${Object.keys(LTS_END_OF_LIFE).join(', ')}): carry an LTS release`;
  const daysLeft = Math.floor((Date.parse(`${endOfLife}T00:00:00Z`) - today.getTime()) / 86_400_000);
  if (daysLeft < SUPPORT_LEFT_DAYS) {
    const when = daysLeft < 0 ? `reached its end of life on ${endOfLife}` : `reaches its end of life on ${endOfLife}, in ${daysLeft} days`;
    return `Node.js ${version} ${when}: carry a release with at least ${SUPPORT_LEFT_DAYS} days of support left`;
  }
  return null;
}
