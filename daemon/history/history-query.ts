// Questions to the history file: traffic per group (workload, unit,
// container, cgroup, command, user) over a range, in total and per step, from
// the finest tier that still holds the range's start.
import type { DatabaseSync } from 'node:sqlite';
import { HISTORY_COUNTERS, HISTORY_COUNTER_COUNT, OTHER_WORKLOAD } from './schema.js';
import type { TierSetting } from './history-store.js';

export const GROUPINGS = ['workload', 'unit', 'container', 'cgroup', 'command', 'user', 'peer'] as const;
export type Grouping = (typeof GROUPINGS)[number];

export interface HistoryQuery {
  fromSeconds: number;
  toSeconds: number;
  nowSeconds: number;
  by: Grouping;
  /** null: chosen (the tier's bucket, coarser when the range has more than MAX_DEFAULT_STEPS of them). */
  stepSeconds: number | null;
  filters: { uid?: number | undefined; command?: string | undefined; cgroup?: string | undefined; unit?: string | undefined; container?: string | undefined };
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

/** The SQL expression (over workloads `w`) each grouping groups by, and the fields of its key. */
const GROUP_EXPRESSIONS: Record<Grouping, { expression: string; fields: string[] }> = {
  workload: { expression: 'w.id', fields: ['cgroup', 'unit', 'container', 'command', 'uid'] },
  unit: { expression: 'w.unit', fields: ['unit'] },
  container: { expression: 'w.container', fields: ['container'] },
  cgroup: { expression: 'w.cgroup', fields: ['cgroup'] },
  command: { expression: 'w.command', fields: ['command'] },
  user: { expression: 'w.uid', fields: ['uid'] },
  // From the peer rows (the daemon runs with --peers): the peer's address and port.
  peer: { expression: "t.peer || ' ' || t.port", fields: ['peer', 'port'] },
};

const FILTER_COLUMNS = { uid: 'w.uid', command: 'w.command', cgroup: 'w.cgroup', unit: 'w.unit', container: 'w.container' } as const;

/** The finest tier whose rows still reach back to `fromSeconds` (else the coarsest). */
export function tierFor(tiers: readonly TierSetting[], fromSeconds: number, nowSeconds: number): TierSetting {
  return tiers.find((tier) => nowSeconds - tier.keepSeconds <= fromSeconds) ?? tiers.at(-1)!;
}

/** `tiers`: those that hold the rows asked for (for by=peer, the peer tiers). */
export function queryHistory(db: DatabaseSync, tiers: readonly TierSetting[], query: HistoryQuery): HistoryAnswer {
  if (query.toSeconds <= query.fromSeconds) throw new HistoryQueryError('to', 'must be after from');
  if (tiers.length === 0) throw new HistoryQueryError('by', 'per-peer rows are kept only while the daemon counts per peer (--peers)');
  const tier = tierFor(tiers, query.fromSeconds, query.nowSeconds);
  const size = tier.bucketSeconds;
  const range = query.toSeconds - query.fromSeconds;
  let step = query.stepSeconds ?? size * Math.max(1, Math.ceil(range / size / MAX_DEFAULT_STEPS));
  if (step < size) throw new HistoryQueryError('step', `must be at least ${size} s here: the range starts before finer buckets are kept, and the finest that reaches it has ${size}-second buckets`);
  if (step % size !== 0) throw new HistoryQueryError('step', `must be a multiple of ${size} s (the buckets of the tier that holds this range)`);
  const startSeconds = Math.floor(query.fromSeconds / step) * step;
  const endSeconds = Math.ceil(query.toSeconds / step) * step;
  const steps = (endSeconds - startSeconds) / step;
  if (steps > MAX_STEPS) throw new HistoryQueryError('step', `makes ${steps} steps over this range; at most ${MAX_STEPS}`);

  const grouping = GROUP_EXPRESSIONS[query.by];
  const where = ['t.tier = ?', 't.bucket >= ?', 't.bucket < ?'];
  const parameters: Array<string | number> = [size, startSeconds, endSeconds];
  for (const [name, column] of Object.entries(FILTER_COLUMNS)) {
    const value = query.filters[name as keyof HistoryQuery['filters']];
    if (value === undefined) continue;
    where.push(`${column} = ?`);
    parameters.push(value);
  }
  if (query.onlyUid !== null) {
    where.push('w.uid = ?');
    parameters.push(query.onlyUid);
  }
  // `other` (the workloads past a bucket's bound) is a group of its own whatever the grouping.
  const sql =
    `SELECT CASE WHEN w.id = ${OTHER_WORKLOAD} THEN NULL ELSE ${grouping.expression} END AS g, w.id = ${OTHER_WORKLOAD} AS other, ` +
    `(t.bucket - ${startSeconds}) / ${step} AS s, ${HISTORY_COUNTERS.map((name) => `SUM(t.${name})`).join(', ')}, ` +
    `max(w.cgroup) AS cgroup, max(w.unit) AS unit, max(w.container) AS container, max(w.command) AS command, max(w.uid) AS uid` +
    `${query.by === 'peer' ? ', max(t.peer) AS peer, max(t.port) AS port' : ''} ` +
    `FROM ${query.by === 'peer' ? 'peer_traffic' : 'traffic'} t JOIN workloads w ON w.id = t.workload WHERE ${where.join(' AND ')} GROUP BY other, g, s`;
  const rows = db.prepare(sql).all(...parameters) as Array<Record<string, number | string | null>>;

  const groups = new Map<string, HistoryGroup>();
  for (const row of rows) {
    const other = row.other === 1;
    const id = other ? 'other' : `=${row.g}`;
    let group = groups.get(id);
    if (!group) {
      const key: Record<string, string | number | null> = {};
      if (other) key.other = 'the workloads past each bucket\'s bound, summed';
      else for (const field of grouping.fields) key[field] = row[field] ?? null;
      group = { key, counters: new Array<number>(HISTORY_COUNTER_COUNT).fill(0), series: [] };
      groups.set(id, group);
    }
    const at = row.s as number;
    const counters = HISTORY_COUNTERS.map((name) => Number(row[`SUM(t.${name})`]));
    while (group.series.length <= at) group.series.push(new Array<number>(HISTORY_COUNTER_COUNT).fill(0));
    for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) {
      group.series[at]![i]! += counters[i]!;
      group.counters[i]! += counters[i]!;
    }
  }
  const sorted = [...groups.values()];
  const sortKey = (group: HistoryGroup): number | string => {
    if (query.sort === 'name') return JSON.stringify(Object.values(group.key));
    if (query.sort === 'bytes') return group.counters[1]! + group.counters[3]! + group.counters[5]! + group.counters[7]!;
    if (query.sort === 'calls') return group.counters[0]! + group.counters[2]! + group.counters[4]! + group.counters[6]!;
    return group.counters[query.sort]!;
  };
  const sign = query.order === 'asc' ? 1 : -1;
  sorted.sort((a, b) => {
    const x = sortKey(a);
    const y = sortKey(b);
    return x < y ? -sign : x > y ? sign : 0;
  });
  const rest = { groups: 0, counters: new Array<number>(HISTORY_COUNTER_COUNT).fill(0) };
  for (const group of sorted.splice(query.limit)) {
    rest.groups++;
    for (let i = 0; i < HISTORY_COUNTER_COUNT; i++) rest.counters[i]! += group.counters[i]!;
  }
  for (const group of sorted) while (group.series.length < steps) group.series.push(new Array<number>(HISTORY_COUNTER_COUNT).fill(0));
  return { tierSeconds: size, stepSeconds: step, startSeconds, endSeconds, groups: sorted, rest };
}
