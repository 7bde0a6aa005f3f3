// The daemon's configuration: defaults, then the JSON file (validated with
// zod, strictly: an unknown key is an error, not a silent default), then
// command-line flags. A bad key or value is one line that names it.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { packageRoot } from '../common/package-root.js';
import { checkNetwork } from '../../protocol/tcp-client-keys.js';
import { durationSeconds } from '../history/durations.js';

export const DEFAULT_CONFIG_PATH = '/etc/netacct/config.json';

const powerOfTwo = z
  .number()
  .int()
  .positive()
  .refine((n) => Number.isInteger(Math.log2(n)), 'must be a power of two');

const duration = z.string().refine((text) => durationSeconds(text) !== null, 'must be a duration such as "90s", "10m", "48h", "31d", "13mo" or "5y"');

/** History's tiers: each bucket a whole multiple of the one before, each kept longer. */
const HistoryTiers = z
  .array(z.strictObject({ bucket: duration, keep: duration }))
  .min(1)
  .max(8)
  .superRefine((tiers, context) => {
    tiers.forEach((tier, i) => {
      const bucket = durationSeconds(tier.bucket)!;
      const keep = durationSeconds(tier.keep)!;
      if (keep < bucket) context.addIssue({ code: 'custom', path: [i, 'keep'], message: 'must be at least one bucket' });
      if (i === 0) return;
      const finer = tiers[i - 1]!;
      if (bucket <= durationSeconds(finer.bucket)! || bucket % durationSeconds(finer.bucket)! !== 0) {
        context.addIssue({ code: 'custom', path: [i, 'bucket'], message: `must be a whole multiple of the tier before's (${finer.bucket}), and longer` });
      }
      if (keep <= durationSeconds(finer.keep)!) context.addIssue({ code: 'custom', path: [i, 'keep'], message: `must be longer than the tier before's (${finer.keep})` });
      // The finer rows of a coarse bucket must still be there when it ends and is summed from them.
      if (durationSeconds(finer.keep)! < 2 * bucket) context.addIssue({ code: 'custom', path: [i - 1, 'keep'], message: `must be at least two of the next tier's buckets (${tier.bucket}), which are summed from these rows` });
    });
  });

