// The daemon: checks the host, loads and attaches the BPF programs (counting
// starts here, whether or not a client is connected), serves atop, reloads
// its configuration on SIGHUP, and on SIGTERM/SIGINT lets answers in flight
// finish, removes its socket and detaches.
import { atopAnswerBuilder } from '../serve/atop-answers.js';
import { bootEpochSeconds } from '../kernel/boot-time.js';
import { Collector } from '../accounting/collector.js';
import { type Config, RESTART_ONLY, groupId, listenAddress } from './config.js';
import { KernelCounters } from '../kernel/kernel-counters.js';
import { routeLibbpfMessages } from '../kernel/libbpf.js';
import { type DaemonLogger, guarded, rateLimited } from '../common/log.js';
import { checkPrivileges, ensureBpffs, ensureTracefs } from '../kernel/preflight.js';
import { chooseAttachMode, describeAttachMode, probeKernel } from '../kernel/attach-mode.js';
import { type PinDirLock, lockPinDir } from '../kernel/pin-lock.js';
import { ProcessTable } from '../accounting/process-table.js';
import { ForgottenTotals } from '../accounting/forgotten-totals.js';
import { ApiServer } from '../../protocol/http-api.js';
import { BasicAuth } from '../../protocol/basic-auth.js';
import { TcpClientKeys } from '../../protocol/tcp-client-keys.js';
import { type TlsSettings, type WebConfig, readWebConfig } from '../../protocol/web-config.js';
import { TimeBudgets } from '../../protocol/time-budget.js';
import { NetatopServer } from '../../protocol/netatop-server.js';
import { apiRoutes, metricsOnly } from '../serve/api-routes.js';
import { CgroupNames } from '../accounting/cgroup-names.js';
import { ContainerNames } from '../naming/container-names.js';
import { packageVersion } from '../common/package-root.js';
import { claimSocketPath } from '../../protocol/unix-socket-path.js';
import { ThreadTable } from '../accounting/thread-table.js';
import { PeerTable } from '../accounting/peer-table.js';
import { webPage } from '../serve/web-page.js';
import { readHealth } from '../serve/health.js';
import { systemdNotifier } from './sd-notify.js';
import { NetatopModule, type NetatopModuleState } from '../serve/netatop-module.js';
import { Heartbeat, type Ticker } from '../common/heartbeat.js';
import { releaseFreedMemory } from '../kernel/freed-memory.js';
import { History } from '../history/history.js';
import { historyRoute } from '../serve/history-route.js';
import { durationSeconds } from '../history/durations.js';

/** The period of the daemon's one timer (daemon/common/heartbeat.ts). */
const HEARTBEAT_MS = 1000;
/**
 * Its period while no process exits. Exits wait in the kernel meanwhile, and
 * one user may hold half of the exited map (32,768 by default): at the
 * 6,000 exits a second measured at the fork limit here, 2 s of them fit.
 */
const IDLE_HEARTBEAT_MS = 2000;
const DRAIN_INTERVAL_MS = 1000;
const RELEASE_MEMORY_MS = 60_000;
const LIVE_INFO_INTERVAL_MS = 10_000;
const MAX_EXITED = 200_000;
/** Exited processes of one user (but root) kept for its clients: its idle atop client holds only those, ~2 KiB each. */
const MAX_EXITED_PER_USER = 20_000;
const MAX_EXITED_THREADS = 50_000;
const SHUTDOWN_GRACE_MS = 5000;
const FORGET_GAP_MS = 10;
/** How soon a finished process is in the netatop exit file while an old atop follows it. */
const NETATOP_EXIT_POLL_MS = 20;

/**
 * Runs until SIGTERM or SIGINT; resolves once everything is released.
 * `reload` reads the configuration again (SIGHUP); it throws on a bad one.
 */
