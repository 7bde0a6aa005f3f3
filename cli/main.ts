// The `netacct` command line.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import {
  type Config,
  ConfigError,
  ConfigSchema,
  DEFAULT_CONFIG_PATH,
  defaultConfig,
  readConfigFile,
  resolveConfig,
} from '../daemon/service/config.js';
import { createLogger } from '../daemon/common/log.js';
import { printable } from '../daemon/common/printable.js';
import { packageVersion } from '../daemon/common/package-root.js';

const USAGE = `usage: netacct daemon [options]
       netacct ps [--pid N] [--uid N] [--command NAME] [--cgroup ID] [--state live|exited|all]
                  [--namespace NS] [--pod POD] [--container NAME]
                  [--sort KEY] [--order asc|desc] [--limit N] [--json] [--api-socket PATH]
       netacct cgroups [--by cgroup|pod|namespace] [--namespace NS] [--pod POD] [--container NAME]
                       [--sort KEY] [--order asc|desc] [--limit N] [--json] [--api-socket PATH]
       netacct peers [--pid N] [--cgroup ID] [--address ADDR[/PREFIX]] [--port N] [--protocol tcp|udp]
                     [--state live|exited|all] [--sort KEY] [--order asc|desc] [--limit N] [--json]
                     [--api-socket PATH]    (the daemon runs with --peers)
       netacct stats [--json] [--api-socket PATH]
       netacct history [--since T] [--until T]
                       [--by workload|unit|container|pod|namespace|cgroup|command|user|peer]
                       [--step D] [--limit N] [--sort KEY] [--order asc|desc] [--uid N] [--command C]
                       [--cgroup PATH] [--unit U] [--container ID] [--pod NAME] [--namespace NS]
                       [--json | --csv] [--api-socket PATH]
       netacct top [--api-socket PATH]
       netacct detach [--pin-dir PATH] [--config PATH]
       netacct --version

ps, cgroups, peers, stats, history and top ask the running daemon's API (--api-socket,
default the configuration's apiSocket); sort keys: pid, command (ps), id, path, name (cgroups),
address, port (peers), name, total.bytes, total.calls (history), and
tcp|udp.send|recv.calls|bytes such as tcp.send.bytes.

history sums what the daemon kept per group from --since (default -1h) to --until (default
now), in steps of --step D (such as 1m, 1h; default chosen from the range). T is now, a time
ago (-30m, -2h, -7d), a clock time (03:00, 03:00:30: today's, yesterday's if still to come),
a local date and time ("2026-12-07 03:00") or RFC 3339 with an offset. --csv: one line per
group per step, for spreadsheets.

The BPF programs go on counting while no daemon runs (after a stop, a crash, during an
upgrade: the next daemon takes over, nothing missed or counted twice). netacct detach
stops that (with the daemon stopped): the programs of the pin directory detach, its
counters stay for the next start.

netacct daemon options (each overrides the same setting of the configuration file):
  --config PATH            configuration file (default ${DEFAULT_CONFIG_PATH}, used if present)
  --check                  dry run: check the configuration, privileges, kernel and BPF
                           programs (loaded, never attached), print a line each, exit
  --help                   this text
  --atop-socket PATH       atop's socket (default /run/netatop-bpf-socket)
  --atop-socket-mode MODE  its file mode, octal (default 0666: any user's atop may
                           connect, and sees only its own user's processes)
  --api-socket PATH        the HTTP API's socket (default /run/netacct/api.sock)
  --api-socket-mode MODE   its file mode, octal (default 0666, same visibility rules)
  --all-processes-group G  members of group G (name or gid) see every process,
                           as root does
  --bpf-object PATH        compiled BPF object (default: the package's bpf/netacct.bpf.o)
  --pin-dir PATH           bpffs directory for the maps, so that counters survive a
                           restart (default /sys/fs/bpf/netacct)
  --slots N                process slots in the kernel, a power of two (default 32768);
                           a process whose slot is taken is counted in the overflow map
  --overflow-capacity N    kernel entries for counters that found no slot (default 16384)
  --unattributed-capacity N  kernel rows per (user, cgroup) for calls that found no
                           overflow entry either (default 16384; the host's row takes the rest)
  --map-share-per-user-percent P  of each map a user fills (overflow, unattributed,
                           peers), one user other than root holds at most P % (default 50)
  --map-share-others-percent P    and all users but root together P % (default 90):
                           the rest is root's; past its share, a user's calls count in
                           a coarser row of its own
  --exited-capacity N      kernel entries for exited processes between drains (default 32768)
  --exited-retention-ms N  keep exited processes at least N ms after every atop
                           client has had them (default 10000)
  --threads                per-thread counters too (served by /v1/processes/{pid});
                           costs ~6 ns per event and kernel memory
  --thread-capacity N      thread slots in the kernel, a power of two (default 16384)
  --thread-overflow-capacity N  kernel entries for threads whose slot is taken
                           (default 16384)
  --peers                  per-peer counters too: each process's traffic per remote
                           address and port (/v1/peers, netacct peers)
  --peer-capacity N        kernel entries for (live process, peer) pairs (default 16384)
  --exited-peer-capacity N  peer rows of exited processes kept (default 16384)
  --listen HOST:PORT       serve the API on TCP too, such as 127.0.0.1:9817 (default
                           off); TCP clients have no credentials and see every process
  --listen-metrics-only    the TCP listener serves /metrics and /healthz only (for a
                           scraper on a shared network: no process listings there)
  --web-config PATH        TLS and basic auth for --listen, in the Prometheus exporters'
                           web-config.yml format (tls_server_config, basic_auth_users)
  --metrics-top-processes N  /metrics also has series for the top N processes by
                           traffic and one 'other' (default 0: per cgroup only)
  --metrics-top-peer-ports N  with --peers, /metrics also has series for the top N
                           (cgroup, service port) pairs and one 'other' (default 0)
  --client-limit N         connections each socket (atop, API, TCP) holds (default 1024)
  --client-limit-per-user N  connections one non-root user holds on each socket; on
                           TCP, one remote address (default 32)
  --clients-reserved-for-root N  of the client limit, places only root may take (default 64)
  --stream-limit-per-user N  WebSocket streams one non-root user holds (default 16)
  --client-time-ms-per-second N  each non-root user's share of the daemon's time for
                           building answers, on all sockets: N ms per second (default
                           250); past it atop answers wait, API requests get 429 with
                           Retry-After, stream updates are skipped
  --client-time-burst-ms N the most of that share a user saves up (default 2000)
  --request-timeout-ms N   an API request must arrive whole within N ms, and a
                           connection that sends nothing for N ms is closed (default 10000)
  --atop-idle-timeout-ms N an atop connection silent for N ms after its last request
                           is closed (default 3600000)
  --stream-stall-timeout-ms N  a stream client that takes no update for N ms is closed;
                           updates it cannot take meanwhile are skipped (default 30000)
  --removed-cgroup-fold-ms N  a removed cgroup keeps its own /metrics series for one
                           to two N ms, then folds into cgroup="(removed)" (default 60000)
  --attach-mode MODE       auto (default: the sock:sock_send_length tracepoints where the
                           kernel has them, Linux 6.3+, else fexit on inet_sendmsg and its
                           kin), tracepoint, or fexit (forced, to compare on one kernel)
  --no-netatop-module      do not serve atop before 2.10 (default: serve it as the
                           netatop kernel module and netatopd did, where neither runs)
  --netatop-bpf-object PATH  compiled BPF object that answers atop's getsockopt calls
                           (default: the package's bpf/netatop-sockopt.bpf.o)
  --netatop-exit-file PATH netatopd's exit file (default /var/run/netatop.log, as atop reads)
  --netatop-exit-file-max-bytes N  past N bytes the exit file starts over (default 67108864)
  --netatop-semaphore-key N  netatopd's semaphore key (default 1541961, as atop asks)
  --netatop-refresh-ms N   atop's getsockopt answers are at most N ms old while an atop
                           runs (default 1000)
  --no-history             keep no history (default: kept, see README "History")
  --history-file PATH      the history's SQLite file (default /var/lib/netacct/history.db)
  --history-tiers LIST     bucket:keep pairs, finest first (default
                           1m:48h,10m:31d,1h:13mo,1d:5y); each bucket a multiple of the last
  --history-rows-per-bucket N  rows of one bucket: the top N workloads by bytes, the
                           rest summed in one 'other' row (default 100)
  --history-max-bytes N    the file's bound: past it the oldest fine rows go first
                           (default 268435456)
  --no-container-names     do not name containers and pods from the runtimes' files
                           (default: named; where they are: config containerState)
  --verbose                debug messages

SIGHUP reloads the configuration file; settings that need a restart are named in the log.
`;

