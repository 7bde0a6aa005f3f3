// A cgroup v2 directory opened from its id alone, with open_by_handle_at(2):
// the id the kernel reports (bpf_get_current_cgroup_id) is the kernfs node id,
// and a file handle of type FILEID_KERNFS holding those 8 bytes names the
// directory. One system call, however many cgroups the host has, where
// finding a directory by its inode meant walking the whole tree; a removed
// cgroup answers ESTALE (kernfs ids are never reused). Needs
// CAP_DAC_READ_SEARCH (the packaged unit grants it, and lets the system call
// through its filter).
import fs from 'node:fs';
import koffi from 'koffi';
import { errnoText } from './libbpf.js';

const libc = koffi.load('libc.so.6');
const openByHandleAt = libc.func('int open_by_handle_at(int mount_fd, void *handle, int flags)');

/** include/linux/exportfs.h: the handle kernfs encodes (its node id). */
const FILEID_KERNFS = 0xfe;
/** Node has no O_PATH; it is the same on x86-64 and arm64 (O_DIRECTORY is not: Node's is this architecture's). */
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const { O_DIRECTORY } = fs.constants;
const ESTALE = 116;
/** readlink of an open directory removed since. */
const DELETED = ' (deleted)';

export class CgroupHandles {
  /** `struct file_handle { u32 handle_bytes; int handle_type; u64 id; }`, reused for every call. */
  private readonly handle = Buffer.alloc(16);

  private constructor(
    private readonly mount: string,
    private readonly mountFd: number,
  ) {
    this.handle.writeUInt32LE(8, 0);
    this.handle.writeInt32LE(FILEID_KERNFS, 4);
  }

  /** Handles on the cgroup2 hierarchy mounted at `mount`; throws (with the reason) where the kernel refuses them. */
  static open(mount: string): CgroupHandles {
    const handles = new CgroupHandles(mount, fs.openSync(mount, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY));
    try {
      const root = fs.statSync(mount).ino;
      if (handles.pathOf(root) !== '/') throw new Error(`the cgroup2 root ${mount} does not open from its id ${root}`);
    } catch (err) {
      handles.close();
      throw err;
    }
    return handles;
  }

  /** The directory's descriptor, or null when the cgroup is gone. */
  private openId(id: number): number | null {
    this.handle.writeBigUInt64LE(BigInt(id), 8);
    const fd = openByHandleAt(this.mountFd, this.handle, O_PATH | O_DIRECTORY | O_CLOEXEC) as number;
    if (fd >= 0) return fd;
    const errno = koffi.errno();
    if (errno === ESTALE) return null;
    throw new Error(`open_by_handle_at(cgroup ${id}): ${errnoText(errno)}`);
  }

  /** The cgroup's path under the mount ("/" for the root), or null when it is gone. */
  pathOf(id: number): string | null {
    const fd = this.openId(id);
    if (fd === null) return null;
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } finally {
      fs.closeSync(fd);
    }
    // Removed between the two calls: the kernel says so after the path.
    if (target.endsWith(DELETED) && !this.exists(id)) return null;
    if (target === this.mount) return '/';
    // Not under the mount as this process sees it (a cgroup namespace, a mount of a subtree): no name to give.
    if (!target.startsWith(`${this.mount}/`)) throw new Error(`cgroup ${id} is outside ${this.mount} as this process sees it (${target})`);
    return target.slice(this.mount.length);
  }

  /** Whether the cgroup still exists (cheaper than its path: no readlink). */
  exists(id: number): boolean {
    const fd = this.openId(id);
    if (fd === null) return false;
    fs.closeSync(fd);
    return true;
  }

  close(): void {
    fs.closeSync(this.mountFd);
  }
}
