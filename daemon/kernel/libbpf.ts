// Bindings to the parts of libbpf (libbpf.so.1) and libc that netacct uses,
// through koffi. Pointers come back from koffi as BigInt (or null); they are
// wrapped in branded types so that a map can never be passed as a program.
import fs from 'node:fs';
import path from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';
import { packageRoot } from '../common/package-root.js';

export type BpfObjectPtr = bigint & { readonly __brand: 'bpf_object' };
export type BpfMapPtr = bigint & { readonly __brand: 'bpf_map' };
export type BpfProgramPtr = bigint & { readonly __brand: 'bpf_program' };
export type BpfLinkPtr = bigint & { readonly __brand: 'bpf_link' };
export type BtfPtr = bigint & { readonly __brand: 'btf' };

function loadLibrary(name: string, hint: string): LibraryHandle {
  try {
    return koffi.load(name);
  } catch (err) {
    throw new Error(`cannot load ${name} (${hint}): ${(err as Error).message}`);
  }
}

/**
 * The libbpf loaded: the packages carry the one they were built and tested
 * with, in lib/ of the package root, because Debian 11 and Ubuntu 22.04 ship
 * only libbpf 0.x, which cannot open netacct's objects (ksyscall sections,
 * libbpf 1.0). A checkout has no lib/ and uses the system's libbpf.so.1.
 */
const bundledLibbpf = path.join(packageRoot(), 'lib', 'libbpf.so.1');
export const libbpfPath = fs.existsSync(bundledLibbpf) ? bundledLibbpf : 'libbpf.so.1';
const libbpf = loadLibrary(libbpfPath, 'install the libbpf1 package');
const libc = loadLibrary('libc.so.6', 'glibc');

koffi.opaque('bpf_object');
koffi.opaque('bpf_map');
koffi.opaque('bpf_program');
koffi.opaque('bpf_link');
koffi.opaque('btf');

/** libbpf's print callback: (level, format, va_list). */
const PrintFn = koffi.proto('int netacct_print_fn(int level, const char *fmt, void *args)');

export const native = {
  setPrint: libbpf.func('void *libbpf_set_print(netacct_print_fn *fn)'),
  openFile: libbpf.func('bpf_object *bpf_object__open_file(const char *path, void *opts)'),
  load: libbpf.func('int bpf_object__load(bpf_object *obj)'),
  close: libbpf.func('void bpf_object__close(bpf_object *obj)'),
  findMap: libbpf.func('bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)'),
  findProgram: libbpf.func(
    'bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)',
  ),
  setMaxEntries: libbpf.func('int bpf_map__set_max_entries(bpf_map *map, uint32_t max)'),
  setInitialValue: libbpf.func('int bpf_map__set_initial_value(bpf_map *map, const void *data, size_t size)'),
  mapFd: libbpf.func('int bpf_map__fd(bpf_map *map)'),
  setPinPath: libbpf.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
  mapType: libbpf.func('int bpf_map__type(bpf_map *map)'),
  mapKeySize: libbpf.func('uint32_t bpf_map__key_size(bpf_map *map)'),
  mapValueSize: libbpf.func('uint32_t bpf_map__value_size(bpf_map *map)'),
  mapMaxEntries: libbpf.func('uint32_t bpf_map__max_entries(bpf_map *map)'),
  mapFlags: libbpf.func('uint32_t bpf_map__map_flags(bpf_map *map)'),
  objGet: libbpf.func('int bpf_obj_get(const char *path)'),
  objGetInfoByFd: libbpf.func('int bpf_obj_get_info_by_fd(int fd, void *info, void *length)'),
  programFd: libbpf.func('int bpf_program__fd(bpf_program *prog)'),
  attach: libbpf.func('bpf_link *bpf_program__attach(bpf_program *prog)'),
  attachCgroup: libbpf.func('bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)'),
  linkFd: libbpf.func('int bpf_link__fd(bpf_link *link)'),
  destroyLink: libbpf.func('int bpf_link__destroy(bpf_link *link)'),
  pinLink: libbpf.func('int bpf_link__pin(bpf_link *link, const char *path)'),
  programFdById: libbpf.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  disconnectLink: libbpf.func('void bpf_link__disconnect(bpf_link *link)'),
  iterCreate: libbpf.func('int bpf_iter_create(int link_fd)'),
  lookupElem: libbpf.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  deleteElem: libbpf.func('int bpf_map_delete_elem(int fd, const void *key)'),
  updateElem: libbpf.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  // count is in/out: a 4-byte Buffer. in_batch/out_batch are opaque 8-byte tokens.
  lookupBatch: libbpf.func(
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, void *opts)',
  ),
  lookupAndDeleteBatch: libbpf.func(
    'int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, void *opts)',
  ),
  // keys and values: count entries back to back; count is in/out (4-byte Buffer).
  updateBatch: libbpf.func('int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, void *opts)'),
  deleteBatch: libbpf.func('int bpf_map_delete_batch(int fd, const void *keys, void *count, void *opts)'),
  numPossibleCpus: libbpf.func('int libbpf_num_possible_cpus()'),
  majorVersion: libbpf.func('uint32_t libbpf_major_version()'),
  minorVersion: libbpf.func('uint32_t libbpf_minor_version()'),
  progLoad: libbpf.func('int bpf_prog_load(int type, const char *name, const char *license, const void *insns, size_t count, void *opts)'),
  setAutoload: libbpf.func('int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
  loadVmlinuxBtf: libbpf.func('btf *btf__load_vmlinux_btf()'),
  btfFindByNameKind: libbpf.func('int btf__find_by_name_kind(btf *btf, const char *name, uint32_t kind)'),
  btfFree: libbpf.func('void btf__free(btf *btf)'),
  strerror: libbpf.func('int libbpf_strerror(int err, char *buf, size_t size)'),
  flock: libc.func('int flock(int fd, int operation)'),
  vsnprintf: libc.func('int vsnprintf(void *buf, size_t size, const char *fmt, void *args)'),
  mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, intptr_t offset)'),
  munmap: libc.func('int munmap(void *addr, size_t length)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, void *length)'),
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  sendto: libc.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  closeFd: libc.func('int close(int fd)'),
  semget: libc.func('int semget(int key, int nsems, int semflg)'),
  semctl: libc.func('int semctl(int semid, int semnum, int cmd, ...)'),
  semop: libc.func('int semop(int semid, void *sops, size_t nsops)'),
  mount: libc.func(
    'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
  ),
};

