// What the HTTP API answers, from the process table. Every query parameter is
// validated with zod: a bad one is HTTP 400 naming the field, never a silent
// default. Clients see only what their visibility allows (as on the atop socket).
import { z } from 'zod';
import type { ApiRequest, ApiResult } from '../../protocol/http-answer.js';
import type { Visibility } from '../../protocol/peer-credentials.js';
import { startEpochSeconds } from '../kernel/boot-time.js';
import type { CgroupNames } from '../accounting/cgroup-names.js';
import type { Collector } from '../accounting/collector.js';
import type { DaemonHealth } from './health.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import { Listing } from '../../protocol/listing-body.js';
import { addInto, sumCounters } from '../accounting/counter-math.js';
import { COUNTERS, Direction, Family, Kind, Protocol } from '../kernel/layout.js';
import type { ProcessEntry, ProcessTable } from '../accounting/process-table.js';
import { type PeerRecord, processKey } from '../accounting/peer-table.js';
import { type PeerView, peerMatches, peerQuery, peerView } from './peer-rows.js';

const PROTOCOLS = ['tcp', 'udp'] as const;
const DIRECTIONS = ['send', 'recv'] as const;
const KINDS = ['calls', 'bytes'] as const;
const COUNTER_KEYS = PROTOCOLS.flatMap((p) => DIRECTIONS.flatMap((d) => KINDS.map((k) => `${p}.${d}.${k}`)));
/** total.bytes: sent and received, TCP and UDP together. */
const TOTAL_KEYS = ['total.bytes', 'total.calls'];
/** Counters, and for processes their rates ("rate.tcp.send.bytes"). */
const SORT_KEYS = [...COUNTER_KEYS, ...TOTAL_KEYS, ...[...COUNTER_KEYS, ...TOTAL_KEYS].map((key) => `rate.${key}`)];

/** A query parameter that is a count or an id: decimal digits only (no sign, exponent, hex or spaces). */
const whole = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a whole number')
  .transform(Number);
/** Kubernetes' and the runtimes' names: a namespace, pod or container name (253 characters at most, as Kubernetes allows). */
const containerNameFilters = {
  namespace: z.string().min(1).max(253).optional(),
  pod: z.string().min(1).max(253).optional(),
  container: z.string().min(1).max(253).optional(),
};
type ContainerNameFilter = { namespace?: string | undefined; pod?: string | undefined; container?: string | undefined };
const ProcessQuery = z.strictObject({
  pid: whole.optional(),
  uid: whole.optional(),
  cgroup: whole.optional(),
  ...containerNameFilters,
  command: z.string().min(1).max(15).optional(),
  state: z.enum(['live', 'exited', 'all']).default('all'),
  sort: z.enum(['pid', 'command', ...SORT_KEYS] as [string, ...string[]]).default('pid'),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: whole.pipe(z.number().min(1, 'must be at least 1').max(1_000_000)).default(1_000_000),
});
type ProcessFilter = z.infer<typeof ProcessQuery>;
const CgroupQuery = z.strictObject({
  /** cgroup: one row per cgroup; pod, namespace: the totals of each (what is in no pod in one row, its names null). */
  by: z.enum(['cgroup', 'pod', 'namespace']).default('cgroup'),
  ...containerNameFilters,
  sort: z.enum(['id', 'path', 'name', ...COUNTER_KEYS, ...TOTAL_KEYS] as [string, ...string[]]).default('id'),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: whole.pipe(z.number().min(1, 'must be at least 1').max(1_000_000)).default(1_000_000),
});
const PeerQuery = peerQuery([...COUNTER_KEYS, ...TOTAL_KEYS]);
type PeerFilter = z.infer<typeof PeerQuery>;
const NoQuery = z.strictObject({});

/** One process's row with one peer. */
interface PeerRow {
  entry: ProcessEntry;
  record: PeerRecord;
  view: PeerView;
}

type Counters = Record<(typeof PROTOCOLS)[number], Record<(typeof DIRECTIONS)[number], { calls: number; bytes: number }>>;

