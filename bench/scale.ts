// How the daemon scales with the number of processes it accounts for: up to
// 20,000, N real processes that each sent a datagram (test/fixtures/traffic.c
// spawn); beyond, as pid_max allows no more here, the maps are filled from
// user space with N processes in slots (not listed by the task iterator, so
// the daemon retires them as exited unseen after two reads). It measures
//  - the atop answer time, as the server builds it (kernel read + encoding)
//    and as atop-client.c sees it (request to terminator): the first answer,
//    then, after 10 more, the median and 90th percentile of 15;
//  - the process's RSS with N processes in the table;
//  - the time to read N slots (in place) and, after adding N overflow
//    entries (colliding processes), to read those in batches;
// and prints the kernel memory of the maps for 2, 64 and 256 CPUs.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import readline from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { atopAnswerBuilder } from '../daemon/serve/atop-answers.js';
import { bootEpochSeconds } from '../daemon/kernel/boot-time.js';
import { Heartbeat } from '../daemon/common/heartbeat.js';
import { Collector } from '../daemon/accounting/collector.js';
import { KernelCounters } from '../daemon/kernel/kernel-counters.js';
import { COUNTERS_SIZE, OWNER_SIZE, PartKey, ProcId, ProcInfo, STATS, Slot, SlotState } from '../daemon/kernel/layout.js';
import { native } from '../daemon/kernel/libbpf.js';
import type { Logger } from '../daemon/common/log.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { ProcessTable } from '../daemon/accounting/process-table.js';
import { TimeBudgets } from '../protocol/time-budget.js';
import { NetatopServer } from '../protocol/netatop-server.js';
import { compileFixture } from './fixtures.js';

const SIZES = (process.env['SIZES'] ?? '1000,10000,100000').split(',').map(Number);
/** Answers before measuring: the daemon answers every few seconds for days, so JIT-compiled code is its normal state. */
const WARMUP = 10;
const REPEATS = 15;
/** Fake tgids above any pid_max (2^22), so that no real process matches them. */
const TGID_BASE = 1 << 22;
const quiet: Logger = { error: (m) => console.error(m), warn: (m) => console.error(m), info() {}, debug() {} };

const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)]!;
const median = (xs: number[]): number => percentile(xs, 0.5);
const ms = (x: number): string => `${x.toFixed(2)} ms`;

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}

function fillSlots(kernel: KernelCounters, slots: number, n: number): void {
  const ownersFd = kernel.mapFd('owners');
  const slotsFd = kernel.mapFd('slots');
  const key = Buffer.alloc(4);
  const owner = Buffer.alloc(OWNER_SIZE);
  const slot = Buffer.alloc(Slot.size);
  for (let i = 0; i < n; i++) {
    const tgid = TGID_BASE + i;
    key.writeUInt32LE(tgid & (slots - 1));
    slot.writeUInt32LE(tgid, Slot.tgid);
    slot.writeBigUInt64LE(BigInt(i + 1), Slot.startNs);
    slot.writeBigUInt64LE(1n, Slot.cgroupId);
    for (let c = 0; c < 16; c++) slot.writeBigUInt64LE(BigInt(i * 16 + c), Slot.counters + c * 8);
    native.updateElem(slotsFd, key, slot, 0);
    owner.writeUInt32LE(tgid, 0);
    owner.writeUInt32LE(SlotState.active, 4);
    native.updateElem(ownersFd, key, owner, 0);
  }
}

function fillOverflow(kernel: KernelCounters, n: number): void {
  const overflowFd = kernel.mapFd('overflow');
  const partKey = Buffer.alloc(PartKey.size);
  const part = Buffer.alloc(COUNTERS_SIZE);
  for (let i = 0; i < n; i++) {
    partKey.writeUInt32LE(TGID_BASE + i, PartKey.tgid);
    partKey.writeBigUInt64LE(BigInt(i + 1), PartKey.startNs);
    partKey.writeBigUInt64LE(2n, PartKey.cgroupId);
    if (native.updateElem(overflowFd, partKey, part, 0) < 0) throw new Error('filling the overflow map failed');
  }
}

/** N real processes that each sent one UDP datagram; they exit when stdin closes. */
async function spawnProcesses(n: number): Promise<ChildProcess> {
  const child = spawn(compileFixture('traffic'), ['spawn', String(n)], { stdio: ['pipe', 'pipe', 'inherit'] });
  for await (const line of readline.createInterface({ input: child.stdout! })) if (line === 'ready') break;
  return child;
}

function time<T>(fn: () => T): [T, number] {
  const started = performance.now();
  const result = fn();
  return [result, performance.now() - started];
}

