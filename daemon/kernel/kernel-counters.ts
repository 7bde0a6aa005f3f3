// The kernel side as the daemon sees it: loads bpf/netacct.bpf.o, attaches its
// programs, and reads what they record: slots (a process's counters in its
// current cgroup), overflow parts (counters that did not fit a slot), exit
// records, and who each live process is (through a task iterator).
import fs from 'node:fs';
import path from 'node:path';
import { ALL_COUNTING_PROGRAMS, type AttachMode, SPLICE_READ_PROGRAMS, chooseAttachMode, countingPrograms, probeKernel } from './attach-mode.js';
import { BpfObject, BpfError, PinMismatchError, fail, mapIdOf, pinnedMapId } from './bpf-object.js';
import { bootId } from './boot-time.js';
import {
  COUNTERS_SIZE,
  HOST_UID,
  LAYOUT_VERSION,
  OWNER_SIZE,
  PartKey,
  PeerKey,
  ProcId,
  ProcInfo,
  STATS,
  Settings,
  Slot,
  SlotState,
  Stat,
  Thread,
  ThreadKey,
  ThreadState,
  UnattributedKey,
  HELD_SIZE,
  PeerOverflowKey,
  Share,
  SHARES,
  readU64,
} from './layout.js';
import { DEFAULT_SHARES, SHARE_UIDS, ShareLedger, type ShareOptions, decodeHeld, writeShares } from './map-shares.js';
import { type BpfLinkPtr, mapShared, native } from './libbpf.js';
import { activeGeneration, nextGeneration, takeOver } from './counting-generations.js';

/** Who a process is (struct netacct_proc_info). */
export interface ProcInfoSample {
  tgid: number;
  uid: number;
  /** CLOCK_BOOTTIME ns of the process start; with tgid, the process identity. */
  startNs: number;
  cgroupId: number;
  comm: string;
}

/** Counters of one process in one cgroup, from a slot or an overflow entry. */
export interface PartSample {
  tgid: number;
  startNs: number;
  cgroupId: number;
  counters: ArrayLike<number>;
}

/**
 * Receives one slot that holds a process's counters: its index, its state
 * (SlotState.active, .exited or .moved; slots being claimed are skipped),
 * whose it is and its counters. `counters` is reused for the next slot: copy
 * what you keep. `claimedBy(index)` decodes the uid and name recorded when
 * the slot was claimed (only call it when you need them: it allocates).
 */
export type SlotVisitor = (
  index: number,
  state: number,
  tgid: number,
  startNs: number,
  cgroupId: number,
  counters: Float64Array,
  claimedBy: (index: number) => { uid: number; comm: string },
) => void;

export interface OverflowSample extends PartSample {
  /** The calling thread's real uid: whose share of the map the entry is counted in. */
  uid: number;
  /** The key's u64 fields as 32-bit halves: startNs may exceed 2^53, and deleting needs the exact key. */
  startLow: number;
  startHigh: number;
  cgroupLow: number;
  cgroupHigh: number;
}

/** An unattributed row: calls no process row could take, of `uid` in `cgroupId` (the host's: HOST_UID, 0). */
export interface UnattributedSample {
  uid: number;
  cgroupId: number;
  counters: number[];
}

/** One thread's counters (per-thread counting is on). */
export interface ThreadSample {
  tid: number;
  tgid: number;
  /** The thread's start (CLOCK_BOOTTIME ns); with tid, the thread identity. */
  startNs: number;
  processStartNs: number;
  comm: string;
  exited: boolean;
  counters: number[];
  /** Where it is: a thread slot's index, or the exact hash key (startNs may exceed 2^53). */
  where: { slot: number } | { key: Buffer };
}

/** A peer as the kernel keys it: the address (16 bytes, IPv4 as ::ffff:a.b.c.d, all zero when not known) and the ports (0: not kept). */
export interface PeerAddress {
  address: Buffer;
  remotePort: number;
  localPort: number;
}

/** One process's counters with one peer (per-peer counting is on), or its overflow row (`peer` null). */
export interface PeerSample {
  tgid: number;
  /** The calling thread's real uid: whose share of the map the entry is counted in. */
  uid: number;
  startNs: number;
  peer: PeerAddress | null;
  counters: number[];
  /** The exact key, for deleting it (startNs may exceed 2^53). */
  key: Buffer;
}

export interface KernelStats {
  /** Calls counted in an unattributed row, not in their process's: the overflow map was full. */
  unattributed: number;
  /** Of those, calls counted in the host's row: the unattributed map was full too. */
  unattributedFull: number;
  /** Calls not counted at all (the host's row was missing): never, unless there is a bug. */
  lost: number;
  /** Entries not created because their user held its share of the map (its calls went to a coarser row). */
  overShare: number;
  exitedFull: number;
  noStorage: number;
  slotsRetired: number;
  threadsFull: number;
  threadsExited: number;
  /** Peer calls counted in a process's overflow row (the peers map was full). */
  peersFull: number;
  /** Peer calls not counted per peer at all (the overflow rows were full too). */
  peersLost: number;
}

