// Says when a file is opened (inotify's IN_OPEN), with no timer: an old atop
// opens netatopd's exit file right after it joins, and the daemon must learn
// of it at once, yet not wake up to look while nobody comes. Node's fs.watch
// has no IN_OPEN, and an inotify descriptor is no stream libuv can poll, so a
// read blocks in libuv's thread pool (koffi's asynchronous call) until an
// event comes. A blocked pool thread would hold the process at its exit (libuv
// joins its threads): the watch is removed before that, which wakes the read.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const inotifyInit1 = libc.func('int inotify_init1(int flags)');
const inotifyAddWatch = libc.func('int inotify_add_watch(int fd, const char *path, uint32_t mask)');
const inotifyRmWatch = libc.func('int inotify_rm_watch(int fd, int wd)');
const read = libc.func('intptr_t read(int fd, _Out_ uint8_t *buf, size_t count)');
const closeFd = libc.func('int close(int fd)');

const IN_CLOEXEC = 0o2000000;
const IN_OPEN = 0x20;
const IN_IGNORED = 0x8000;
/** Never through a symbolic link (the exit file's directory is /run, open to packages and services). */
const IN_DONT_FOLLOW = 0x02000000;
/** Reads that fail in a row before the watch gives up (an interrupted read is retried). */
const MAX_FAILED_READS = 3;

export class OpenWatch {
  private watchDescriptor = -1;
  /** A read is blocked in the pool: only an event (or the watch's removal, IN_IGNORED) ends it. */
  private reading = false;
  private closed = false;
  private failedReads = 0;
  /** Room for a few events: any one of them is reason enough to look. */
  private readonly events = Buffer.alloc(4096);
  private readonly unblockAtExit = (): void => this.close();

  private constructor(
    private readonly fd: number,
    private readonly onOpen: () => void,
    private readonly onFailure: (message: string) => void,
  ) {
    process.once('exit', this.unblockAtExit);
  }

  /** A watch on nothing yet (see watch()); null where inotify cannot be used (its limits reached, say). */
  static start(onOpen: () => void, onFailure: (message: string) => void): OpenWatch | null {
    // With one pool thread, the blocked read would leave none for anything else.
    if (Number(process.env['UV_THREADPOOL_SIZE'] ?? 4) < 2) {
      onFailure('UV_THREADPOOL_SIZE is below 2: its one thread is not given to the watch');
      return null;
    }
    const fd: number = inotifyInit1(IN_CLOEXEC);
    if (fd < 0) {
      onFailure(`inotify_init1 failed: errno ${koffi.errno()}`);
      return null;
    }
    return new OpenWatch(fd, onOpen, onFailure);
  }

  /** Watches `path` (the file there now) instead of the one watched before. */
  watch(path: string): void {
    if (this.closed) return;
    this.unwatch();
    const wd: number = inotifyAddWatch(this.fd, path, IN_OPEN | IN_DONT_FOLLOW);
    if (wd < 0) return void this.onFailure(`watching ${path} failed: errno ${koffi.errno()}`);
    this.watchDescriptor = wd;
    if (!this.reading) this.waitForEvent();
  }

  /**
   * Stops watching. A blocked read is woken by the removal of the watch
   * (IN_IGNORED, queued whenever a watch goes) and closes the descriptor.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off('exit', this.unblockAtExit);
    if (this.reading) this.unwatch();
    else closeFd(this.fd);
  }

  private unwatch(): void {
    if (this.watchDescriptor >= 0) inotifyRmWatch(this.fd, this.watchDescriptor);
    this.watchDescriptor = -1;
  }

  private waitForEvent(): void {
    this.reading = true;
    read.async(this.fd, this.events, this.events.length, (err: Error | null, length: number) => {
      this.reading = false;
      if (this.closed) return void closeFd(this.fd);
      if (err || length <= 0) {
        // An interrupted read (EINTR) is tried again, never with no watch left to wake it.
        if (++this.failedReads < MAX_FAILED_READS && this.watchDescriptor >= 0) return this.waitForEvent();
        this.onFailure(`reading inotify events failed ${MAX_FAILED_READS} times: ${err?.message ?? `read returned ${length}`}`);
        return this.close();
      }
      this.failedReads = 0;
      this.forgetRemovedWatch(length);
      try {
        this.onOpen();
      } finally {
        // With no watch left, a read would block for good (and hold the process at its exit): watch() starts one.
        if (this.watchDescriptor >= 0 && !this.closed) this.waitForEvent();
      }
    });
  }

  /** The kernel removes a watch whose file is gone (IN_IGNORED): it is no longer this watch's. */
  private forgetRemovedWatch(length: number): void {
    // struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len].
    for (let at = 0; at + 16 <= length; at += 16 + this.events.readUInt32LE(at + 12)) {
      if (this.events.readInt32LE(at) === this.watchDescriptor && (this.events.readUInt32LE(at + 4) & IN_IGNORED) !== 0) this.watchDescriptor = -1;
    }
  }
}
