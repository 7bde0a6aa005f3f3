// The daemon's own state, as /v1/stats and /metrics report it: what is
// attached, how full each kernel map is, what could not be recorded, how long
// reading the kernel takes, and who is connected.
import type { KernelStats } from './kernel-counters.js';

export interface MapFill {
  /** Entries in use now, or null where the map is only a queue between two drains. */
  entries: number | null;
  capacity: number;
}

export interface DaemonHealth {
  programsAttached: number;
  maps: { slots: MapFill; overflow: MapFill; exited: MapFill; threads: MapFill | null };
  /** Cumulative: what the kernel could not record (never silently lost). */
  kernel: KernelStats;
  /** Duration of the last read of the kernel's maps, seconds. */
  lastReadSeconds: number;
  clients: { atop: number; api: number; streams: number };
}