/**
 * Maps `length` bytes of a BPF_F_MMAPABLE array read-only into this process.
 * The ArrayBuffer sees the kernel's writes as they happen; unmap() it before
 * the map is freed.
 */
export function mapShared(fd: number, length: number): { view: ArrayBuffer; unmap: () => void } {
  const PROT_READ = 1;
  const MAP_SHARED = 1;
  const address = native.mmap(null, length, PROT_READ, MAP_SHARED, fd, 0) as bigint | null;
  if (address === null || address === -1n || address === 0xffff_ffff_ffff_ffffn) {
    throw new Error(`mmap of BPF map fd ${fd} failed: ${errnoText(lastErrno())}`);
  }
  return { view: koffi.view(address, length), unmap: () => native.munmap(address, length) };
}

/** The errno of the call that just failed; read it before any other call. */
export function lastErrno(): number {
  return koffi.errno();
}

/** libbpf's own error codes (LIBBPF_ERRNO__*) start here; libbpf_strerror says what they mean. */
const LIBBPF_ERRNO_BASE = 4000;

export function errnoText(errno: number): string {
  const name = Object.entries(koffi.os.errno).find(([, value]) => value === errno)?.[0];
  if (name) return `${name} (${errno})`;
  if (errno >= LIBBPF_ERRNO_BASE) {
    const text = Buffer.alloc(256);
    if (native.strerror(errno, text, text.length) === 0) return `${text.toString('utf8', 0, text.indexOf(0))} (libbpf error ${errno})`;
  }
  return `errno ${errno}`;
}

export type LibbpfLogLevel = 'warn' | 'info' | 'debug';
const LEVELS: readonly LibbpfLogLevel[] = ['warn', 'info', 'debug']; // LIBBPF_WARN, _INFO, _DEBUG

let printCallback: bigint | null = null;
let demoted = 0;

/**
 * Runs `attempt` with libbpf's messages demoted to debug: for a load that is
 * allowed to fail (a program type the kernel may refuse, with a fallback),
 * whose failure is then reported once, in the caller's words.
 */
export function quietly<T>(attempt: () => T): T {
  demoted++;
  try {
    return attempt();
  } finally {
    demoted--;
  }
}

/** Sends libbpf's own messages to `sink` until the process exits. */
export function routeLibbpfMessages(sink: (level: LibbpfLogLevel, message: string) => void): void {
  const text = Buffer.alloc(4096);
  const callback = (level: number, fmt: string, args: unknown): number => {
    const length = native.vsnprintf(text, text.length, fmt, args);
    const message = text.toString('utf8', 0, Math.min(Math.max(length, 0), text.length - 1)).trimEnd();
    // A line each (a verifier log has many): the log escapes a newline inside a message.
    for (const line of message ? message.split('\n') : []) sink(demoted > 0 ? 'debug' : (LEVELS[level] ?? 'debug'), line);
    return 0;
  };
  const registered = koffi.register(callback, koffi.pointer(PrintFn));
  native.setPrint(registered);
  if (printCallback) koffi.unregister(printCallback);
  printCallback = registered;
}
