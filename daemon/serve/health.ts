// The daemon's own state, as /v1/stats and /metrics report it: what is
// attached, how full each kernel map is, what could not be recorded, how long
// reading the kernel takes, and who is connected.
import type { ApiServer } from '../../protocol/http-api.js';
import type { NetatopServer } from '../../protocol/netatop-server.js';
import type { RefusalReason } from '../../protocol/client-limits.js';
import type { TimeBudgets } from '../../protocol/time-budget.js';
import type { Collector } from '../accounting/collector.js';
import type { AttachMode } from '../kernel/attach-mode.js';
import type { Config } from '../service/config.js';
import type { KernelCounters, KernelStats } from '../kernel/kernel-counters.js';
import type { NetatopModuleState, NetatopModuleStatus } from './netatop-module.js';
import type { History, HistoryStatus } from '../history/history.js';

export interface MapFill {
  /** Entries in use now, or null where the map is only a queue between two drains. */
  entries: number | null;
  capacity: number;
}

export interface DaemonHealth {
  /** How the kernel side counts (daemon/kernel/attach-mode.ts). */
  attachMode: { mode: AttachMode; description: string };
  programsAttached: number;
  maps: { slots: MapFill; overflow: MapFill; exited: MapFill; threads: MapFill | null; peers: MapFill | null };
  /** Per-peer counting: rows kept for exited processes, and exited processes whose rows were folded into one (exitedPeerCapacity); null when off. */
  peers: { exitedRows: number; exitedCapacity: number; foldedExited: number } | null;
  /** Cumulative: what the kernel could not record (never silently lost). */
  kernel: KernelStats;
  /** Duration of the last read of the kernel's maps, seconds. */
  lastReadSeconds: number;
  clients: { atop: number; api: number; streams: number };
  /**
   * Cumulative: connections refused by the client limits, by socket and
   * reason; streams refused; stream updates skipped; answers that waited,
   * were refused or skipped because their owner had used its time share.
   */
  limits: {
    refused: Array<{ socket: string; reason: RefusalReason; count: number }>;
    streamsRefused: number;
    streamUpdatesSkipped: number;
    throttled: number;
  };
  /** atop before 2.10, served as the netatop module and netatopd did: its state, or why it is not served. */
  netatopModule: ({ active: true } & NetatopModuleStatus) | { active: false; reason: string };
  /** History (README, "History"): writing or paused (and why); null when off. */
  history: HistoryStatus | null;
}

function refusals(socket: string, refused: Readonly<Record<RefusalReason, number>>): DaemonHealth['limits']['refused'] {
  return (Object.keys(refused) as RefusalReason[]).map((reason) => ({ socket, reason, count: refused[reason] }));
}

/** The daemon's health now, from its parts. */
export function readHealth(
  config: Config,
  attachMode: DaemonHealth['attachMode'],
  kernel: KernelCounters,
  collector: Collector,
  atop: NetatopServer,
  apiServers: readonly ApiServer[],
  netatop: NetatopModuleState,
  budgets: TimeBudgets,
  history: History | null,
): DaemonHealth {
  return {
    attachMode,
    programsAttached: kernel.attachedPrograms,
    maps: {
      slots: { entries: kernel.slotsInUse(), capacity: config.slots },
      overflow: { entries: collector.overflowEntries, capacity: config.overflowCapacity },
      exited: { entries: null, capacity: config.exitedCapacity },
      threads: collector.threads
        ? { entries: collector.threads.liveCount, capacity: config.threadCapacity + config.threadOverflowCapacity }
        : null,
      peers: collector.peers ? { entries: collector.peerPairs()!, capacity: config.peerCapacity } : null,
    },
    peers: collector.peers
      ? { exitedRows: collector.peers.exitedRowTotal, exitedCapacity: config.exitedPeerCapacity, foldedExited: collector.peers.foldedExited }
      : null,
    kernel: kernel.readStats(),
    lastReadSeconds: collector.lastReadMs / 1000,
    clients: {
      atop: atop.clientCount,
      api: apiServers.reduce((sum, api) => sum + api.clients.connections, 0),
      streams: apiServers.reduce((sum, api) => sum + api.clients.streams, 0),
    },
    limits: {
      refused: [
        ...refusals('atop', atop.refused),
        ...apiServers.flatMap((api) => refusals(api.where.startsWith('tcp ') ? 'tcp' : 'api', api.clients.refused)),
      ],
      streamsRefused: apiServers.reduce((sum, api) => sum + api.clients.streamsRefused, 0),
      streamUpdatesSkipped: apiServers.reduce((sum, api) => sum + api.clients.streamUpdatesSkipped, 0),
      throttled: budgets.throttled,
    },
    netatopModule: netatop.module ? { active: true, ...netatop.module.status() } : { active: false, reason: netatop.inactive },
    history: history?.status() ?? null,
  };
}