async function measure(n: number, client: string): Promise<void> {
  const slots = Math.max(32768, nextPowerOfTwo(n * 2));
  const rssBefore = process.memoryUsage().rss;
  const kernel = KernelCounters.open({
    pinDir: null,
    objectPath: path.join(packageRoot(), 'bpf', 'netacct.bpf.o'),
    slots,
    overflowCapacity: n + 1024,
    exitedCapacity: 1024,
    threadCapacity: 0,
  });
  const socketPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-scale-')), 'atop');
  const real = n <= 20_000;
  const processes = real ? await spawnProcesses(n) : null;
  try {
    if (!real) fillSlots(kernel, slots, n);
    const [slotCount, slotsMs] = time(() => {
      let count = 0;
      kernel.visitSlots(() => count++);
      return count;
    });

    const table = new ProcessTable({ exitedRetentionMs: 60_000, maxExited: 1_000_000, slotSettleMs: 10, rateIntervalMs: 1000 });
    const collector = new Collector(kernel, table, { liveInfoIntervalMs: 10_000 }, quiet);
    const build = atopAnswerBuilder(table, collector, bootEpochSeconds());
    const serverTimes: number[] = [];
    const server = new NetatopServer({
      socketPath,
      mode: 0o600,
      answer: (seq, at, visibility) => {
        const [answer, took] = time(() => build(seq, at, visibility));
        serverTimes.push(took);
        return answer;
      },
      allProcessesGroup: null,
      onAnswered: () => {},
      log: quiet,
      maxPendingRequests: 16,
      answerTimeoutMs: 30_000,
      maxAnswersInFlight: 32,
      limits: { total: 1024, perUser: 32, reservedForRoot: 64 },
      budgets: new TimeBudgets({ msPerSecond: 250, burstMs: 2000 }), // the bench's client is root: never charged
      ticker: new Heartbeat(1000, 1000, (err) => console.error(err)),
      firstRequestTimeoutMs: 10_000,
      idleTimeoutMs: 3_600_000,
      maxAnswersInFlightPerUser: 4,
    });
    await server.listen();
    const clientTimes: number[] = [];
    for (let r = 0; r < WARMUP + REPEATS; r++) {
      const out = await new Promise<string>((resolve, reject) => {
        // Asynchronous: this process serves the request while the client waits.
        execFile(client, [socketPath], { maxBuffer: 1 << 30 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
      });
      const [, records, shorts, micros] = /^records (\d+) short (\d+) micros (\d+)/.exec(out)!;
      if (Number(records) < n || Number(shorts) !== 0) throw new Error(`bad answer: ${records} records, ${shorts} short`);
      clientTimes.push(Number(micros) / 1000);
    }
    const first = serverTimes[0]!;
    serverTimes.splice(0, WARMUP);
    clientTimes.splice(0, WARMUP);
    const rss = process.memoryUsage().rss;
    await server.close(1000);
    fillOverflow(kernel, n);
    const [overflowSamples, overflowMs] = time(() => kernel.readOverflow());
    console.log(
      `${String(n).padStart(7)} ${real ? 'real' : 'synthetic'} processes: answer server ${ms(median(serverTimes))}` +
        ` (p90 ${ms(percentile(serverTimes, 0.9))}), client ${ms(median(clientTimes))} (p90 ${ms(percentile(clientTimes, 0.9))});` +
        ` first answer: server ${ms(first)}; read ${slotCount} slots ${ms(slotsMs)},` +
        ` ${overflowSamples.length} overflow entries ${ms(overflowMs)}; RSS ${(rss / 2 ** 20).toFixed(1)} MiB` +
        ` (${((rss - rssBefore) / 2 ** 20).toFixed(1)} MiB more than before loading)`,
    );
  } finally {
    processes?.stdin!.end();
    kernel.close();
  }
}

/**
 * Kernel memory of netacct's maps, from their definitions and the kernel's
 * layouts (6.x): an array is max_entries values rounded to 8 bytes; a
 * preallocated hash holds max_entries + one spare per CPU elements of
 * struct htab_elem (48 bytes) + key + value, and a bucket (16 bytes) per
 * entry rounded up to a power of two; a per-CPU array holds a value per CPU.
 */
function kernelMemoryBytes(cpus: number, slots: number, overflow: number, exited: number): number {
  const round8 = (x: number): number => Math.ceil(x / 8) * 8;
  const hash = (entries: number, key: number, value: number): number =>
    (entries + cpus) * (48 + round8(key) + round8(value)) + nextPowerOfTwo(entries) * 16;
  return (
    slots * round8(OWNER_SIZE) +
    slots * round8(Slot.size) +
    hash(overflow, PartKey.size, COUNTERS_SIZE) +
    hash(exited, ProcId.size, ProcInfo.size) +
    STATS * 8 * cpus
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/scale needs root');
  const client = compileFixture('atop-client');
  for (const n of SIZES) await measure(n, client);

  const defaults = { slots: 32768, overflow: 16384, exited: 32768 };
  console.log(`kernel memory of the maps at the default capacity (slots ${defaults.slots}, overflow ${defaults.overflow}, exited ${defaults.exited}):`);
  for (const cpus of [2, 64, 256]) {
    const bytes = kernelMemoryBytes(cpus, defaults.slots, defaults.overflow, defaults.exited);
    console.log(`  ${String(cpus).padStart(3)} CPUs: ${(bytes / 2 ** 20).toFixed(1)} MiB`);
  }
  // The kernel's own accounting on this machine, to check the formula.
  const kernel = KernelCounters.open({
    pinDir: null,
    objectPath: path.join(packageRoot(), 'bpf', 'netacct.bpf.o'),
    slots: defaults.slots,
    overflowCapacity: defaults.overflow,
    exitedCapacity: defaults.exited,
    threadCapacity: 0,
  });
  let memlock = 0;
  for (const name of ['owners', 'slots', 'overflow', 'exited', 'stats']) {
    const info = fs.readFileSync(`/proc/self/fdinfo/${kernel.mapFd(name)}`, 'utf8');
    memlock += Number(/^memlock:\s*(\d+)$/m.exec(info)?.[1] ?? 0);
  }
  kernel.close();
  console.log(`  this machine (${os.cpus().length} CPUs), the kernel's memlock for the same maps: ${(memlock / 2 ** 20).toFixed(1)} MiB`);
}

await main();
