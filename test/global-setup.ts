// After the whole run: remove maps pinned by test daemons that a failed or
// interrupted test left behind (pinned maps outlive processes).
import fs from 'node:fs';
import path from 'node:path';

const SCRATCH = /^netacct-test-\d+-\d+$/;

export function teardown(): void {
  const bpffs = '/sys/fs/bpf';
  if (!fs.existsSync(bpffs)) return;
  for (const name of fs.readdirSync(bpffs)) {
    if (SCRATCH.test(name)) fs.rmSync(path.join(bpffs, name), { recursive: true, force: true });
  }
}
