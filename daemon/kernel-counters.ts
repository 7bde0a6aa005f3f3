// The kernel side as the daemon sees it: loads bpf/netacct.bpf.o, attaches its
// programs, and reads the three sources of counters (live processes through the
// task iterator, exited processes and moved-cgroup counters from hash maps).
import fs from 'node:fs';
import {
  COUNTERS_SIZE,
  MovedKey,
  ProcId,
  ProcRecord,
  STATS,
  Stat,
  readCounters,
  readU64,
} from './layout.js';
import { BpfObject, fail } from './bpf-object.js';
import { native } from './libbpf.js';

/** One process's counters in the cgroup it is in now (or was in at exit). */
export interface ProcSample {
  tgid: number;
  uid: number;
  /** CLOCK_BOOTTIME ns of the process start; with tgid, the process identity. */
  startNs: number;
  cgroupId: number;
  comm: string;
  counters: Float64Array;
}

/** Counters a process gathered in a cgroup it has left. */
export interface MovedSample {
  tgid: number;
  startNs: number;
  cgroupId: number;
  counters: Float64Array;
  /** The map key, kept byte for byte for deleting the entry. */
  key: Buffer;
}

export interface KernelStats {
  droppedNoStorage: number;
  movedFull: number;
  exitedFull: number;
}

export interface KernelCountersOptions {
  objectPath: string;
  movedCapacity: number;
  exitedCapacity: number;
}

const ENOENT = 2;
const ENOSPC = 28;

const EVENT_PROGRAMS = ['on_process_exit', 'on_cgroup_attach', 'on_send', 'on_recv'] as const;
const ITERATOR_PROGRAM = 'dump_processes';

function decodeProcRecord(buf: Buffer, offset: number): ProcSample {
  const commBytes = buf.subarray(offset + ProcRecord.comm, offset + ProcRecord.comm + ProcRecord.commSize);
  const nul = commBytes.indexOf(0);
  const counters = new Float64Array(16);
  readCounters(buf, offset + ProcRecord.counters, counters);
  return {
    tgid: buf.readUInt32LE(offset + ProcRecord.tgid),
    uid: buf.readUInt32LE(offset + ProcRecord.uid),
    startNs: readU64(buf, offset + ProcRecord.startNs),
    cgroupId: readU64(buf, offset + ProcRecord.cgroupId),
    comm: commBytes.toString('utf8', 0, nul < 0 ? commBytes.length : nul),
    counters,
  };
}

/** A hash map read in batches of `chunk` entries, with reusable buffers. */
class BatchReader {
  private chunk: number;
  private keys: Buffer;
  private values: Buffer;
  private readonly inBatch = Buffer.alloc(8);
  private readonly outBatch = Buffer.alloc(8);
  private readonly count = Buffer.alloc(4);

  constructor(
    private readonly fd: number,
    private readonly keySize: number,
    private readonly valueSize: number,
    chunk: number,
  ) {
    this.chunk = chunk;
    this.keys = Buffer.alloc(keySize * chunk);
    this.values = Buffer.alloc(valueSize * chunk);
  }

  /** Calls visit(keys, values, i) for every entry; deletes them if asked. */
  read(deleting: boolean, visit: (keys: Buffer, values: Buffer, index: number) => void): void {
    const call = deleting ? native.lookupAndDeleteBatch : native.lookupBatch;
    let first = true;
    for (;;) {
      this.count.writeUInt32LE(this.chunk);
      const ret: number = call(
        this.fd,
        first ? null : this.inBatch,
        this.outBatch,
        this.keys,
        this.values,
        this.count,
        null,
      );
      const got = this.count.readUInt32LE();
      for (let i = 0; i < got; i++) visit(this.keys, this.values, i);
      if (ret === -ENOENT) return; // end of map; `got` was the last partial chunk
      if (ret === -ENOSPC && got === 0) {
        // One hash bucket holds more entries than a chunk: grow and retry.
        this.chunk *= 2;
        this.keys = Buffer.alloc(this.keySize * this.chunk);
        this.values = Buffer.alloc(this.valueSize * this.chunk);
        continue;
      }
      if (ret < 0) fail('reading a BPF map in batches', -ret);
      this.outBatch.copy(this.inBatch);
      first = false;
    }
  }
}

