// Questions to the history file: traffic per group (workload, unit,
// container, cgroup, command, user) over a range, in total and per step, from
// the finest tier that still holds the range's start.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { HISTORY_COUNTERS, HISTORY_COUNTER_COUNT, OTHER_WORKLOAD, historyBytes, historyCalls } from './schema.js';
import type { TierSetting } from './history-store.js';

export const GROUPINGS = ['workload', 'unit', 'container', 'pod', 'namespace', 'cgroup', 'command', 'user', 'peer'] as const;
export type Grouping = (typeof GROUPINGS)[number];

export interface HistoryQuery {
  fromSeconds: number;
  toSeconds: number;
  nowSeconds: number;
  by: Grouping;
  /** null: chosen (the tier's bucket, coarser when the range has more than MAX_DEFAULT_STEPS of them). */
  stepSeconds: number | null;
  filters: {
    uid?: number | undefined;
    command?: string | undefined;
    cgroup?: string | undefined;
    unit?: string | undefined;
    container?: string | undefined;
    /** Kubernetes: a pod's name, a namespace. */
    pod?: string | undefined;
    namespace?: string | undefined;
  };
  /** A counter index (HISTORY_COUNTERS), 'bytes' or 'calls' (both directions and protocols), or 'name'. */
  sort: number | 'bytes' | 'calls' | 'name';
  order: 'asc' | 'desc';
  limit: number;
  /** Only this user's workloads (a client that does not see every process), or null for all. */
  onlyUid: number | null;
}

export interface HistoryGroup {
  /** What the group is, by the grouping: its workload's fields, or the one field grouped by. */
  key: Record<string, string | number | null>;
  counters: number[];
  /** Per step, the 8 counters (HISTORY_COUNTERS order). */
  series: number[][];
}

export interface HistoryAnswer {
  tierSeconds: number;
  /** The groups given at most: the limit asked for, fewer when their series would pass MAX_SERIES_POINTS steps in all. */
  limit: number;
  stepSeconds: number;
  /** The first step's start and the end of the last (Unix seconds). */
  startSeconds: number;
  endSeconds: number;
  groups: HistoryGroup[];
  /** The groups past the limit, summed, and how many they were. */
  rest: { groups: number; counters: number[] };
}

/** Why a query cannot be answered: the parameter and what is wrong with it (HTTP 400). */
export class HistoryQueryError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** A default step makes at most this many steps; one asked for, at most MAX_STEPS. */
const MAX_DEFAULT_STEPS = 1440;
export const MAX_STEPS = 10_000;
/** Groups × steps in one answer, at most (each step of a series is 8 numbers): about 13 MB of JSON. */
export const MAX_SERIES_POINTS = 200_000;

/** The fields of each grouping's key, in the order answers give them (a workload's fields; for peers, the peer's). */
export const GROUP_FIELDS: Record<Grouping, readonly string[]> = {
  workload: ['command', 'uid', 'cgroup', 'unit', 'container'],
  unit: ['unit'],
  // A container by its id (a restarted one is another), with its names.
  container: ['container', 'containerName', 'pod', 'namespace'],
  // Kubernetes' pods by namespace and name (a pod made again under its name is the same), and namespaces.
  pod: ['namespace', 'pod'],
  namespace: ['namespace'],
  cgroup: ['cgroup'],
  command: ['command'],
  user: ['uid'],
  peer: ['peer', 'port'],
};

type Fields = Record<string, string | number | null>;

/** A workload's fields as answers name them. */
const WORKLOAD_FIELDS = 'cgroup, unit, container, container_name AS containerName, pod, namespace, command, uid';

/**
 * The tier that answers: of those whose rows still reach back to `from`,
 * the coarsest whose bucket divides the step asked for; with no step, the
 * finest that makes at most MAX_DEFAULT_STEPS steps (else the coarsest).
 * Fewer rows read for the same answer.
 */
export function tierFor(tiers: readonly TierSetting[], fromSeconds: number, toSeconds: number, nowSeconds: number, stepSeconds: number | null): TierSetting {
  const covering = tiers.filter((tier) => nowSeconds - tier.keepSeconds <= fromSeconds);
  if (covering.length === 0) return tiers.at(-1)!;
  if (stepSeconds !== null) return [...covering].reverse().find((tier) => stepSeconds % tier.bucketSeconds === 0) ?? covering[0]!;
  return covering.find((tier) => (toSeconds - fromSeconds) / tier.bucketSeconds <= MAX_DEFAULT_STEPS) ?? covering.at(-1)!;
}

