// Process start times come from the kernel as CLOCK_BOOTTIME ns; atop wants
// seconds since the epoch, computed as procps does from /proc/stat's btime.
import fs from 'node:fs';

export function bootEpochSeconds(): number {
  const stat = fs.readFileSync('/proc/stat', 'utf8');
  const btime = /^btime (\d+)$/m.exec(stat)?.[1];
  if (!btime) throw new Error('/proc/stat has no btime line');
  return Number(btime);
}

export function startEpochSeconds(bootEpoch: number, startNs: number): number {
  return bootEpoch + Math.floor(startNs / 1e9);
}

/** This boot's random id (what survives in bpffs survives only within one boot). */
export function bootId(): string {
  return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}
