// Reading a runtime's state files as root without being led elsewhere: the
// names below a state root are checked (no "..", no "/"), every directory on
// the way must be a real directory owned by root (never a symbolic link), and
// the file itself a regular file owned by root, opened without following a
// link or blocking on a FIFO (a containerd bundle has one), and read up to a
// bound. A container cannot write there (the roots are the host's, root's),
// and one that could would still lead the daemon nowhere else.
import fs from 'node:fs';
import path from 'node:path';

/** A name below a state root: a container id, a containerd namespace, a file name. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class StateFileError extends Error {}

/**
 * The text of `root`/`names…`, or null when it does not exist. Throws
 * StateFileError when it exists but may not be read: a link on the way, a
 * file not root's, not a regular file, or past `maxBytes`. `admit` is told
 * the file's size before it is read (a budget: it throws to refuse).
 */
export function readStateFile(root: string, names: readonly string[], maxBytes: number, admit: (bytes: number) => void = () => {}): string | null {
  for (const name of names) if (!SAFE_NAME.test(name)) throw new StateFileError(`not a name a runtime gives: ${JSON.stringify(name)}`);
  let at = root;
  for (const [i, name] of names.entries()) {
    at = path.join(at, name);
    const isFile = i === names.length - 1;
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw err;
    }
    if (stat.isSymbolicLink()) throw new StateFileError(`${at} is a symbolic link`);
    if (stat.uid !== 0) throw new StateFileError(`${at} is not root's`);
    if (!isFile && !stat.isDirectory()) throw new StateFileError(`${at} is not a directory`);
    // Not even opened otherwise: opening a device node can do something.
    if (isFile && !stat.isFile()) throw new StateFileError(`${at} is not a regular file`);
  }
  let fd: number;
  try {
    fd = fs.openSync(at, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // removed meanwhile
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new StateFileError(`${at} is a symbolic link`);
    throw err;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new StateFileError(`${at} is not a regular file`);
    if (stat.uid !== 0) throw new StateFileError(`${at} is not root's`);
    if (stat.size > maxBytes) throw new StateFileError(`${at} is ${stat.size} bytes, past the ${maxBytes} read`);
    admit(stat.size);
    // Read to the bound (plus one byte, to see a file that grew past it since fstat).
    const buffer = Buffer.alloc(stat.size + 1);
    let length = 0;
    while (length < buffer.length) {
      const read = fs.readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    if (length > maxBytes) throw new StateFileError(`${at} grew past the ${maxBytes} read`);
    return buffer.toString('utf8', 0, length);
  } finally {
    fs.closeSync(fd);
  }
}

/** `root`'s entries that are names a runtime gives (containerd's namespaces), at most `max`; none when it is missing. */
export function listStateDirectory(root: string, max: number): string[] {
  let entries: fs.Dirent[];
  try {
    const stat = fs.lstatSync(root);
    if (!stat.isDirectory() || stat.uid !== 0) return [];
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.filter((entry) => entry.isDirectory() && SAFE_NAME.test(entry.name)).map((entry) => entry.name).slice(0, max);
}
