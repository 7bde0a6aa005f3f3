// Claiming a Unix socket path for a server: a socket file left by a crashed
// daemon is replaced; one that still answers belongs to a running instance.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export class SocketInUseError extends Error {}

function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Makes `socketPath` free to listen on, or throws SocketInUseError. */
export async function claimSocketPath(socketPath: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
      return;
    }
    throw err;
  }
  if (!stat.isSocket()) {
    throw new SocketInUseError(`${socketPath} exists and is not a socket; remove it or choose another path`);
  }
  if (await answers(socketPath)) {
    throw new SocketInUseError(
      `${socketPath} is served by a running process (another netacct or netatop-bpf); stop it first`,
    );
  }
  fs.unlinkSync(socketPath); // stale: left by a daemon that died
}

/** Listens on a Unix socket created with exactly `mode` (no window with wider rights). */
export async function listenUnix(server: net.Server, socketPath: string, mode: number): Promise<void> {
  await claimSocketPath(socketPath);
  const previousUmask = process.umask(0o777 & ~mode);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // A deep backlog: a thousand clients connecting at once must not get EAGAIN
      // (Node's default is 511; the kernel caps it at net.core.somaxconn).
      server.listen({ path: socketPath, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previousUmask);
  }
  setSocketMode(socketPath, mode, socketInode(socketPath)); // the umask is process-wide: say it exactly
}

/** The inode of the socket file at `socketPath` (not following a link), or null when there is none. */
export function socketInode(socketPath: string): number | null {
  try {
    const stat = fs.lstatSync(socketPath);
    return stat.isSocket() ? stat.ino : null;
  } catch {
    return null;
  }
}

/** open(2) flags Node does not name: a handle on the file itself, never on what a link points to. */
const O_PATH = 0o10000000;

/**
 * Sets the mode of the socket file at `socketPath` if it is still the inode
 * `inode`, without following a link (chmod(2) would: a link put there
 * would make root change the mode of its target).
 */
export function setSocketMode(socketPath: string, mode: number, inode: number | null): void {
  const fd = fs.openSync(socketPath, O_PATH | fs.constants.O_NOFOLLOW);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isSocket() || stat.ino !== inode) throw new Error(`${socketPath} is no longer the socket this daemon created`);
    fs.chmodSync(`/proc/self/fd/${fd}`, mode);
  } finally {
    fs.closeSync(fd);
  }
}

export function removeSocketFile(socketPath: string): void {
  try {
    fs.unlinkSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
