// The kernel's own run statistics of BPF programs (kernel.bpf_stats_enabled):
// total run time and run count per program, from its fd's fdinfo.
import fs from 'node:fs';
import { native } from '../daemon/kernel/libbpf.js';

export const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

export function runStats(fd: number): { ns: number; count: number } {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s*(\\d+)$`, 'm').exec(info)?.[1] ?? NaN);
  return { ns: field('run_time_ns'), count: field('run_cnt') };
}

/** A loaded program's size: instructions after the verifier (dead code removed) and JIT-compiled bytes. */
export function programSize(fd: number): { instructions: number; jitedBytes: number } {
  const info = Buffer.alloc(256); // struct bpf_prog_info, first fields: type, id, tag[8], jited_prog_len, xlated_prog_len
  const length = Buffer.alloc(4);
  length.writeUInt32LE(info.length);
  const ret: number = native.objGetInfoByFd(fd, info, length);
  if (ret < 0) throw new Error(`bpf_obj_get_info_by_fd: ${-ret}`);
  return { instructions: info.readUInt32LE(20) / 8, jitedBytes: info.readUInt32LE(16) };
}
