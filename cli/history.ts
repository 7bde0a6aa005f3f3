// `netacct history`: who used the network, and when, from the daemon's
// history (GET /v1/history): a table of groups for people, the API's answer
// as it is (--json), or one line per group per step for spreadsheets (--csv).
import { apiGet } from './api-client.js';
import { csvLine } from './csv.js';
import { type Counters, TRAFFIC_HEADERS, humanBytes, reportApiError, table, traffic, writeOut } from './listing.js';
import { TYPED_TIME_FORMS, apiMoment, localText, utcText } from './typed-time.js';
import { printable } from '../daemon/common/printable.js';
import { momentSeconds } from '../daemon/history/durations.js';
import { GROUP_FIELDS, type Grouping } from '../daemon/history/history-query.js';

/** The options of `netacct history`, for parseArgs. */
export const HISTORY_OPTIONS = {
  since: { type: 'string' },
  until: { type: 'string' },
  by: { type: 'string' },
  step: { type: 'string' },
  limit: { type: 'string' },
  sort: { type: 'string' },
  order: { type: 'string' },
  uid: { type: 'string' },
  command: { type: 'string' },
  cgroup: { type: 'string' },
  unit: { type: 'string' },
  container: { type: 'string' },
  pod: { type: 'string' },
  namespace: { type: 'string' },
  json: { type: 'boolean' },
  csv: { type: 'boolean' },
  'api-socket': { type: 'string' },
} as const;

/**
 * The arguments with each string option's value attached ("--since=-2h"):
 * parseArgs refuses "--since -2h" as ambiguous (a value that looks like an
 * option), yet relative times start with a dash. No option here is short, so
 * what follows a string option is its value unless it is a long option.
 */
export function attachOptionValues(args: readonly string[]): string[] {
  const attached: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i]!.startsWith('--') ? args[i]!.slice(2) : '';
    const next = args[i + 1];
    const takesValue = name in HISTORY_OPTIONS && HISTORY_OPTIONS[name as keyof typeof HISTORY_OPTIONS].type === 'string';
    if (takesValue && next !== undefined && !next.startsWith('--')) attached.push(`${args[i]}=${args[++i]}`);
    else attached.push(args[i]!);
  }
  return attached;
}

export type HistoryFlags = Partial<Record<keyof typeof HISTORY_OPTIONS, string | boolean>>;

/** Options passed to the API under the same name: it checks them, and its 400 names the option. */
const PASSED_AS_IS = ['by', 'step', 'limit', 'sort', 'order', 'uid', 'command', 'cgroup', 'unit', 'container', 'pod', 'namespace'] as const;

/** A bad option the API never sees (a time it could not read): one line, exit status 2. */
export class HistoryOptionError extends Error {}

function moment(flag: 'since' | 'until', text: string, now: Date): string {
  const value = apiMoment(text, now);
  if (value === null) throw new HistoryOptionError(`--${flag} '${text}': must be ${TYPED_TIME_FORMS}`);
  return value;
}

/** The API's path and query for the flags; `now` resolves clock times ("03:00") and checks the range's order. */
export function historyRequest(flags: HistoryFlags, now: Date = new Date()): string {
  const since = typeof flags.since === 'string' ? flags.since : '-1h';
  const until = typeof flags.until === 'string' ? flags.until : 'now';
  const query = new URLSearchParams({ from: moment('since', since, now), to: moment('until', until, now) });
  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (momentSeconds(query.get('to')!, nowSeconds)! <= momentSeconds(query.get('from')!, nowSeconds)!) {
    throw new HistoryOptionError(`--until '${until}' must be later than --since '${since}'`);
  }
  for (const name of PASSED_AS_IS) {
    const value = flags[name];
    if (typeof value === 'string') query.set(name, value);
  }
  return `/v1/history?${query}`;
}

/** One group of the API's answer: its key's fields (by the grouping), or `other`, the workloads past each bucket's bound. */
interface HistoryGroup {
  cgroup?: string | null;
  unit?: string | null;
  container?: string | null;
  containerName?: string | null;
  pod?: string | null;
  namespace?: string | null;
  command?: string | null;
  uid?: number | null;
  peer?: string | null;
  port?: number | null;
  other?: string;
  counters: Counters;
  total: { bytes: number; calls: number };
  series: number[][];
}

interface HistoryAnswer {
  by: Grouping;
  tier: string;
  step: string;
  stepSeconds: number;
  start: string;
  end: string;
  steps: number;
  seriesCounters: string[];
  scope: 'host' | 'own';
  groups: HistoryGroup[];
  rest: { groups: number; counters: Counters };
}

/** A workload's place: its unit when the cgroup is the unit's own (shorter, and what people know it by), else the cgroup path. */
function placeOf(group: HistoryGroup): string {
  const { cgroup, unit } = group;
  return unit && cgroup?.endsWith(`/${unit}`) ? unit : (cgroup ?? '-');
}

