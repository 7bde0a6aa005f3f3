// atop's netatop-bpf wire format: `struct netpertask`, 96 bytes, little-endian
// (see shared/atop-protocol.md). An answer is one record per process followed
// by a record whose id is 0.
import { Direction, Family, Kind, Protocol, counterIndex } from '../daemon/kernel/layout.js';

export const RECORD_SIZE = 96;
/** Whole records per write, below the kernel's 36,544-byte AF_UNIX chunk. */
export const MAX_RECORDS_PER_WRITE = 340;
export const MAX_WRITE_BYTES = MAX_RECORDS_PER_WRITE * RECORD_SIZE;

/** Field offsets of struct netpertask (bpf/netacct.h: struct netatop_task). */
export const RecordOffset = { id: 0, btime: 8, command: 16, commandSize: 16, counters: 32 } as const;

/** netpertask's eight counters, in wire order, as index pairs (IPv4, IPv6). */
const WIRE_COUNTERS: ReadonlyArray<readonly [number, number]> = (() => {
  const order: Array<readonly [number, number]> = [];
  for (const protocol of [Protocol.tcp, Protocol.udp]) {
    for (const direction of [Direction.send, Direction.recv]) {
      for (const kind of [Kind.calls, Kind.bytes]) {
        order.push([
          counterIndex(Family.ipv4, protocol, direction, kind),
          counterIndex(Family.ipv6, protocol, direction, kind),
        ]);
      }
    }
  }
  return order;
})();

/**
 * Writes one answer: records added one by one, then the terminator. Numbers
 * go through a Uint32Array view of the buffer (records are 96 bytes, so every
 * field is 4-byte aligned).
 */
export class AnswerEncoder {
  private readonly buf: Buffer;
  private readonly words: Uint32Array;
  private records = 0;

  constructor(capacity: number) {
    this.buf = Buffer.alloc((capacity + 1) * RECORD_SIZE); // zeroed: padding and terminator
    this.words = new Uint32Array(this.buf.buffer, this.buf.byteOffset, this.buf.length / 4);
  }

  /** `command` is encodeCommand(comm): callers cache it, names repeat. */
  add(tgid: number, btime: number, command: Uint8Array, counters: ArrayLike<number>): void {
    const offset = this.records * RECORD_SIZE;
    const word = offset / 4;
    this.words[word + RecordOffset.id / 4] = tgid;
    this.writeU64(word + RecordOffset.btime / 4, btime);
    this.buf.set(command, offset + RecordOffset.command);
    for (let i = 0; i < WIRE_COUNTERS.length; i++) {
      const [v4, v6] = WIRE_COUNTERS[i]!;
      this.writeU64(word + RecordOffset.counters / 4 + i * 2, counters[v4]! + counters[v6]!);
    }
    this.records++;
  }

  private writeU64(word: number, value: number): void {
    const low = value >>> 0; // ToUint32 is exact modulo 2^32 below 2^53
    this.words[word] = low;
    this.words[word + 1] = (value - low) / 0x1_0000_0000;
  }

  /** The records added and the terminator. */
  finish(): Buffer {
    return this.buf.subarray(0, (this.records + 1) * RECORD_SIZE);
  }
}

/** The 16 bytes of `command`: the name cut to 15 bytes of UTF-8, NUL padded. */
export function encodeCommand(comm: string): Uint8Array {
  const command = Buffer.alloc(RecordOffset.commandSize);
  command.write(comm, 0, RecordOffset.commandSize - 1, 'utf8');
  return command;
}

/**
 * encodeCommand with a cache: process names repeat (every worker of a
 * server), so each is encoded once; bounded, whatever names processes take.
 */
export function commandEncoder(): (comm: string) => Uint8Array {
  const commands = new Map<string, Uint8Array>();
  return (comm) => {
    let bytes = commands.get(comm);
    if (!bytes) {
      if (commands.size >= 65536) commands.clear();
      commands.set(comm, (bytes = encodeCommand(comm)));
    }
    return bytes;
  };
}

export interface DecodedRecord {
  id: number;
  btime: number;
  command: string;
  /** tcpsndpacks, tcpsndbytes, tcprcvpacks, tcprcvbytes, udpsnd…, udprcv… */
  counters: number[];
}

/** Decodes one record: the client side of the format (the tests read answers with it). */
export function decodeRecord(buf: Buffer, offset = 0): DecodedRecord {
  const u64 = (at: number): number => buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 0x1_0000_0000;
  const command = buf.subarray(offset + RecordOffset.command, offset + RecordOffset.command + RecordOffset.commandSize);
  const nul = command.indexOf(0);
  return {
    id: buf.readInt32LE(offset + RecordOffset.id),
    btime: u64(offset + RecordOffset.btime),
    command: command.toString('utf8', 0, nul < 0 ? command.length : nul),
    counters: WIRE_COUNTERS.map((_, i) => u64(offset + RecordOffset.counters + i * 8)),
  };
}
