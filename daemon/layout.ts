// Byte layouts of bpf/netacct.h, the single source of truth. test/layout.test.ts
// compiles that header with cc and checks every size, offset and enum here.

/** Counter index = ((family * 2 + protocol) * 2 + direction) * 2 + kind. */
export const Family = { ipv4: 0, ipv6: 1 } as const;
export const Protocol = { tcp: 0, udp: 1 } as const;
export const Direction = { send: 0, recv: 1 } as const;
export const Kind = { calls: 0, bytes: 1 } as const;
export const COUNTERS = 16;

export function counterIndex(
  family: number,
  protocol: number,
  direction: number,
  kind: number,
): number {
  return ((family * 2 + protocol) * 2 + direction) * 2 + kind;
}

export const COUNTERS_SIZE = COUNTERS * 8;

export const ProcRecord = {
  size: 168,
  tgid: 0,
  uid: 4,
  startNs: 8,
  cgroupId: 16,
  comm: 24,
  commSize: 16,
  counters: 40,
} as const;

export const ProcId = { size: 16, tgid: 0, startNs: 8 } as const;

export const MovedKey = { size: 24, tgid: 0, startNs: 8, cgroupId: 16 } as const;

export const Stat = { noStorage: 0, movedFull: 1, exitedFull: 2 } as const;
export const STATS = 3;

/** Reads a u64 as a Number: exact below 2^53 (9 PB of bytes, 104 days of ns). */
export function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * 0x1_0000_0000;
}

export function readCounters(buf: Buffer, offset: number, into: Float64Array): void {
  for (let i = 0; i < COUNTERS; i++) into[i] = readU64(buf, offset + i * 8);
}
