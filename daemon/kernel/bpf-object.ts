// One BPF object file through libbpf: open, size its maps, load, attach and
// detach programs by name, close. Errors name the step and the errno.
import fs from 'node:fs';
import {
  type BpfLinkPtr,
  type BpfMapPtr,
  type BpfObjectPtr,
  type BpfProgramPtr,
  errnoText,
  lastErrno,
  native,
} from './libbpf.js';

export class BpfError extends Error {}

/** Pinned maps that this object cannot reuse (another layout or capacity). */
export class PinMismatchError extends Error {}

const EPERM = 1;

export function fail(what: string, errno: number): never {
  const hint = errno === EPERM ? ' (netacct needs root, or CAP_BPF and CAP_PERFMON)' : '';
  throw new BpfError(`${what}: ${errnoText(errno)}${hint}`);
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const EM_BPF = 247;

/**
 * What libbpf would only call "errno 4001": a path that is not a file, or a
 * file that is not a compiled BPF object (ELF for machine BPF).
 */
function checkObjectFile(path: string): void {
  const header = Buffer.alloc(20);
  let length: number;
  try {
    const fd = fs.openSync(path, 'r');
    try {
      if (!fs.fstatSync(fd).isFile()) throw new BpfError(`opening ${path}: not a regular file (a compiled BPF object is a file)`);
      length = fs.readSync(fd, header, 0, header.length, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if (err instanceof BpfError) throw err;
    throw new BpfError(`opening ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (length < header.length || !header.subarray(0, 4).equals(ELF_MAGIC)) {
    throw new BpfError(`opening ${path}: not a compiled BPF object (not an ELF file; build one with npm run build:bpf)`);
  }
  const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18); // e_machine, in the file's byte order
  if (machine !== EM_BPF) throw new BpfError(`opening ${path}: an ELF file for machine ${machine}, not a BPF object (machine ${EM_BPF})`);
}

export class BpfObject {
  private readonly links = new Set<BpfLinkPtr>();
  private closed = false;

  private constructor(private readonly object: BpfObjectPtr) {}

  /**
   * Opens and loads `path`. Before the load, `capacities` sets maps'
   * max_entries, `rodata` the initial value of its `const volatile` globals
   * (the whole .rodata section, byte for byte), and `pinned` the maps that
   * live in `pinned.dir`: reused when pinned there already (after checking
   * they are what this object defines), pinned there otherwise;
   * `skipPrograms` are not loaded at all.
   */
  static load(
    path: string,
    setup: { capacities?: Record<string, number>; rodata?: Buffer; pinned?: { dir: string; maps: string[] }; skipPrograms?: string[] } = {},
  ): BpfObject {
    checkObjectFile(path);
    const object = native.openFile(path, null) as BpfObjectPtr | null;
    if (!object) fail(`opening ${path}`, lastErrno());
    const loaded = new BpfObject(object);
    try {
      for (const [name, entries] of Object.entries(setup.capacities ?? {})) {
        const ret: number = native.setMaxEntries(loaded.map(name), entries);
        if (ret < 0) fail(`setting the capacity of map ${name} to ${entries}`, -ret);
      }
      for (const name of setup.skipPrograms ?? []) {
        const program = native.findProgram(object, name) as BpfProgramPtr | null;
        if (!program) continue; // an object without it (an older build, measured by bench/bpf-cost)
        const ret: number = native.setAutoload(program, false);
        if (ret < 0) fail(`leaving program ${name} out`, -ret);
      }
      if (setup.pinned) loaded.pinMaps(setup.pinned.dir, setup.pinned.maps);
      if (setup.rodata) {
        const ret: number = native.setInitialValue(loaded.map('.rodata'), setup.rodata, setup.rodata.length);
        if (ret < 0) fail(`setting the ${setup.rodata.length} bytes of .rodata`, -ret);
      }
      const ret: number = native.load(object);
      if (ret < 0) fail(`loading the BPF programs of ${path} (see the libbpf messages above)`, -ret);
    } catch (err) {
      loaded.close();
      throw err;
    }
    return loaded;
  }

  private pinMaps(dir: string, names: string[]): void {
    const mismatches: string[] = [];
    for (const name of names) {
      const file = `${dir}/${name}`;
      const map = this.map(name);
      const mismatch = pinnedMismatch(map, file);
      if (mismatch) mismatches.push(`${name}: ${mismatch}`);
      const ret: number = native.setPinPath(map, file);
      if (ret < 0) fail(`setting the pin path of map ${name}`, -ret);
    }
    if (mismatches.length > 0) throw new PinMismatchError(mismatches.join('; '));
  }

  map(name: string): BpfMapPtr {
    const map = native.findMap(this.object, name) as BpfMapPtr | null;
    if (!map) throw new BpfError(`the BPF object has no map named ${name}`);
    return map;
  }

  /** The map's fd; valid once loaded. */
  mapFd(name: string): number {
    return native.mapFd(this.map(name));
  }

  private program(name: string): BpfProgramPtr {
    const prog = native.findProgram(this.object, name) as BpfProgramPtr | null;
    if (!prog) throw new BpfError(`the BPF object has no program named ${name}`);
    return prog;
  }

  /** The loaded program's fd (its run statistics are in /proc/self/fdinfo/FD). */
  programFd(programName: string): number {
    return native.programFd(this.program(programName));
  }

  /** Attaches a program where its section says (tracepoint, iterator…). */
  attach(programName: string): BpfLinkPtr {
    const link = native.attach(this.program(programName)) as BpfLinkPtr | null;
    if (!link) fail(`attaching ${programName}`, lastErrno());
    this.links.add(link);
    return link;
  }

  /** Attaches a cgroup program to the cgroup open as `cgroupFd` (a link: other programs there keep running). */
  attachCgroup(programName: string, cgroupFd: number): BpfLinkPtr {
    const link = native.attachCgroup(this.program(programName), cgroupFd) as BpfLinkPtr | null;
    if (!link) fail(`attaching ${programName} to the cgroup`, lastErrno());
    this.links.add(link);
    return link;
  }

  /**
   * Pins `link` at `path`: the program stays attached after this object is
   * closed and this process is gone, until the file is removed.
   */
  keepAttached(link: BpfLinkPtr, path: string): void {
    const ret: number = native.pinLink(link, path);
    if (ret < 0) fail(`pinning the link of a program at ${path}`, -ret);
    native.disconnectLink(link); // closing it now only closes this process's handle
  }

  /** How many programs are attached now. */
  get attachedCount(): number {
    return this.links.size;
  }

  detach(link: BpfLinkPtr): void {
    if (this.links.delete(link)) native.destroyLink(link);
  }

  /** Detaches every program and frees the object. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.links) native.destroyLink(link);
    this.links.clear();
    native.close(this.object);
  }
}

/** The kernel's id of the map open as `fd` (struct bpf_map_info's id @4): unique while the map exists. */
export function mapIdOf(fd: number): number {
  const info = Buffer.alloc(96);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(info.length);
  const ret: number = native.objGetInfoByFd(fd, info, length);
  if (ret < 0) throw new Error(`reading a map's info: ${errnoText(-ret)}`);
  return info.readUInt32LE(4);
}

/** The id of the map pinned at `file`, or null when none is (or it cannot be opened). */
export function pinnedMapId(file: string): number | null {
  if (!fs.existsSync(file)) return null;
  const fd: number = native.objGet(file);
  if (fd < 0) return null;
  try {
    return mapIdOf(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Why the map pinned at `file` cannot stand for `map`, or null when it can
 * (or nothing is pinned there). Compares what struct bpf_map_info reports
 * (type @0, key_size @8, value_size @12, max_entries @16, map_flags @20).
 */
function pinnedMismatch(map: BpfMapPtr, file: string): string | null {
  if (!fs.existsSync(file)) return null;
  const fd: number = native.objGet(file);
  if (fd < 0) return `cannot open the pinned map: ${errnoText(-fd)}`;
  try {
    const info = Buffer.alloc(96);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(info.length);
    const ret: number = native.objGetInfoByFd(fd, info, length);
    if (ret < 0) return `cannot read the pinned map: ${errnoText(-ret)}`;
    const wanted: Array<[string, number, number]> = [
      ['type', native.mapType(map), info.readUInt32LE(0)],
      ['key size', native.mapKeySize(map), info.readUInt32LE(8)],
      ['value size', native.mapValueSize(map), info.readUInt32LE(12)],
      ['capacity', native.mapMaxEntries(map), info.readUInt32LE(16)],
      ['flags', native.mapFlags(map), info.readUInt32LE(20)],
    ];
    const different = wanted.filter(([, ours, pinned]) => ours !== pinned);
    return different.length === 0
      ? null
      : different.map(([what, ours, pinned]) => `${what} ${pinned}, this daemon needs ${ours}`).join(', ');
  } finally {
    fs.closeSync(fd);
  }
}
