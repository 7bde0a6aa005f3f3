// End to end, as the kernel patch that added the sock_send_length and
// sock_recv_length tracepoints measured it: ApacheBench's time per request
// against a web server on loopback, keep-alive, 100 at once, nginx and ab
// pinned to separate CPUs, with nothing attached, with empty programs on the
// same tracepoints (the floor), with the reference netatop-bpf, and with the
// netacct daemon (which runs wherever the scheduler puts it, as on a host:
// its own CPU is taken from the benchmark's). Interleaved rounds, each
// condition's cost taken against the bare run of the same round, so that
// this machine's drift of a few points between runs cancels out.
//
//   NETATOP_BPF=$(bench/netatop-bpf.sh SOURCE /tmp/netatop-bpf) npm run bench:ab
//
// Without NETATOP_BPF the reference is left out (said). It counts only while
// a client is connected: one is. Needs nginx, ab and python3 (apt-get
// install nginx-light apache2-utils python3).
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BpfObject } from '../daemon/kernel/bpf-object.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { sleep, untilLine } from './process-stats.js';

const ROUNDS = Number(process.env['ROUNDS'] ?? 9);
const REQUESTS = Number(process.env['REQUESTS'] ?? 1_000_000);
const PORT = 18_000 + (process.pid % 1000);

interface Condition {
  name: string;
  /** Starts it; resolves with what stops it. */
  start: () => Promise<() => Promise<void>>;
}

function need(command: string, install: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`bench/ab needs ${command} (apt-get install ${install})`);
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

/** nginx with one worker on CPU 1, answering 612 bytes (its welcome page's size) from memory. */
async function startNginx(dir: string): Promise<ChildProcess> {
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${PORT}; location / { return 200 '${'x'.repeat(612)}'; } }
}
`,
  );
  const nginx = spawn('taskset', ['-c', '1', 'nginx', '-c', conf, '-p', dir], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('curl', ['-sf', '-o', '/dev/null', `http://127.0.0.1:${PORT}/`]);
      return nginx;
    } catch {
      await sleep(100);
    }
  }
  await stopChild(nginx);
  throw new Error(`nginx did not answer on 127.0.0.1:${PORT} (${dir}/error.log)`);
}

/** ab's mean time per request across all concurrent requests, µs. */
function ab(): number {
  const out = execFileSync('taskset', ['-c', '0', 'ab', '-q', '-k', '-c', '100', '-n', String(REQUESTS), `http://127.0.0.1:${PORT}/`], { encoding: 'utf8' });
  const failed = Number(/^Failed requests:\s+(\d+)/m.exec(out)?.[1] ?? NaN);
  if (failed !== 0) throw new Error(`ab: ${failed} failed requests\n${out}`);
  // From the rate: its two decimals resolve what the time per request's three (in ms) cannot.
  return 1e6 / Number(/^Requests per second:\s+([\d.]+)/m.exec(out)![1]);
}