export async function runDaemon(config: Config, log: DaemonLogger, reload: () => Config): Promise<void> {
  // Handlers first: a supervisor may signal as soon as it sees the ready line.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let applyReload: (() => void) | null = null;
  const onHangup = (): void => {
    if (applyReload) applyReload();
    else log.warn('SIGHUP before start-up finished: ignored');
  };
  process.on('SIGHUP', onHangup);
  // A promise path nobody caught (a bug): logged, rate-limited, and the daemon goes on (Node would exit).
  const report = rateLimited(log);
  const onUnhandled = (reason: unknown): void => report('error', 'unhandled rejection', `a promise failed and nothing caught it (a bug; the daemon goes on): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  process.on('unhandledRejection', onUnhandled);

  const notify = systemdNotifier((message) => log.warn(message));
  checkPrivileges();
  // Read before anything is loaded: a bad file stops the start with its reason.
  const webConfig = config.webConfigFile ? readWebConfig(config.webConfigFile) : null;
  const allProcessesGroup = groupId(config.allProcessesGroup);
  // Refuse a second instance before loading anything.
  await claimSocketPath(config.atopSocket);
  if (config.apiSocket) await claimSocketPath(config.apiSocket);
  ensureTracefs();
  const features = probeKernel();
  const attachMode = chooseAttachMode(config.attachMode, features);
  if (config.pinDir) ensureBpffs(config.pinDir);
  // Before anything is attached: a second daemon on the same maps would count every event twice.
  const pinLock = config.pinDir ? lockPinDir(config.pinDir) : null;
  routeLibbpfMessages((level, message) => log[level](message));

  const kernel = openKernel(pinLock, () => KernelCounters.open(
    {
      objectPath: config.bpfObject,
      pinDir: config.pinDir,
      slots: config.slots,
      overflowCapacity: config.overflowCapacity,
      unattributedCapacity: config.unattributedCapacity,
      shares: { perUserPercent: config.mapSharePerUserPercent, othersPercent: config.mapShareOthersPercent },
      exitedCapacity: config.exitedCapacity,
      threadCapacity: config.threads ? config.threadCapacity : 0,
      threadOverflowCapacity: config.threadOverflowCapacity,
      peerCapacity: config.peers ? config.peerCapacity : 0,
      attachMode,
    },
    (message) => log.warn(message),
  ));
  log.info(`counting with ${describeAttachMode(attachMode, features)}`);
  if (kernel.spliceNotCounted) {
    log.warn(`splice(2) out of TCP sockets is not counted here (${kernel.spliceNotCounted}): the kernel refuses the splice system call's tracepoints, perf events (kernel.perf_event_paranoid 3 needs CAP_SYS_ADMIN; 2 is enough with CAP_PERFMON)`);
  }
  if (kernel.unpinnedPrograms.length > 0) {
    log.warn(`${kernel.unpinnedPrograms.join(', ')} cannot stay attached while no daemon runs on this kernel (perf event links are pinned from Linux 5.15): they count while this daemon runs`);
  }
  if (kernel.replacedGenerations > 0) {
    log.info('took over counting from the programs left attached by the daemon before: nothing missed while no daemon ran, nothing counted twice');
  }
  if (kernel.retiredOrphans > 0) {
    log.info(`${kernel.retiredOrphans} processes counted in the pinned maps exited while no daemon ran: retired with their last counters`);
  }
  const table = new ProcessTable(
    { exitedRetentionMs: config.exitedRetentionMs, maxExited: MAX_EXITED, maxExitedPerUser: MAX_EXITED_PER_USER, slotSettleMs: 10, rateIntervalMs: 1000 },
    new ForgottenTotals(kernel),
  );
  const containerNames = config.containerNames
    ? new ContainerNames(config.containerState, (message) => report('warn', 'container name', `naming a container: ${message}`))
    : null;
  const cgroupNames = new CgroupNames(undefined, (message) => report('warn', 'cgroup name', `naming a cgroup: ${message}`), containerNames);
  if (cgroupNames.unavailable) log.warn(`cgroups are listed by id only: ${cgroupNames.unavailable}`);
  const collector = new Collector(
    kernel,
    table,
    { liveInfoIntervalMs: LIVE_INFO_INTERVAL_MS },
    log,
    config.threads ? new ThreadTable(config.exitedRetentionMs, MAX_EXITED_THREADS) : null,
    config.peers ? new PeerTable(config.exitedPeerCapacity) : null,
  );
  const historyTiers = config.historyTiers.map((tier) => ({ bucketSeconds: durationSeconds(tier.bucket)!, keepSeconds: durationSeconds(tier.keep)! }));
  const history = config.history
    ? new History(
        {
          file: config.historyFile,
          tiers: historyTiers,
          // Per-peer rows in the second and third tiers (10 minutes and an hour by default).
          peerTiers: config.peers ? (historyTiers.length > 1 ? historyTiers.slice(1, 3) : historyTiers) : [],
          rowsPerBucket: config.historyRowsPerBucket,
          maxBytes: config.historyMaxBytes,
          readerGroup: allProcessesGroup,
        },
        { table, collector, forgotten: table.forgotten, cgroupNames, countersIdentity: kernel.identity, mapsCreated: kernel.mapsCreated },
        log,
      )
    : null;
  // Every periodic job on one timer: once a second while processes exit, every few seconds while nothing happens.
  const heartbeat = new Heartbeat(HEARTBEAT_MS, IDLE_HEARTBEAT_MS, (err) => report('error', 'heartbeat', `periodic work: ${err.message}`));
  heartbeat.every(DRAIN_INTERVAL_MS, () => {
    if (collector.drain()) heartbeat.busy();
  });

  // Forgetting looks at every exited entry: after a burst of answers, once
  // (right after an answer, but at most every FORGET_GAP_MS).
  let forgetQueued = false;
  let lastForgetMs = -Infinity;
  const forgetServedExits = guarded(report, 'forgetting exited processes', () => {
    forgetQueued = false;
    lastForgetMs = performance.now();
    table.forgetServedExits(netatop.module ? netatop.module.servedExits(server.servedExits()) : server.servedExits(), Date.now());
  });
  const forgetSoon = (): void => {
    if (forgetQueued) return;
    forgetQueued = true;
    const wait = lastForgetMs + FORGET_GAP_MS - performance.now();
    if (wait > 0) setTimeout(forgetServedExits, wait).unref();
    else setImmediate(forgetServedExits);
  };
  const limits = (c: Config) => ({ total: c.clientLimit, perUser: c.clientLimitPerUser, reservedForRoot: c.clientsReservedForRoot });
  const timeShare = (c: Config) => ({ msPerSecond: c.clientTimeMsPerSecond, burstMs: c.clientTimeBurstMs });
  // One share per user across every socket: the daemon has one thread.
  const budgets = new TimeBudgets(timeShare(config));
  const server: NetatopServer = new NetatopServer({
    socketPath: config.atopSocket,
    mode: parseInt(config.atopSocketMode, 8),
    answer: atopAnswerBuilder(table, collector, bootEpochSeconds()),
    allProcessesGroup,
    onAnswered: forgetSoon,
    log,
    maxPendingRequests: 1024,
    answerTimeoutMs: 10_000,
    maxAnswersInFlight: 32,
    maxAnswersInFlightPerUser: 4,
    limits: limits(config),
    budgets,
    firstRequestTimeoutMs: config.requestTimeoutMs,
    idleTimeoutMs: config.atopIdleTimeoutMs,
    ticker: heartbeat,
  });
  const netatop = openNetatopModule(config, allProcessesGroup, table, collector, log, heartbeat);
  let running = config;
  const handle = apiRoutes({
    table,
    collector,
    bootEpoch: bootEpochSeconds(),
    version: packageVersion(),
    startedAtMs: Date.now(),
    health: () =>
      readHealth(config, { mode: attachMode, description: describeAttachMode(attachMode, features) }, kernel, collector, server, apiServers, netatop, budgets, history),
    cgroupNames,
    metricsTopProcesses: () => running.metricsTopProcesses,
    metricsTopPeerPorts: () => running.metricsTopPeerPorts,
    webPage: webPage(),
    history: historyRoute(history),
  });
  const apiServers: ApiServer[] = [];
  const apiOptions = {
    allProcessesGroup,
    handle,
    log,
    limits: limits(config),
    budgets,
    ticker: heartbeat,
    streamLimitPerUser: config.streamLimitPerUser,
    requestTimeoutMs: config.requestTimeoutMs,
    streamStallTimeoutMs: config.streamStallTimeoutMs,
  };
  if (config.apiSocket) {
    apiServers.push(new ApiServer({ ...apiOptions, endpoint: { socketPath: config.apiSocket, mode: parseInt(config.apiSocketMode, 8) } }));
  }
  let tcpServer: ApiServer | null = null;
  // A handshake is part of the request: it must end within the request timeout too.
  const tlsOf = (web: WebConfig | null): TlsSettings | null => (web?.tls ? { ...web.tls, server: { ...web.tls.server, handshakeTimeout: config.requestTimeoutMs } } : null);
  if (config.listen) {
    const { host, port } = listenAddress(config.listen);
    const web = webConfig ?? { tls: null, users: null };
    if (!web.users && !config.listenMetricsOnly) {
      log.warn(
        `the API on TCP ${config.listen} has no basic auth (webConfigFile): whoever can connect to it sees every process, command, cgroup and peer of this host` +
          ` (on loopback: every local user)`,
      );
    }
    tcpServer = new ApiServer({ ...apiOptions, handle: config.listenMetricsOnly ? metricsOnly(handle) : handle, auth: web.users ? new BasicAuth(web.users) : null, endpoint: { host, port, clientKeys: new TcpClientKeys(config.listenClientNetworks), tls: tlsOf(web) } });
    apiServers.push(tcpServer);
  }
  heartbeat.every(DRAIN_INTERVAL_MS, forgetServedExits);
  heartbeat.every(
    config.removedCgroupFoldMs,
    guarded(report, 'folding removed cgroups', () => {
      const inUse = table.cgroupsInUse();
      collector.unattributed.foldRemoved((ids) => cgroupNames.removedOf(ids), table.forgotten);
      for (const id of collector.unattributed.cgroupIds()) inUse.add(id);
      table.forgotten.foldRemoved((ids) => cgroupNames.removedOf(ids.filter((id) => !inUse.has(id))));
      if (table.forgotten.unpersistedCount > 0) {
        report('warn', 'cgroup totals', `${table.forgotten.unpersistedCount} live cgroups' totals are in memory only (the pinned cgroup_totals map is full): they would not survive a restart`);
      }
      cgroupNames.retain((id) => inUse.has(id) || table.forgotten.has(id));
    }),
  );
  try {
    await server.listen();
    for (const api of apiServers) await api.listen();
  } catch (err) {
    heartbeat.stop();
    await Promise.all([server.close(0), ...apiServers.map((api) => api.close())]);
    netatop.module?.close();
    cgroupNames.close();
    kernel.close();
    pinLock?.release();
    throw err;
  }

  applyReload = () => {
    let next: Config;
    let nextGroup: number | null;
    try {
      next = reload();
      nextGroup = groupId(next.allProcessesGroup);
    } catch (err) {
      log.error(`SIGHUP: ${(err as Error).message}; keeping the running configuration`);
      return;
    }
    for (const key of RESTART_ONLY) {
      if (JSON.stringify(next[key]) !== JSON.stringify(running[key])) { // by value: listenClientNetworks is a list
        log.warn(`SIGHUP: ${key} changes only on restart; still ${JSON.stringify(running[key])}`);
        (next as Record<string, unknown>)[key] = running[key];
      }
    }
    try {
      server.reconfigure(parseInt(next.atopSocketMode, 8), nextGroup, limits(next));
      for (const api of apiServers) api.reconfigure(parseInt(next.apiSocketMode, 8), nextGroup, limits(next), next.streamLimitPerUser);
    } catch (err) {
      log.error(`SIGHUP: applying the socket settings failed: ${(err as Error).message}`);
    }
    if (tcpServer && config.webConfigFile) {
      // Read again, as the exporters read theirs: a renewed certificate, a revoked password.
      try {
        const web = readWebConfig(config.webConfigFile);
        tcpServer.setWebConfig(tlsOf(web), web.users ? new BasicAuth(web.users) : null);
        if (!web.users) log.warn(`SIGHUP: the web configuration ${config.webConfigFile} has no basic_auth_users now: TCP clients see everything`);
      } catch (err) {
        log.error(`SIGHUP: ${(err as Error).message}; keeping the running web configuration`);
      }
    }
    try {
      history?.setReaderGroup(nextGroup);
    } catch (err) {
      log.error(`SIGHUP: giving the history file to allProcessesGroup failed: ${(err as Error).message}`);
    }
    try {
      netatop.module?.setAllProcessesGroup(nextGroup);
    } catch (err) {
      log.error(`SIGHUP: applying allProcessesGroup to the netatop module interface failed: ${(err as Error).message}`);
    }
    budgets.limits = timeShare(next);
    table.setExitedRetention(next.exitedRetentionMs);
    collector.threads?.setRetention(next.exitedRetentionMs);
    log.setVerbose(next.verbose);
    running = next;
    log.info('SIGHUP: configuration reloaded');
  };
  history?.start();
  const apiPlaces = apiServers.map((api) => api.where);
  const per = [config.threads ? 'per thread' : '', config.peers ? 'per peer' : ''].filter(Boolean).join(' and ');
  const status = `netacct counting${per ? ` (and ${per})` : ''}; serving atop on ${config.atopSocket}${apiPlaces.length > 0 ? ` and the API on ${apiPlaces.join(' and ')}` : ''}`;
  // What start-up freed (libbpf's BTF, above all) goes back now, and what later reads free, once a minute.
  releaseFreedMemory();
  heartbeat.every(RELEASE_MEMORY_MS, releaseFreedMemory);
  // Ready only now: BPF is attached and every socket listens (atop.service starts after this).
  notify?.(`READY=1\nSTATUS=${status}`);
  log.info(status);

  const signal = await stopSignal;
  log.info(`${signal}: shutting down`);
  notify?.('STOPPING=1');
  process.off('SIGHUP', onHangup);
  process.off('unhandledRejection', onUnhandled);
  heartbeat.stop();
  await Promise.all([server.close(SHUTDOWN_GRACE_MS), ...apiServers.map((api) => api.close())]);
  netatop.module?.close();
  // Before the hand-over: what the table holds now is written, then handed to the kernel's totals.
  history?.stop();
  cgroupNames.close();
  table.handOver();
  kernel.close();
  pinLock?.release();
  log.info('stopped');
}