class UsageError extends Error {}

const FLAGS = {
  'atop-socket': 'atopSocket',
  'atop-socket-mode': 'atopSocketMode',
  'api-socket': 'apiSocket',
  'api-socket-mode': 'apiSocketMode',
  'all-processes-group': 'allProcessesGroup',
  'bpf-object': 'bpfObject',
  'pin-dir': 'pinDir',
  slots: 'slots',
  'overflow-capacity': 'overflowCapacity',
  'unattributed-capacity': 'unattributedCapacity',
  'map-share-per-user-percent': 'mapSharePerUserPercent',
  'map-share-others-percent': 'mapShareOthersPercent',
  'exited-capacity': 'exitedCapacity',
  'exited-retention-ms': 'exitedRetentionMs',
  'thread-capacity': 'threadCapacity',
  'thread-overflow-capacity': 'threadOverflowCapacity',
  'peer-capacity': 'peerCapacity',
  'exited-peer-capacity': 'exitedPeerCapacity',
  listen: 'listen',
  'web-config': 'webConfigFile',
  'metrics-top-processes': 'metricsTopProcesses',
  'metrics-top-peer-ports': 'metricsTopPeerPorts',
  'client-limit': 'clientLimit',
  'client-limit-per-user': 'clientLimitPerUser',
  'clients-reserved-for-root': 'clientsReservedForRoot',
  'stream-limit-per-user': 'streamLimitPerUser',
  'client-time-ms-per-second': 'clientTimeMsPerSecond',
  'client-time-burst-ms': 'clientTimeBurstMs',
  'request-timeout-ms': 'requestTimeoutMs',
  'atop-idle-timeout-ms': 'atopIdleTimeoutMs',
  'stream-stall-timeout-ms': 'streamStallTimeoutMs',
  'removed-cgroup-fold-ms': 'removedCgroupFoldMs',
  'attach-mode': 'attachMode',
  'netatop-bpf-object': 'netatopBpfObject',
  'netatop-exit-file': 'netatopExitFile',
  'netatop-exit-file-max-bytes': 'netatopExitFileMaxBytes',
  'netatop-semaphore-key': 'netatopSemaphoreKey',
  'netatop-refresh-ms': 'netatopRefreshMs',
  'history-file': 'historyFile',
  'history-tiers': 'historyTiers',
  'history-rows-per-bucket': 'historyRowsPerBucket',
  'history-max-bytes': 'historyMaxBytes',
} as const satisfies Record<string, keyof Config>;
const NUMERIC = new Set<keyof Config>([
  'slots',
  'overflowCapacity',
  'unattributedCapacity',
  'mapSharePerUserPercent',
  'mapShareOthersPercent',
  'exitedCapacity',
  'exitedRetentionMs',
  'threadCapacity',
  'threadOverflowCapacity',
  'peerCapacity',
  'exitedPeerCapacity',
  'metricsTopProcesses',
  'metricsTopPeerPorts',
  'clientLimit',
  'clientLimitPerUser',
  'clientsReservedForRoot',
  'streamLimitPerUser',
  'clientTimeMsPerSecond',
  'clientTimeBurstMs',
  'requestTimeoutMs',
  'atopIdleTimeoutMs',
  'streamStallTimeoutMs',
  'removedCgroupFoldMs',
  'netatopExitFileMaxBytes',
  'netatopSemaphoreKey',
  'netatopRefreshMs',
  'historyRowsPerBucket',
  'historyMaxBytes',
]);
/** Flags that switch a setting on. */
const SWITCHES = { verbose: 'verbose', threads: 'threads', peers: 'peers', 'listen-metrics-only': 'listenMetricsOnly' } as const satisfies Record<string, keyof Config>;
/** Flags that switch a setting off. */
const OFF_SWITCHES = { 'no-netatop-module': 'netatopModule', 'no-history': 'history', 'no-container-names': 'containerNames' } as const satisfies Record<string, keyof Config>;

