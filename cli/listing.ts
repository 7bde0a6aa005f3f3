// `netacct ps`, `netacct cgroups`, `netacct peers` and `netacct stats`: the API's answers as
// tables for people (human units) or as the API's JSON (--json).
import { apiGet } from './api-client.js';
import { printable } from '../daemon/common/printable.js';

/** A process's or cgroup's counters as the API gives them. */
export interface Directions {
  send: { calls: number; bytes: number };
  recv: { calls: number; bytes: number };
}
export interface Counters {
  tcp: Directions;
  udp: Directions;
}

/** 1536 → "1.5K": binary units, three significant figures at most. */
function mapFill(name: string, fill: { entries: number; capacity: number }): string {
  return `${name} ${fill.entries}/${fill.capacity}`;
}

export function humanBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 ? String(value) : value < 10 ? value.toFixed(1) : value.toFixed(0);
  return `${text}${units[unit]}`;
}

/** The rows' cells are escaped here: commands and cgroup paths are chosen by users, the table goes to a terminal. */
export function table(headers: string[], cells: string[][], rightAligned: Set<number>): string {
  const rows = cells.map((row) => row.map(printable));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** A container as the API names it (daemon/naming/). */
export interface ContainerName {
  runtime: string | null;
  id: string;
  name: string | null;
  image: string | null;
  pod: string | null;
  namespace: string | null;
}

/** "namespace/pod/container" for a pod's, the runtime's name (or short id) otherwise, "-" for none. */
export function containerText(container: ContainerName | null, containerId: string | null = null): string {
  if (container?.pod && container.namespace) return `${container.namespace}/${container.pod}/${container.name ?? container.id.slice(0, 12)}`;
  if (container) return container.name ?? container.id.slice(0, 12);
  return containerId?.slice(0, 12) ?? '-';
}

export const TRAFFIC_HEADERS = ['TCP SENT', 'TCP RECV', 'UDP SENT', 'UDP RECV'];
export const traffic = (c: Counters): string[] => [c.tcp.send, c.tcp.recv, c.udp.send, c.udp.recv].map((d) => humanBytes(d.bytes));

/** The API's path and query for a listing command's options. */
export function listingRequest(command: 'ps' | 'cgroups' | 'peers', options: Record<string, string | undefined>): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(options)) if (value !== undefined) query.set(name, value);
  const text = query.toString();
  return `/v1/${command === 'ps' ? 'processes' : command}${text ? `?${text}` : ''}`;
}

export interface PeerRow {
  pid: number;
  command: string;
  kind: 'peer' | 'unknown' | 'overflow';
  address: string | null;
  port: number | null;
  localPort: number | null;
  counters: Counters;
}

/** "10.0.0.1:443", "[2001:db8::1]:53", "10.0.0.1" (port not kept), "(unknown)", "(overflow)". */
export function peerText(row: PeerRow): string {
  if (row.kind !== 'peer') return `(${row.kind})`;
  const host = row.address!.includes(':') ? `[${row.address}]` : row.address!;
  return row.port === null ? host : `${host}:${row.port}`;
}

/**
 * Writes to stdout and resolves once the text has left the process: the
 * command ends with process.exit, which drops what a pipe or socket that was
 * full has not taken yet (a large --json or --csv answer came out cut).
 */
