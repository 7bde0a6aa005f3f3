// Builds atop's answer from the process table: exited processes the client has
// not been served yet first, then the live ones, so that when a PID has been
// reused the live process's record is the one atop keeps (atop keeps the last
// duplicate).
import { encodeAnswer, type NetatopProcess } from '../protocol/netatop-record.js';
import type { NetatopAnswer } from '../protocol/netatop-server.js';
import { startEpochSeconds } from './boot-time.js';
import type { Collector } from './collector.js';
import type { ProcessEntry, ProcessTable } from './process-table.js';

export function atopAnswerBuilder(
  table: ProcessTable,
  collector: Collector,
  bootEpoch: number,
): (servedExitSeq: number, requestedAtMs: number) => NetatopAnswer {
  const toWire = (entry: ProcessEntry): NetatopProcess => ({
    tgid: entry.tgid,
    btime: startEpochSeconds(bootEpoch, entry.startNs),
    comm: entry.comm,
    counters: entry.total,
  });
  return (servedExitSeq, requestedAtMs) => {
    collector.ensureReadSince(requestedAtMs);
    const processes: NetatopProcess[] = table.exitedAfter(servedExitSeq).map(toWire);
    for (const entry of table.live()) processes.push(toWire(entry));
    return { records: encodeAnswer(processes), exitSeq: table.latestExitSeq };
  };
}