export interface KernelCountersOptions {
  objectPath: string;
  /**
   * Where the maps are pinned so that counters survive a restart (in a
   * subdirectory per layout version), or null for maps of this process only.
   */
  pinDir: string | null;
  /** Process slots: a power of two. */
  slots: number;
  overflowCapacity: number;
  /** (uid, cgroup) rows for calls no process row could take (the host's row is one more). */
  unattributedCapacity?: number;
  exitedCapacity: number;
  /** Per-thread counters in this many thread slots (a power of two), or 0 for none (no cost per event). */
  threadCapacity: number;
  /** Entries for threads whose slot is taken (default: threadCapacity). */
  threadOverflowCapacity?: number;
  /** Kernel entries for (process, peer) pairs, or 0 for no per-peer counting (no cost per event). */
  peerCapacity?: number;
  /** How to count (attach-mode.ts); default: what the running kernel offers (auto). */
  attachMode?: AttachMode;
  /** Each user's share of the maps it can fill (map-shares.ts); default DEFAULT_SHARES. */
  shares?: ShareOptions;
  /** The generation the counting programs are loaded as (counting-generations.ts); default 0, what a new control map holds. */
  generation?: number;
}

/**
 * net.ipv4.ip_local_port_range (it applies to IPv6 too), which tells the
 * programs which port of a peer is ephemeral; Linux's default when unreadable.
 */
export function ephemeralPorts(file = '/proc/sys/net/ipv4/ip_local_port_range'): [number, number] {
  try {
    const [low, high] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (low! >= 1 && high! <= 65535 && low! <= high!) return [low!, high!];
  } catch {
    // not readable: the default below
  }
  return [32768, 60999];
}

/** The counting programs for `mode` (default: probed, auto) on the running kernel. */
function countingProgramsFor(mode: AttachMode | undefined): string[] {
  const features = probeKernel();
  return countingPrograms(mode ?? chooseAttachMode('auto', features), features);
}

/** Processes at most with a peer overflow row at a time (peer_overflow's capacity, unless slots are fewer). */
const PEER_OVERFLOW_ROWS = 4096;

const ENOENT = 2;
const EEXIST = 17;
/** bpf_map_update_elem's flag: only if the key is new. */
const BPF_NOEXIST = 1;
const ENOSPC = 28;
const E2BIG = 7;

const FOLLOWING_PROGRAMS = ['on_process_exit', 'on_cgroup_attach', 'on_exec'] as const;
const ITERATOR_PROGRAM = 'dump_processes';
// Peers too: a process's peers add up to its counters across restarts.
const PINNED_MAPS = ['owners', 'slots', 'overflow', 'unattributed', 'exited', 'tracked', 'splicing', 'stats', 'cgroup_totals', 'peers', 'peer_overflow', 'share_created', 'share_released', 'control'];

/** Default (uid, cgroup) rows of calls that no process row could take. */
export const DEFAULT_UNATTRIBUTED_CAPACITY = 16384;

/** A NUL-padded char[16] as a string. */
function decodeComm(buf: Buffer, offset: number): string {
  const comm = buf.subarray(offset, offset + ProcInfo.commSize);
  const nul = comm.indexOf(0);
  return comm.toString('utf8', 0, nul < 0 ? comm.length : nul);
}

/** The u64 whose little-endian halves are words[i] and words[i + 1], as a Number (see readU64). */
function wordsU64(words: Uint32Array, i: number): number {
  return words[i]! + words[i + 1]! * 0x1_0000_0000;
}

function decodeInfo(buf: Buffer, offset: number): ProcInfoSample {
  return {
    tgid: buf.readUInt32LE(offset + ProcInfo.tgid),
    uid: buf.readUInt32LE(offset + ProcInfo.uid),
    startNs: readU64(buf, offset + ProcInfo.startNs),
    cgroupId: readU64(buf, offset + ProcInfo.cgroupId),
    comm: decodeComm(buf, offset + ProcInfo.comm),
  };
}

/** A map read in batches of `chunk` entries, with reusable buffers. */
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

