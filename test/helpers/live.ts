// The table's live processes as an array (the daemon only walks them).
import type { ProcessEntry, ProcessTable } from '../../daemon/accounting/process-table.js';

export function liveOf(table: ProcessTable): ProcessEntry[] {
  const live: ProcessEntry[] = [];
  table.forEachLive((entry) => live.push(entry));
  return live;
}