/** --history-tiers "1m:48h,10m:31d": bucket:keep pairs, finest first. */
function historyTiersFlag(text: string): Array<{ bucket: string; keep: string }> {
  return text.split(',').map((pair) => {
    const [bucket = '', keep = ''] = pair.split(':');
    return { bucket, keep };
  });
}

/** The settings given as flags, checked one by one so that errors name the flag. */
function settingsFromFlags(values: Record<string, string | boolean | undefined>): Partial<Config> {
  const settings: Record<string, unknown> = {};
  for (const [flag, key] of Object.entries(FLAGS)) {
    const text = values[flag];
    if (typeof text !== 'string') continue;
    if (NUMERIC.has(key) && !/^\d+$/.test(text)) throw new UsageError(`--${flag} '${text}': must be a whole number`);
    settings[key] = NUMERIC.has(key) ? Number(text) : key === 'historyTiers' ? historyTiersFlag(text) : text;
    const checked = ConfigSchema.shape[key].safeParse(settings[key]);
    if (!checked.success) throw new UsageError(`--${flag} '${text}': ${checked.error.issues[0]!.message}`);
  }
  for (const [flag, key] of Object.entries(SWITCHES)) if (values[flag] === true) settings[key] = true;
  for (const [flag, key] of Object.entries(OFF_SWITCHES)) if (values[flag] === true) settings[key] = false;
  return settings as Partial<Config>;
}

