// Tests that load real BPF programs need root. Outside CI they skip and say
// why; under CI=true a missing requirement fails the run instead of skipping.
import fs from 'node:fs';
import { describe } from 'vitest';

function bpfUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to load BPF programs';
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) return 'kernel has no BTF';
  return null;
}

export const bpfSkipReason = bpfUnavailableReason();

/** describe() for suites that load BPF: runs, skips with the reason, or fails under CI. */
export function describeWithBpf(name: string, suite: () => void): void {
  if (bpfSkipReason && process.env['CI'] === 'true') {
    throw new Error(`CI=true, but "${name}" cannot run: ${bpfSkipReason}`);
  }
  if (bpfSkipReason) describe.skip(`${name} (skipped: ${bpfSkipReason})`, suite);
  else describe(name, suite);
}
