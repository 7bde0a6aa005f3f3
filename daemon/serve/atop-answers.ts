// Builds atop's answer from the process table, with the processes the client
// may see (protocol/peer-credentials.ts): exited processes the client has
// not been served yet first, then the live ones, so that when a PID has been
// reused the live process's record is the one atop keeps (atop keeps the last
// duplicate).
import { AnswerEncoder, commandEncoder } from '../../protocol/netatop-record.js';
import type { NetatopAnswer } from '../../protocol/netatop-server.js';
import type { Visibility } from '../../protocol/peer-credentials.js';
import { startEpochSeconds } from '../kernel/boot-time.js';
import type { Collector } from '../accounting/collector.js';
import type { ProcessEntry, ProcessTable } from '../accounting/process-table.js';

export function atopAnswerBuilder(
  table: ProcessTable,
  collector: Collector,
  bootEpoch: number,
): (servedExitSeq: number, requestedAtMs: number, visibility: Visibility) => NetatopAnswer {
  const command = commandEncoder();
  // Clients whose requests share a kernel read, exit position and visibility
  // get the same bytes: share one buffer (1,000 clients at once would
  // otherwise hold 1,000 copies of the answer).
  let sharedGeneration = -1;
  const shared = new Map<string, NetatopAnswer>();
  return (servedExitSeq, requestedAtMs, visibility) => {
    collector.ensureReadSince(requestedAtMs);
    if (sharedGeneration !== collector.readGeneration) {
      shared.clear();
      sharedGeneration = collector.readGeneration;
    }
    const key = `${table.latestExitSeq}:${servedExitSeq}:${visibility.seesAll ? 'all' : visibility.uid}`;
    const cached = shared.get(key);
    if (cached) return cached;
    const exited = table.exitedAfter(servedExitSeq);
    const encoder = new AnswerEncoder(exited.length + table.liveCount);
    const add = (entry: ProcessEntry): void => {
      if (!visibility.seesAll && entry.uid !== visibility.uid) return;
      encoder.add(entry.tgid, startEpochSeconds(bootEpoch, entry.startNs), command(entry.comm), entry.total);
    };
    exited.forEach(add);
    table.forEachLive(add);
    const answer = { records: encoder.finish(), exitSeq: table.latestExitSeq };
    shared.set(key, answer);
    return answer;
  };
}
