// The suites that count real traffic with real BPF, run again inside real
// Debian kernels under QEMU (test/vm/kernel.sh): Debian 12's 6.1, which has no
// sock tracepoints (fexit), and Debian 13's 6.12 in both modes on the same
// traffic (this host's own kernel refuses fexit), and Debian 12's kernel with
// Debian 12's own atop. Debian 11's 5.10 is below the floor: the daemon must
// say so in one line.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { describeWithBpf } from './helpers/requirements.js';

const KERNEL_SH = path.join(import.meta.dirname, 'vm', 'kernel.sh');
const SUITES = ['test/kernel-counting.test.ts', 'test/atop-socket.test.ts', 'test/peers.test.ts', 'test/restart.test.ts', 'test/cgroup-names.test.ts'];
// Above test/vm/kernel.sh's 1200 s for one boot, with room for a boot retried before the command starts.
const GUEST_TIMEOUT_MS = 25 * 60_000;

/** Runs `command` as root inside `suite`'s kernel, in the checkout; its output and exit status. */
async function inGuest(suite: string, command: string[]): Promise<{ status: number; output: string }> {
  const root = path.join(import.meta.dirname, '..');
  const result = await promisify(execFile)('bash', [KERNEL_SH, 'run', suite, '--', ...command], {
    cwd: root,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, CI: 'true' }, // inside the guest, nothing may skip
  }).then(
    ({ stdout, stderr }) => ({ status: 0, output: stdout + stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ status: err.code, output: err.stdout + err.stderr }),
  );
  return result;
}

/** The suites in `suite`'s kernel with `mode`: every test passes, none skipped. */
async function suitesPass(suite: string, mode: 'auto' | 'tracepoint' | 'fexit', suites = SUITES): Promise<void> {
  const started = performance.now();
  const { status, output } = await inGuest(suite, ['env', `NETACCT_TEST_ATTACH_MODE=${mode}`, 'npx', 'vitest', 'run', ...suites]);
  const summary = /Tests\s+.*\(\d+\)/.exec(output.replace(/\x1b\[[0-9;]*m/g, ''))?.[0] ?? '(no summary)';
  console.log(`${suite} kernel, attach mode ${mode}: ${summary} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  expect(status, output.slice(-4000)).toBe(0);
  expect(summary).toMatch(/Tests\s+\d+ passed \(\d+\)/); // nothing failed or skipped
}

describeWithBpf('inside real Debian kernels (QEMU)', () => {
  test('Debian 12 (6.1, no sock tracepoints): exact counts with fexit, and the atop socket', () => suitesPass('bookworm', 'auto'), GUEST_TIMEOUT_MS);

  // What a Debian 12 user has: the stock kernel and the stock atop (2.8.1, the
  // netatop module interface), with kprobes (this host has none).
  test('Debian 12 (6.1) with its own atop 2.8.1, through the netatop module interface', () =>
    suitesPass('bookworm', 'auto', ['test/netatop-module.test.ts']), GUEST_TIMEOUT_MS);

  test('Debian 13 (6.12): the same suites with the tracepoints', () => suitesPass('trixie', 'tracepoint'), GUEST_TIMEOUT_MS);

  test('Debian 13 (6.12): the same suites with fexit forced', () => suitesPass('trixie', 'fexit'), GUEST_TIMEOUT_MS);

  test('Debian 11 (5.10): below the floor, the daemon says so in one line', async () => {
    const { status, output } = await inGuest('bullseye', ['sh', '-c', 'echo "{}" >/tmp/c.json; exec ./bin/netacct.js daemon --config /tmp/c.json --pin-dir /sys/fs/bpf/netacct-floor']);
    expect(status).toBe(1);
    expect(output).toMatch(/error kernel 5\.10\.\S+ lacks BPF atomic compare-and-exchange \(Linux 5\.12\): netacct needs Linux 5\.12 or later/);
  }, GUEST_TIMEOUT_MS);
});