/** Loads bpf/netacct.bpf.o sized as configured, without attaching anything. */
export function loadNetacctObject(options: KernelCountersOptions, pinDir: string | null = null): BpfObject {
  const { slots } = options;
  if (!Number.isInteger(Math.log2(slots))) throw new BpfError(`the slot count must be a power of two, not ${slots}`);
  // Arrays and a hash need one entry even when per-thread counting is off.
  const threads = Math.max(1, options.threadCapacity);
  if (!Number.isInteger(Math.log2(threads))) throw new BpfError(`the thread capacity must be a power of two, not ${threads}`);
  const counting = countingProgramsFor(options.attachMode);
  const rodata = Buffer.alloc(Settings.size); // const volatile struct netacct_settings
  rodata.writeUInt32LE(slots - 1, Settings.slotMask);
  rodata.writeUInt32LE(options.threadCapacity > 0 ? 1 : 0, Settings.countThreads);
  rodata.writeUInt32LE(threads - 1, Settings.threadMask);
  const peers = options.peerCapacity ?? 0;
  rodata.writeUInt32LE(peers > 0 ? 1 : 0, Settings.countPeers);
  const [ephemeralLow, ephemeralHigh] = ephemeralPorts();
  rodata.writeUInt16LE(ephemeralLow, Settings.ephemeralLow);
  rodata.writeUInt16LE(ephemeralHigh, Settings.ephemeralHigh);
  const unattributed = options.unattributedCapacity ?? DEFAULT_UNATTRIBUTED_CAPACITY;
  const peerOverflow = peers > 0 ? Math.min(slots, PEER_OVERFLOW_ROWS) : 1;
  const byShare = [];
  byShare[Share.overflow] = options.overflowCapacity;
  byShare[Share.unattributed] = unattributed;
  byShare[Share.peers] = Math.max(1, peers);
  byShare[Share.peerOverflow] = peerOverflow;
  byShare[Share.exited] = options.exitedCapacity;
  writeShares(rodata, byShare, options.shares ?? DEFAULT_SHARES);
  rodata.writeUInt32LE(options.generation ?? 0, Settings.generation);
  return BpfObject.load(options.objectPath, {
    capacities: {
      owners: slots,
      slots,
      overflow: options.overflowCapacity,
      // One more for the host's row, which is never deleted; users' own rows (uid, cgroup 0) share the rest.
      unattributed: unattributed + 1,
      exited: options.exitedCapacity,
      thread_owners: threads,
      thread_slots: threads,
      threads: options.threadCapacity > 0 ? (options.threadOverflowCapacity ?? threads) : 1,
      peers: Math.max(1, peers),
      // Rows of processes whose pairs did not fit; beyond these, calls are only counted as lost (preallocated: 190 B each).
      peer_overflow: peerOverflow,
      share_created: SHARE_UIDS,
      share_released: SHARE_UIDS,
    },
    rodata,
    // Programs of the other mode are not even loaded: their attach points may not exist here.
    skipPrograms: ALL_COUNTING_PROGRAMS.filter((name) => !counting.includes(name)),
    ...(pinDir ? { pinned: { dir: pinDir, maps: PINNED_MAPS } } : {}),
  });
}

/**
 * Loads with the maps pinned under `pinDir`/v<layout>: counters survive a
 * restart. Pinned maps of another layout version, or that do not match this
 * configuration (a changed capacity), are discarded with a `notice`: counters
 * then start from zero, never from a misread layout.
 */
