// The kernel side of the netatop module's interface (bpf/netatop-sockopt.bpf.c):
// loads and attaches its two programs, publishes the answers they copy to
// atop, and reads how many calls they answered.
import fs from 'node:fs';
import { BpfObject } from './bpf-object.js';
import { NETATOP_COMMANDS, NetatopAnswer, NetatopCommand, NetatopSettings } from './layout.js';
import { errnoText, lastErrno, native, quietly } from './libbpf.js';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_IP = 0;
const NO_GROUP = 0xffff_ffff;
/** Entries per bpf_map_update_batch call. */
const BATCH = 4096;

/** The answer published for one process or thread: key (kind << 32 | id) and its 104-byte value. */
export interface NetatopAnswerEntry {
  key: number;
  value: Buffer;
}

export interface NetatopCalls {
  probe: number;
  forceGc: number;
  emptyExit: number;
  processCounters: number;
  threadCounters: number;
  /** Counter requests refused: an unknown id, another user's process, a short buffer. */
  refused: number;
}

/**
 * Whether a netatop kernel module answers NETATOP_PROBE. The module answers on
 * any IPv4 socket; a UDP one needs no CAP_NET_RAW (netacct's own program
 * answers only raw sockets, atop's: another netacct is found by its semaphore).
 */
export function netatopProbeAnswered(): boolean {
  const fd: number = native.socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) throw new Error(`opening an IPv4 socket: ${errnoText(lastErrno())}`);
  try {
    const length = Buffer.alloc(4);
    return native.getsockopt(fd, SOL_IP, NetatopCommand.probe, null, length) === 0;
  } finally {
    native.closeFd(fd);
  }
}

/**
 * What notes atop's requested id at the getsockopt system call, in order of
 * preference: fentry and a kprobe cost only getsockopt calls (fentry attaches
 * without a perf event, which some kernels refuse without CAP_SYS_ADMIN); the
 * syscall tracepoint, the last resort, makes every system call a little
 * slower (bench/getsockopt-cost). The first that loads and attaches is used.
 */
export type RequestHook = 'fentry' | 'kprobe' | 'tracepoint';

const REQUEST_PROGRAMS: Record<RequestHook, string> = {
  fentry: 'netatop_request_fentry',
  kprobe: 'netatop_request_kprobe',
  tracepoint: 'netatop_request_tp',
};

/** The hooks worth trying here: a kprobe needs the kernel's kprobe event source (absent where kprobes are configured out). */
function requestHooks(): RequestHook[] {
  return fs.existsSync('/sys/bus/event_source/devices/kprobe') ? ['fentry', 'kprobe', 'tracepoint'] : ['fentry', 'tracepoint'];
}

/** The object with `hook`'s request program and the answer program only. */
function loadFor(hook: RequestHook, objectPath: string, capacity: number): BpfObject {
  const program = REQUEST_PROGRAMS[hook];
  return BpfObject.load(objectPath, {
    capacities: { netatop_answers: capacity },
    skipPrograms: Object.values(REQUEST_PROGRAMS).filter((name) => name !== program),
  });
}

/** `attempt` with each hook in order of preference, until one works; libbpf speaks up only for the last resort. */
function firstHook<T>(what: string, attempt: (hook: RequestHook) => T): T {
  const refusals: string[] = [];
  const hooks = requestHooks();
  for (const [i, hook] of hooks.entries()) {
    try {
      return i < hooks.length - 1 ? quietly(() => attempt(hook)) : attempt(hook);
    } catch (err) {
      refusals.push(`${hook}: ${(err as Error).message}`);
    }
  }
  throw new Error(`no program on the getsockopt system call could be ${what} (${refusals.join('; ')})`);
}

export class NetatopSockopt {
  private readonly answersFd: number;
  /** Keys in netatop_answers now. */
  private published = new Set<number>();

  private constructor(
    private readonly object: BpfObject,
    /** What notes the requested id at the system call's entry. */
    readonly hook: RequestHook,
  ) {
    this.answersFd = object.mapFd('netatop_answers');
  }

