// BPF cost per event, side by side on the same events: netacct's programs, an
// empty program (tp_btf, netacct's attach type, and a classic tracepoint),
// and counting the way the original netatop-bpf does, all attached at once
// while a loopback TCP loop runs. The kernel's own statistics
// (kernel.bpf_stats_enabled, restored afterwards) give run time and run count
// per program. The first program on a tracepoint pays for cold caches, so
// every round rotates the attach order and the figures are means over rounds.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BpfObject } from '../daemon/kernel/bpf-object.js';
import { loadNetacctObject } from '../daemon/kernel/kernel-counters.js';
import type { BpfLinkPtr } from '../daemon/kernel/libbpf.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { compileFixture } from './fixtures.js';

const ROUNDS_PER_ORDER = Number(process.env['ROUNDS'] ?? 2);
const EXCHANGES = Number(process.env['EXCHANGES'] ?? 300_000);
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

interface Group {
  label: string;
  object: BpfObject;
  programs: string[];
}

function runStats(fd: number): { ns: number; count: number } {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s*(\\d+)$`, 'm').exec(info)?.[1] ?? NaN);
  return { ns: field('run_time_ns'), count: field('run_cnt') };
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench/bpf-cost needs root');
  const root = packageRoot();
  // NETACCT_OBJECT: measure a variant of netacct's programs (same program names).
  const objectPath = process.env['NETACCT_OBJECT'] ?? path.join(root, 'bpf', 'netacct.bpf.o');
  const sized = { pinDir: null, objectPath, slots: 32768, overflowCapacity: 16384, exitedCapacity: 32768 };
  const netacct = loadNetacctObject({ ...sized, threadCapacity: 0 });
  // The same programs with per-thread counting switched on (.rodata).
  const withThreads = loadNetacctObject({ ...sized, threadCapacity: 16384 });
  const baselines = BpfObject.load(path.join(root, 'bench', 'baselines.bpf.o'));
  // netacct's exit and cgroup programs run beside the hot path, as in the daemon.
  for (const object of [netacct, withThreads]) {
    object.attach('on_process_exit');
    object.attach('on_cgroup_attach');
  }
  const groups: Group[] = [
    { label: 'empty (tp_btf)', object: baselines, programs: ['empty_btf_send', 'empty_btf_recv'] },
    { label: 'empty (classic tracepoint)', object: baselines, programs: ['empty_tp_send', 'empty_tp_recv'] },
    { label: 'netacct', object: netacct, programs: ['on_send', 'on_recv'] },
    { label: 'netacct, per-thread counting on', object: withThreads, programs: ['on_send', 'on_recv'] },
    { label: 'original-style (per-CPU hash by tgid)', object: baselines, programs: ['original_send', 'original_recv'] },
  ];
  const traffic = compileFixture('traffic');
  const previousStats = fs.readFileSync(STATS_SYSCTL, 'utf8').trim();
  const perGroup = new Map<string, number[]>(groups.map((g) => [g.label, []]));
  try {
    fs.writeFileSync(STATS_SYSCTL, '1');
    for (let round = 0; round < groups.length * ROUNDS_PER_ORDER; round++) {
      const shift = round % groups.length;
      const order = [...groups.slice(shift), ...groups.slice(0, shift)];
      const links: Array<[BpfObject, BpfLinkPtr]> = [];
      for (const group of order) for (const name of group.programs) links.push([group.object, group.object.attach(name)]);
      const before = groups.map((g) => g.programs.map((p) => runStats(g.object.programFd(p))));
      execFileSync(traffic, ['loop', String(EXCHANGES)], { input: '' });
      groups.forEach((group, i) => {
        let ns = 0;
        let count = 0;
        group.programs.forEach((p, j) => {
          const after = runStats(group.object.programFd(p));
          ns += after.ns - before[i]![j]!.ns;
          count += after.count - before[i]![j]!.count;
        });
        perGroup.get(group.label)!.push(ns / count);
      });
      for (const [object, link] of links) object.detach(link);
    }
  } finally {
    fs.writeFileSync(STATS_SYSCTL, previousStats);
    netacct.close();
    withThreads.close();
    baselines.close();
  }

  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `BPF cost per event on sock_send_length + sock_recv_length: ${groups.length * ROUNDS_PER_ORDER} rounds of ` +
      `${EXCHANGES} TCP exchanges over 127.0.0.1 (${2 * EXCHANGES} events per program per round), attach order rotated`,
  );
  console.log(`${'program'.padEnd(42)} ${'mean ns'.padStart(8)} ${'min'.padStart(7)} ${'max'.padStart(7)}`);
  for (const [label, values] of perGroup) {
    console.log(
      `${label.padEnd(42)} ${mean(values).toFixed(1).padStart(8)} ${Math.min(...values).toFixed(1).padStart(7)} ${Math.max(...values).toFixed(1).padStart(7)}`,
    );
  }
  const cost = (label: string): number => mean(perGroup.get(label)!);
  const ours = cost('netacct');
  console.log(`netacct / empty (tp_btf):            ${(ours / cost('empty (tp_btf)')).toFixed(2)}`);
  console.log(`netacct / empty (classic tracepoint): ${(ours / cost('empty (classic tracepoint)')).toFixed(2)}`);
  console.log(`netacct / original-style:             ${(ours / cost('original-style (per-CPU hash by tgid)')).toFixed(2)}`);
  const threads = cost('netacct, per-thread counting on');
  console.log(`per-thread counting on / off:         ${(threads / ours).toFixed(2)} (+${(threads - ours).toFixed(1)} ns per event)`);
}

main();