async function daemonCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      ...Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' as const }])),
      ...Object.fromEntries([...Object.keys(SWITCHES), ...Object.keys(OFF_SWITCHES)].map((flag) => [flag, { type: 'boolean' as const }])),
      check: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  const flags = settingsFromFlags(values);
  const configPath = values.config ?? DEFAULT_CONFIG_PATH;
  const load = (): Config => resolveConfig(readConfigFile(configPath), flags);
  let config: Config;
  try {
    config = load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`netacct: ${printable(err.message)}\n`);
    return 2;
  }
  if (values.check) {
    const { selfCheck } = await import('../daemon/service/self-check.js');
    const source = fs.existsSync(configPath) ? configPath : `defaults (no ${configPath})`;
    return (await selfCheck(config, source, process.stdout)) ? 0 : 1;
  }
  const log = createLogger({ verbose: config.verbose });
  try {
    // Loaded here so that a missing libbpf.so.1 is reported like any other error.
    const { runDaemon } = await import('../daemon/service/daemon.js');
    await runDaemon(config, log, load);
    return 0;
  } catch (err) {
    log.error((err as Error).message);
    return 1;
  }
}

/** The API socket: the flag, else the configuration file's (if readable), else the default. */
function apiSocketFor(flag: string | undefined): string {
  if (flag !== undefined) return flag;
  try {
    return readConfigFile(DEFAULT_CONFIG_PATH).apiSocket ?? defaultConfig().apiSocket!;
  } catch {
    return defaultConfig().apiSocket!;
  }
}

const LISTING_OPTIONS = {
  ps: ['pid', 'uid', 'command', 'cgroup', 'namespace', 'pod', 'container', 'state', 'sort', 'order', 'limit'],
  cgroups: ['by', 'namespace', 'pod', 'container', 'sort', 'order', 'limit'],
  peers: ['pid', 'cgroup', 'address', 'port', 'protocol', 'state', 'sort', 'order', 'limit'],
  stats: [],
} as const;