/**
 * The netatop module's interface for atop before 2.10, where it can be
 * served; otherwise one line says why not, and the daemon goes on without it.
 */
function openNetatopModule(
  config: Config,
  allProcessesGroup: number | null,
  table: ProcessTable,
  collector: Collector,
  log: DaemonLogger,
  ticker: Ticker,
): NetatopModuleState {
  if (!config.netatopModule) return { module: null, inactive: 'off (netatopModule: false)' };
  const opened = NetatopModule.open(
    {
      bpfObject: config.netatopBpfObject,
      exitFile: config.netatopExitFile,
      exitFileMaxBytes: config.netatopExitFileMaxBytes,
      semaphoreKey: config.netatopSemaphoreKey,
      capacity: config.slots * 2 + (config.threads ? config.threadCapacity + config.threadOverflowCapacity : 0),
      allProcessesGroup,
      refreshMs: config.netatopRefreshMs,
      exitPollMs: NETATOP_EXIT_POLL_MS,
    },
    table,
    collector,
    bootEpochSeconds(),
    log,
    ticker,
  );
  if (opened.module) {
    log.info(`serving atop before 2.10 as the netatop module and netatopd did (exit file ${config.netatopExitFile}; requests noted by ${opened.module.status().requestHook} on getsockopt)`);
  }
  else log.warn(`not serving atop before 2.10 (the netatop module interface): ${opened.inactive}`);
  return opened;
}

/** Opens the kernel side; if that fails, the pin directory is unlocked (and removed if it was created empty). */
function openKernel(pinLock: PinDirLock | null, open: () => KernelCounters): KernelCounters {
  try {
    return open();
  } catch (err) {
    pinLock?.release();
    throw err;
  }
}