export const ConfigSchema = z.strictObject({
  /** atop's socket. */
  atopSocket: z.string().startsWith('/', 'must be an absolute path'),
  /** Its file mode, octal, as a string ("0666"). */
  atopSocketMode: z.string().regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "0660"'),
  /** The HTTP API's socket, or null for none. */
  apiSocket: z.string().startsWith('/', 'must be an absolute path').nullable(),
  /** Its file mode, octal, as a string. */
  apiSocketMode: z.string().regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "0660"'),
  /** Group (name or gid) whose members see every process, as root does. */
  allProcessesGroup: z.union([z.string().min(1), z.number().int().nonnegative()]).nullable(),
  /** The compiled BPF object. */
  bpfObject: z.string().startsWith('/', 'must be an absolute path'),
  /** bpffs directory where the maps are pinned so that counters survive a restart; null: not pinned. */
  pinDir: z.string().startsWith('/', 'must be an absolute path').nullable(),
  /** Process slots in the kernel. */
  slots: powerOfTwo,
  /** Kernel entries for counters that found no slot. */
  overflowCapacity: z.number().int().min(1),
  /** Kernel rows per (user, cgroup) for calls that found neither a slot nor an overflow entry (the host's row takes the rest). */
  unattributedCapacity: z.number().int().min(1),
  /**
   * Percent of each kernel map a user fills (overflow, unattributed, peers)
   * that one user other than root may hold, and that all of them together
   * may: the rest is kept for root. Past it, a user's calls count in a
   * coarser row of its own.
   */
  mapSharePerUserPercent: z.number().int().min(1).max(100),
  mapShareOthersPercent: z.number().int().min(1).max(100),
  /** Kernel entries for exited processes between two drains. */
  exitedCapacity: z.number().int().min(1),
  /** Exited processes are kept at least this long after every client had them. */
  exitedRetentionMs: z.number().int().min(0),
  /** Per-thread counters too (costs time per event and kernel memory; see README). */
  threads: z.boolean(),
  /** Thread slots in the kernel (a power of two). */
  threadCapacity: powerOfTwo,
  /** Kernel entries for the counters of threads whose slot is taken. */
  threadOverflowCapacity: z.number().int().min(1),
  /** Per-peer counters too: each process's traffic per remote address and port (costs time per event; see README). */
  peers: z.boolean(),
  /** Kernel entries for (live process, peer) pairs; a process whose pair does not fit is counted in its overflow row. */
  peerCapacity: z.number().int().min(1),
  /** Peer rows of exited processes the daemon keeps; beyond, an exited process's peers fold into its overflow row. */
  exitedPeerCapacity: z.number().int().min(1),
  /**
   * The API (and /metrics) on TCP too, "host:port" such as "127.0.0.1:9817",
   * or null for none. TCP clients have no credentials: they see every process.
   */
  listen: z
    .string()
    .regex(/^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'must be host:port, such as "127.0.0.1:9817" or "[::1]:9817"')
    .refine((text) => listenAddress(text).port <= 65535, 'the port must be 0 to 65535 (0: any free port, named in the log)')
    .nullable(),
  /**
   * The TCP listener's web configuration (Prometheus exporter-toolkit's
   * format: TLS, basic auth with bcrypt hashes), or null for plain HTTP that
   * anyone who can connect may read.
   */
  webConfigFile: z.string().startsWith('/', 'must be an absolute path').nullable(),
  /**
   * On TCP, networks counted as one client each for the connection limits and
   * time shares, such as ["10.0.0.0/8"] (loopback always is one: any local
   * user can bind any of its addresses).
   */
  listenClientNetworks: z.array(
    z.string().refine((cidr) => {
      try {
        checkNetwork(cidr);
        return true;
      } catch {
        return false;
      }
    }, 'must be a network such as "10.0.0.0/8" or "fd00::/8"'),
  ),
  /** /metrics: per-process series for the top N processes by traffic (and one `other`); 0: none. */
  metricsTopProcesses: z.number().int().min(0).max(1000),
  /** /metrics, with peers on: series for the top N (cgroup, service port) pairs by traffic (and one `other`); 0: none. */
  metricsTopPeerPorts: z.number().int().min(0).max(1000),
  /** Connections each socket (atop, API, TCP) holds at most. */
  clientLimit: z.number().int().min(2),
  /** Connections one non-root user (on TCP: one client: all of loopback, a chosen network, an address) holds at most on each socket. */
  clientLimitPerUser: z.number().int().min(1),
  /** Of clientLimit, the places only root may take. */
  clientsReservedForRoot: z.number().int().min(1),
  /** WebSocket streams one non-root user (on TCP: one client) holds at most. */
  streamLimitPerUser: z.number().int().min(1),
  /**
   * Each non-root user's (on TCP: each client's) share of the daemon's
   * time for building answers, on every socket together: ms earned per
   * second, and the most saved up. Past it, atop answers wait, API requests
   * get 429 with Retry-After and stream updates are skipped.
   */
  clientTimeMsPerSecond: z.number().int().min(1).max(1000),
  clientTimeBurstMs: z.number().int().min(10),
  /** An API request must arrive whole within this time; a connection silent this long is closed (atop: before its first request). */
  requestTimeoutMs: z.number().int().min(100),
  /** An atop connection silent this long after its last request is closed (atop asks every interval). */
  atopIdleTimeoutMs: z.number().int().min(1000),
  /** A stream client that takes none of its updates for this long is closed (updates are skipped meanwhile). */
  streamStallTimeoutMs: z.number().int().min(1000),
  /** A removed cgroup keeps its own series this long (one to two of these intervals), then folds into cgroup "(removed)". */
  removedCgroupFoldMs: z.number().int().min(1000),
  /**
   * How to count: "auto" (the tracepoints where the kernel has them, else
   * fexit), or "tracepoint" or "fexit" forced (to compare both on one kernel).
   */
  attachMode: z.enum(['auto', 'tracepoint', 'fexit']),
  /**
   * Serve atop before 2.10 (Debian 12, Ubuntu 22.04…) as the netatop kernel
   * module and netatopd did: getsockopt answers and /var/run/netatop.log.
   * Not started (one line says why) where a real module or netatopd runs.
   */
  netatopModule: z.boolean(),
  /** The compiled BPF object that answers atop's getsockopt calls. */
  netatopBpfObject: z.string().startsWith('/', 'must be an absolute path'),
  /** netatopd's exit file (atop reads /var/run/netatop.log). */
  netatopExitFile: z.string().startsWith('/', 'must be an absolute path'),
  /** Past this size the exit file starts over (every atop reopens it at its next sample). */
  netatopExitFileMaxBytes: z.number().int().min(4096),
  /** netatopd's SysV semaphore key (atop asks for 1541961). */
  netatopSemaphoreKey: z.number().int().min(1).max(0x7fff_ffff),
  /** How old atop's getsockopt answers may be while an atop runs. */
  netatopRefreshMs: z.number().int().min(50),
  /** History: who used the network and when, in an SQLite file (README, "History"). */
  history: z.boolean(),
  historyFile: z.string().startsWith('/', 'must be an absolute path'),
  /** Bucket lengths and how long each tier keeps them, finest first: the coarser are summed from the finer. */
  historyTiers: HistoryTiers,
  /** Rows of one bucket: the top workloads by bytes; the rest are summed in one `other` row. */
  historyRowsPerBucket: z.number().int().min(1).max(100_000),
  /** The file's bound: past it the oldest fine rows are deleted first. */
  historyMaxBytes: z.number().int().min(1024 * 1024),
  /** The TCP listener serves /metrics and /healthz only: a scraper's, on a network others share (a Kubernetes node's pods). */
  listenMetricsOnly: z.boolean(),
  /** Name the containers cgroups hold (runtime, name, image; Kubernetes pod, namespace) from the runtimes' files (README, "Containers and pods"). */
  containerNames: z.boolean(),
  /** Where the runtimes keep those files on this host; null (or []) for a runtime whose files are not read. */
  containerState: z.strictObject({
    containerd: z.string().startsWith('/', 'must be an absolute path').nullable(),
    docker: z.string().startsWith('/', 'must be an absolute path').nullable(),
    containersStorage: z.array(z.string().startsWith('/', 'must be an absolute path')).max(8),
  }),
  /** Debug messages in the log. */
  verbose: z.boolean(),
});

