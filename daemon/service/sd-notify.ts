// Tells systemd (Type=notify) when the daemon is ready and when it stops:
// a datagram such as "READY=1" to the socket named by $NOTIFY_SOCKET. Through
// libsystemd's sd_notify when libsystemd.so.0 is there; otherwise netacct
// sends the datagram itself with libc's socket/sendto (Node's dgram module
// has no Unix datagram sockets). Without $NOTIFY_SOCKET it does nothing.
import koffi, { type LibraryHandle } from 'koffi';
import { errnoText, lastErrno, native } from '../kernel/libbpf.js';

export type Notify = (state: string) => void;

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SUN_PATH_MAX = 108;

/** Sends `state` to the notification socket at `socketPath` ("@name": abstract) with libc. */
export function notifyDirect(socketPath: string, state: string): void {
  const abstract = socketPath.startsWith('@');
  const name = Buffer.from(abstract ? `\0${socketPath.slice(1)}` : socketPath);
  if (name.length >= SUN_PATH_MAX) throw new Error(`NOTIFY_SOCKET is too long: ${socketPath}`);
  const address = Buffer.alloc(2 + name.length + (abstract ? 0 : 1)); // struct sockaddr_un
  address.writeUInt16LE(AF_UNIX, 0);
  name.copy(address, 2);
  const fd: number = native.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket(AF_UNIX) failed: ${errnoText(lastErrno())}`);
  try {
    const message = Buffer.from(state);
    const sent = Number(native.sendto(fd, message, message.length, 0, address, address.length));
    if (sent !== message.length) throw new Error(`sendto ${socketPath} failed: ${errnoText(lastErrno())}`);
  } finally {
    native.closeFd(fd);
  }
}

/** How to notify systemd, or null when not started by it (no $NOTIFY_SOCKET). */
export function systemdNotifier(warn: (message: string) => void): Notify | null {
  const socketPath = process.env['NOTIFY_SOCKET'];
  if (!socketPath) return null;
  let sdNotify: ReturnType<LibraryHandle['func']> | null = null;
  try {
    sdNotify = koffi.load('libsystemd.so.0').func('int sd_notify(int unset_environment, const char *state)');
  } catch {
    // No libsystemd: the datagram is simple enough to send directly.
  }
  return (state) => {
    try {
      if (!sdNotify) return notifyDirect(socketPath, state);
      const ret: number = sdNotify(0, state);
      if (ret < 0) warn(`sd_notify(${state.split('\n')[0]}) failed: errno ${-ret}`);
    } catch (err) {
      warn(`notifying systemd failed: ${(err as Error).message}`);
    }
  };
}
