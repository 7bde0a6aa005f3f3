// netatopd's SysV semaphore set, which atop before 2.10 checks before it reads
// the exit file (facts from netatopd.c and atop's netatopif.c): two
// semaphores under one key. The first is 1 while netatopd runs; the second
// starts at 100 and each atop takes one (SEM_UNDO, so a killed atop gives it
// back), so 100 minus its value is how many atops follow the exit file.
import { errnoText, lastErrno, native } from '../daemon/kernel/libbpf.js';

const CLIENT_SLOTS = 100;

const IPC_CREAT = 0o1000;
const IPC_EXCL = 0o2000;
const IPC_NOWAIT = 0o4000;
const SEM_UNDO = 0x1000;
const IPC_STAT = 2;
const GETVAL = 12;
const SETVAL = 16;
const EEXIST = 17;
const EAGAIN = 11;

/** struct sembuf: unsigned short sem_num; short sem_op; short sem_flg. */
function operations(...ops: Array<[number, number, number]>): Buffer {
  const buf = Buffer.alloc(ops.length * 6);
  ops.forEach(([num, op, flags], i) => {
    buf.writeUInt16LE(num, i * 6);
    buf.writeInt16LE(op, i * 6 + 2);
    buf.writeInt16LE(flags, i * 6 + 4);
  });
  return buf;
}

/**
 * A set any user may have created first (semget is open to all): one that is
 * not root's, or that others may change, would let them steer what atop and
 * netacct see. Refused, with how to remove it.
 */
function foreignSet(id: number, key: number): string | null {
  const stat = Buffer.alloc(256); // struct semid_ds; its ipc_perm: uid @4, mode @20 (x86_64 glibc)
  if (native.semctl(id, 0, IPC_STAT, 'void *', stat) < 0) return `cannot read semaphore set ${key}: ${errnoText(lastErrno())}`;
  const uid = stat.readUInt32LE(4);
  const mode = stat.readUInt16LE(20) & 0o777;
  if (uid === 0 && (mode & 0o022) === 0) return null;
  return `semaphore set ${key} belongs to uid ${uid} with mode ${mode.toString(8).padStart(4, '0')}, not root's alone: remove it (ipcrm -S ${key}) and restart`;
}

export class NetatopdSemaphore {
  private constructor(private readonly id: number) {}

  /**
   * Finds or creates the set under `key` and marks netatopd as running, in
   * one atomic operation (wait for zero, then add one, SEM_UNDO: the mark
   * goes when this process does, however it ends). Throws when it is marked
   * already: a netatopd, or another netacct, serves the exit file.
   */
  static claim(key: number): NetatopdSemaphore {
    let id: number = native.semget(key, 2, 0o600 | IPC_CREAT | IPC_EXCL);
    if (id >= 0) {
      if (native.semctl(id, 1, SETVAL, 'int', CLIENT_SLOTS) < 0) throw new Error(`setting up semaphore set ${key}: ${errnoText(lastErrno())}`);
    } else {
      const errno = lastErrno();
      if (errno !== EEXIST) throw new Error(`creating semaphore set ${key}: ${errnoText(errno)}`);
      id = native.semget(key, 0, 0);
      if (id < 0) throw new Error(`opening semaphore set ${key}: ${errnoText(lastErrno())}`);
      const foreign = foreignSet(id, key);
      if (foreign) throw new Error(foreign);
    }
    if (native.semop(id, operations([0, 0, IPC_NOWAIT], [0, 1, SEM_UNDO | IPC_NOWAIT]), 2) < 0) {
      const errno = lastErrno();
      if (errno === EAGAIN) throw new Error(`semaphore set ${key} says a netatopd runs already`);
      throw new Error(`marking semaphore set ${key}: ${errnoText(errno)}`);
    }
    return new NetatopdSemaphore(id);
  }

  /** Why the set under `key` cannot be claimed (a running netatopd, or another user's set), or null; changes nothing. */
  static problem(key: number): string | null {
    const id: number = native.semget(key, 0, 0);
    if (id < 0) return null;
    const foreign = foreignSet(id, key);
    if (foreign) return foreign;
    return native.semctl(id, 0, GETVAL) > 0 ? `a netatopd (or another netacct) holds semaphore set ${key}` : null;
  }

  /** How many atops follow the exit file now. */
  clients(): number {
    const value: number = native.semctl(this.id, 1, GETVAL);
    return value < 0 ? 0 : Math.max(0, CLIENT_SLOTS - value);
  }

  /**
   * Unmarks netatopd. The set stays: an atop keeps the set's id for its
   * whole life, and finds netatopd again when a new daemon marks it.
   */
  release(): void {
    native.semop(this.id, operations([0, -1, SEM_UNDO | IPC_NOWAIT]), 1);
  }
}
