// Prometheus text exposition (format 0.0.4) of the accounting and of the
// daemon's health. Per cgroup: bytes and calls sent and received, by
// protocol, labelled with the cgroup's path, systemd unit, and the names of
// the container it holds (Kubernetes namespace, pod, container): never a pod
// uid or container id, which every restart renews.
// Per process only when asked for, and bounded: the top K processes by
// traffic and one `other` series, because PIDs are unbounded label values.
// Likewise per cgroup and service port of its peers (never per address).
import type { DaemonHealth } from './health.js';
import { addUnder, sumCounters } from '../accounting/counter-math.js';
import { Direction, Kind, Protocol } from '../kernel/layout.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface CgroupSeries {
  path: string;
  unit: string;
  /** Kubernetes' namespace and pod, and the container's name ("" for none). */
  namespace: string;
  pod: string;
  container: string;
  counters: ArrayLike<number>;
}

export interface ProcessSeries {
  pid: number;
  command: string;
  counters: ArrayLike<number>;
}

export interface MetricsInput {
  version: string;
  startTimeSeconds: number;
  /** The processes the client may see. */
  processCounts: { live: number; exited: number };
  health: DaemonHealth;
  /**
   * Whether the client may see the daemon's host-wide state (map fill,
   * kernel counters, clients, limits): root and allProcessesGroup only. Map
   * fill and client counts, polled, would tell another user about everyone
   * else's processes and connections.
   */
  hostWide: boolean;
  cgroups: CgroupSeries[];
  /** Every process the client may see, or null when per-process series are off. */
  processes: ProcessSeries[] | null;
  /** How many processes get series of their own; the rest add up in `other`. */
  topProcesses: number;
  /** Every visible peer row by its process's cgroup and service port, or null when per-port series are off. */
  peerPorts: PeerPortSeries[] | null;
  /** How many (cgroup, port) pairs get series of their own; the rest add up in `other`. */
  topPeerPorts: number;
}

export interface PeerPortSeries {
  cgroup: string;
  /** The conversation's service port: the peer's for a client, the local one for a service; "unknown" when neither is known. */
  port: string;
  counters: ArrayLike<number>;
}

type Labels = Record<string, string>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Labels): string {
  return Object.entries(labels)
    .map(([name, v]) => `${name}="${escapeLabel(v)}"`)
    .join(',');
}

/** A small metric family (health): HELP, TYPE and its samples. */
class MetricFamily {
  private readonly samples: string[] = [];

  constructor(
    readonly name: string,
    readonly type: 'counter' | 'gauge',
    readonly help: string,
  ) {}

  add(labels: Labels, value: number): void {
    const text = labelText(labels);
    this.samples.push(`${this.name}${text ? `{${text}}` : ''} ${value}`);
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`, ...this.samples);
  }
}

const PROTOCOLS = [
  ['tcp', Protocol.tcp],
  ['udp', Protocol.udp],
] as const;

const TRAFFIC = [
  { name: 'sent_bytes', help: 'Bytes sent by', direction: Direction.send, kind: Kind.bytes },
  { name: 'received_bytes', help: 'Bytes received by', direction: Direction.recv, kind: Kind.bytes },
  { name: 'send_calls', help: 'Send calls (that moved data) by', direction: Direction.send, kind: Kind.calls },
  { name: 'receive_calls', help: 'Receive calls (that moved data) by', direction: Direction.recv, kind: Kind.calls },
] as const;

/**
 * The four traffic families of a kind of subject, one sample per subject and
 * protocol (IPv4 and IPv6 together). `subjects` are keyed by label text:
 * subjects with equal labels were added up (one series per label set, as the
 * exposition requires).
 */
function renderTraffic(out: string[], subject: 'cgroup' | 'process' | 'peer_port', what: string, subjects: Map<string, number[]>): void {
  for (const { name, help, direction, kind } of TRAFFIC) {
    const metric = `netacct_${subject}_${name}_total`;
    out.push(`# HELP ${metric} ${help} ${what}`, `# TYPE ${metric} counter`);
    for (const [labels, counters] of subjects) {
      for (const [protocol, p] of PROTOCOLS) {
        const value = sumCounters(counters, kind, [p], [direction]);
        out.push(`${metric}{${labels},protocol="${protocol}"} ${value}`);
      }
    }
  }
}

