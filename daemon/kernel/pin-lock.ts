// One daemon per pin directory: two daemons on the same pinned maps would
// both attach their programs and count every event twice, silently. The
// first takes an exclusive lock on the directory; the lock goes with the
// process, however it ends.
import fs from 'node:fs';
import { errnoText, lastErrno, native } from './libbpf.js';
import { PreflightError } from './preflight.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/** A held lock on a pin directory; release() also removes the directory if this daemon created it and left it empty. */
export interface PinDirLock {
  release(): void;
}

export function lockPinDir(dir: string): PinDirLock {
  const created = fs.mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined;
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  if (native.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = lastErrno();
    fs.closeSync(fd);
    if (errno === EWOULDBLOCK) {
      throw new PreflightError(`another netacct daemon is using the pin directory ${dir}: stop it, or give this one its own --pin-dir`);
    }
    throw new PreflightError(`cannot lock the pin directory ${dir}: ${errnoText(errno)}`);
  }
  return {
    release: () => {
      if (created) removeIfEmpty(dir);
      fs.closeSync(fd);
    },
  };
}

/** Removes `dir` and its subdirectories if no file is left in them. */
function removeIfEmpty(dir: string): void {
  try {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) fs.rmdirSync(`${dir}/${entry.name}`);
    }
    fs.rmdirSync(dir);
  } catch {
    // not empty: it holds pinned maps, which must outlive the daemon
  }
}