// Counters are read as doubles (REAL): exact to 2^53, and past it close, where an integer would make node:sqlite throw
// (reading every integer as a BigInt instead costs an object each: a day of minutes is 1.2 million of them).
const SUMS = HISTORY_COUNTERS.map((name) => `CAST(SUM(${name}) AS REAL)`).join(', ');
const COLUMNS = HISTORY_COUNTERS.map((name) => `CAST(${name} AS REAL)`).join(', ');

/** A statement's rows as arrays of plain values (its counters cast to REAL). */
function arrays(statement: StatementSync, ...parameters: Array<string | number>): unknown[][] {
  statement.setReturnArrays(true);
  return statement.all(...parameters) as unknown as unknown[][];
}
const zero = (): number[] => new Array<number>(HISTORY_COUNTER_COUNT).fill(0);

/** `tiers`: those that hold the rows asked for (for by=peer, the peer tiers). */
export function queryHistory(db: DatabaseSync, tiers: readonly TierSetting[], query: HistoryQuery): HistoryAnswer {
  if (query.toSeconds <= query.fromSeconds) throw new HistoryQueryError('to', 'must be after from');
  if (tiers.length === 0) throw new HistoryQueryError('by', 'per-peer rows are kept only while the daemon counts per peer (--peers)');
  const tier = tierFor(tiers, query.fromSeconds, query.toSeconds, query.nowSeconds, query.stepSeconds);
  const size = tier.bucketSeconds;
  const range = query.toSeconds - query.fromSeconds;
  const step = query.stepSeconds ?? size * Math.max(1, Math.ceil(range / size / MAX_DEFAULT_STEPS));
  if (step < size) throw new HistoryQueryError('step', `must be at least ${size} s here: the range starts before finer buckets are kept, and the finest that reaches it has ${size}-second buckets`);
  if (step % size !== 0) throw new HistoryQueryError('step', `must be a multiple of ${size} s (the buckets of the tier that holds this range)`);
  const startSeconds = Math.floor(query.fromSeconds / step) * step;
  const endSeconds = Math.ceil(query.toSeconds / step) * step;
  const steps = (endSeconds - startSeconds) / step;
  if (steps > MAX_STEPS) throw new HistoryQueryError('step', `makes ${steps} steps over this range; at most ${MAX_STEPS}`);
  // Series of at most MAX_SERIES_POINTS steps in all: past it, fewer groups (the others in `rest`), said in `limit`.
  const limit = Math.max(1, Math.min(query.limit, Math.floor(MAX_SERIES_POINTS / steps)));
  const bounds: Range = { step, startSeconds, endSeconds, segments: segments(db, tiers, tiers.indexOf(tier), startSeconds, endSeconds, query.by === 'peer' ? 'peer_rolled_up_' : 'rolled_up_') };
  const bounded = { ...query, limit };
  const { groups, rest } = query.by === 'peer' ? peerGroups(db, bounded, bounds) : workloadGroups(db, bounded, bounds);
  for (const group of groups) while (group.series.length < steps) group.series.push(zero());
  return { tierSeconds: size, stepSeconds: step, startSeconds, endSeconds, limit, groups, rest };
}

/** The step, the steps' start and end (Unix seconds), and which tier holds which part of it. */
interface Range {
  step: number;
  startSeconds: number;
  endSeconds: number;
  segments: Segment[];
}

/** A part of the range [from, to) read from the tier of `size`-second buckets. */
interface Segment {
  size: number;
  from: number;
  to: number;
}

/**
 * Which tier holds which part of [start, end): the chosen tier (k) as far
 * as it is summed from the finer (`rolled_up_<size>` in state), the tier
 * below from there as far as it is summed, and so on down to the finest,
 * written at each flush: the recent steps are never missing, and each step
 * comes from one tier (a finer one's buckets divide the step too).
 */