export class KernelCounters {
  private readonly iterLinkFd: number;
  private readonly exited: BatchReader;
  private readonly moved: BatchReader;
  private readonly movedFd: number;
  private readonly statsFd: number;
  private readonly statsValue: Buffer;
  private iterBuffer = Buffer.alloc(256 * 1024);

  private constructor(private readonly object: BpfObject) {
    this.movedFd = object.mapFd('moved');
    this.exited = new BatchReader(object.mapFd('exited'), ProcId.size, ProcRecord.size, 1024);
    this.moved = new BatchReader(this.movedFd, MovedKey.size, COUNTERS_SIZE, 1024);
    this.statsFd = object.mapFd('stats');
    this.statsValue = Buffer.alloc(8 * native.numPossibleCpus());
    // The exit and cgroup programs go first, so that no process gets counters
    // that could not be followed to its exit or across a cgroup move.
    for (const name of EVENT_PROGRAMS) object.attach(name);
    this.iterLinkFd = native.linkFd(object.attach(ITERATOR_PROGRAM));
  }

  /** Loads, sizes and attaches; counting starts when this returns. */
  static open(options: KernelCountersOptions): KernelCounters {
    const object = BpfObject.load(options.objectPath, {
      moved: options.movedCapacity,
      exited: options.exitedCapacity,
    });
    try {
      return new KernelCounters(object);
    } catch (err) {
      object.close();
      throw err;
    }
  }

  /** Every live process that has counters, read from the kernel now. */
  readLive(): ProcSample[] {
    const fd: number = native.iterCreate(this.iterLinkFd);
    if (fd < 0) fail('starting the process iterator', -fd);
    let length = 0;
    try {
      for (;;) {
        if (this.iterBuffer.length - length < 64 * 1024) {
          const bigger = Buffer.alloc(this.iterBuffer.length * 2);
          this.iterBuffer.copy(bigger, 0, 0, length);
          this.iterBuffer = bigger;
        }
        const n = fs.readSync(fd, this.iterBuffer, length, this.iterBuffer.length - length, null);
        if (n === 0) break;
        length += n;
      }
    } finally {
      fs.closeSync(fd);
    }
    const samples: ProcSample[] = [];
    for (let offset = 0; offset + ProcRecord.size <= length; offset += ProcRecord.size) {
      samples.push(decodeProcRecord(this.iterBuffer, offset));
    }
    return samples;
  }

  /** Final counters of processes that exited since the last drain; removes them. */
  drainExited(): ProcSample[] {
    const samples: ProcSample[] = [];
    this.exited.read(true, (_keys, values, i) => {
      samples.push(decodeProcRecord(values, i * ProcRecord.size));
    });
    return samples;
  }

  readMoved(): MovedSample[] {
    const samples: MovedSample[] = [];
    this.moved.read(false, (keys, values, i) => {
      const k = i * MovedKey.size;
      const counters = new Float64Array(16);
      readCounters(values, i * COUNTERS_SIZE, counters);
      samples.push({
        tgid: keys.readUInt32LE(k + MovedKey.tgid),
        startNs: readU64(keys, k + MovedKey.startNs),
        cgroupId: readU64(keys, k + MovedKey.cgroupId),
        counters,
        key: Buffer.from(keys.subarray(k, k + MovedKey.size)),
      });
    });
    return samples;
  }

  /** Deletes moved entries of processes that have exited (nothing writes them any more). */
  deleteMoved(keys: readonly Buffer[]): void {
    for (const key of keys) native.deleteElem(this.movedFd, key);
  }

  readStats(): KernelStats {
    const key = Buffer.alloc(4);
    const totals = new Array<number>(STATS).fill(0);
    for (let stat = 0; stat < STATS; stat++) {
      key.writeUInt32LE(stat);
      const ret: number = native.lookupElem(this.statsFd, key, this.statsValue);
      if (ret < 0) fail('reading the BPF stats map', -ret);
      for (let cpu = 0; cpu * 8 < this.statsValue.length; cpu++) {
        totals[stat]! += readU64(this.statsValue, cpu * 8);
      }
    }
    return {
      droppedNoStorage: totals[Stat.noStorage]!,
      movedFull: totals[Stat.movedFull]!,
      exitedFull: totals[Stat.exitedFull]!,
    };
  }

  /** Detaches every program and frees the object. Safe to call twice. */
  close(): void {
    this.object.close();
  }
}
