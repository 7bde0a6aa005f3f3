// A soak: the real daemon under the mix of hostile and ordinary load a
// shared host puts on it, for SOAK_MINUTES (default 10): processes that
// churn, nobody's idle connections by the thousand on both sockets (renewed
// every 30 s), nobody's WebSocket streams that never read, a Prometheus
// scrape every second. Every 30 s it prints the daemon's RSS and file
// descriptors and how long root's atop and API requests took.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../daemon/common/package-root.js';
import { compileFixture } from './fixtures.js';

const MINUTES = Number(process.env['SOAK_MINUTES'] ?? 10);
const REPORT_EVERY_MS = 30_000;
const ATTACKER = fs.readFileSync(path.join(packageRoot(), 'test', 'fixtures', 'attacker.mjs'), 'utf8');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function asNobody(command: string, args: string[]): ChildProcess {
  return spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', command, ...args], { stdio: ['pipe', 'ignore', 'ignore'] });
}

function attacker(...args: string[]): ChildProcess {
  return asNobody(process.execPath, ['--input-type=module', '-e', ATTACKER, ...args]);
}

/** ms for one whole atop answer (up to the terminator). */
function atopRequest(socketPath: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath, () => socket.write(Buffer.alloc(96)));
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      const whole = pending.length - (pending.length % 96);
      if (whole >= 96 && pending.readInt32LE(whole - 96) === 0) {
        // the terminator (id 0) ends the answer
        socket.destroy();
        resolve(performance.now() - started);
      }
    });
    socket.once('error', reject);
  });
}

/** ms for one API answer. */
function apiRequest(socketPath: string, requestPath: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: requestPath, agent: false }, (res) => {
        res.resume();
        res.once('end', () => resolve(performance.now() - started));
      })
      .once('error', reject);
  });
}

function apiJson(socketPath: string, requestPath: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: requestPath, agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.once('end', () => resolve(JSON.parse(text)));
      })
      .once('error', reject);
  });
}

function daemonFigures(pid: number): { rssMiB: number; fds: number } {
  const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return { rssMiB: kb / 1024, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/soak needs root');
  const traffic = compileFixture('traffic');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-soak-'));
  fs.chmodSync(dir, 0o755);
  const atopSocket = path.join(dir, 'atop');
  const apiSocket = path.join(dir, 'api');
  const pinDir = `/sys/fs/bpf/netacct-bench-${process.pid}`;
  // Its log goes to a file: a pipe nobody reads would block it once full.
  const logPath = path.join(dir, 'daemon.log');
  const log = fs.openSync(logPath, 'w');
  const daemon = spawn(path.join(packageRoot(), 'bin', 'netacct.js'), ['daemon', '--atop-socket', atopSocket, '--api-socket', apiSocket, '--pin-dir', pinDir], {
    stdio: ['ignore', 'ignore', log],
  });
  const children: ChildProcess[] = [];
  let stopping = false;
  try {
    while (!/serving atop on/.test(fs.readFileSync(logPath, 'utf8'))) {
      if (daemon.exitCode !== null) throw new Error(`the daemon exited: ${fs.readFileSync(logPath, 'utf8')}`);
      await sleep(100);
    }
    // nobody's processes, so that its streams carry real payloads (~1.5 MB an update).
    const nobodys = asNobody(traffic, ['spawn', '1000']);
    children.push(nobodys);
    await sleep(3000);
    const churn = (async () => {
      while (!stopping) {
        const burst = spawn(traffic, ['burst', '2000'], { stdio: ['ignore', 'ignore', 'ignore'] });
        await new Promise((resolve) => burst.once('exit', resolve));
        await sleep(5000);
      }
    })();
    const scrapes = (async () => {
      while (!stopping) {
        await apiRequest(apiSocket, '/metrics').catch(() => 0);
        await sleep(1000);
      }
    })();
    const started = performance.now();
    let attackers: ChildProcess[] = [];
    console.log(`soak: ${MINUTES} min; churn 2,000 processes every ~6 s, nobody's idle connections (3,000 atop + 3,000 API) and 40 streams that never read renewed every 30 s, /metrics every 1 s`);
    console.log('   min  RSS MiB  fds  atop ms  API ms  live  exited  overflow  (atop and API: root, median of 5)');
    while (performance.now() - started < MINUTES * 60_000) {
      for (const old of attackers) old.kill('SIGKILL');
      attackers = [attacker('hold', atopSocket, '3000'), attacker('hold', apiSocket, '3000'), attacker('streams', apiSocket, '40', '250')];
      await sleep(REPORT_EVERY_MS);
      const atop: number[] = [];
      const api: number[] = [];
      for (let i = 0; i < 5; i++) {
        atop.push(await atopRequest(atopSocket));
        api.push(await apiRequest(apiSocket, '/v1/processes?sort=total.bytes&order=desc&limit=10'));
      }
      const median = (values: number[]): string => values.sort((a, b) => a - b)[2]!.toFixed(1);
      const { rssMiB, fds } = daemonFigures(daemon.pid!);
      const stats = (await apiJson(apiSocket, '/v1/stats')) as { processes: { live: number; exited: number }; maps: { overflow: { entries: number } } };
      const { live, exited } = stats.processes;
      const minutes = ((performance.now() - started) / 60_000).toFixed(1);
      console.log(
        `${minutes.padStart(6)}  ${rssMiB.toFixed(1).padStart(7)}  ${String(fds).padStart(3)}  ${median(atop).padStart(7)}  ${median(api).padStart(6)}  ${String(live).padStart(4)}  ${String(exited).padStart(6)}  ${String(stats.maps.overflow.entries).padStart(8)}`,
      );
    }
    for (const old of attackers) old.kill('SIGKILL');
    stopping = true;
    await Promise.all([churn, scrapes]);
    const lines = fs.readFileSync(logPath, 'utf8').split('\n').length;
    console.log(`daemon still running: ${daemon.exitCode === null}; its log: ${lines} lines in ${MINUTES} min`);
  } finally {
    stopping = true;
    // The spawn scenario ends its children and itself when its stdin closes.
    await Promise.all(children.map((child) => new Promise((resolve) => (child.once('exit', resolve), child.stdin!.end()))));
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    fs.closeSync(log);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(`soak: ${err.message}`);
  process.exit(1);
});