function segments(db: DatabaseSync, tiers: readonly TierSetting[], k: number, start: number, end: number, statePrefix: string): Segment[] {
  const rolledTo = (j: number): number => {
    if (j === 0) return Infinity;
    const row = db.prepare('SELECT value FROM state WHERE key = ?').get(`${statePrefix}${tiers[j]!.bucketSeconds}`) as { value: number } | undefined;
    return row ? Number(row.value) : -Infinity;
  };
  const parts: Segment[] = [];
  let from = start;
  for (let j = k; j >= 0 && from < end; j--) {
    const to = Math.min(end, Math.max(from, rolledTo(j)));
    if (to > from) parts.push({ size: tiers[j]!.bucketSeconds, from, to });
    from = to;
  }
  return parts;
}

/**
 * The SQL for a row's step: integer division of integers (a JS number bound
 * as a parameter is a double in SQLite, whose division has fractions).
 */
function stepOf(range: Range, table = ''): string {
  if (!Number.isSafeInteger(range.startSeconds) || !Number.isSafeInteger(range.step)) throw new Error(`a step of ${range.step} s from ${range.startSeconds}: not whole seconds`);
  return `(${table}bucket - ${range.startSeconds}) / ${range.step}`;
}

/** Whether a workload (or peer row) with these fields passes the query's filters and visibility. */
function admitted(fields: Fields, query: HistoryQuery): boolean {
  if (query.onlyUid !== null && fields.uid !== query.onlyUid) return false;
  for (const [name, value] of Object.entries(query.filters)) if (value !== undefined && fields[name] !== value) return false;
  return true;
}

/** A group's key, its identity and its fields, from a workload's (or peer row's) fields; `other` is a group of its own. */
function groupKey(fields: Fields, other: boolean, by: Grouping): { id: string; key: Fields } {
  if (other) return { id: 'other', key: { other: "the workloads past each bucket's bound, summed" } };
  const key: Fields = {};
  for (const field of GROUP_FIELDS[by]) key[field] = fields[field] ?? null;
  return { id: JSON.stringify(key), key };
}

/** Sorts groups, keeps `limit` and sums the others. */
function topGroups(groups: HistoryGroup[], query: HistoryQuery): { groups: HistoryGroup[]; rest: HistoryAnswer['rest'] } {
  const sortKey = (group: HistoryGroup): number | string => {
    if (query.sort === 'name') return JSON.stringify(Object.values(group.key));
    if (query.sort === 'bytes') return historyBytes(group.counters);
    if (query.sort === 'calls') return historyCalls(group.counters);
    return group.counters[query.sort]!;
  };
  const keys = new Map(groups.map((group) => [group, sortKey(group)]));
  const sign = query.order === 'asc' ? 1 : -1;
  groups.sort((a, b) => {
    const x = keys.get(a)!;
    const y = keys.get(b)!;
    return x < y ? -sign : x > y ? sign : 0;
  });
  const rest = { groups: 0, counters: zero() };
  for (const group of groups.splice(query.limit)) {
    rest.groups++;
    for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) rest.counters[i]! += group.counters[i]!;
  }
  return { groups, rest };
}

function addTo(into: number[], from: ArrayLike<unknown>, offset: number): void {
  for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) into[i]! += Number(from[offset + i]);
}

/**
 * Workload rows in two reads: the totals per workload over the range (one
 * aggregate, no join), grouped and ranked here with the workloads' names;
 * then the series of the top groups' workloads only, through the index by
 * workload. A day of 1-minute buckets is one scan and a few thousand rows.
 */