export function writeOut(text: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

/** A refused request as one line: exit status 2 for a bad parameter (400), as for a bad option; 1 otherwise. */
export function reportApiError(status: number, body: any): number {
  process.stderr.write(`netacct: ${printable(String(body?.error ?? `the daemon answered ${status}`))}\n`);
  return status === 400 ? 2 : 1;
}

/** A cgroup as the API describes it. */
interface CgroupCell {
  id: number;
  path: string | null;
  unit: string | null;
  containerId: string | null;
  container: ContainerName | null;
  counters: Counters;
}

export async function runListing(command: 'ps' | 'cgroups' | 'peers' | 'stats', socketPath: string, path: string, json: boolean): Promise<number> {
  const { status, body } = await apiGet(socketPath, path);
  if (status !== 200) return reportApiError(status, body);
  if (json) {
    await writeOut(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  if (command === 'ps') {
    type Row = { pid: number; command: string; uid: number; state: string; cgroup: CgroupCell; counters: Counters };
    const rows = (body.processes as Row[]).map((p) => [String(p.pid), p.command, String(p.uid), p.state, containerText(p.cgroup.container, p.cgroup.containerId), ...traffic(p.counters)]);
    await writeOut(table(['PID', 'COMMAND', 'UID', 'STATE', 'CONTAINER', ...TRAFFIC_HEADERS], rows, new Set([0, 2, 5, 6, 7, 8])));
  } else if (command === 'cgroups' && body.by !== undefined) {
    type Group = { namespace: string | null; pod?: string | null; podUid?: string | null; cgroups: number; counters: Counters };
    const noPod = '(not in a pod)';
    const podCell = (g: Group): string => g.pod ?? (g.podUid ? `(uid ${g.podUid})` : '');
    const rows = ((body.pods ?? body.namespaces) as Group[]).map((g) => [
      g.namespace ?? (g.podUid ? '-' : noPod), ...(body.by === 'pod' ? [podCell(g)] : []), String(g.cgroups), ...traffic(g.counters),
    ]);
    const headers = ['NAMESPACE', ...(body.by === 'pod' ? ['POD'] : []), 'CGROUPS', ...TRAFFIC_HEADERS];
    await writeOut(table(headers, rows, new Set(headers.map((_, i) => i).filter((i) => i >= headers.length - 5))));
  } else if (command === 'cgroups') {
    const rows = (body.cgroups as CgroupCell[]).map((c) => [
      c.path ?? `(id ${c.id})`, c.unit ?? '-', containerText(c.container, c.containerId), ...traffic(c.counters),
    ]);
    await writeOut(table(['CGROUP', 'UNIT', 'CONTAINER', ...TRAFFIC_HEADERS], rows, new Set([3, 4, 5, 6])));
  } else if (command === 'peers') {
    const rows = (body.peers as PeerRow[]).map((p) => [String(p.pid), p.command, peerText(p), p.localPort === null ? '-' : String(p.localPort), ...traffic(p.counters)]);
    await writeOut(table(['PID', 'COMMAND', 'PEER', 'LOCAL PORT', ...TRAFFIC_HEADERS], rows, new Set([0, 3, 4, 5, 6, 7])));
  } else if (body.scope === 'own') {
    const lines = [
      `netacct ${body.version}, up ${body.uptimeSeconds} s`,
      `your processes: ${body.processes.live} live, ${body.processes.exited} exited (kept for clients)`,
      `counting with ${body.attachMode.description}; ${body.programsAttached} BPF programs attached`,
      'host-wide figures (kernel maps, counters, clients) are shown to root and allProcessesGroup only',
    ];
    await writeOut(`${lines.map(printable).join('\n')}\n`);
  } else {
    const lines = [
      `netacct ${body.version}, up ${body.uptimeSeconds} s`,
      `processes: ${body.processes.live} live, ${body.processes.exited} exited (kept for clients)`,
      `kernel: ${body.kernel.slots} slots; ${body.kernel.unattributed} calls counted per user and cgroup only (overflow full; ${body.kernel.unattributedFull} in the host's row), ${body.kernel.lost} not counted; ${body.kernel.exitedFull} exits not recorded (exited map full)`,
      `maps: ${mapFill('slots', body.maps.slots)}, ${mapFill('overflow', body.maps.overflow)}${body.maps.threads ? `, ${mapFill('threads', body.maps.threads)}` : ''}${body.maps.peers ? `, ${mapFill('peers', body.maps.peers)}` : ''}`,
      `counting with ${body.attachMode.description}`,
      `${body.programsAttached} BPF programs attached; last kernel read ${(body.lastReadSeconds * 1000).toFixed(1)} ms`,
      `clients: ${body.clients.atop} atop, ${body.clients.api} API (${body.clients.streams} streams)`,
    ];
    await writeOut(`${lines.map(printable).join('\n')}\n`);
  }
  return 0;
}
