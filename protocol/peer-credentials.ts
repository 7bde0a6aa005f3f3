// Who is at the other end of a Unix socket, from the kernel (SO_PEERCRED,
// SO_PEERGROUPS: the credentials it had when it connected, never looked up
// by a pid that may be reused), and what that peer may see: root, or a member
// of the configured group,
// sees every process; anyone else only processes running as their own uid
// (per-process traffic is as private as /proc/PID/io).
import type net from 'node:net';
import { errnoText, lastErrno, native } from '../daemon/kernel/libbpf.js';

export interface Peer {
  pid: number;
  uid: number;
  gid: number;
  /** Its supplementary groups when it connected. */
  groups: number[];
}

/** Whose processes a client may see: all, or only those of `uid`. */
export interface Visibility {
  seesAll: boolean;
  uid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
const ERANGE = 34;
/** Groups asked for first; a peer in more says how many it has (ERANGE) and is asked again. */
const USUAL_GROUPS = 64;

/** getsockopt into `value`: the length the kernel wrote (with ERANGE: the length it needs), and the errno (0: none). */
function socketOption(fd: number, name: number, value: Buffer): { length: number; errno: number } {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(value.length);
  const errno = native.getsockopt(fd, SOL_SOCKET, name, value, length) === 0 ? 0 : lastErrno();
  return { length: length.readUInt32LE(0), errno };
}

export function peerOf(socket: net.Socket): Peer {
  // libuv's handle holds the accepted socket's descriptor.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new Error('the client socket has no file descriptor');
  const ucred = Buffer.alloc(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  const cred = socketOption(fd, SO_PEERCRED, ucred);
  if (cred.errno !== 0) throw new Error(`SO_PEERCRED failed: ${errnoText(cred.errno)}`);
  let groups = Buffer.alloc(USUAL_GROUPS * 4);
  let got = socketOption(fd, SO_PEERGROUPS, groups);
  if (got.errno === ERANGE) {
    groups = Buffer.alloc(got.length);
    got = socketOption(fd, SO_PEERGROUPS, groups);
  }
  if (got.errno !== 0) throw new Error(`SO_PEERGROUPS failed: ${errnoText(got.errno)}`);
  return {
    pid: ucred.readInt32LE(0),
    uid: ucred.readUInt32LE(4),
    gid: ucred.readUInt32LE(8),
    groups: Array.from({ length: got.length / 4 }, (_, i) => groups.readUInt32LE(i * 4)),
  };
}

/** `allGroup`: the gid whose members see every process, or null. */
export function visibilityOf(peer: Peer, allGroup: number | null): Visibility {
  const inGroup = allGroup !== null && (peer.gid === allGroup || peer.groups.includes(allGroup));
  return { seesAll: peer.uid === 0 || inGroup, uid: peer.uid };
}