function workloadGroups(db: DatabaseSync, query: HistoryQuery, range: Range): { groups: HistoryGroup[]; rest: HistoryAnswer['rest'] } {
  const perWorkload = new Map<number, number[]>();
  for (const { size, from, to } of range.segments) {
    for (const row of arrays(db.prepare(`SELECT workload, ${SUMS} FROM traffic WHERE tier = ? AND bucket >= ? AND bucket < ? GROUP BY workload`), size, from, to) as number[][]) {
      const sum = perWorkload.get(row[0]!);
      if (sum) addTo(sum, row, 1);
      else perWorkload.set(row[0]!, row.slice(1));
    }
  }
  const names = new Map<number, Fields>();
  const ids = [...perWorkload.keys()];
  // Named in slices: a bound parameter list has a limit.
  for (let i = 0; i < ids.length; i += 500) {
    const slice = ids.slice(i, i + 500);
    const rows = db.prepare(`SELECT id, ${WORKLOAD_FIELDS} FROM workloads WHERE id IN (${slice.map(() => '?').join(', ')})`).all(...slice) as Array<Fields & { id: number }>;
    for (const row of rows) names.set(row.id, row);
  }
  const byGroup = new Map<string, HistoryGroup>();
  const workloadsOf = new Map<HistoryGroup, number[]>();
  for (const [id, counters] of perWorkload) {
    const fields = names.get(id) ?? { cgroup: '(unknown)', unit: null, container: null, containerName: null, pod: null, namespace: null, command: '(unknown)', uid: null };
    if (!admitted(fields, query)) continue;
    const { id: groupId, key } = groupKey(fields, id === OTHER_WORKLOAD, query.by);
    let group = byGroup.get(groupId);
    if (!group) {
      byGroup.set(groupId, (group = { key, counters: zero(), series: [] }));
      workloadsOf.set(group, []);
    }
    addTo(group.counters, counters, 0);
    workloadsOf.get(group)!.push(id);
  }
  const top = topGroups([...byGroup.values()], query);
  const groupOf = new Map<number, HistoryGroup>();
  for (const group of top.groups) for (const id of workloadsOf.get(group)!) groupOf.set(id, group);
  const wanted = [...groupOf.keys()];
  for (let i = 0; i < wanted.length; i += 500) {
    const slice = wanted.slice(i, i + 500);
    const series = db.prepare(
      `SELECT workload, ${stepOf(range)} AS s, ${COLUMNS} FROM traffic WHERE tier = ? AND workload IN (${slice.map(() => '?').join(', ')}) AND bucket >= ? AND bucket < ?`,
    );
    for (const { size, from, to } of range.segments) {
      for (const row of arrays(series, size, ...slice, from, to) as number[][]) {
        const group = groupOf.get(row[0]!)!;
        const at = row[1]!;
        while (group.series.length <= at) group.series.push(zero());
        addTo(group.series[at]!, row, 2);
      }
    }
  }
  return top;
}

/** Peer rows (by=peer): fewer, in the coarser tiers; grouped by address and port in one read. */
function peerGroups(db: DatabaseSync, query: HistoryQuery, range: Range): { groups: HistoryGroup[]; rest: HistoryAnswer['rest'] } {
  const read = db.prepare(
    `SELECT p.workload, p.peer, p.port, ${stepOf(range, 'p.')} AS s, ${HISTORY_COUNTERS.map((name) => `CAST(SUM(p.${name}) AS REAL)`).join(', ')}, ${WORKLOAD_FIELDS.split(', ').map((field) => `w.${field}`).join(', ')} ` +
      `FROM peer_traffic p JOIN workloads w ON w.id = p.workload WHERE p.tier = ? AND p.bucket >= ? AND p.bucket < ? GROUP BY p.workload, p.peer, p.port, s`,
  );
  const byGroup = new Map<string, HistoryGroup>();
  // Steps kept sparse until the groups past the limit are gone.
  const stepsOf = new Map<HistoryGroup, Map<number, number[]>>();
  const rows = range.segments.flatMap(({ size, from, to }) => arrays(read, size, from, to));
  for (const row of rows) {
    const [workload, peer, port, at] = row as [number, string, number, number];
    const [cgroup = null, unit = null, container = null, containerName = null, pod = null, namespace = null, command = null, uid = null] = row.slice(4 + HISTORY_COUNTER_COUNT) as Array<string | number | null>;
    const fields: Fields = { cgroup, unit, container, containerName, pod, namespace, command, uid, peer, port };
    if (!admitted(fields, query)) continue;
    const { id, key } = groupKey(fields, workload === OTHER_WORKLOAD, 'peer');
    let group = byGroup.get(id);
    if (!group) {
      byGroup.set(id, (group = { key, counters: zero(), series: [] }));
      stepsOf.set(group, new Map());
    }
    addTo(group.counters, row, 4);
    const steps = stepsOf.get(group)!;
    let counters = steps.get(at);
    if (!counters) steps.set(at, (counters = zero()));
    addTo(counters, row, 4);
  }
  const top = topGroups([...byGroup.values()], query);
  for (const group of top.groups) {
    for (const [at, counters] of stepsOf.get(group)!) {
      while (group.series.length <= at) group.series.push(zero());
      group.series[at] = counters;
    }
  }
  return top;
}