function loadPinned(options: KernelCountersOptions, pinDir: string, notice: (message: string) => void): BpfObject {
  const dir = path.join(pinDir, `v${LAYOUT_VERSION}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const other of fs.readdirSync(pinDir)) {
    if (/^v\d+$/.test(other) && other !== `v${LAYOUT_VERSION}`) {
      notice(`removing pinned maps of layout ${other} in ${pinDir} (this daemon uses v${LAYOUT_VERSION}): their counters are dropped`);
      fs.rmSync(path.join(pinDir, other), { recursive: true, force: true });
    }
  }
  try {
    return loadNetacctObject(options, dir);
  } catch (err) {
    if (!(err instanceof PinMismatchError)) throw err;
    notice(`pinned maps in ${dir} do not match this daemon (${err.message}): discarding them, counters start from zero`);
    // Their programs' links too: they count into the discarded maps.
    for (const file of fs.readdirSync(dir)) fs.rmSync(path.join(dir, file), { recursive: true });
    return loadNetacctObject(options, dir);
  }
}

export class KernelCounters {
  private readonly iterLinkFd: number;
  private readonly ownersFd: number;
  /** owners[] and slots[] mapped into this process, read in place. */
  private readonly ownerWords: Uint32Array;
  private readonly slotWords: Uint32Array;
  private readonly slotDoubles: Float64Array;
  private readonly slotBytes: Buffer;
  private readonly unmap: Array<() => void> = [];
  private readonly scratchCounters = new Float64Array(16);
  private readonly scratchDouble = new Float64Array(1);
  private readonly scratchHalves = new Uint32Array(this.scratchDouble.buffer);
  private readonly overflow: BatchReader;
  private readonly overflowFd: number;
  private readonly exited: BatchReader;
  private readonly threads: BatchReader;
  private readonly threadsFd: number;
  private readonly threadOwnersFd: number;
  /** thread_owners[] and thread_slots[] mapped in, when per-thread counting is on. */
  private readonly threadSlots: { count: number; owners: Uint32Array; words: Uint32Array; doubles: Float64Array; bytes: Buffer } | null = null;
  private readonly peers: BatchReader;
  private readonly peersFd: number;
  private readonly peerOverflow: BatchReader;
  private readonly peerOverflowFd: number;
  private readonly statsFd: number;
  /** Gives users back their share of a map as the daemon deletes their entries. */
  private readonly shares: ShareLedger;
  private readonly unattributedFd: number;
  private readonly unattributed: BatchReader;
  private readonly cgroupTotalsFd: number;
  private readonly cgroupTotals: BatchReader;
  private readonly statsValue: Buffer;
  private readonly indexKey = Buffer.alloc(4);
  private readonly freeTag = Buffer.alloc(OWNER_SIZE);
  private iterBuffer = Buffer.alloc(256 * 1024);

  private constructor(
    private readonly object: BpfObject,
    private readonly slotCount: number,
    threadCount: number,
    countingPrograms: readonly string[],
    generation: number,
    /** Where the maps are pinned (and the links with them), or null. */
    mapsDir: string | null,
  ) {
    this.ownersFd = object.mapFd('owners');
    const owners = mapShared(this.ownersFd, slotCount * OWNER_SIZE);
    this.unmap.push(owners.unmap);
    this.ownerWords = new Uint32Array(owners.view);
    const slots = mapShared(object.mapFd('slots'), slotCount * Slot.size);
    this.unmap.push(slots.unmap);
    this.slotWords = new Uint32Array(slots.view);
    this.slotDoubles = new Float64Array(slots.view);
    this.slotBytes = Buffer.from(slots.view);
    this.overflowFd = object.mapFd('overflow');
    this.overflow = new BatchReader(this.overflowFd, PartKey.size, COUNTERS_SIZE, 1024);
    this.exited = new BatchReader(object.mapFd('exited'), ProcId.size, ProcInfo.size, 1024);
    this.threadsFd = object.mapFd('threads');
    this.threads = new BatchReader(this.threadsFd, ThreadKey.size, Thread.size, 1024);
    this.threadOwnersFd = object.mapFd('thread_owners');
    if (threadCount > 0) {
      const owners = mapShared(this.threadOwnersFd, threadCount * OWNER_SIZE);
      this.unmap.push(owners.unmap);
      const slots = mapShared(object.mapFd('thread_slots'), threadCount * Thread.size);
      this.unmap.push(slots.unmap);
      this.threadSlots = {
        count: threadCount,
        owners: new Uint32Array(owners.view),
        words: new Uint32Array(slots.view),
        doubles: new Float64Array(slots.view),
        bytes: Buffer.from(slots.view),
      };
    }
    this.peersFd = object.mapFd('peers');
    this.peers = new BatchReader(this.peersFd, PeerKey.size, COUNTERS_SIZE, 1024);
    this.peerOverflowFd = object.mapFd('peer_overflow');
    this.peerOverflow = new BatchReader(this.peerOverflowFd, PeerOverflowKey.size, COUNTERS_SIZE, 1024);
    this.statsFd = object.mapFd('stats');
    this.shares = new ShareLedger(object.mapFd('share_released'));
    this.unattributedFd = object.mapFd('unattributed');
    this.unattributed = new BatchReader(this.unattributedFd, UnattributedKey.size, COUNTERS_SIZE, 256);
    this.cgroupTotalsFd = object.mapFd('cgroup_totals');
    this.cgroupTotals = new BatchReader(this.cgroupTotalsFd, 8, COUNTERS_SIZE, 1024);
    this.statsValue = Buffer.alloc(8 * native.numPossibleCpus());
    this.createHostRow();
    this.reconcileShares();
    // The exit and cgroup programs go first, so that no process gets counters
    // that could not be followed to its exit or across a cgroup move.
    const kept = new Map<string, BpfLinkPtr>();
    for (const name of FOLLOWING_PROGRAMS) kept.set(name, object.attach(name));
    this.iterLinkFd = native.linkFd(object.attach(ITERATOR_PROGRAM));
    this.retiredOrphans = this.retireOrphanSlots();
    for (const name of countingPrograms.filter((program) => !SPLICE_READ_PROGRAMS.includes(program))) kept.set(name, object.attach(name));
    this.spliceNotCounted = countingPrograms.some((program) => SPLICE_READ_PROGRAMS.includes(program)) ? this.attachSpliceReads(kept) : null;
    ({ retired: this.replacedGenerations, unpinned: this.unpinnedPrograms } = takeOver(object, generation, kept, mapsDir, SPLICE_READ_PROGRAMS));
  }

  /**
   * Which counters these are: the boot and the kernel's id of the pinned
   * maps (an id is not reused while the maps exist). History's positions
   * are of one identity.
   */
  identity = '';
  /** Whether the maps were made by this daemon (its counters began with it), rather than found pinned. */
  mapsCreated = true;

  /** Generations of programs left attached (by daemons before this one) that this one took over from. */
  readonly replacedGenerations: number;
  /** Programs that detach with this daemon: their link could not be pinned. */
  readonly unpinnedPrograms: string[];
  /** Why splice(2) out of TCP sockets is not counted here, or null when it is. */
  readonly spliceNotCounted: string | null;

  /**
   * The splice system call's two tracepoint programs, or neither: they are
   * perf events, which a kernel may refuse without CAP_SYS_ADMIN (Debian's
   * kernel.perf_event_paranoid 3), and counting goes on without them.
   */
  private attachSpliceReads(kept: Map<string, BpfLinkPtr>): string | null {
    const attached: BpfLinkPtr[] = [];
    try {
      for (const name of SPLICE_READ_PROGRAMS) {
        const link = this.object.attach(name);
        attached.push(link);
        kept.set(name, link);
      }
      return null;
    } catch (err) {
      for (const link of attached) this.object.detach(link);
      for (const name of SPLICE_READ_PROGRAMS) kept.delete(name);
      return (err as Error).message;
    }
  }

  /** Slots of reused (pinned) maps whose process exited while no daemon ran. */
  readonly retiredOrphans: number;

  /**
   * With pinned maps, processes may have exited while nothing recorded it:
   * their slots would still say ACTIVE, and a new process given the same PID
   * would add to them. Before counting starts, every ACTIVE slot whose
   * process the iterator does not list is marked EXITED (read and freed as
   * any other; the process is retired with its final counters).
   */
  private retireOrphanSlots(): number {
    const live = new Set(this.readLive().map((info) => `${info.tgid}:${info.startNs}`));
    const orphans: Array<[number, number]> = [];
    this.visitSlots((index, state, tgid, startNs) => {
      if (state === SlotState.active && !live.has(`${tgid}:${startNs}`)) orphans.push([index, tgid]);
    });
    const owner = Buffer.alloc(OWNER_SIZE);
    for (const [index, tgid] of orphans) {
      this.indexKey.writeUInt32LE(index);
      owner.writeUInt32LE(tgid, 0);
      owner.writeUInt32LE(SlotState.exited, 4);
      const ret: number = native.updateElem(this.ownersFd, this.indexKey, owner, 0);
      if (ret < 0) fail(`retiring slot ${index}`, -ret);
    }
    return orphans.length;
  }

  /** What each user holds in the shared maps, counted from their keys (map-shares.ts reconcile). */
  private reconcileShares(): void {
    const created = new Map<number, bigint[]>();
    new BatchReader(this.object.mapFd('share_created'), 4, HELD_SIZE, 256).read(false, (keys, values, i) => created.set(...decodeHeld(keys, values, i)));
    const held = new Map<number, number[]>();
    const hold = (uid: number, kind: number): void => {
      let counts = held.get(uid);
      if (!counts) held.set(uid, (counts = new Array<number>(SHARES).fill(0)));
      counts[kind]!++;
    };
    for (const part of this.readOverflow()) hold(part.uid, Share.overflow);
    for (const row of this.readUnattributed()) if (row.uid !== HOST_UID) hold(row.uid, Share.unattributed);
    for (const sample of this.readPeers()) hold(sample.uid, sample.peer ? Share.peers : Share.peerOverflow);
    this.exited.read(false, (_keys, values, i) => hold(values.readUInt32LE(i * ProcInfo.size + ProcInfo.uid), Share.exited));
    this.shares.reconcile(created, held);
  }

  /** The host's unattributed row, before any program can need it (kept as it is in reused pinned maps). */
  private createHostRow(): void {
    const key = Buffer.alloc(UnattributedKey.size);
    key.writeUInt32LE(HOST_UID, UnattributedKey.uid);
    const ret: number = native.updateElem(this.unattributedFd, key, Buffer.alloc(COUNTERS_SIZE), BPF_NOEXIST);
    if (ret < 0 && ret !== -EEXIST) fail("creating the host's unattributed row", -ret);
  }

  /** Loads, sizes and attaches; counting starts when this returns. `notice` gets what to log. */
  static open(options: KernelCountersOptions, notice: (message: string) => void = () => {}): KernelCounters {
    const mapsDir = options.pinDir ? path.join(options.pinDir, `v${LAYOUT_VERSION}`) : null;
    const generation = nextGeneration(mapsDir ? activeGeneration(mapsDir) : 0);
    const loading = { ...options, generation };
    const pinnedBefore = mapsDir ? pinnedMapId(path.join(mapsDir, 'cgroup_totals')) : null;
    const object = options.pinDir ? loadPinned(loading, options.pinDir, notice) : loadNetacctObject(loading);
    try {
      const counters = new KernelCounters(object, options.slots, options.threadCapacity, countingProgramsFor(options.attachMode), generation, mapsDir);
      const mapId = mapIdOf(object.mapFd('cgroup_totals'));
      counters.identity = `${bootId()}/${mapId}`;
      counters.mapsCreated = pinnedBefore !== mapId;
      return counters;
    } catch (err) {
      object.close();
      throw err;
    }
  }

  /** Who every live process with counters is, read from the kernel now. */
  readLive(): ProcInfoSample[] {
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
    const infos: ProcInfoSample[] = [];
    for (let offset = 0; offset + ProcInfo.size <= length; offset += ProcInfo.size) {
      infos.push(decodeInfo(this.iterBuffer, offset));
    }
    return infos;
  }

  /** Processes that exited since the last drain; removes their records. */
  drainExited(): ProcInfoSample[] {
    const infos: ProcInfoSample[] = [];
    this.exited.read(true, (_keys, values, i) => infos.push(decodeInfo(values, i * ProcInfo.size)));
    for (const info of infos) this.shares.release(Share.exited, info.uid); // deleted by the batch read
    this.shares.flush();
    return infos;
  }

  /** Calls `visit` for every slot that holds a process's counters, read in place. */
  visitSlots(visit: SlotVisitor): void {
    const owners = this.ownerWords;
    const words = this.slotWords;
    const doubles = this.slotDoubles;
    const counters = this.scratchCounters;
    const SLOT_WORDS = Slot.size / 4;
    const SLOT_DOUBLES = Slot.size / 8;
    for (let index = 0; index < this.slotCount; index++) {
      const state = owners[index * 2 + 1]!;
      if (state === 0 || state === SlotState.claiming) continue;
      const base = index * SLOT_WORDS;
      const countersBase = index * SLOT_DOUBLES + Slot.counters / 8;
      for (let i = 0; i < 16; i++) counters[i] = this.loadU64(doubles, countersBase + i);
      visit(
        index,
        state,
        owners[index * 2]!,
        wordsU64(words, base + Slot.startNs / 4),
        wordsU64(words, base + Slot.cgroupId / 4),
        counters,
        this.claimedBy,
      );
    }
  }

  private readonly claimedBy = (index: number): { uid: number; comm: string } => ({
    uid: this.slotWords[(index * Slot.size + Slot.uid) / 4]!,
    comm: decodeComm(this.slotBytes, index * Slot.size + Slot.comm),
  });

  readOverflow(): OverflowSample[] {
    const samples: OverflowSample[] = [];
    let keyWords: Uint32Array | null = null;
    let valueWords: Uint32Array | null = null;
    this.overflow.read(false, (keys, values, i) => {
      if (i === 0) {
        keyWords = new Uint32Array(keys.buffer, keys.byteOffset, keys.length / 4);
        valueWords = new Uint32Array(values.buffer, values.byteOffset, values.length / 4);
      }
      const k = (i * PartKey.size) / 4;
      const v = (i * COUNTERS_SIZE) / 4;
      // A plain array: allocating one is several times cheaper than a Float64Array.
      const counters: number[] = [];
      for (let c = 0; c < 16; c++) counters.push(wordsU64(valueWords!, v + c * 2));
      const startLow = keyWords![k + PartKey.startNs / 4]!;
      const startHigh = keyWords![k + PartKey.startNs / 4 + 1]!;
      const cgroupLow = keyWords![k + PartKey.cgroupId / 4]!;
      const cgroupHigh = keyWords![k + PartKey.cgroupId / 4 + 1]!;
      samples.push({
        tgid: keyWords![k + PartKey.tgid / 4]!,
        uid: keyWords![k + PartKey.uid / 4]!,
        startNs: startLow + startHigh * 0x1_0000_0000,
        cgroupId: cgroupLow + cgroupHigh * 0x1_0000_0000,
        counters,
        startLow,
        startHigh,
        cgroupLow,
        cgroupHigh,
      });
    });
    return samples;
  }

  /** Every thread's counters, from the thread slots and the hash (empty unless per-thread counting is on). */
  readThreads(): ThreadSample[] {
    const samples: ThreadSample[] = [];
    const slots = this.threadSlots;
    if (!slots) return samples;
    const THREAD_WORDS = Thread.size / 4;
    for (let index = 0; index < slots.count; index++) {
      const state = slots.owners[index * 2 + 1]!;
      if (state !== SlotState.active && state !== SlotState.exited) continue; // free, or being claimed
      const base = index * THREAD_WORDS;
      const countersBase = (index * Thread.size + Thread.counters) / 8;
      const counters: number[] = [];
      for (let c = 0; c < 16; c++) counters.push(this.loadU64(slots.doubles, countersBase + c));
      samples.push({
        tid: slots.words[base + Thread.tid / 4]!,
        tgid: slots.words[base + Thread.tgid / 4]!,
        startNs: wordsU64(slots.words, base + Thread.startNs / 4),
        processStartNs: wordsU64(slots.words, base + Thread.processStartNs / 4),
        comm: decodeComm(slots.bytes, index * Thread.size + Thread.comm),
        exited: state === SlotState.exited,
        counters,
        where: { slot: index },
      });
    }
    this.threads.read(false, (keys, values, i) => {
      const k = i * ThreadKey.size;
      const v = i * Thread.size;
      const counters: number[] = [];
      for (let c = 0; c < 16; c++) counters.push(readU64(values, v + Thread.counters + c * 8));
      samples.push({
        tid: keys.readUInt32LE(k + ThreadKey.tid),
        tgid: keys.readUInt32LE(k + ThreadKey.tgid),
        startNs: readU64(keys, k + ThreadKey.startNs),
        processStartNs: readU64(values, v + Thread.processStartNs),
        comm: decodeComm(values, v + Thread.comm),
        exited: values.readUInt32LE(v + Thread.state) === ThreadState.exited,
        counters,
        where: { key: Buffer.from(keys.subarray(k, k + ThreadKey.size)) },
      });
    });
    return samples;
  }

  /** Frees the slots and deletes the entries of threads that exited, once read for the last time. */
  deleteThreads(threads: readonly ThreadSample[]): void {
    for (const { where } of threads) {
      if ('key' in where) {
        native.deleteElem(this.threadsFd, where.key);
        continue;
      }
      this.freeOwner(this.threadOwnersFd, where.slot, 'thread slot');
    }
  }

  /**
   * The (process, peer) pairs' counters and the processes' overflow rows
   * (empty unless per-peer counting is on); only those of processes whose
   * tgid `wanted` accepts are decoded (decoding is most of a read's cost).
   */
  readPeers(wanted: (tgid: number) => boolean = () => true): PeerSample[] {
    const samples: PeerSample[] = [];
    const read = (reader: BatchReader, keySize: number, decode: (key: Buffer, counters: number[]) => PeerSample): void => {
      let keys: Buffer | null = null;
      let valueWords: Uint32Array | null = null;
      let batch = 0;
      let copied = -1;
      reader.read(false, (batchKeys, values, i) => {
        if (i === 0) batch++;
        if (!wanted(batchKeys.readUInt32LE(i * keySize))) return; // tgid: the first field of both keys
        if (copied !== batch) {
          // One copy of the batch's keys (each sample keeps its own slice), its values read as words.
          keys = Buffer.from(batchKeys);
          valueWords = new Uint32Array(values.buffer, values.byteOffset, values.length / 4);
          copied = batch;
        }
        const key = keys!.subarray(i * keySize, (i + 1) * keySize);
        const v = (i * COUNTERS_SIZE) / 4;
        const counters: number[] = [];
        for (let c = 0; c < 16; c++) counters.push(wordsU64(valueWords!, v + c * 2));
        samples.push(decode(key, counters));
      });
    };
    read(this.peers, PeerKey.size, (key, counters) => ({
      tgid: key.readUInt32LE(PeerKey.tgid),
      uid: key.readUInt32LE(PeerKey.uid),
      startNs: readU64(key, PeerKey.startNs),
      peer: { address: key.subarray(PeerKey.addr, PeerKey.addr + PeerKey.addrSize), remotePort: key.readUInt16LE(PeerKey.remotePort), localPort: key.readUInt16LE(PeerKey.localPort) },
      counters,
      key,
    }));
    read(this.peerOverflow, PeerOverflowKey.size, (key, counters) => ({
      tgid: key.readUInt32LE(PeerOverflowKey.tgid),
      uid: key.readUInt32LE(PeerOverflowKey.uid),
      startNs: readU64(key, PeerOverflowKey.startNs),
      peer: null,
      counters,
      key,
    }));
    return samples;
  }

  /** (process, peer) pairs in the kernel now. */
  countPeers(): number {
    let pairs = 0;
    this.peers.read(false, () => void pairs++);
    return pairs;
  }

  /** Deletes the entries of processes that exited, once read for the last time. */
  deletePeers(samples: readonly PeerSample[]): void {
    for (const { peer, key, uid } of samples) this.deleteShared(peer ? this.peersFd : this.peerOverflowFd, key, peer ? Share.peers : Share.peerOverflow, uid);
    this.shares.flush();
  }

  /** Writes 0 (free) into owners[index] of the map `ownersFd`. */
  private freeOwner(ownersFd: number, index: number, what: string): void {
    this.indexKey.writeUInt32LE(index);
    const ret: number = native.updateElem(ownersFd, this.indexKey, this.freeTag, 0);
    if (ret < 0) fail(`freeing ${what} ${index}`, -ret);
  }

  /**
   * A u64 of a mapped array as a Number, in one 8-byte load, so that an
   * atomic add in flight is never seen half done (two 4-byte loads could
   * straddle a carry). Counters stay far below the bit patterns of NaNs.
   */
  private loadU64(doubles: Float64Array, index: number): number {
    this.scratchDouble[0] = doubles[index]!;
    return this.scratchHalves[0]! + this.scratchHalves[1]! * 0x1_0000_0000;
  }

  /** Frees slots the daemon has read for the last time (EXITED or MOVED). */
  freeSlots(indexes: readonly number[]): void {
    for (const index of indexes) this.freeOwner(this.ownersFd, index, 'slot');
  }


  /** The pinned totals of forgotten processes per cgroup id (cgroup_totals: the daemon's own, no program writes it). */
  readCgroupTotals(): Map<number, number[]> {
    const totals = new Map<number, number[]>();
    this.cgroupTotals.read(false, (keys, values, i) => {
      const counters: number[] = [];
      for (let c = 0; c < 16; c++) counters.push(Number(values.readBigUInt64LE(i * COUNTERS_SIZE + c * 8)));
      totals.set(Number(keys.readBigUInt64LE(i * 8)), counters);
    });
    return totals;
  }

  /** Stores a cgroup's totals; false when the map is full (the caller folds them elsewhere). */
  writeCgroupTotals(cgroupId: number, counters: ArrayLike<number>): boolean {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(BigInt(cgroupId));
    const value = Buffer.alloc(COUNTERS_SIZE);
    for (let c = 0; c < 16; c++) value.writeBigUInt64LE(BigInt(counters[c]!), c * 8);
    const ret: number = native.updateElem(this.cgroupTotalsFd, key, value, 0);
    if (ret === -E2BIG) return false;
    if (ret < 0) fail(`storing the totals of cgroup ${cgroupId}`, -ret);
    return true;
  }

  deleteCgroupTotals(cgroupId: number): void {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(BigInt(cgroupId));
    native.deleteElem(this.cgroupTotalsFd, key);
  }

  /** Every unattributed row (the host's too), read in place of the process rows that could not take them. */
  readUnattributed(): UnattributedSample[] {
    const samples: UnattributedSample[] = [];
    this.unattributed.read(false, (keys, values, i) => {
      const counters: number[] = [];
      for (let c = 0; c < 16; c++) counters.push(readU64(values, i * COUNTERS_SIZE + c * 8));
      const k = i * UnattributedKey.size;
      samples.push({ uid: keys.readUInt32LE(k + UnattributedKey.uid), cgroupId: readU64(keys, k + UnattributedKey.cgroupId), counters });
    });
    return samples;
  }

  /** Deletes the row of (uid, cgroup): only for a removed cgroup (no process left to add to it), once read. */
  deleteUnattributed(uid: number, cgroupId: number): void {
    const key = Buffer.alloc(UnattributedKey.size);
    key.writeUInt32LE(uid, UnattributedKey.uid);
    key.writeBigUInt64LE(BigInt(cgroupId), UnattributedKey.cgroupId);
    this.deleteShared(this.unattributedFd, key, Share.unattributed, uid);
    this.shares.flush();
  }

  /** Deletes `key` of the map `fd`, an entry of `kind` in `uid`'s share, given back once really gone (flush after). */
  private deleteShared(fd: number, key: Buffer, kind: number, uid: number): void {
    if (native.deleteElem(fd, key) === 0) this.shares.release(kind, uid);
  }

  /** Deletes overflow entries of processes that have exited (nothing writes them any more). */
  deleteOverflow(parts: readonly OverflowSample[]): void {
    const key = Buffer.alloc(PartKey.size);
    for (const part of parts) {
      key.writeUInt32LE(part.tgid, PartKey.tgid);
      key.writeUInt32LE(part.uid, PartKey.uid);
      key.writeUInt32LE(part.startLow, PartKey.startNs);
      key.writeUInt32LE(part.startHigh, PartKey.startNs + 4);
      key.writeUInt32LE(part.cgroupLow, PartKey.cgroupId);
      key.writeUInt32LE(part.cgroupHigh, PartKey.cgroupId + 4);
      this.deleteShared(this.overflowFd, key, Share.overflow, part.uid);
    }
    this.shares.flush();
  }

  /** One of the kernel's stats (layout.ts Stat), summed over the CPUs. */
  readStat(stat: number): number {
    this.indexKey.writeUInt32LE(stat);
    const ret: number = native.lookupElem(this.statsFd, this.indexKey, this.statsValue);
    if (ret < 0) fail('reading the BPF stats map', -ret);
    let total = 0;
    for (let cpu = 0; cpu * 8 < this.statsValue.length; cpu++) total += readU64(this.statsValue, cpu * 8);
    return total;
  }

  readStats(): KernelStats {
    const totals = new Array<number>(STATS).fill(0);
    for (let stat = 0; stat < STATS; stat++) totals[stat] = this.readStat(stat);
    return {
      unattributed: totals[Stat.overflowFull]!,
      unattributedFull: totals[Stat.unattributedFull]!,
      lost: totals[Stat.lost]!,
      overShare: totals[Stat.overShare]!,
      exitedFull: totals[Stat.exitedFull]!,
      noStorage: totals[Stat.noStorage]!,
      slotsRetired: totals[Stat.slotsRetired]!,
      threadsFull: totals[Stat.threadsFull]!,
      threadsExited: totals[Stat.threadsExited]!,
      peersFull: totals[Stat.peersFull]!,
      peersLost: totals[Stat.peersLost]!,
    };
  }

  /** BPF programs attached (counting, exit, cgroup moves, the iterator). */
  get attachedPrograms(): number {
    return this.object.attachedCount;
  }

  /** Slots that hold a process's counters now (any state but free). */
  slotsInUse(): number {
    let used = 0;
    for (let index = 0; index < this.slotCount; index++) if (this.ownerWords[index * 2 + 1] !== 0) used++;
    return used;
  }

  /** A map's fd, for benchmarks that fill the maps from user space. */
  mapFd(name: string): number {
    return this.object.mapFd(name);
  }

  /**
   * Frees the object: the programs whose links are pinned go on counting
   * (the next daemon takes over from them); without a pin directory, every
   * program is detached. Safe to call twice.
   */
  close(): void {
    for (const unmap of this.unmap.splice(0)) unmap();
    this.object.close();
  }
}