export type Config = z.infer<typeof ConfigSchema>;

/** Settings that take effect only when the daemon starts. */
export const RESTART_ONLY: ReadonlyArray<keyof Config> = [
  'atopSocket',
  'apiSocket',
  'bpfObject',
  'pinDir',
  'slots',
  'overflowCapacity',
  'unattributedCapacity',
  'mapSharePerUserPercent',
  'mapShareOthersPercent',
  'exitedCapacity',
  'threads',
  'threadCapacity',
  'threadOverflowCapacity',
  'peers',
  'peerCapacity',
  'exitedPeerCapacity',
  'listen',
  'webConfigFile',
  'listenClientNetworks',
  'requestTimeoutMs',
  'atopIdleTimeoutMs',
  'streamStallTimeoutMs',
  'removedCgroupFoldMs',
  'attachMode',
  'netatopModule',
  'netatopBpfObject',
  'netatopExitFile',
  'netatopExitFileMaxBytes',
  'netatopSemaphoreKey',
  'netatopRefreshMs',
  'history',
  'historyFile',
  'historyTiers',
  'historyRowsPerBucket',
  'historyMaxBytes',
  'containerNames',
  'containerState',
  'listenMetricsOnly',
];

export function defaultConfig(): Config {
  return {
    atopSocket: '/run/netatop-bpf-socket',
    atopSocketMode: '0666',
    apiSocket: '/run/netacct/api.sock',
    apiSocketMode: '0666',
    allProcessesGroup: null,
    bpfObject: path.join(packageRoot(), 'bpf', 'netacct.bpf.o'),
    pinDir: '/sys/fs/bpf/netacct',
    slots: 32768,
    overflowCapacity: 16384,
    unattributedCapacity: 16384,
    mapSharePerUserPercent: 50,
    mapShareOthersPercent: 90,
    exitedCapacity: 32768,
    exitedRetentionMs: 10_000,
    threads: false,
    threadCapacity: 16384,
    threadOverflowCapacity: 16384,
    peers: false,
    peerCapacity: 16384,
    exitedPeerCapacity: 16384,
    listen: null,
    webConfigFile: null,
    listenClientNetworks: [],
    metricsTopProcesses: 0,
    metricsTopPeerPorts: 0,
    clientLimit: 1024,
    clientLimitPerUser: 32,
    clientsReservedForRoot: 64,
    streamLimitPerUser: 16,
    clientTimeMsPerSecond: 250,
    clientTimeBurstMs: 2000,
    requestTimeoutMs: 10_000,
    atopIdleTimeoutMs: 3_600_000,
    streamStallTimeoutMs: 30_000,
    removedCgroupFoldMs: 60_000,
    attachMode: 'auto',
    netatopModule: true,
    netatopBpfObject: path.join(packageRoot(), 'bpf', 'netatop-sockopt.bpf.o'),
    netatopExitFile: '/var/run/netatop.log',
    netatopExitFileMaxBytes: 64 * 1024 * 1024,
    netatopSemaphoreKey: 1541961,
    netatopRefreshMs: 1000,
    history: true,
    historyFile: '/var/lib/netacct/history.db',
    historyTiers: [
      { bucket: '1m', keep: '48h' },
      { bucket: '10m', keep: '31d' },
      { bucket: '1h', keep: '13mo' },
      { bucket: '1d', keep: '5y' },
    ],
    historyRowsPerBucket: 100,
    historyMaxBytes: 256 * 1024 * 1024,
    listenMetricsOnly: false,
    containerNames: true,
    containerState: {
      containerd: '/run/containerd',
      docker: '/var/lib/docker',
      // Podman's and CRI-O's graph root, then CRI-O's run root.
      containersStorage: ['/var/lib/containers/storage', '/run/containers/storage'],
    },
    verbose: false,
  };
}

