// The real daemon's own cost: CPU (share of one core: nanoseconds on CPU of all
// its threads, from /proc/PID/task/*/schedstat)
// over a minute idle, over a minute while processes make about 100,000
// socket events per second, and the same with an atop-like client asking
// every second; RSS idle and with 10,000 real processes in its table.
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { cpuShare, idleCost, rssMiB, sleep, untilLine } from './process-stats.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { compileFixture } from './fixtures.js';

const SECONDS = Number(process.env['SECONDS_PER_PHASE'] ?? 60);
const EVENTS_PER_SECOND = 100_000;
async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/daemon-resources needs root');
  const traffic = compileFixture('traffic');
  const client = compileFixture('atop-client');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-resources-'));
  const socketPath = path.join(dir, 'atop');
  // Maps and sockets of its own: never the defaults, never an earlier run's pinned maps.
  const pinDir = `/sys/fs/bpf/netacct-bench-${process.pid}`;
  // The netatop module interface too (on by default), with a semaphore and exit file of its own.
  const semaphoreKey = 0x4e410000 + (process.pid & 0xffff);
  const netatop = ['--netatop-exit-file', path.join(dir, 'netatop.log'), '--netatop-semaphore-key', String(semaphoreKey)];
  const daemon = spawn(
    path.join(packageRoot(), 'bin', 'netacct.js'),
    ['daemon', '--atop-socket', socketPath, '--api-socket', path.join(dir, 'api'), '--pin-dir', pinDir, ...netatop],
    { stdio: ['ignore', 'inherit', 'pipe'] },
  );
  try {
    await untilLine(daemon, daemon.stderr!, /serving atop on/);
    const pid = daemon.pid!;
    await sleep(60_000); // past start-up: JIT compilation, the first collections, V8's memory reducer (its collections run for about a minute)
    console.log(`daemon RSS idle: ${rssMiB(pid).toFixed(1)} MiB`);
    console.log(`daemon idle, ${SECONDS} s: ${await idleCost(pid, SECONDS * 1000)}`);

    const load = async (withClient: boolean): Promise<void> => {
      const generator = spawn(traffic, ['rate', String(EVENTS_PER_SECOND), String(SECONDS)], { stdio: ['pipe', 'pipe', 'inherit'] });
      const done = untilLine(generator, generator.stdout!, /^ready$/);
      let asking = withClient;
      const asker = (async () => {
        while (asking) {
          await promisify(execFile)(client, [socketPath], { maxBuffer: 1 << 28 });
          await sleep(1000);
        }
      })();
      await done;
      asking = false;
      await asker;
      generator.stdin!.end();
    };
    console.log(`daemon CPU at ${EVENTS_PER_SECOND} events/s, ${SECONDS} s: ${await cpuShare(pid, () => load(false))}`);
    console.log(`daemon CPU at ${EVENTS_PER_SECOND} events/s with an atop client every second, ${SECONDS} s: ${await cpuShare(pid, () => load(true))}`);

    const spawner = spawn(traffic, ['spawn', '10000'], { stdio: ['pipe', 'pipe', 'inherit'] });
    await untilLine(spawner, spawner.stdout!, /^ready$/);
    await promisify(execFile)(client, [socketPath], { maxBuffer: 1 << 28 });
    await sleep(1000);
    console.log(`daemon RSS with 10,000 processes in its table: ${rssMiB(pid).toFixed(1)} MiB`);
    spawner.stdin!.end();
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    fs.rmSync(pinDir, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
    spawnSync('ipcrm', ['-S', String(semaphoreKey)]); // the set outlives its daemon (as netatopd's does)
  }
}

await main();
