// Checks made before anything is loaded, each failing with one line that says
// what is wrong and what to do.
import fs from 'node:fs';
import { native, errnoText, lastErrno } from './libbpf.js';

export class PreflightError extends Error {}

export const TRACEFS = '/sys/kernel/tracing';
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

function effectiveCapabilities(): bigint {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex ? BigInt(`0x${hex}`) : 0n;
}

export function checkPrivileges(): void {
  const caps = effectiveCapabilities();
  const has = (cap: bigint): boolean => ((caps >> cap) & 1n) === 1n;
  if (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) return;
  throw new PreflightError('netacct needs root (or CAP_BPF and CAP_PERFMON) to load its BPF programs');
}

/** Mounts tracefs if it is not mounted, as the kernel's tracepoints are listed there. */
export function ensureTracefs(): void {
  if (fs.existsSync(`${TRACEFS}/events`)) return;
  const ret: number = native.mount('nodev', TRACEFS, 'tracefs', 0, null);
  if (ret !== 0) {
    throw new PreflightError(
      `tracefs is not mounted at ${TRACEFS} and mounting it failed: ${errnoText(lastErrno())}` +
        ` (try: mount -t tracefs nodev ${TRACEFS})`,
    );
  }
}

const BPFFS = '/sys/fs/bpf';

/** Mount points of bpf filesystems, from /proc/self/mountinfo. */
function bpffsMounts(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.split(' - ')[1]?.startsWith('bpf '))
    .map((line) => line.split(' ')[4]!);
}

/** Makes sure `dir` is on a bpf filesystem, mounting one at /sys/fs/bpf if needed. */
export function ensureBpffs(dir: string): void {
  const onBpffs = (): boolean => bpffsMounts().some((mount) => dir === mount || dir.startsWith(`${mount}/`));
  if (onBpffs()) return;
  if (!dir.startsWith(`${BPFFS}/`)) throw new PreflightError(`pin directory ${dir} is not on a bpf filesystem`);
  const ret: number = native.mount('bpf', BPFFS, 'bpf', 0, null);
  if (ret !== 0 || !onBpffs()) {
    throw new PreflightError(
      `no bpf filesystem at ${BPFFS} and mounting one failed: ${errnoText(lastErrno())} (try: mount -t bpf bpf ${BPFFS})`,
    );
  }
}