export function renderMetrics(input: MetricsInput): string {
  const out: string[] = [];
  const cgroups = new Map<string, number[]>();
  for (const cgroup of input.cgroups) {
    addUnder(cgroups, labelText({ cgroup: cgroup.path, unit: cgroup.unit, namespace: cgroup.namespace, pod: cgroup.pod, container: cgroup.container }), cgroup.counters);
  }
  renderTraffic(out, 'cgroup', 'the processes of a cgroup v2, exited ones included.', cgroups);

  if (input.processes) {
    const processes = new Map<string, number[]>();
    const ranked = input.processes
      .map((process) => ({ process, bytes: sumCounters(process.counters, Kind.bytes) }))
      .sort((a, b) => b.bytes - a.bytes || a.process.pid - b.process.pid);
    const other = labelText({ pid: 'other', command: 'other' });
    ranked.forEach(({ process }, rank) => {
      const labels = rank < input.topProcesses ? labelText({ pid: String(process.pid), command: process.command }) : other;
      addUnder(processes, labels, process.counters);
    });
    renderTraffic(out, 'process', `a process: the top ${input.topProcesses} by bytes, the rest in pid="other".`, processes);
  }

  if (input.peerPorts) {
    const pairs = new Map<string, number[]>();
    for (const row of input.peerPorts) addUnder(pairs, labelText({ cgroup: row.cgroup, port: row.port }), row.counters);
    const ranked = [...pairs].sort(([a, x], [b, y]) => sumCounters(y, Kind.bytes) - sumCounters(x, Kind.bytes) || a.localeCompare(b));
    const series = new Map<string, number[]>();
    const other = labelText({ cgroup: 'other', port: 'other' });
    ranked.forEach(([labels, counters], rank) => addUnder(series, rank < input.topPeerPorts ? labels : other, counters));
    renderTraffic(out, 'peer_port', `a cgroup's processes with the peers of one service port: the top ${input.topPeerPorts} pairs by bytes, the rest in cgroup="other",port="other".`, series);
  }

  const families: MetricFamily[] = [];
  const family = (name: string, type: 'counter' | 'gauge', help: string): MetricFamily => {
    const f = new MetricFamily(name, type, help);
    families.push(f);
    return f;
  };
  const { health } = input;
  family('netacct_build_info', 'gauge', 'The running netacct version (value 1).').add({ version: input.version }, 1);
  family('netacct_start_time_seconds', 'gauge', 'When the daemon started, Unix time.').add({}, input.startTimeSeconds);
  const processes = family('netacct_processes', 'gauge', 'Processes with counters: live, and exited but still kept for clients.');
  processes.add({ state: 'live' }, input.processCounts.live);
  processes.add({ state: 'exited' }, input.processCounts.exited);
  family('netacct_attach_mode_info', 'gauge', 'How the kernel side counts: tracepoint (Linux 6.3+) or fexit (value 1).').add({ mode: health.attachMode.mode }, 1);
  family('netacct_bpf_programs_attached', 'gauge', 'BPF programs attached (0 means nothing is counted).').add({}, health.programsAttached);
  if (input.hostWide) {
    const entries = family('netacct_map_entries', 'gauge', 'Entries in use in a kernel map.');
    const capacity = family('netacct_map_capacity', 'gauge', 'Capacity of a kernel map, entries.');
    for (const [map, fill] of Object.entries(health.maps)) {
      if (!fill) continue;
      if (fill.entries !== null) entries.add({ map }, fill.entries);
      capacity.add({ map }, fill.capacity);
    }
    const k = health.kernel;
    family('netacct_unattributed_events_total', 'counter', "Send/receive calls counted per user and cgroup only, not in their process's row: the overflow map was full.").add({}, k.unattributed);
    family('netacct_host_row_events_total', 'counter', "Of those, calls counted in the host's row only: the unattributed map was full too.").add({}, k.unattributedFull);
    family('netacct_share_refusals_total', 'counter', "Kernel map entries refused to a user past its share of a map: its calls count in a coarser row of its own.").add({}, k.overShare);
    family('netacct_dropped_events_total', 'counter', 'Send/receive calls not counted at all (always 0 unless there is a bug).').add({}, k.lost);
    family('netacct_unrecorded_exits_total', 'counter', 'Process exits not recorded because the exited map was full.').add({}, k.exitedFull);
    family('netacct_thread_dropped_events_total', 'counter', 'Calls not counted per thread because the threads map was full.').add({}, k.threadsFull);
    if (health.peers) {
      family('netacct_peer_overflow_events_total', 'counter', "Calls counted in their process's peer overflow row because the peers map was full.").add({}, k.peersFull);
      family('netacct_peer_dropped_events_total', 'counter', 'Calls not counted per peer at all: the peers map and the overflow rows were full.').add({}, k.peersLost);
      family('netacct_exited_peer_rows', 'gauge', 'Peer rows kept for exited processes.').add({}, health.peers.exitedRows);
    }
    family('netacct_last_read_duration_seconds', 'gauge', 'How long the last read of the kernel maps took.').add({}, health.lastReadSeconds);
    const clients = family('netacct_clients', 'gauge', 'Clients connected now, by protocol.');
    clients.add({ protocol: 'atop' }, health.clients.atop);
    clients.add({ protocol: 'http' }, health.clients.api - health.clients.streams);
    clients.add({ protocol: 'websocket' }, health.clients.streams);

    const refused = family('netacct_clients_refused_total', 'counter', 'Connections refused by the client limits, by socket and reason (per_user, total).');
    for (const { socket, reason, count } of health.limits.refused) refused.add({ socket, reason }, count);
    family('netacct_streams_refused_total', 'counter', 'WebSocket streams refused by the per-user limit.').add({}, health.limits.streamsRefused);
    family('netacct_clients_throttled_total', 'counter', "Answers of non-root owners that waited (atop, HTTP), were refused with 429 (HTTP) or skipped (streams): the owner had used its share of the daemon's time, or had its HTTP answers in progress already.").add({}, health.limits.throttled);
    family('netacct_stream_updates_skipped_total', 'counter', 'Stream updates skipped: the client had not taken the previous one, or the previous one was still being built.').add({}, health.limits.streamUpdatesSkipped);

    const netatop = health.netatopModule;
    family('netacct_netatop_module_active', 'gauge', 'Whether atop before 2.10 is served as the netatop module and netatopd did (1) or not (0).').add({}, netatop.active ? 1 : 0);
    if (netatop.active) {
      family('netacct_netatop_clients', 'gauge', 'atops that follow the netatop exit file now.').add({}, netatop.clients);
      const calls = family('netacct_netatop_calls_total', 'counter', "atop's getsockopt calls answered, by command; refused: an unknown id or another user's process.");
      for (const [command, count] of Object.entries(netatop.calls)) calls.add({ command }, count);
      family('netacct_netatop_exit_records', 'gauge', 'Finished processes in the netatop exit file now.').add({}, netatop.exitFile.records);
    }
    const { history } = health;
    if (history) {
      family('netacct_history_paused', 'gauge', 'Whether history is paused (1: its file cannot be written now, a full disk or a read-only file system; it resumes by itself).').add({}, history.state === 'paused' ? 1 : 0);
      family('netacct_history_file_bytes', 'gauge', "The history file's size, with its write-ahead log.").add({}, history.fileBytes);
      family('netacct_history_flushes_total', 'counter', 'Buckets written to the history file.').add({}, history.flushes);
      family('netacct_history_flush_failures_total', 'counter', 'Writes to the history file that failed (history paused).').add({}, history.failedFlushes);
      family('netacct_history_last_flush_duration_seconds', 'gauge', 'How long the last write to the history file took (the event loop waits for it).').add({}, history.lastFlushSeconds);
    }
  }

  for (const f of families) f.render(out);
  return `${out.join('\n')}\n`;
}
