// What one user's cgroups cost everyone else's answers, with the real daemon
// (issue 21's measurement): nobody is given a cgroup subtree, as systemd
// gives each logged-in user, fills it with 10,000 empty cgroups, then makes
// cgroups one after another, sends one datagram from each and removes it.
// Meanwhile root asks /v1/processes?limit=5 twice a second (each listing
// names the cgroups of what it shows; the minutely fold checks removed ones).
// Printed: root's answer times (median, 95th percentile, max), before and
// during the churn, beside a 404's (the machine's own share of the wait), and
// how many cgroups nobody churned.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { cgroup2Mount } from '../daemon/accounting/cgroup-names.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { sleep } from './process-stats.js';

const EMPTY_CGROUPS = Number(process.env['EMPTY_CGROUPS'] ?? 10_000);
const CHURN_SECONDS = Number(process.env['CHURN_SECONDS'] ?? 20);

function timedGet(apiSocket: string, request: string): Promise<{ ms: number; body: string }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = net.connect(apiSocket, () => socket.write(`GET ${request} HTTP/1.0\r\n\r\n`));
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => resolve({ ms: performance.now() - started, body: text.slice(text.indexOf('\r\n\r\n') + 4) }));
    socket.on('error', reject);
  });
}

function summary(times: number[]): string {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number): string => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(1);
  return `median ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${sorted.at(-1)!.toFixed(1)} ms (${sorted.length} answers)`;
}

/**
 * The listing's times; a 404's (no work in the daemon: what the machine
 * itself costs an answer meanwhile); and the kernel read each listing waits
 * for (the maps and the task iterator: kernel time, which cgroup moves slow).
 */
async function sample(apiSocket: string, seconds: number): Promise<string> {
  const listing: number[] = [];
  const floor: number[] = [];
  const kernelRead: number[] = [];
  for (const end = performance.now() + seconds * 1000; performance.now() < end; await sleep(500)) {
    listing.push((await timedGet(apiSocket, '/v1/processes?limit=5')).ms);
    kernelRead.push((JSON.parse((await timedGet(apiSocket, '/v1/stats')).body) as { lastReadSeconds: number }).lastReadSeconds * 1000);
    floor.push((await timedGet(apiSocket, '/v1/none')).ms);
  }
  return `listing ${summary(listing)}\n      a 404 meanwhile: ${summary(floor)}\n      the kernel read: ${summary(kernelRead)}`;
}

async function main(): Promise<void> {
  const mount = cgroup2Mount();
  if (!mount) throw new Error('no cgroup2 hierarchy');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-bench-'));
  fs.chmodSync(dir, 0o755);
  const atopSocket = path.join(dir, 'atop');
  const apiSocket = path.join(dir, 'api');
  const pinDir = `/sys/fs/bpf/netacct-bench-${process.pid}`;
  const subtree = path.join(mount, `netacct-bench-${process.pid}`);
  fs.mkdirSync(subtree);
  for (const file of ['', 'cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) fs.chownSync(path.join(subtree, file), 65534, 65534);
  const daemon = spawn(path.join(packageRoot(), 'bin', 'netacct.js'), ['daemon', '--atop-socket', atopSocket, '--api-socket', apiSocket, '--pin-dir', pinDir, '--no-netatop-module'], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  try {
    await new Promise<void>((resolve) => daemon.stderr!.on('data', (chunk: Buffer) => /serving atop on/.test(chunk.toString()) && resolve()));
    // Root puts the shell in nobody's subtree (moving in needs the source's parent too), then it runs as nobody.
    const nobody = (script: string): ReturnType<typeof spawn> =>
      spawn('sh', ['-c', 'echo $$ > "$1/cgroup.procs" && exec setpriv --reuid=nobody --regid=nogroup --clear-groups bash -c "$2" bash "$1"', 'sh', subtree, script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
    execFileSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', '-c', `cd "$1" && seq ${EMPTY_CGROUPS} | sed s/^/empty/ | xargs mkdir`, 'sh', subtree]);
    console.log(`root's /v1/processes?limit=5, twice a second; nobody has ${EMPTY_CGROUPS} empty cgroups:`);
    console.log(`   quiet: ${await sample(apiSocket, 5)}`);
    // Make, join, one datagram, leave, remove.
    const churn = nobody(
      `n=0; end=$((SECONDS + ${CHURN_SECONDS})); while [ $SECONDS -lt $end ]; do ` +
        `n=$((n + 1)); mkdir "$1/c$n"; echo $BASHPID > "$1/c$n/cgroup.procs"; echo x > /dev/udp/127.0.0.1/9; ` +
        `echo $BASHPID > "$1/cgroup.procs"; rmdir "$1/c$n"; done; echo $n`,
    );
    const churned = new Promise<string>((resolve) => churn.stdout!.on('data', (chunk: Buffer) => resolve(chunk.toString().trim())));
    const during = await sample(apiSocket, CHURN_SECONDS);
    console.log(`   while nobody churns cgroups: ${during}; ${await churned} cgroups made, used and removed (${((Number(await churned)) / CHURN_SECONDS).toFixed(0)}/s)`);
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    execFileSync('sh', ['-c', 'for d in "$1"/*/; do rmdir "$d"; done; rmdir "$1"', 'sh', subtree]);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
}

await main();
