// netatopd's exit file (/var/run/netatop.log), which atop before 2.10 reads
// for the final counters of processes that exited (facts from netatopd.c and
// atop's netatopif.c): a 16-byte header that atop maps to follow `curseq`,
// the number of records written, then records, each one length byte and a
// zlib-compressed struct netpertask. atop reads the records appended since
// its previous sample; a new file (the old one unlinked) makes it start over
// at the new file's end.
import fs from 'node:fs';
import zlib from 'node:zlib';
import { RECORD_SIZE } from './netatop-record.js';

const MAGIC = 0xfeedb0b0;
const HEADER_SIZE = 16;
const Header = { magic: 0, curseq: 4, hdrlen: 8, ntplen: 10, mypid: 12 } as const;

export interface ExitFileOptions {
  path: string;
  /** Who may read it besides root: the group that sees every process, or nobody (mode 0600). */
  group: number | null;
  /** The pid in the header: atop sends it SIGHUP when it stops. */
  pid: number;
  /** Past this size the file starts over (atops reopen it at their next sample). */
  maxBytes: number;
  /** Each time a new file is in place (the first, and each start over): what watches it must watch the new one. */
  onCreated?: () => void;
}

export class ExitFile {
  private fd = -1;
  private size = 0;
  private seq = 0;
  /** Times the file started over because it reached maxBytes. */
  restartsForSize = 0;

  constructor(private readonly options: ExitFileOptions) {
    this.create();
  }

  /** Records written to the current file. */
  get records(): number {
    return this.seq;
  }

  get bytes(): number {
    return this.size;
  }

  /**
   * Replaces the file with an empty one (unlinked first, so that every atop
   * that holds the old one sees it is gone and opens the new one).
   */
  startOver(): void {
    this.close();
    this.create();
  }

  private create(): void {
    const { path, group, pid } = this.options;
    fs.rmSync(path, { force: true });
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      if (group !== null) {
        fs.fchownSync(fd, 0, group);
        fs.fchmodSync(fd, 0o640);
      }
      const header = Buffer.alloc(HEADER_SIZE);
      header.writeUInt32LE(MAGIC, Header.magic);
      header.writeUInt32LE(0, Header.curseq);
      header.writeUInt16LE(HEADER_SIZE, Header.hdrlen);
      header.writeUInt16LE(RECORD_SIZE, Header.ntplen);
      header.writeInt32LE(pid, Header.mypid);
      fs.writeSync(fd, header, 0, HEADER_SIZE, 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    this.fd = fd;
    this.size = HEADER_SIZE;
    this.seq = 0;
    this.options.onCreated?.();
  }

  /**
   * Appends the 96-byte records in `records` (back to back), then counts them
   * in the header: an atop that sees the new count finds them all written.
   */
  append(records: Buffer): void {
    const count = records.length / RECORD_SIZE;
    if (count === 0) return;
    if (this.size >= this.options.maxBytes) {
      this.restartsForSize++;
      this.startOver();
    }
    const pieces: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const compressed = zlib.deflateSync(records.subarray(i * RECORD_SIZE, (i + 1) * RECORD_SIZE));
      pieces.push(Buffer.of(compressed.length), compressed); // at most ~107 bytes: 96 stored plus zlib's framing
    }
    const data = Buffer.concat(pieces);
    fs.writeSync(this.fd, data, 0, data.length, this.size);
    this.size += data.length;
    this.seq = (this.seq + count) >>> 0;
    const curseq = Buffer.alloc(4);
    curseq.writeUInt32LE(this.seq);
    fs.writeSync(this.fd, curseq, 0, 4, Header.curseq);
  }

  /** Closes and removes the file: no netatopd any more, for every atop. */
  remove(): void {
    this.close();
    fs.rmSync(this.options.path, { force: true });
  }

  private close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
