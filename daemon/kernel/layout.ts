// Byte layouts of bpf/netacct.h, the single source of truth. test/layout.test.ts
// compiles that header with cc and checks every size, offset and enum here.

/** Pinned maps live in <pin dir>/v<LAYOUT_VERSION>. */
export const LAYOUT_VERSION = 4;

/** struct netacct_settings, the .rodata the daemon writes before loading. */
export const Settings = { size: 64, slotMask: 0, countThreads: 4, threadMask: 8, countPeers: 12, ephemeralLow: 16, ephemeralHigh: 18, userShare: 20, othersShare: 40, generation: 60 } as const;

/** struct netacct_control: control[0] says which generation of programs counts. */
export const Control = { size: 4, generation: 0 } as const;

/** enum netacct_share: the kernel maps a user fills, where each user but root holds at most a share. */
export const Share = { overflow: 0, unattributed: 1, peers: 2, peerOverflow: 3, exited: 4 } as const;
export const SHARES = 5;
/** struct netacct_held: entries held per share (u64 each), in share_created and share_released by uid. */
export const HELD_SIZE = SHARES * 8;
/** The key of the share maps that counts every user but root together. */
export const OTHERS_UID = 0xffff_fffe;

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

/** owners[i]: tgid | state << 32; 0 when free. */
export const SlotState = { active: 1, exited: 2, moved: 4, claiming: 8 } as const;
export const OWNER_SIZE = 8;

export const Slot = { size: 168, tgid: 0, uid: 4, startNs: 8, cgroupId: 16, comm: 24, commSize: 16, counters: 40 } as const;

export const PartKey = { size: 24, tgid: 0, uid: 4, startNs: 8, cgroupId: 16 } as const;

/** struct netacct_unattributed_key: calls no process row could take, per (uid, cgroup); the host's row is (HOST_UID, 0). */
export const UnattributedKey = { size: 16, uid: 0, cgroupId: 8 } as const;
export const HOST_UID = 0xffff_ffff;

export const ProcId = { size: 16, tgid: 0, startNs: 8 } as const;

export const ProcInfo = { size: 40, tgid: 0, uid: 4, startNs: 8, cgroupId: 16, comm: 24, commSize: 16 } as const;

export const ThreadKey = { size: 16, tid: 0, tgid: 4, startNs: 8 } as const;

export const ThreadState = { live: 0, exited: 1 } as const;

export const Thread = { size: 176, tid: 0, tgid: 4, startNs: 8, processStartNs: 16, comm: 24, commSize: 16, state: 40, counters: 48 } as const;

/** struct netacct_peer_key: addr is IPv6, IPv4 as ::ffff:a.b.c.d, all zero when not known. */
export const PeerKey = { size: 40, tgid: 0, remotePort: 4, localPort: 6, startNs: 8, addr: 16, addrSize: 16, uid: 32 } as const;

/** struct netacct_peer_overflow_key. */
export const PeerOverflowKey = { size: 16, tgid: 0, uid: 4, startNs: 8 } as const;

export const Stat = { overflowFull: 0, exitedFull: 1, noStorage: 2, slotsRetired: 3, threadsFull: 4, threadsExited: 5, peersFull: 6, peersLost: 7, unattributedFull: 8, lost: 9, overShare: 10 } as const;
export const STATS = 11;

/** The netatop module's getsockopt commands (bpf/netatop-sockopt.bpf.c serves them). */
export const NetatopCommand = { probe: 15661, forceGc: 15662, emptyExit: 15663, getcntExit: 15664, getcntTgid: 15665, getcntPid: 15666 } as const;
export const NETATOP_COMMANDS = 6;

/** Key of netatop_answers: kind << 32 | id. */
export const NetatopKind = { process: 1, thread: 2 } as const;

/** struct netatop_answer: a record (protocol/netatop-record.ts) and whose process it is. */
export const NetatopAnswer = { size: 104, task: 0, uid: 96 } as const;

export const NetatopSettings = { size: 8, allGid: 0 } as const;

/**
 * Reads a u64 as a Number: exact below 2^53 (9 PB of bytes, 104 days of ns of
 * uptime). Beyond, the same u64 always maps to the same Number, which is all
 * a start time needs as part of a process identity.
 */
export function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * 0x1_0000_0000;
}