function counters(total: ArrayLike<number>, families: number[]): Counters {
  const pick = (protocol: number, direction: number, kind: number): number => sumCounters(total, kind, [protocol], [direction], families);
  const byDirection = (protocol: number) => ({
    send: { calls: pick(protocol, Direction.send, Kind.calls), bytes: pick(protocol, Direction.send, Kind.bytes) },
    recv: { calls: pick(protocol, Direction.recv, Kind.calls), bytes: pick(protocol, Direction.recv, Kind.bytes) },
  });
  return { tcp: byDirection(Protocol.tcp), udp: byDirection(Protocol.udp) };
}

export interface ApiContext {
  table: ProcessTable;
  collector: Collector;
  bootEpoch: number;
  version: string;
  startedAtMs: number;
  health: () => DaemonHealth;
  cgroupNames: CgroupNames;
  /** The live web page's files by path, or null for another path. */
  webPage: (path: string) => ApiResult | null;
  /** /metrics: per-process series for this many processes (0: none); read per scrape (SIGHUP changes it). */
  metricsTopProcesses: () => number;
  /** /metrics: per (cgroup, service port) series for this many pairs (0: none), with peers on; read per scrape. */
  metricsTopPeerPorts: () => number;
  /** /v1/history (daemon/serve/history-route.ts). */
  history: (request: ApiRequest) => ApiResult;
}

/** Whether a client with `visibility` may read `entry` (the atop socket's rule). */
function mayRead(visibility: Visibility, entry: ProcessEntry): boolean {
  return visibility.seesAll || entry.uid === visibility.uid;
}

/** A request that validateOnly found good. */
const valid: ApiResult = { status: 200, body: null };

function badRequest(error: z.ZodError): ApiResult {
  const issue = error.issues[0]!;
  const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.');
  const message = issue.code === 'unrecognized_keys' ? 'unknown parameter' : issue.message;
  return { status: 400, body: { error: `invalid parameter '${field}': ${message}`, field } };
}

/** Only what a scraper needs (listenMetricsOnly): every other path is a 404 that says why. */
export function metricsOnly(handle: (request: ApiRequest) => ApiResult): (request: ApiRequest) => ApiResult {
  return (request) =>
    request.path === '/metrics' || request.path === '/healthz'
      ? handle(request)
      : { status: 404, body: { error: `this listener serves /metrics and /healthz only (listenMetricsOnly): ${request.path} is on the API socket`, endpoints: ['/metrics', '/healthz'] } };
}

