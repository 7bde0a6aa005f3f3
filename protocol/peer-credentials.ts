// Who is at the other end of a Unix socket, from the kernel (SO_PEERCRED),
// and what that peer may see: root, or a member of the configured group,
// sees every process; anyone else only processes running as their own uid
// (per-process traffic is as private as /proc/PID/io).
import fs from 'node:fs';
import type net from 'node:net';
import { errnoText, lastErrno, native } from '../daemon/kernel/libbpf.js';

export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

/** Whose processes a client may see: all, or only those of `uid`. */
export interface Visibility {
  seesAll: boolean;
  uid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export function peerOf(socket: net.Socket): Peer {
  // libuv's handle holds the accepted socket's descriptor.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new Error('the client socket has no file descriptor');
  const ucred = Buffer.alloc(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  const length = Buffer.alloc(4);
  length.writeUInt32LE(ucred.length);
  if (native.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, ucred, length) !== 0) {
    throw new Error(`SO_PEERCRED failed: ${errnoText(lastErrno())}`);
  }
  return { pid: ucred.readInt32LE(0), uid: ucred.readUInt32LE(4), gid: ucred.readUInt32LE(8) };
}

/** The peer's supplementary groups, from /proc (empty when the peer is gone). */
function supplementaryGroups(pid: number): number[] {
  try {
    const groups = /^Groups:\s*(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
    return groups.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** `allGroup`: the gid whose members see every process, or null. */
export function visibilityOf(peer: Peer, allGroup: number | null): Visibility {
  const inGroup = allGroup !== null && (peer.gid === allGroup || supplementaryGroups(peer.pid).includes(allGroup));
  return { seesAll: peer.uid === 0 || inGroup, uid: peer.uid };
}