  /**
   * Loads `objectPath` with room for `capacity` answers and attaches it: the
   * request program to the getsockopt system call, the answer program to the
   * cgroup2 root at `cgroupMount`, so that it sees every process's calls.
   */
  static open(objectPath: string, capacity: number, cgroupMount: string, allProcessesGroup: number | null): NetatopSockopt {
    return firstHook('attached', (hook) => NetatopSockopt.openWith(hook, objectPath, capacity, cgroupMount, allProcessesGroup));
  }

  /** `netacct daemon --check`: the hook whose programs the verifier accepts (loaded, not attached). */
  static check(objectPath: string): RequestHook {
    return firstHook('loaded', (hook) => {
      loadFor(hook, objectPath, 1).close();
      return hook;
    });
  }

  private static openWith(hook: RequestHook, objectPath: string, capacity: number, cgroupMount: string, allProcessesGroup: number | null): NetatopSockopt {
    const object = loadFor(hook, objectPath, capacity);
    const program = REQUEST_PROGRAMS[hook];
    const sockopt = new NetatopSockopt(object, hook);
    try {
      sockopt.setAllProcessesGroup(allProcessesGroup);
      object.attach(program);
      const cgroupFd = fs.openSync(cgroupMount, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        object.attachCgroup('netatop_answer', cgroupFd);
      } finally {
        fs.closeSync(cgroupFd);
      }
    } catch (err) {
      object.close();
      throw err;
    }
    return sockopt;
  }

  /** Callers whose real gid is `gid` see every process (null: nobody but root). */
  setAllProcessesGroup(gid: number | null): void {
    const value = Buffer.alloc(NetatopSettings.size);
    value.writeUInt32LE(gid ?? NO_GROUP, NetatopSettings.allGid);
    const ret: number = native.updateElem(this.object.mapFd('netatop_settings'), Buffer.alloc(4), value, 0);
    if (ret < 0) throw new Error(`writing netatop_settings: ${errnoText(-ret)}`);
  }

  /** Replaces every answer with `entries` (at most the capacity given to open). */
  publish(entries: readonly NetatopAnswerEntry[]): void {
    const next = new Set<number>();
    for (let start = 0; start < entries.length; start += BATCH) {
      const chunk = entries.slice(start, start + BATCH);
      const keys = Buffer.alloc(chunk.length * 8);
      const values = Buffer.alloc(chunk.length * NetatopAnswer.size);
      chunk.forEach(({ key, value }, i) => {
        keys.writeBigUInt64LE(BigInt(key), i * 8);
        value.copy(values, i * NetatopAnswer.size);
        next.add(key);
      });
      const count = Buffer.alloc(4);
      count.writeUInt32LE(chunk.length);
      const ret: number = native.updateBatch(this.answersFd, keys, values, count, null);
      if (ret < 0) throw new Error(`publishing ${chunk.length} netatop answers: ${errnoText(-ret)}`);
    }
    const stale = [...this.published].filter((key) => !next.has(key));
    this.published = next;
    for (let start = 0; start < stale.length; start += BATCH) {
      const chunk = stale.slice(start, start + BATCH);
      const keys = Buffer.alloc(chunk.length * 8);
      chunk.forEach((key, i) => keys.writeBigUInt64LE(BigInt(key), i * 8));
      const count = Buffer.alloc(4);
      count.writeUInt32LE(chunk.length);
      native.deleteBatch(this.answersFd, keys, count, null); // a key gone already is no harm
    }
  }

  calls(): NetatopCalls {
    const fd = this.object.mapFd('netatop_calls');
    const read = (index: number): number => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(index);
      const value = Buffer.alloc(8);
      return native.lookupElem(fd, key, value) === 0 ? Number(value.readBigUInt64LE(0)) : 0;
    };
    const at = (command: number): number => read(command - NetatopCommand.probe);
    return {
      probe: at(NetatopCommand.probe),
      forceGc: at(NetatopCommand.forceGc),
      emptyExit: at(NetatopCommand.emptyExit),
      processCounters: at(NetatopCommand.getcntTgid),
      threadCounters: at(NetatopCommand.getcntPid),
      refused: read(NETATOP_COMMANDS),
    };
  }

  /** Detaches both programs; atop's calls fail with ENOPROTOOPT again. */
  close(): void {
    this.object.close();
  }
}

/** The netatop_answers key of a process's (or thread's) answer. */
export function answerKey(kind: number, id: number): number {
  return kind * 0x1_0000_0000 + id;
}
