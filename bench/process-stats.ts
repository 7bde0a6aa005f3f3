// What benchmarks read of a process they run: its CPU time and memory from
// /proc, and its output lines.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';

/** Nanoseconds all threads of `pid` have run (threads that ended are not counted), from /proc/PID/task/TID/schedstat. */
export function cpuNs(pid: number): number {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  }
  return total;
}

/**
 * Times the threads of `pid` were switched in (voluntary and involuntary
 * context switches, /proc/PID/task/TID/status): each wake-up is one.
 */
export function contextSwitches(pid: number): number {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    for (const match of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) total += Number(match[1]);
  }
  return total;
}

/** `pid`'s CPU (share of one core) and wake-ups per second over `ms` with nothing asking. */
export async function idleCost(pid: number, ms: number): Promise<string> {
  const switches = contextSwitches(pid);
  const cpu = await cpuShare(pid, () => sleep(ms));
  return `${cpu}, ${((contextSwitches(pid) - switches) / (ms / 1000)).toFixed(2)} wake-ups/s`;
}

export function rssMiB(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return kb / 1024;
}

/** `pid`'s CPU while `during` runs, as a share of one core. */
export async function cpuShare(pid: number, during: () => Promise<void>): Promise<string> {
  const before = cpuNs(pid);
  const started = performance.now();
  await during();
  const elapsedNs = (performance.now() - started) * 1e6;
  return `${(((cpuNs(pid) - before) / elapsedNs) * 100).toFixed(3)} % of a core`;
}

/** Resolves with the first line of `stream` that matches. */
export async function untilLine(child: ChildProcess, stream: NodeJS.ReadableStream, pattern: RegExp): Promise<string> {
  for await (const line of readline.createInterface({ input: stream })) if (pattern.test(line)) return line;
  throw new Error(`process ${child.pid} ended before printing ${pattern}`);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