function conditions(dir: string): Condition[] {
  const root = packageRoot();
  const list: Condition[] = [
    { name: 'nothing attached', start: async () => async () => {} },
    {
      name: 'empty programs',
      start: async () => {
        const object = BpfObject.load(path.join(root, 'bench', 'baselines.bpf.o'), {
          skipPrograms: ['empty_tp_send', 'empty_tp_recv', 'original_send', 'original_recv', 'empty_fexit_send', 'empty_fexit_recv'],
        });
        object.attach('empty_btf_send');
        object.attach('empty_btf_recv');
        return async () => object.close();
      },
    },
    {
      name: 'netacct',
      start: async () => {
        const pinDir = `/sys/fs/bpf/netacct-bench-ab-${process.pid}`;
        const semaphoreKey = 0x4e420000 + (process.pid & 0xffff);
        const daemon = spawn(
          path.join(root, 'bin', 'netacct.js'),
          ['daemon', '--atop-socket', path.join(dir, 'atop'), '--api-socket', path.join(dir, 'api'), '--pin-dir', pinDir,
            '--netatop-exit-file', path.join(dir, 'netatop.log'), '--netatop-semaphore-key', String(semaphoreKey)],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        // Its pinned links outlive it (they count on): removed with the pin directory, whatever happened.
        const stop = async (): Promise<void> => {
          await stopChild(daemon);
          fs.rmSync(pinDir, { recursive: true, force: true });
          spawnSync('ipcrm', ['-S', String(semaphoreKey)]); // the set outlives its daemon
        };
        try {
          await untilLine(daemon, daemon.stderr!, /serving atop on/);
        } catch (err) {
          await stop();
          throw err;
        }
        daemon.stderr!.resume();
        await sleep(3000); // past start-up
        return stop;
      },
    },
  ];
  const reference = process.env['NETATOP_BPF'];
  if (reference) {
    list.push({
      name: 'netatop-bpf',
      start: async () => {
        // Its socket, semaphore (key 1541961) and daemonized process stay in namespaces of their own, ended with it.
        // It attaches its programs only while a client is connected: one connects (as atop would) and stays.
        const client = `import socket, time; s = socket.socket(socket.AF_UNIX); s.connect('/run/netatop-bpf-socket'); time.sleep(1e9)`;
        const holder = spawn(
          'unshare',
          ['--ipc', '--mount', '--pid', '--fork', '--kill-child', '--mount-proc', 'sh', '-c', `mount -t tmpfs tmpfs /run && "$1" && sleep 1 && exec python3 -c "${client}"`, 'sh', reference],
          { stdio: 'ignore' },
        );
        await sleep(3000); // loaded, attached, past start-up
        if (holder.exitCode !== null) throw new Error(`${reference} did not start`);
        // unshare --fork ignores SIGTERM while it waits; killed, it takes its namespaces' processes with it (--kill-child).
        return () => stopChild(holder, 'SIGKILL');
      },
    });
  } else {
    console.log('netatop-bpf: left out (NETATOP_BPF=path of the binary bench/netatop-bpf.sh builds from its public source)');
  }
  return list;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/ab needs root');
  need('nginx', 'nginx-light');
  need('ab', 'apache2-utils');
  need('python3', 'python3');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-ab-'));
  let nginx: ChildProcess | null = null;
  try {
    nginx = await startNginx(dir);
    const list = conditions(dir);
    const [bare, ...others] = list;
    /** Per condition: its time per request over the bare run of the same round, each round. */
    const ratios = new Map<string, number[]>(others.map((c) => [c.name, []]));
    const times = new Map<string, number[]>(list.map((c) => [c.name, []]));
    ab(); // warm-up: nginx's and ab's first connections, the page cache
    for (let round = 0; round < ROUNDS; round++) {
      // Rotated: each condition runs early and late in a round.
      const order = others.map((_, i) => others[(i + round) % others.length]!);
      const bareTime = ab();
      times.get(bare!.name)!.push(bareTime);
      for (const condition of order) {
        const stop = await condition.start();
        try {
          const time = ab();
          times.get(condition.name)!.push(time);
          ratios.get(condition.name)!.push(time / bareTime);
        } finally {
          await stop();
        }
      }
      console.log(`round ${round + 1}/${ROUNDS}: ${list.map((c) => `${c.name} ${times.get(c.name)!.at(-1)!.toFixed(2)} µs`).join(', ')}`);
    }
    console.log(`\nab -k -c 100 -n ${REQUESTS} against nginx on loopback (ab on CPU 0, nginx on CPU 1), ${ROUNDS} interleaved rounds, medians:`);
    console.log(`  ${bare!.name}: ${median(times.get(bare!.name)!).toFixed(2)} µs per request`);
    const excess = new Map<string, number>();
    for (const condition of others) {
      const points = (median(ratios.get(condition.name)!) - 1) * 100;
      excess.set(condition.name, points);
      console.log(`  ${condition.name}: ${median(times.get(condition.name)!).toFixed(2)} µs per request, +${points.toFixed(2)} % over the same round's bare run`);
    }
    const floor = excess.get('empty programs')!;
    const netacct = excess.get('netacct')! - floor;
    console.log(`netacct: ${netacct.toFixed(2)} points above the empty-program floor`);
    const reference = excess.get('netatop-bpf');
    if (reference !== undefined) {
      console.log(`netatop-bpf: ${(reference - floor).toFixed(2)} points above the floor; netacct's excess is ${((netacct / (reference - floor)) * 100).toFixed(0)} % of netatop-bpf's`);
    }
  } finally {
    if (nginx) await stopChild(nginx);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
