// What a user who churns processes costs everyone else, with the real daemon:
// 1. The churn rate at which per-process detail starts to degrade: nobody
//    forks processes that each send one datagram of 10 bytes, at rising
//    rates; printed, the share of their calls counted in their process's own
//    row (the rest in nobody's (uid, cgroup) row: the sums stay exact) and the
//    calls lost (always 0).
// 2. Exits held by a user's idle atop client: nobody's client asks once and
//    idles while nobody churns 100,000 processes; printed, the daemon's CPU
//    and RSS while quiet, then while nobody connects to the atop socket and
//    closes 50 times a second, and how long root's atop (one connection,
//    asking every 250 ms) waits for its answers meanwhile (its first answer
//    apart: it carries every exit root may see and was not served yet).
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../daemon/common/package-root.js';
import { compileFixture } from './fixtures.js';
import { cpuShare, rssMiB, sleep, untilLine } from './process-stats.js';

const HELD_PROCESSES = Number(process.env['HELD_PROCESSES'] ?? 100_000);
const RATES = (process.env['RATES'] ?? '1000,2000,5000,0').split(',').map(Number); // 0: as fast as fork goes
const PER_RATE = Number(process.env['PROCESSES_PER_RATE'] ?? 20_000);
const ATTACKER = fs.readFileSync(path.join(packageRoot(), 'test', 'fixtures', 'attacker.mjs'), 'utf8');

const asNobody = (command: string, ...args: string[]): ChildProcess =>
  spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', command, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });

async function stats(apiSocket: string): Promise<{ unattributed: number; lost: number }> {
  const body = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(apiSocket, () => socket.write('GET /v1/stats HTTP/1.0\r\n\r\n'));
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => resolve(text.slice(text.indexOf('\r\n\r\n') + 4)));
    socket.on('error', reject);
  });
  return (JSON.parse(body) as { kernel: { unattributed: number; lost: number } }).kernel;
}

/** Root's atop: one connection asking every 250 ms; resolves with each answer's wait, ms. */
async function rootAtop(socketPath: string, until: () => boolean): Promise<number[]> {
  const socket = net.connect(socketPath);
  await new Promise((resolve) => socket.once('connect', resolve));
  const waits: number[] = [];
  let buffered = Buffer.alloc(0);
  let answered = (): void => {};
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (let at = 0; at + 96 <= buffered.length; at += 96) {
      if (buffered.readInt32LE(at) !== 0) continue;
      buffered = buffered.subarray(at + 96);
      at = -96;
      answered();
    }
  });
  while (!until()) {
    const asked = performance.now();
    await new Promise<void>((resolve) => {
      answered = resolve;
      socket.write(Buffer.alloc(96));
    });
    waits.push(performance.now() - asked);
    await sleep(250);
  }
  socket.destroy();
  return waits;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/churn needs root');
  const traffic = compileFixture('traffic');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-churn-'));
  fs.chmodSync(dir, 0o755);
  const atopSocket = path.join(dir, 'atop');
  const apiSocket = path.join(dir, 'api');
  const pinDir = `/sys/fs/bpf/netacct-bench-${process.pid}`;
  const daemon = spawn(path.join(packageRoot(), 'bin', 'netacct.js'), ['daemon', '--atop-socket', atopSocket, '--api-socket', apiSocket, '--pin-dir', pinDir, '--no-netatop-module'], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const children: ChildProcess[] = [];
  try {
    await new Promise<void>((resolve) => daemon.stderr!.on('data', (chunk: Buffer) => /serving atop on/.test(chunk.toString()) && resolve()));
    const pid = daemon.pid!;

    console.log(`1. nobody's processes, one datagram of 10 bytes each, ${PER_RATE} per rate (2-vCPU machine):`);
    for (const rate of RATES) {
      const before = await stats(apiSocket);
      const started = performance.now();
      const churn = asNobody(traffic, 'churn', String(PER_RATE), String(rate));
      await untilLine(churn, churn.stdout!, /^ready$/);
      const seconds = (performance.now() - started) / 1000;
      churn.stdin!.end();
      await sleep(2000);
      const after = await stats(apiSocket);
      const unattributed = after.unattributed - before.unattributed;
      console.log(
        `   ${rate > 0 ? `${rate}/s asked` : 'as fast as fork goes'}: ${(PER_RATE / seconds).toFixed(0)}/s made; ` +
          `${(((PER_RATE - unattributed) / PER_RATE) * 100).toFixed(1)} % of their calls in their own process's row, ${unattributed} in nobody's (uid, cgroup) row; lost ${after.lost - before.lost}`,
      );
    }

    const holder = asNobody(process.execPath, '--input-type=module', '-e', ATTACKER, 'hold-atop', atopSocket);
    children.push(holder);
    await untilLine(holder, holder.stdout!, /answered/);
    const churn = asNobody(traffic, 'churn', String(HELD_PROCESSES));
    await untilLine(churn, churn.stdout!, /^ready$/);
    churn.stdin!.end();
    console.log(`2. ${HELD_PROCESSES} exits of nobody held by its idle atop client:`);
    console.log(`   daemon, the 30 s after the churn (reading and settling the exits): ${await cpuShare(pid, () => sleep(30_000))}`);
    console.log(`   daemon quiet, 10 s: ${await cpuShare(pid, () => sleep(10_000))}, RSS ${rssMiB(pid).toFixed(0)} MiB`);
    let flapping = true;
    let waits: number[] = [];
    const cpu = await cpuShare(pid, async () => {
      const flapper = asNobody(process.execPath, '--input-type=module', '-e', ATTACKER, 'flap', atopSocket, '50', '10');
      children.push(flapper);
      const done = untilLine(flapper, flapper.stdout!, /connections/).then(() => (flapping = false));
      waits = await rootAtop(atopSocket, () => !flapping);
      await done;
    });
    // Its first answer carries every exit it may see and was not served: nobody's 100,000 too.
    const first = waits.shift()!;
    waits.sort((a, b) => a - b);
    console.log(
      `   nobody connecting and closing 50 times a second, 10 s: daemon ${cpu}; root's atop waited median ${waits[Math.floor(waits.length / 2)]!.toFixed(1)} ms, ` +
        `max ${waits.at(-1)!.toFixed(1)} ms (${waits.length} answers after its first, which carried every held exit: ${first.toFixed(0)} ms)`,
    );
  } finally {
    for (const child of children) child.kill('SIGKILL');
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    fs.rmSync(pinDir, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
