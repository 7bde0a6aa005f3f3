// What serving the netatop module interface costs the host: the programs of
// bpf/netatop-sockopt.bpf.c see every getsockopt (the cgroup program) and
// every getsockopt's entry (fentry, else a kprobe, else the syscall
// tracepoint; any syscall tracepoint in use also sends every other system
// call through the kernel's tracing path). Measured on loops of
// unrelated getsockopt calls and of unrelated system calls (getppid), with
// nothing attached and with each hook, in rotated order; wall-clock ns per
// call (ratios: the machine is noisy) and the kernel's own run time per
// program call (kernel.bpf_stats_enabled, restored afterwards).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cgroup2Mount } from '../daemon/accounting/cgroup-names.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { BpfObject } from '../daemon/kernel/bpf-object.js';
import type { BpfLinkPtr } from '../daemon/kernel/libbpf.js';
import { STATS_SYSCTL, runStats } from './bpf-stats.js';
import { compileFixture } from './fixtures.js';

const ROUNDS = Number(process.env['ROUNDS'] ?? 5);
const CALLS = Number(process.env['CALLS'] ?? 1_000_000);

interface Setup {
  label: string;
  programs: string[];
}

/** The object with only its fentry program, or null (said) where this kernel refuses fentry. */
function tryLoadFentry(objectPath: string): BpfObject | null {
  try {
    return BpfObject.load(objectPath, { skipPrograms: ['netatop_request_kprobe', 'netatop_request_tp', 'netatop_answer'] });
  } catch (err) {
    console.log(`fentry: not measured here (${(err as Error).message.split('(see')[0]!.trim()})`);
    return null;
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench/getsockopt-cost needs root');
  const mount = cgroup2Mount();
  if (!mount) throw new Error('no cgroup2 mount');
  const kprobes = fs.existsSync('/sys/bus/event_source/devices/kprobe');
  const objectPath = path.join(packageRoot(), 'bpf', 'netatop-sockopt.bpf.o');
  const fentry = tryLoadFentry(objectPath);
  const object = BpfObject.load(objectPath, { skipPrograms: ['netatop_request_fentry', ...(kprobes ? [] : ['netatop_request_kprobe'])] });
  const setups: Setup[] = [
    { label: 'nothing attached', programs: [] },
    { label: 'answer program + syscall tracepoint', programs: ['netatop_answer', 'netatop_request_tp'] },
    { label: 'syscall tracepoint alone', programs: ['netatop_request_tp'] },
    ...(kprobes
      ? [
          { label: 'answer program + kprobe', programs: ['netatop_answer', 'netatop_request_kprobe'] },
          { label: 'kprobe alone', programs: ['netatop_request_kprobe'] },
        ]
      : []),
    ...(fentry ? [{ label: 'answer program + fentry (the first choice)', programs: ['netatop_answer', 'netatop_request_fentry'] }] : []),
  ];
  const query = compileFixture('netatop-query');
  const cgroupFd = fs.openSync(mount, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const previousStats = fs.readFileSync(STATS_SYSCTL, 'utf8').trim();
  const wall = new Map<string, { getsockopt: number[]; syscall: number[] }>(setups.map((s) => [s.label, { getsockopt: [], syscall: [] }]));
  const programNs = new Map<string, number[]>();
  const nsPerCall = (mode: string): number => Number(/ns-per-call ([\d.]+)/.exec(execFileSync(query, [mode, String(CALLS)], { encoding: 'utf8' }))![1]);
  try {
    for (let round = 0; round < ROUNDS * setups.length; round++) {
      const setup = setups[round % setups.length]!;
      const owner = (name: string): BpfObject => (name === 'netatop_request_fentry' ? fentry! : object);
      const links: Array<[BpfObject, BpfLinkPtr]> = setup.programs.map((name) => [
        owner(name),
        name === 'netatop_answer' ? object.attachCgroup(name, cgroupFd) : owner(name).attach(name),
      ]);
      // Wall-clock with the kernel's statistics off (they cost time per program run themselves).
      fs.writeFileSync(STATS_SYSCTL, '0');
      wall.get(setup.label)!.getsockopt.push(nsPerCall('loop'));
      wall.get(setup.label)!.syscall.push(nsPerCall('syscalls'));
      fs.writeFileSync(STATS_SYSCTL, '1');
      const before = setup.programs.map((name) => runStats(owner(name).programFd(name)));
      nsPerCall('loop');
      setup.programs.forEach((name, i) => {
        const after = runStats(owner(name).programFd(name));
        const key = `${name} (${setup.label})`;
        programNs.set(key, [...(programNs.get(key) ?? []), (after.ns - before[i]!.ns) / (after.count - before[i]!.count)]);
      });
      for (const [linkOwner, link] of links) linkOwner.detach(link);
    }
  } finally {
    fs.writeFileSync(STATS_SYSCTL, previousStats);
    fs.closeSync(cgroupFd);
    object.close();
    fentry?.close();
  }

  console.log(`getsockopt cost (kernel ${os.release()}, kprobes ${kprobes ? 'available' : 'not available'}, fentry ${fentry ? 'available' : 'refused'}): ${ROUNDS} rounds of ${CALLS} calls per loop, setups rotated`);
  console.log(`${'setup'.padEnd(48)} ${'getsockopt ns'.padStart(14)} ${'ratio'.padStart(6)} ${'getppid ns'.padStart(11)} ${'ratio'.padStart(6)}`);
  const base = wall.get('nothing attached')!;
  for (const [label, { getsockopt, syscall }] of wall) {
    console.log(
      `${label.padEnd(48)} ${median(getsockopt).toFixed(1).padStart(14)} ${(median(getsockopt) / median(base.getsockopt)).toFixed(2).padStart(6)} ` +
        `${median(syscall).toFixed(1).padStart(11)} ${(median(syscall) / median(base.syscall)).toFixed(2).padStart(6)}`,
    );
  }
  console.log('BPF run time per program call on the unrelated getsockopt loop (the common path; an empty program measures ~50 ns this way here), median ns:');
  for (const [key, values] of programNs) console.log(`  ${key.padEnd(80)} ${median(values).toFixed(1)}`);
}

main();
