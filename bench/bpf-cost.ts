// BPF cost per event, side by side on the same events: netacct's programs, an
// empty program (tp_btf, netacct's attach type, and a classic tracepoint),
// and counting the way the original netatop-bpf does, all attached at once
// while a loopback TCP loop runs. The kernel's own statistics
// (kernel.bpf_stats_enabled, restored afterwards) give run time and run count
// per program. The first program on a tracepoint pays for cold caches, so
// every round rotates the attach order and the figures are means over rounds.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BpfObject } from '../daemon/kernel/bpf-object.js';
import { loadNetacctObject } from '../daemon/kernel/kernel-counters.js';
import { probeKernel } from '../daemon/kernel/attach-mode.js';
import type { BpfLinkPtr } from '../daemon/kernel/libbpf.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { STATS_SYSCTL, programSize, runStats } from './bpf-stats.js';
import { compileFixture } from './fixtures.js';

const ROUNDS_PER_ORDER = Number(process.env['ROUNDS'] ?? 2);
const EXCHANGES = Number(process.env['EXCHANGES'] ?? 300_000);

interface Group {
  label: string;
  object: BpfObject;
  programs: string[];
}

/** The object, or null (said) where this kernel refuses it. */
function tryLoad(what: string, load: () => BpfObject): BpfObject | null {
  try {
    return load();
  } catch (err) {
    console.log(`${what}: not measured here (${(err as Error).message.split('(see')[0]!.trim()}); inside a guest: test/vm/kernel.sh run trixie -- npm run bench:bpf`);
    return null;
  }
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench/bpf-cost needs root');
  const root = packageRoot();
  // NETACCT_OBJECT: measure a variant of netacct's programs (same program names).
  const objectPath = process.env['NETACCT_OBJECT'] ?? path.join(root, 'bpf', 'netacct.bpf.o');
  const sized = { pinDir: null, objectPath, slots: 32768, overflowCapacity: 16384, exitedCapacity: 32768 };
  const { tracepoints } = probeKernel();
  // Each mode where this kernel has it: fexit cannot load on some hosts (EPERM in this project's
  // sandbox), the tracepoints are missing before 6.3. Run it inside a guest for both:
  // test/vm/kernel.sh run trixie -- npm run bench:bpf
  const fexit = tryLoad('fexit', () => loadNetacctObject({ ...sized, threadCapacity: 0, attachMode: 'fexit' }));
  const baselinePath = path.join(root, 'bench', 'baselines.bpf.o');
  const tracepointBaselines = ['empty_btf_send', 'empty_btf_recv', 'empty_tp_send', 'empty_tp_recv', 'original_send', 'original_recv'];
  const fexitBaselines = ['empty_fexit_send', 'empty_fexit_recv'];
  const baselines = BpfObject.load(baselinePath, {
    skipPrograms: [...(tracepoints ? [] : tracepointBaselines), ...(fexit ? [] : fexitBaselines)],
  });
  const objects: BpfObject[] = [baselines];
  const groups: Group[] = [];
  if (tracepoints) {
    const netacct = loadNetacctObject({ ...sized, threadCapacity: 0, attachMode: 'tracepoint' });
    // The same programs with per-thread counting switched on (.rodata).
    const withThreads = loadNetacctObject({ ...sized, threadCapacity: 16384, attachMode: 'tracepoint' });
    // And with per-peer counting switched on, at the default capacity.
    const withPeers = loadNetacctObject({ ...sized, threadCapacity: 0, peerCapacity: 16384, attachMode: 'tracepoint' });
    objects.push(netacct, withThreads, withPeers);
    groups.push(
      { label: 'empty (tp_btf)', object: baselines, programs: ['empty_btf_send', 'empty_btf_recv'] },
      { label: 'empty (classic tracepoint)', object: baselines, programs: ['empty_tp_send', 'empty_tp_recv'] },
      { label: 'netacct', object: netacct, programs: ['on_send', 'on_recv'] },
      { label: 'netacct, per-thread counting on', object: withThreads, programs: ['on_send', 'on_recv'] },
      { label: 'netacct, per-peer counting on', object: withPeers, programs: ['on_send', 'on_recv'] },
      { label: 'original-style (per-CPU hash by tgid)', object: baselines, programs: ['original_send', 'original_recv'] },
    );
  }
  if (fexit) {
    const fexitPeers = loadNetacctObject({ ...sized, threadCapacity: 0, peerCapacity: 16384, attachMode: 'fexit' });
    objects.push(fexit, fexitPeers);
    groups.push(
      { label: 'empty (fexit)', object: baselines, programs: ['empty_fexit_send', 'empty_fexit_recv'] },
      { label: 'netacct, fexit fallback', object: fexit, programs: ['on_inet_send', 'on_inet_recv'] },
      { label: 'netacct, fexit fallback, per-peer counting on', object: fexitPeers, programs: ['on_inet_send', 'on_inet_recv'] },
    );
  }
  // netacct's exit and cgroup programs run beside the hot path, as in the daemon.
  for (const object of objects.slice(1)) {
    object.attach('on_process_exit');
    object.attach('on_cgroup_attach');
  }
  // Each send program's instructions after the verifier: what a setting switched off leaves.
  const sizes = new Map(groups.map((g) => [g.label, programSize(g.object.programFd(g.programs[0]!))]));
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
    for (const object of objects) object.close();
  }

  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `BPF cost per event (kernel ${os.release()}): ${groups.length * ROUNDS_PER_ORDER} rounds of ` +
      `${EXCHANGES} TCP exchanges over 127.0.0.1 (${2 * EXCHANGES} events per program per round), attach order rotated`,
  );
  console.log(`${'program'.padEnd(48)} ${'mean ns'.padStart(8)} ${'min'.padStart(7)} ${'max'.padStart(7)} ${'insns'.padStart(6)}`);
  for (const [label, values] of perGroup) {
    const { instructions } = sizes.get(label)!;
    console.log(
      `${label.padEnd(48)} ${mean(values).toFixed(1).padStart(8)} ${Math.min(...values).toFixed(1).padStart(7)} ${Math.max(...values).toFixed(1).padStart(7)} ${String(instructions).padStart(6)}`,
    );
  }
  const cost = (label: string): number => mean(perGroup.get(label)!);
  if (fexit) {
    const fallback = cost('netacct, fexit fallback');
    console.log(`fexit fallback / empty (fexit):      ${(fallback / cost('empty (fexit)')).toFixed(2)}`);
    if (tracepoints) console.log(`fexit fallback / tracepoint netacct: ${(fallback / cost('netacct')).toFixed(2)} (same events)`);
    const peers = cost('netacct, fexit fallback, per-peer counting on');
    console.log(`fexit, per-peer counting on / off:   ${(peers / fallback).toFixed(2)} (+${(peers - fallback).toFixed(1)} ns per event)`);
  }
  if (!tracepoints) return;
  const ours = cost('netacct');
  console.log(`netacct / empty (tp_btf):            ${(ours / cost('empty (tp_btf)')).toFixed(2)}`);
  console.log(`netacct / empty (classic tracepoint): ${(ours / cost('empty (classic tracepoint)')).toFixed(2)}`);
  console.log(`netacct / original-style:             ${(ours / cost('original-style (per-CPU hash by tgid)')).toFixed(2)}`);
  const threads = cost('netacct, per-thread counting on');
  console.log(`per-thread counting on / off:         ${(threads / ours).toFixed(2)} (+${(threads - ours).toFixed(1)} ns per event)`);
  const peers = cost('netacct, per-peer counting on');
  console.log(`per-peer counting on / off:           ${(peers / ours).toFixed(2)} (+${(peers - ours).toFixed(1)} ns per event)`);
}

main();
