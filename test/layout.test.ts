// daemon/layout.ts must match bpf/netacct.h byte for byte: compile the header
// with cc and compare every size, offset and enum value.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, test } from 'vitest';
import * as layout from '../daemon/layout.js';

const expressions: Record<string, [number, string]> = {
  COUNTERS: [layout.COUNTERS, 'NA_COUNTERS'],
  COUNTERS_SIZE: [layout.COUNTERS_SIZE, 'sizeof(struct netacct_counters)'],
  'ProcRecord.size': [layout.ProcRecord.size, 'sizeof(struct netacct_proc_record)'],
  'ProcRecord.tgid': [layout.ProcRecord.tgid, 'offsetof(struct netacct_proc_record, tgid)'],
  'ProcRecord.uid': [layout.ProcRecord.uid, 'offsetof(struct netacct_proc_record, uid)'],
  'ProcRecord.startNs': [layout.ProcRecord.startNs, 'offsetof(struct netacct_proc_record, start_ns)'],
  'ProcRecord.cgroupId': [layout.ProcRecord.cgroupId, 'offsetof(struct netacct_proc_record, cgroup_id)'],
  'ProcRecord.comm': [layout.ProcRecord.comm, 'offsetof(struct netacct_proc_record, comm)'],
  'ProcRecord.commSize': [layout.ProcRecord.commSize, 'sizeof(((struct netacct_proc_record *)0)->comm)'],
  'ProcRecord.counters': [layout.ProcRecord.counters, 'offsetof(struct netacct_proc_record, c)'],
  'ProcId.size': [layout.ProcId.size, 'sizeof(struct netacct_proc_id)'],
  'ProcId.tgid': [layout.ProcId.tgid, 'offsetof(struct netacct_proc_id, tgid)'],
  'ProcId.startNs': [layout.ProcId.startNs, 'offsetof(struct netacct_proc_id, start_ns)'],
  'MovedKey.size': [layout.MovedKey.size, 'sizeof(struct netacct_moved_key)'],
  'MovedKey.tgid': [layout.MovedKey.tgid, 'offsetof(struct netacct_moved_key, tgid)'],
  'MovedKey.startNs': [layout.MovedKey.startNs, 'offsetof(struct netacct_moved_key, start_ns)'],
  'MovedKey.cgroupId': [layout.MovedKey.cgroupId, 'offsetof(struct netacct_moved_key, cgroup_id)'],
  'Family.ipv4': [layout.Family.ipv4, 'NA_IPV4'],
  'Family.ipv6': [layout.Family.ipv6, 'NA_IPV6'],
  'Protocol.tcp': [layout.Protocol.tcp, 'NA_TCP'],
  'Protocol.udp': [layout.Protocol.udp, 'NA_UDP'],
  'Direction.send': [layout.Direction.send, 'NA_SEND'],
  'Direction.recv': [layout.Direction.recv, 'NA_RECV'],
  'Kind.calls': [layout.Kind.calls, 'NA_CALLS'],
  'Kind.bytes': [layout.Kind.bytes, 'NA_BYTES'],
  'Stat.noStorage': [layout.Stat.noStorage, 'NA_STAT_NO_STORAGE'],
  'Stat.movedFull': [layout.Stat.movedFull, 'NA_STAT_MOVED_FULL'],
  'Stat.exitedFull': [layout.Stat.exitedFull, 'NA_STAT_EXITED_FULL'],
  STATS: [layout.STATS, 'NA_STATS'],
};

test('daemon/layout.ts matches every size, offset and enum of bpf/netacct.h', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-layout-'));
  const lines = Object.entries(expressions).map(
    ([name, [, expr]]) => `\tprintf("%s %lu\\n", "${name}", (unsigned long)(${expr}));`,
  );
  const source = `#include <stddef.h>\n#include <stdio.h>\n#include "netacct.h"\nint main(void)\n{\n${lines.join('\n')}\n\treturn 0;\n}\n`;
  fs.writeFileSync(path.join(dir, 'layout.c'), source);
  const bpfDir = path.join(import.meta.dirname, '..', 'bpf');
  execFileSync('cc', ['-I', bpfDir, '-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')]);
  const fromHeader = Object.fromEntries(
    execFileSync(path.join(dir, 'layout'), { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => {
        const [name, value] = line.split(' ');
        return [name!, Number(value)];
      }),
  );
  const fromTypeScript = Object.fromEntries(Object.entries(expressions).map(([name, [value]]) => [name, value]));
  expect(fromTypeScript).toEqual(fromHeader);
});

test('counter index follows the order the header documents', () => {
  const seen = new Set<number>();
  for (const family of [0, 1]) for (const protocol of [0, 1]) for (const direction of [0, 1]) for (const kind of [0, 1]) {
    seen.add(layout.counterIndex(family, protocol, direction, kind));
  }
  expect([...seen].sort((a, b) => a - b)).toEqual([...Array(layout.COUNTERS).keys()]);
  expect(layout.counterIndex(layout.Family.ipv6, layout.Protocol.udp, layout.Direction.recv, layout.Kind.bytes)).toBe(15);
  expect(layout.counterIndex(layout.Family.ipv4, layout.Protocol.tcp, layout.Direction.recv, layout.Kind.calls)).toBe(2);
});