const optional = (value: string | number | null | undefined): string => (value === null || value === undefined ? '-' : String(value));

/** The name columns of the table for each grouping. */
const NAME_COLUMNS: Record<Grouping, Array<{ header: string; cell: (group: HistoryGroup) => string; rightAligned?: true }>> = {
  workload: [
    { header: 'COMMAND', cell: (group) => optional(group.command) },
    { header: 'UID', cell: (group) => optional(group.uid), rightAligned: true },
    { header: 'CGROUP/UNIT', cell: placeOf },
  ],
  unit: [{ header: 'UNIT', cell: (group) => optional(group.unit) }],
  container: [
    { header: 'CONTAINER', cell: (group) => optional(group.container?.slice(0, 12)) },
    { header: 'NAME', cell: (group) => optional(group.containerName) },
    { header: 'POD', cell: (group) => optional(group.namespace && group.pod ? `${group.namespace}/${group.pod}` : null) },
  ],
  pod: [
    { header: 'NAMESPACE', cell: (group) => optional(group.namespace) },
    { header: 'POD', cell: (group) => optional(group.pod) },
  ],
  namespace: [{ header: 'NAMESPACE', cell: (group) => optional(group.namespace) }],
  cgroup: [{ header: 'CGROUP', cell: (group) => optional(group.cgroup) }],
  command: [{ header: 'COMMAND', cell: (group) => optional(group.command) }],
  user: [{ header: 'UID', cell: (group) => optional(group.uid), rightAligned: true }],
  peer: [
    { header: 'PEER', cell: (group) => optional(group.peer) },
    { header: 'PORT', cell: (group) => optional(group.port), rightAligned: true },
  ],
};

const bytesOf = (c: Counters): number => c.tcp.send.bytes + c.tcp.recv.bytes + c.udp.send.bytes + c.udp.recv.bytes;

function humanText(answer: HistoryAnswer): string {
  const columns = NAME_COLUMNS[answer.by];
  const nameCells = (group: HistoryGroup): string[] =>
    group.other === undefined ? columns.map((column) => column.cell(group)) : ['(other)', ...columns.slice(1).map(() => '-')];
  const rows = answer.groups.map((group) => [...nameCells(group), ...traffic(group.counters), humanBytes(group.total.bytes)]);
  if (answer.rest.groups > 0) {
    rows.push([`(${answer.rest.groups} more)`, ...columns.slice(1).map(() => ''), ...traffic(answer.rest.counters), humanBytes(bytesOf(answer.rest.counters))]);
  }
  const headers = [...columns.map((column) => column.header), ...TRAFFIC_HEADERS, 'TOTAL'];
  const rightAligned = new Set(headers.map((_, i) => i).filter((i) => i >= columns.length || columns[i]!.rightAligned));
  const range = `${localText(new Date(answer.start))} to ${localText(new Date(answer.end))} (local time)`;
  const scope = answer.scope === 'own' ? ', your own workloads only' : '';
  return `history ${range} by ${answer.by}: tier ${answer.tier}, step ${answer.step} (${answer.steps} steps)${scope}\n${table(headers, rows, rightAligned)}`;
}

function csvText(answer: HistoryAnswer): string {
  const fields = GROUP_FIELDS[answer.by] as ReadonlyArray<'command' | 'uid' | 'cgroup' | 'unit' | 'container' | 'peer' | 'port'>;
  const lines = [csvLine(['start', ...fields, ...answer.seriesCounters.map((name) => name.replaceAll('.', '_'))])];
  const startMs = Date.parse(answer.start);
  for (const group of answer.groups) {
    // `other` has no key of its own: "(other)" in the first field says which line it is.
    const key = group.other === undefined ? fields.map((field) => group[field] ?? null) : ['(other)', ...fields.slice(1).map(() => null)];
    group.series.forEach((counters, step) => {
      lines.push(csvLine([utcText(new Date(startMs + step * answer.stepSeconds * 1000)), ...key, ...counters]));
    });
  }
  return lines.join('');
}

export async function runHistory(socketPath: string, flags: HistoryFlags): Promise<number> {
  let path: string;
  try {
    if (flags.json && flags.csv) throw new HistoryOptionError('--json and --csv: one or the other');
    path = historyRequest(flags);
  } catch (err) {
    if (!(err instanceof HistoryOptionError)) throw err;
    process.stderr.write(`netacct: ${printable(err.message)}\n`);
    return 2;
  }
  const { status, body } = await apiGet(socketPath, path);
  if (status !== 200) return reportApiError(status, body);
  if (flags.json) await writeOut(`${JSON.stringify(body, null, 2)}\n`);
  else if (flags.csv) await writeOut(csvText(body as HistoryAnswer));
  else await writeOut(humanText(body as HistoryAnswer));
  return 0;
}
