// One BPF object file through libbpf: open, size its maps, load, attach and
// detach programs by name, close. Errors name the step and the errno.
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

const EPERM = 1;

export function fail(what: string, errno: number): never {
  const hint = errno === EPERM ? ' (netacct needs root, or CAP_BPF and CAP_PERFMON)' : '';
  throw new BpfError(`${what}: ${errnoText(errno)}${hint}`);
}

export class BpfObject {
  private readonly links = new Set<BpfLinkPtr>();
  private closed = false;

  private constructor(private readonly object: BpfObjectPtr) {}

  /**
   * Opens and loads `path`. Before the load, `capacities` sets maps'
   * max_entries and `rodata` the initial value of its `const volatile`
   * globals (the whole .rodata section, byte for byte).
   */
  static load(path: string, setup: { capacities?: Record<string, number>; rodata?: Buffer } = {}): BpfObject {
    const object = native.openFile(path, null) as BpfObjectPtr | null;
    if (!object) fail(`opening ${path}`, lastErrno());
    const loaded = new BpfObject(object);
    try {
      for (const [name, entries] of Object.entries(setup.capacities ?? {})) {
        const ret: number = native.setMaxEntries(loaded.map(name), entries);
        if (ret < 0) fail(`setting the capacity of map ${name} to ${entries}`, -ret);
      }
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
