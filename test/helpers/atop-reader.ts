// A client of the atop socket that keeps its connection, as atop does, and
// returns each answer as a map from PID to record.
import net from 'node:net';
import { type DecodedRecord, RECORD_SIZE, decodeRecord } from '../../protocol/netatop-record.js';

export class AtopConnection {
  private buffered = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static connect(socketPath: string): Promise<AtopConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      socket.once('connect', () => resolve(new AtopConnection(socket)));
      socket.once('error', reject);
    });
  }

  private async take(bytes: number): Promise<Buffer> {
    while (this.buffered.length < bytes) {
      if (this.closed) throw new Error('the daemon closed the connection in the middle of an answer');
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = null;
    }
    const taken = this.buffered.subarray(0, bytes);
    this.buffered = this.buffered.subarray(bytes);
    return taken;
  }

  /** Sends one request and reads the whole answer; records keyed by PID (last one wins, as in atop). */
  async request(): Promise<Map<number, DecodedRecord>> {
    this.socket.write(Buffer.alloc(RECORD_SIZE));
    const records = new Map<number, DecodedRecord>();
    for (;;) {
      const record = decodeRecord(await this.take(RECORD_SIZE));
      if (record.id === 0) return records;
      records.set(record.id, record);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function requestOnce(socketPath: string): Promise<Map<number, DecodedRecord>> {
  const connection = await AtopConnection.connect(socketPath);
  try {
    return await connection.request();
  } finally {
    connection.close();
  }
}
