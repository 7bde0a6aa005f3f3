// Runs test/fixtures/atop-client.c, which reads exactly as atop does.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { asNobody, fixture } from './fixtures.js';

export interface CClientAnswer {
  records: number;
  /** recv calls that returned less than a whole record: atop would desynchronise. */
  shortReads: number;
  /** From the request to the terminator, as the client saw it. */
  micros: number;
  /** PID → the 8 netpertask counters. */
  byPid: Map<number, number[]>;
}

export async function readLikeAtop(socketPath: string, options: { asNobody?: boolean } = {}): Promise<CClientAnswer> {
  const [command, args] = options.asNobody
    ? asNobody(fixture('atop-client'), socketPath)
    : [fixture('atop-client'), [socketPath]];
  const { stdout } = await promisify(execFile)(command, args, { maxBuffer: 256 * 1024 * 1024 });
  const [summary, ...lines] = stdout.trim().split('\n');
  const match = /^records (\d+) short (\d+) micros (\d+)$/.exec(summary!);
  if (!match) throw new Error(`unexpected atop-client output: ${summary}`);
  const byPid = new Map<number, number[]>();
  for (const line of lines) {
    const [pid, ...counters] = line.split(' ').map(Number);
    byPid.set(pid!, counters);
  }
  return { records: Number(match[1]), shortReads: Number(match[2]), micros: Number(match[3]), byPid };
}

export async function hangUpMidAnswer(socketPath: string): Promise<string> {
  const { stdout } = await promisify(execFile)(fixture('atop-client'), [socketPath, 'hangup']);
  return stdout.trim();
}
