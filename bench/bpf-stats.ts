// The kernel's own run statistics of BPF programs (kernel.bpf_stats_enabled):
// total run time and run count per program, from its fd's fdinfo.
import fs from 'node:fs';

export const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

export function runStats(fd: number): { ns: number; count: number } {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s*(\\d+)$`, 'm').exec(info)?.[1] ?? NaN);
  return { ns: field('run_time_ns'), count: field('run_cnt') };
}
