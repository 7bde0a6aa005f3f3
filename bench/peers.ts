// Per-peer counting at its default capacity: the kernel memory of the peers
// maps (their fdinfo's memlock, peers off and on), and, with the peers map
// filled from user space (16,384 pairs of 64 fake processes), the time to
// read all of it (the minutely sweep) and one process's rows (a request, an
// exit), and the daemon's memory for rows it keeps (exited processes').
// The cost per event is bench/bpf-cost's (npm run bench:bpf).
import fs from 'node:fs';
import path from 'node:path';
import { KernelCounters } from '../daemon/kernel/kernel-counters.js';
import { COUNTERS_SIZE, PeerKey } from '../daemon/kernel/layout.js';
import { native } from '../daemon/kernel/libbpf.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { PeerTable } from '../daemon/accounting/peer-table.js';

const CAPACITY = 16384;
const REPEATS = 10;
/** Fake tgids above any pid_max (2^22): no real process matches them. */
const TGID_BASE = 1 << 22;

const memlock = (kernel: KernelCounters, map: string): number =>
  Number(/memlock:\s*(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${kernel.mapFd(map)}`, 'utf8'))![1]);
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

function open(peerCapacity: number): KernelCounters {
  const objectPath = path.join(packageRoot(), 'bpf', 'netacct.bpf.o');
  return KernelCounters.open({ objectPath, pinDir: null, slots: 32768, overflowCapacity: 16384, exitedCapacity: 32768, threadCapacity: 0, peerCapacity });
}

/** `n` pairs: 64 processes with n / 64 peers each, every counter set. */
function fill(kernel: KernelCounters, n: number): void {
  const fd = kernel.mapFd('peers');
  const key = Buffer.alloc(PeerKey.size);
  const value = Buffer.alloc(COUNTERS_SIZE);
  for (let i = 0; i < n; i++) {
    key.writeUInt32LE(TGID_BASE + (i % 64), PeerKey.tgid);
    key.writeBigUInt64LE(BigInt(1 + (i % 64)), PeerKey.startNs);
    key.writeUInt16LE(443, PeerKey.remotePort);
    key.fill(0, PeerKey.addr, PeerKey.addr + 10);
    key.writeUInt16BE(0xffff, PeerKey.addr + 10);
    key.writeUInt32BE(0x0a000000 + i, PeerKey.addr + 12); // 10.0.0.0/8
    for (let c = 0; c < 16; c++) value.writeBigUInt64LE(BigInt(i + c), c * 8);
    const ret: number = native.updateElem(fd, key, value, 0);
    if (ret < 0) throw new Error(`filling the peers map: ${-ret}`);
  }
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bench/peers needs root');
  const off = open(0);
  const offBytes = memlock(off, 'peers') + memlock(off, 'peer_overflow');
  off.close();
  const kernel = open(CAPACITY);
  try {
    console.log(`kernel memory of the peers maps: off ${mib(offBytes)}, on (${CAPACITY} pairs) ${mib(memlock(kernel, 'peers'))} + overflow rows ${mib(memlock(kernel, 'peer_overflow'))}`);
    fill(kernel, CAPACITY);
    const median = (run: () => void): number => {
      const times: number[] = [];
      for (let i = 0; i < REPEATS; i++) {
        const started = performance.now();
        run();
        times.push(performance.now() - started);
      }
      return [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
    };
    // A request for one process decodes only its rows; a full read runs when processes exit.
    let pairs = 0;
    const all = median(() => void (pairs = kernel.readPeers().length));
    const one = median(() => kernel.readPeers((tgid) => tgid === TGID_BASE));
    console.log(`read the peers maps (${pairs} pairs): all ${all.toFixed(1)} ms, one process's ${CAPACITY / 64} ${one.toFixed(1)} ms (medians of ${REPEATS})`);
    // Exited processes' rows are what the daemon keeps: all of them, here.
    const table = new PeerTable(65536);
    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    table.apply(kernel.readPeers(), () => true, () => true, true);
    global.gc?.();
    const heap = process.memoryUsage().heapUsed - heapBefore;
    console.log(`daemon memory for ${table.exitedRowTotal} rows of exited processes: heap +${mib(heap)} (${Math.round(heap / table.exitedRowTotal)} B per row)`);
  } finally {
    kernel.close();
  }
}

main();