/** A daemon that cannot be reached is one line and exit status 1, not a stack trace. */
async function reportingUnreachable(run: () => Promise<number>): Promise<number> {
  const { ApiUnreachableError } = await import('./api-client.js');
  try {
    return await run();
  } catch (err) {
    if (!(err instanceof ApiUnreachableError)) throw err;
    process.stderr.write(`netacct: ${printable(err.message)}\n`);
    return 1;
  }
}

async function listingCommand(command: keyof typeof LISTING_OPTIONS, args: string[]): Promise<number> {
  const names: readonly string[] = LISTING_OPTIONS[command];
  const { values } = parseArgs({
    args,
    options: {
      json: { type: 'boolean' },
      'api-socket': { type: 'string' },
      ...Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
    },
    strict: true,
    allowPositionals: false,
  });
  const given = values as Record<string, string | boolean | undefined>;
  const query = Object.fromEntries(names.map((name) => [name, given[name] as string | undefined]));
  // Loaded only for these commands: the daemon need not carry the API client.
  const { listingRequest, runListing } = await import('./listing.js');
  const path = command === 'stats' ? '/v1/stats' : listingRequest(command, query);
  return reportingUnreachable(() => runListing(command, apiSocketFor(values['api-socket']), path, values.json ?? false));
}

async function historyCommand(args: string[]): Promise<number> {
  const { HISTORY_OPTIONS, attachOptionValues, runHistory } = await import('./history.js');
  const { values } = parseArgs({ args: attachOptionValues(args), options: HISTORY_OPTIONS, strict: true, allowPositionals: false });
  return reportingUnreachable(() => runHistory(apiSocketFor(values['api-socket']), values));
}

async function detachCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'pin-dir': { type: 'string' }, config: { type: 'string' } }, strict: true, allowPositionals: false });
  let pinDir: string | null;
  try {
    pinDir = values['pin-dir'] ?? resolveConfig(readConfigFile(values.config ?? DEFAULT_CONFIG_PATH), {}).pinDir;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`netacct: ${printable(err.message)}\n`);
    return 2;
  }
  if (pinDir === null) {
    process.stdout.write('netacct: no pin directory configured: programs detach with their daemon\n');
    return 0;
  }
  const { detachPinned } = await import('../daemon/service/detach.js');
  try {
    const detached = detachPinned(pinDir);
    process.stdout.write(
      detached > 0
        ? `netacct: detached the programs pinned in ${pinDir}: nothing is counted until the daemon starts again (the counters stay)\n`
        : `netacct: no programs pinned in ${pinDir}\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`netacct: ${printable((err as Error).message)}\n`);
    return 1;
  }
}

async function topCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'api-socket': { type: 'string' } }, strict: true, allowPositionals: false });
  const socketPath = apiSocketFor(values['api-socket']);
  const { apiGet, ApiUnreachableError } = await import('./api-client.js');
  try {
    await apiGet(socketPath, '/v1/stats'); // fail with one clear line before taking the terminal
  } catch (err) {
    if (!(err instanceof ApiUnreachableError)) throw err;
    process.stderr.write(`netacct: ${printable(err.message)}\n`);
    return 1;
  }
  const { runTop } = await import('./top.js');
  return runTop(socketPath);
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === '--version' || command === '-V') {
      process.stdout.write(`netacct ${packageVersion()}\n`);
      return 0;
    }
    if (command === '--help' || command === '-h' || command === 'help' || rest.includes('--help')) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (command === 'daemon') return await daemonCommand(rest);
    if (command === 'ps' || command === 'cgroups' || command === 'peers' || command === 'stats') return await listingCommand(command, rest);
    if (command === 'history') return await historyCommand(rest);
    if (command === 'top') return await topCommand(rest);
    if (command === 'detach') return await detachCommand(rest);
    throw new UsageError(command === undefined ? 'no command given' : `unknown command '${command}'`);
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`netacct: ${printable((err as Error).message)}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}
