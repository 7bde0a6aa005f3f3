// What a Prometheus scrape of /metrics costs the daemon for the exposition
// itself: renderMetrics over C cgroups and P processes with per-process series
// for the top K, timed over repeated renders (median and 90th percentile),
// with the exposition's size. The kernel read before it is bench/scale's.
import { renderMetrics, type CgroupSeries, type ProcessSeries } from '../daemon/serve/metrics.js';

const CASES: Array<{ cgroups: number; processes: number; top: number }> = [
  { cgroups: 100, processes: 1000, top: 0 },
  { cgroups: 1000, processes: 10_000, top: 0 },
  { cgroups: 1000, processes: 10_000, top: 100 },
  { cgroups: 10_000, processes: 100_000, top: 1000 },
];
const REPEATS = 30;

const counters = (seed: number): number[] => Array.from({ length: 16 }, (_, i) => seed * 16 + i);
const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)]!;

for (const { cgroups: c, processes: p, top } of CASES) {
  const cgroups: CgroupSeries[] = Array.from({ length: c }, (_, i) => ({
    path: `/system.slice/service-${i}.service`,
    unit: `service-${i}.service`,
    namespace: `namespace-${i % 10}`,
    pod: `pod-${i}`,
    container: 'app',
    counters: counters(i),
  }));
  const processes: ProcessSeries[] = Array.from({ length: p }, (_, i) => ({ pid: 1000 + i, command: `proc-${i % 500}`, counters: counters(i) }));
  const input = {
    version: 'bench',
    startTimeSeconds: 0,
    processCounts: { live: p, exited: 0 },
    health: {
      attachMode: { mode: 'tracepoint' as const, description: 'tracepoints' },
      programsAttached: 5,
      maps: { slots: { entries: p, capacity: 32768 }, overflow: { entries: 0, capacity: 16384 }, exited: { entries: null, capacity: 32768 }, threads: null, peers: null },
      peers: null,
      kernel: { unattributed: 0, unattributedFull: 0, lost: 0, overShare: 0, exitedFull: 0, noStorage: 0, slotsRetired: 0, threadsFull: 0, threadsExited: 0, peersFull: 0, peersLost: 0 },
      lastReadSeconds: 0.001,
      clients: { atop: 1, api: 1, streams: 0 },
      limits: { refused: [], streamsRefused: 0, streamUpdatesSkipped: 0, throttled: 0 },
      netatopModule: { active: false as const, reason: 'off' },
      history: null,
    },
    cgroups,
    processes: top > 0 ? processes : null,
    topProcesses: top,
    peerPorts: null,
    topPeerPorts: 0,
    hostWide: true,
  };
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < REPEATS; i++) {
    const started = performance.now();
    bytes = renderMetrics(input).length;
    times.push(performance.now() - started);
  }
  console.log(
    `${String(c).padStart(6)} cgroups, ${String(p).padStart(6)} processes, top ${String(top).padStart(4)}: ` +
      `median ${percentile(times, 0.5).toFixed(2)} ms, p90 ${percentile(times, 0.9).toFixed(2)} ms, ${(bytes / 1024).toFixed(0)} KiB`,
  );
}