export class ConfigError extends Error {}

/** The first problem zod found, as "<where>: <key>: <what>". */
function describeIssue(where: string, error: z.ZodError): string {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') return `${where}: unknown key '${issue.keys.join("', '")}'`;
  const key = issue.path.join('.') || '(top level)';
  return `${where}: ${key}: ${issue.message}`;
}

/** The file's settings; {} when `file` is the default path and does not exist. */
export function readConfigFile(file: string): Partial<Config> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && file === DEFAULT_CONFIG_PATH) return {};
    throw new ConfigError(`config ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config ${file}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = ConfigSchema.partial().safeParse(json);
  if (!parsed.success) throw new ConfigError(describeIssue(`config ${file}`, parsed.error));
  return parsed.data as Partial<Config>;
}

/** Defaults, then the file, then the flags; validated as a whole. */
export function resolveConfig(file: Partial<Config>, flags: Partial<Config>): Config {
  const parsed = ConfigSchema.safeParse({ ...defaultConfig(), ...file, ...flags });
  if (!parsed.success) throw new ConfigError(describeIssue('configuration', parsed.error));
  const config = parsed.data;
  if (config.clientsReservedForRoot >= config.clientLimit) {
    throw new ConfigError(`configuration: clientsReservedForRoot: must be less than clientLimit (${config.clientLimit})`);
  }
  return config;
}

/** "host:port" split; IPv6 hosts lose their brackets. */
export function listenAddress(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  return { host: listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(colon + 1)) };
}

/** A group by name (from /etc/group) or number; null when not set. */
export function groupId(group: string | number | null): number | null {
  if (group === null || typeof group === 'number') return group;
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new ConfigError(`allProcessesGroup: no group named '${group}' in /etc/group`);
}