export function apiRoutes(context: ApiContext): (request: ApiRequest) => ApiResult {
  const { table, collector, bootEpoch, cgroupNames } = context;

  const cgroup = (id: number) => {
    const name = cgroupNames.nameOf(id);
    return { id, path: name?.path ?? null, unit: name?.unit ?? null, containerId: name?.containerId ?? null, container: name?.container ?? null };
  };

  /** Whether the cgroup `id` holds a container with the names `filter` asks for (any, when it asks for none). */
  const namedAs = (filter: ContainerNameFilter): ((id: number) => boolean) => {
    if (filter.namespace === undefined && filter.pod === undefined && filter.container === undefined) return () => true;
    return (id) => {
      const container = cgroupNames.nameOf(id)?.container;
      return (
        !!container &&
        (filter.namespace === undefined || container.namespace === filter.namespace) &&
        (filter.pod === undefined || container.pod === filter.pod) &&
        (filter.container === undefined || container.name === filter.container)
      );
    };
  };

  const allCounters = (total: ArrayLike<number>) => ({
    ...counters(total, [Family.ipv4, Family.ipv6]),
    ipv4: counters(total, [Family.ipv4]),
    ipv6: counters(total, [Family.ipv6]),
  });

  /**
   * Sorts rows by `sort`: a field, a counter (tcp.send.bytes, total.bytes) or
   * a rate (rate.tcp.send.bytes; a row without rates sorts lowest), read from
   * the raw 16 counters, so that only the rows a client gets are described.
   */
  const sortRows = <Row>(
    rows: Row[],
    sort: string,
    order: 'asc' | 'desc',
    field: (row: Row) => number | string,
    raw: (row: Row) => { counters: ArrayLike<number>; rates: ArrayLike<number> | null },
    tieBreak: (row: Row) => number,
  ): Row[] => {
    const key = (row: Row): number | string => {
      if (!sort.includes('.')) return field(row);
      const rate = sort.startsWith('rate.');
      const { counters, rates } = raw(row);
      const source = rate ? rates : counters;
      if (!source) return -1;
      const [first, second, third] = (rate ? sort.slice(5) : sort).split('.') as [string, string, string];
      if (first === 'total') return sumCounters(source, Kind[second as keyof typeof Kind]);
      return sumCounters(source, Kind[third as keyof typeof Kind], [Protocol[first as keyof typeof Protocol]], [Direction[second as keyof typeof Direction]]);
    };
    const keys = new Map(rows.map((row) => [row, key(row)]));
    const sign = order === 'asc' ? 1 : -1;
    return rows.sort((a, b) => {
      const x = keys.get(a)!;
      const y = keys.get(b)!;
      return x < y ? -sign : x > y ? sign : tieBreak(a) - tieBreak(b);
    });
  };

  const describe = (entry: ProcessEntry) => ({
    pid: entry.tgid,
    command: entry.comm,
    uid: entry.uid,
    startTime: startEpochSeconds(bootEpoch, entry.startNs),
    state: entry.exit ? 'exited' : 'live',
    cgroup: cgroup(entry.cgroupId),
    counters: allCounters(entry.total),
    /** Per second over the last sampling interval; null until the process was sampled twice. */
    rates: entry.rates && !entry.exit ? allCounters(entry.rates) : null,
  });

  /** The processes in the table (as last read) in `state` that `visibility` lets a client read. */
  const readableEntries = (visibility: Visibility, state: ProcessFilter['state']): ProcessEntry[] => {
    // Pushed one by one: a spread of 200,000 exited entries would overflow the stack.
    const entries: ProcessEntry[] = [];
    const add = (entry: ProcessEntry): void => void (mayRead(visibility, entry) && entries.push(entry));
    if (state !== 'live') table.exitedAfter(0).forEach(add);
    if (state !== 'exited') table.forEachLive(add);
    return entries;
  };

  const visible = (request: ApiRequest, filter: ProcessFilter): ProcessEntry[] => {
    const { visibility } = request;
    table.wantRates(Date.now());
    collector.ensureReadSince(request.asOfMs);
    const inContainer = namedAs(filter);
    return readableEntries(visibility, filter.state).filter(
      (e) =>
        (filter.pid === undefined || e.tgid === filter.pid) &&
        (filter.uid === undefined || e.uid === filter.uid) &&
        (filter.cgroup === undefined || e.cgroupId === filter.cgroup) &&
        (filter.command === undefined || e.comm === filter.command) &&
        inContainer(e.cgroupId),
    );
  };

  const processes = (request: ApiRequest): ApiResult => {
    const parsed = ProcessQuery.safeParse(Object.fromEntries(request.query));
    if (!parsed.success) return badRequest(parsed.error);
    if (request.validateOnly) return valid;
    const filter = parsed.data;
    const entries = visible(request, filter);
    const field = (entry: ProcessEntry): number | string => (filter.sort === 'command' ? entry.comm : entry.tgid);
    const raw = (entry: ProcessEntry) => ({ counters: entry.total, rates: entry.exit ? null : entry.rates });
    sortRows(entries, filter.sort, filter.order, field, raw, (entry) => entry.tgid);
    entries.length = Math.min(entries.length, filter.limit);
    return { status: 200, body: new Listing({ rateIntervalSeconds: table.rateIntervalSeconds }, 'processes', entries, describe) };
  };

  /** Per cgroup id, the counters of every process `visibility` admits and of its users' unattributed rows. */
  const cgroupTotals = (visibility: Visibility): Map<number, number[]> => {
    const totals = table.cgroupTotals((e) => mayRead(visibility, e), visibility.seesAll);
    collector.unattributed.addTo(totals, (uid) => visibility.seesAll || uid === visibility.uid, visibility.seesAll);
    return totals;
  };

  /**
   * Totals per cgroup, exited processes included. A client that does not see
   * every process gets the totals of its own processes only (what other
   * users' processes sent is theirs), without those already forgotten.
   */
  const cgroups = (request: ApiRequest): ApiResult => {
    const parsed = CgroupQuery.safeParse(Object.fromEntries(request.query));
    if (!parsed.success) return badRequest(parsed.error);
    if (request.validateOnly) return valid;
    const { by, sort, order, limit } = parsed.data;
    const { visibility } = request;
    collector.ensureReadSince(request.asOfMs);
    const inContainer = namedAs(parsed.data);
    const rows = [...cgroupTotals(visibility)].filter(([id]) => inContainer(id));
    if (by !== 'cgroup') return podTotals(rows, by, parsed.data);
    const field = ([id]: [number, number[]]): number | string => (sort === 'path' || sort === 'name' ? (cgroupNames.nameOf(id)?.path ?? '') : id);
    sortRows(rows, sort, order, field, ([, total]) => ({ counters: total, rates: null }), ([id]) => id);
    rows.length = Math.min(rows.length, limit);
    return { status: 200, body: new Listing({}, 'cgroups', rows, ([id, total]) => ({ ...cgroup(id), counters: allCounters(total) })) };
  };

  /**
   * /v1/cgroups?by=pod|namespace: the cgroups' totals per pod (namespace and
   * name) or per namespace; a pod whose runtime did not name it (yet) by its
   * uid (from kubelet's layout); what is in no pod adds up in one row whose
   * names are null, so that the rows add up to the host's (or the client's own).
   */
  const podTotals = (rows: Array<[number, number[]]>, by: 'pod' | 'namespace', query: z.infer<typeof CgroupQuery>): ApiResult => {
    const groups = new Map<string, { namespace: string | null; pod: string | null; podUid: string | null; cgroups: number; total: number[] }>();
    for (const [id, total] of rows) {
      const container = cgroupNames.nameOf(id)?.container;
      const namespace = container?.namespace ?? null;
      const pod = by === 'pod' && namespace !== null ? (container?.pod ?? null) : null;
      const podUid = by === 'pod' && namespace === null ? (container?.podUid ?? null) : null;
      const key = JSON.stringify([namespace, pod, podUid]);
      const group = groups.get(key) ?? { namespace, pod, podUid, cgroups: 0, total: new Array<number>(COUNTERS).fill(0) };
      group.cgroups++;
      addInto(group.total, total);
      groups.set(key, group);
    }
    const list = [...groups.values()];
    const field = (group: (typeof list)[number]): string => `${group.namespace ?? '\uffff'}/${group.pod ?? '\uffff'}/${group.podUid ?? '\uffff'}`; // no pod last
    sortRows(list, query.sort, query.order, field, (group) => ({ counters: group.total, rates: null }), () => 0);
    list.length = Math.min(list.length, query.limit);
    const describeGroup = (group: (typeof list)[number]) => ({
      namespace: group.namespace,
      ...(by === 'pod' ? { pod: group.pod, podUid: group.podUid } : {}),
      cgroups: group.cgroups,
      counters: allCounters(group.total),
    });
    return { status: 200, body: new Listing({ by }, by === 'pod' ? 'pods' : 'namespaces', list, describeGroup) };
  };

  /**
   * Prometheus metrics. Cgroups are labelled by path: a cgroup removed and
   * created again under the same path (a restarted service) is one series,
   * whose counters keep growing across the two.
   */
  const metrics = (request: ApiRequest): ApiResult => {
    const { visibility } = request;
    collector.ensureReadSince(request.asOfMs);
    const cgroups = [...cgroupTotals(visibility)].map(([id, counters]) => {
      const name = cgroupNames.nameOf(id);
      const container = name?.container;
      return { path: name?.path ?? '(removed)', unit: name?.unit ?? '', namespace: container?.namespace ?? '', pod: container?.pod ?? '', container: container?.name ?? '', counters };
    });
    const top = context.metricsTopProcesses();
    const processes =
      top > 0 ? readableEntries(visibility, 'all').map((entry) => ({ pid: entry.tgid, command: entry.comm, counters: entry.total })) : null;
    const topPorts = context.metricsTopPeerPorts();
    const peerRowsByPort = topPorts > 0 ? peerRows(readableEntries(visibility, 'all'), PeerQuery.parse({})) : null;
    const peerPorts =
      peerRowsByPort?.map(({ entry, view, record }) => ({
        cgroup: cgroupNames.nameOf(entry.cgroupId)?.path ?? '(removed)',
        port: String(view.port ?? view.localPort ?? 'unknown'),
        counters: record.counters,
      })) ?? null;
    const body = renderMetrics({
      version: context.version,
      startTimeSeconds: Math.floor(context.startedAtMs / 1000),
      processCounts: processCounts(visibility),
      health: context.health(),
      hostWide: visibility.seesAll,
      cgroups,
      processes,
      topProcesses: top,
      peerPorts,
      topPeerPorts: topPorts,
    });
    return { status: 200, body, contentType: METRICS_CONTENT_TYPE };
  };

  /** The process a /v1/processes/{pid} path names (live first), or the answer that says why not. */
  const processAt = (request: ApiRequest, pidText: string): ProcessEntry | ApiResult => {
    let decoded: string | null;
    try {
      decoded = decodeURIComponent(pidText);
    } catch {
      decoded = null; // "%" alone, say: a client's mistake, not the daemon's
    }
    const pid = whole.safeParse(decoded);
    if (!pid.success) return { status: 400, body: { error: `invalid parameter 'pid': ${decoded === null ? 'malformed percent-encoding' : pid.error.issues[0]!.message}`, field: 'pid' } };
    const matches = visible(request, { ...ProcessQuery.parse({}), pid: pid.data });
    const entry = matches.find((e) => !e.exit) ?? matches.at(-1);
    return entry ?? { status: 404, body: { error: `no process ${pid.data} with counters that you may see` } };
  };

  const oneProcess = (entry: ProcessEntry): ApiResult => {
    const threads = collector.threadsOf(entry.tgid, entry.startNs);
    return {
      status: 200,
      body: {
        ...describe(entry),
        rateIntervalSeconds: table.rateIntervalSeconds,
        /** null when per-thread counting is off (config `threads`). */
        threads:
          threads?.map((thread) => ({
            tid: thread.tid,
            command: thread.comm,
            startTime: startEpochSeconds(bootEpoch, thread.startNs),
            state: thread.exitedAtMs === null ? 'live' : 'exited',
            counters: allCounters(thread.counters),
          })) ?? null,
      },
    };
  };

  const peersOff: ApiResult = { status: 404, body: { error: 'per-peer counting is off: start the daemon with --peers (config `peers`)' } };

  /** The rows of `entries` with their peers that pass `filter` (a live process's read from the kernel now); null when per-peer counting is off. */
  const peerRows = (entries: readonly ProcessEntry[], filter: PeerFilter): PeerRow[] | null => {
    const peers = collector.peersOf(entries);
    if (!peers) return null;
    const rows: PeerRow[] = [];
    for (const entry of entries) {
      for (const record of peers.get(processKey(entry.tgid, entry.startNs)) ?? []) {
        const view = peerView(record);
        if (peerMatches(record, view, filter)) rows.push({ entry, record, view });
      }
    }
    const field = ({ entry, view }: PeerRow): number | string =>
      filter.sort === 'address' ? (view.address ?? '') : filter.sort === 'port' ? (view.port ?? view.localPort ?? 0) : entry.tgid;
    sortRows(rows, filter.sort, filter.order, field, ({ record }) => ({ counters: record.counters, rates: null }), ({ entry }) => entry.tgid);
    rows.length = Math.min(rows.length, filter.limit);
    return rows;
  };
  const describePeer = ({ record, view }: PeerRow) => ({ ...view, counters: allCounters(record.counters) });

  /** Every visible process's peers: /v1/peers. */
  const peers = (request: ApiRequest): ApiResult => {
    const parsed = PeerQuery.safeParse(Object.fromEntries(request.query));
    if (!parsed.success) return badRequest(parsed.error);
    if (!collector.countsPeers) return peersOff;
    if (request.validateOnly) return valid;
    const filter = parsed.data;
    const entries = visible(request, { ...ProcessQuery.parse({}), pid: filter.pid, cgroup: filter.cgroup, state: filter.state });
    const rows = peerRows(entries, filter);
    if (!rows) return peersOff;
    const describeRow = (row: PeerRow) => {
      const { entry } = row;
      return { pid: entry.tgid, command: entry.comm, uid: entry.uid, state: entry.exit ? 'exited' : 'live', cgroup: cgroup(entry.cgroupId), ...describePeer(row) };
    };
    return { status: 200, body: new Listing({}, 'peers', rows, describeRow) };
  };

  /** One process's peers, with its own counters (its peers add up to them): /v1/processes/{pid}/peers. */
  const processPeers = (request: ApiRequest, entry: ProcessEntry): ApiResult => {
    const parsed = PeerQuery.safeParse(Object.fromEntries(request.query));
    if (!parsed.success) return badRequest(parsed.error);
    const rows = peerRows([entry], parsed.data);
    if (!rows) return peersOff;
    const { pid, command, uid, state, counters } = describe(entry);
    return { status: 200, body: new Listing({ pid, command, uid, state, counters }, 'peers', rows, describePeer) };
  };

  /** Live and exited processes `visibility` may see (the table's counts for root: no walk). */
  const processCounts = (visibility: Visibility): { live: number; exited: number } => {
    if (visibility.seesAll) return { live: table.liveCount, exited: table.exitedCount };
    const all = readableEntries(visibility, 'all'); // one pass: exited entries are those with an exit
    const exited = all.filter((entry) => entry.exit).length;
    return { live: all.length - exited, exited };
  };

  /**
   * The daemon's state. Another user (not root, not of allProcessesGroup)
   * gets what concerns it alone: its own processes, how counting works; not
   * the host-wide figures (map fill, kernel counters, clients, limits),
   * which, polled, would tell it about everyone else's processes and
   * connections.
   */
  const stats = (request: ApiRequest): ApiResult => {
    const { visibility } = request;
    collector.ensureReadSince(request.asOfMs); // its counts agree with a listing asked after it
    const { kernel, ...health } = context.health();
    const common = {
      version: context.version,
      uptimeSeconds: Math.floor((Date.now() - context.startedAtMs) / 1000),
      processes: processCounts(visibility),
      attachMode: health.attachMode,
      programsAttached: health.programsAttached,
    };
    if (!visibility.seesAll) return { status: 200, body: { scope: 'own', ...common } };
    return {
      status: 200,
      body: {
        scope: 'host',
        ...common,
        kernel: { slots: health.maps.slots.capacity, ...kernel },
        ...health,
        threads: collector.threads ? { exitedKept: collector.threads.exitedCount, exitedDropped: collector.threads.droppedExited } : null,
      },
    };
  };

  return (request) => {
    if (request.path === '/v1/processes') return processes(request);
    const one = /^\/v1\/processes\/([^/]+)(\/peers)?$/.exec(request.path);
    if (one) {
      const entry = processAt(request, one[1]!);
      if (!('tgid' in entry)) return entry;
      return one[2] ? processPeers(request, entry) : oneProcess(entry);
    }
    if (request.path === '/v1/cgroups') return cgroups(request);
    if (request.path === '/v1/peers') return peers(request);
    if (request.path === '/v1/history') return context.history(request);
    const page = context.webPage(request.path);
    if (page) return page;
    if (request.path === '/metrics') {
      const parsed = NoQuery.safeParse(Object.fromEntries(request.query));
      return parsed.success ? metrics(request) : badRequest(parsed.error);
    }
    // A liveness probe's question (Kubernetes): counting runs. Nothing about the host, to anyone.
    if (request.path === '/healthz') {
      const parsed = NoQuery.safeParse(Object.fromEntries(request.query));
      if (!parsed.success) return badRequest(parsed.error);
      const attached = context.health().programsAttached;
      return attached > 0 ? { status: 200, body: { status: 'ok' } } : { status: 503, body: { error: 'no BPF program is attached: nothing is counted' } };
    }
    if (request.path === '/v1/stats') {
      const parsed = NoQuery.safeParse(Object.fromEntries(request.query));
      return parsed.success ? stats(request) : badRequest(parsed.error);
    }
    return { status: 404, body: { error: `no such endpoint: ${request.path}`, endpoints: ['/', '/v1/processes', '/v1/processes/{pid}', '/v1/processes/{pid}/peers', '/v1/peers', '/v1/cgroups', '/v1/history', '/v1/stats', '/v1/stream', '/metrics', '/healthz'] } };
  };
}
