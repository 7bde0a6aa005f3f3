// History's cost (daemon/history/):
// 1. Size and query speed, synthetic: a file holding the default tiers full
//    (1m kept 48h, 10m 31d, 1h 13mo, 1d 5y; 100 rows + `other` per bucket)
//    for 1,000 active workloads, opened with HistoryStore (the daemon's
//    schema) and filled straight through it, bucket after bucket in the order
//    the daemon writes them (each base bucket at its end, each rollup when its
//    bucket is complete; a bucket's rows ranked by bytes, `other` last).
//    Printed: the file's size, per table (dbstat) and per tier (the traffic
//    b-tree's pages in key order, assigned by their cells), rows per tier,
//    against the default 256 MiB bound; queryHistory's times (median of
//    several runs) over 24 h, 31 days and a year, by workload and by command;
//    and HistoryStore.write's time for an hour of minute flushes (1,000
//    workloads, 10,000 positions) into the full file, rollups included.
// 2. Flush cost, the real daemon: own pin dir, sockets and history file, a
//    10-second base bucket (--history-tiers 10s:1h,60s:1d); 10,000 processes
//    in 1,000 cgroups of their own (10 each, bench/history-senders.c), each
//    sending a datagram twice a bucket. Printed: the flush durations from
//    /metrics (median, max; the event loop waits for them) and the daemon's
//    CPU with history and with --no-history under the same load, the
//    difference scaled to the default 60-second bucket.
// Environment: HISTORY_BENCH_PARTS (size,flush), HISTORY_BENCH_SECONDS (the
// CPU window per daemon run, default 60), HISTORY_BENCH_WARMUP (seconds
// before it, default 30), HISTORY_BENCH_ROUNDS (pairs of daemon runs, default
// 1; the difference printed is their median), HISTORY_BENCH_QUERY_RUNS
// (default 7; 0: no queries), HISTORY_BENCH_VERBOSE=1 (each scrape). Longer, steadier:
// HISTORY_BENCH_SECONDS=300 HISTORY_BENCH_ROUNDS=3 npm run bench:history
// Part 2 needs root. Everything made (files, cgroups, processes, the daemon
// and its pinned maps) is removed at the end, on an error, and on SIGINT or
// SIGTERM (between steps: a query in progress runs to its end first).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { cgroup2Mount } from '../daemon/accounting/cgroup-names.js';
import { packageRoot } from '../daemon/common/package-root.js';
import { durationSeconds, durationText } from '../daemon/history/durations.js';
import { type HistoryQuery, queryHistory } from '../daemon/history/history-query.js';
import { HistoryStore, type NamedTraffic, type TierSetting } from '../daemon/history/history-store.js';
import { type Position, positionKey } from '../daemon/history/position-ledger.js';
import { HISTORY_COUNTERS, OTHER_WORKLOAD } from '../daemon/history/schema.js';
import { defaultConfig } from '../daemon/service/config.js';
import { cpuNs, sleep } from './process-stats.js';

const PARTS = new Set((process.env['HISTORY_BENCH_PARTS'] ?? 'size,flush').split(','));
const WINDOW_SECONDS = Number(process.env['HISTORY_BENCH_SECONDS'] ?? 60);
const WARMUP_SECONDS = Number(process.env['HISTORY_BENCH_WARMUP'] ?? 30);
const ROUNDS = Number(process.env['HISTORY_BENCH_ROUNDS'] ?? 1);
const QUERY_RUNS = Number(process.env['HISTORY_BENCH_QUERY_RUNS'] ?? 7);
const VERBOSE = process.env['HISTORY_BENCH_VERBOSE'] === '1';

const defaults = defaultConfig();
const DEFAULT_TIERS: TierSetting[] = defaults.historyTiers.map((tier) => ({ bucketSeconds: durationSeconds(tier.bucket)!, keepSeconds: durationSeconds(tier.keep)! }));
const ROWS_PER_BUCKET = defaults.historyRowsPerBucket;
const DEFAULT_MAX_BYTES = defaults.historyMaxBytes;
const WORKLOADS = 1000;
const PROCESSES_PER_WORKLOAD = 10;
const DAY = 86_400;

const MiB = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const thousands = (n: number): string => n.toLocaleString('en-US');
const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

// Whatever was made is undone, in reverse order, once: at the end, on an error, on SIGINT or SIGTERM.
const cleanups: Array<() => void | Promise<void>> = [];
async function cleanUp(): Promise<void> {
  for (let undo = cleanups.pop(); undo; undo = cleanups.pop()) {
    try {
      await undo();
    } catch (err) {
      console.error(`cleaning up: ${(err as Error).message}`);
    }
  }
}
let interrupted = false;
/** Lets a signal's handler run between long synchronous steps; throws once one came. */
async function checkpoint(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (interrupted) throw new Error('interrupted');
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

/** A seeded generator (mulberry32): the same file every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------
// 1. Size and query speed, synthetic

interface SyntheticWorkload {
  id: number;
  cgroup: string;
  unit: string | null;
  container: string | null;
  containerName: string | null;
  pod: string | null;
  namespace: string | null;
  command: string;
  uid: number;
  /** Bytes a second, on average. */
  rate: number;
  /** Shares of the bytes: TCP send, TCP receive, UDP send, UDP receive. */
  shares: number[];
  bytesPerCall: number;
  pids: number[];
  cgroupId: number;
}

const COMMANDS = [
  'nginx', 'postgres', 'java', 'python3', 'node', 'curl', 'redis-server', 'envoy', 'haproxy', 'mysqld', 'sshd', 'rsync',
  'dockerd', 'containerd', 'kubelet', 'coredns', 'etcd', 'prometheus', 'grafana-server', 'chronyd', 'systemd-resolve',
  'apt', 'wget', 'git', 'gitlab-runner', 'memcached', 'rabbitmq', 'beam.smp', 'kafka', 'zookeeper', 'ruby', 'php-fpm',
  'apache2', 'squid', 'unbound', 'named', 'postfix', 'dovecot', 'ceph-osd', 'minio', 'elasticsearch', 'logstash',
  'fluent-bit', 'vector', 'telegraf', 'nats-server', 'consul', 'vault', 'traefik', 'caddy',
];

function syntheticWorkloads(next: () => number): SyntheticWorkload[] {
  const hex = (length: number): string => Array.from({ length }, () => Math.floor(next() * 16).toString(16)).join('');
  // Ranks by traffic, unrelated to the ids (ids are given in order of first appearance).
  const ranks = Array.from({ length: WORKLOADS }, (_, i) => i);
  for (let i = ranks.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [ranks[i], ranks[j]] = [ranks[j]!, ranks[i]!];
  }
  return ranks.map((rank, i) => {
    const kind = next();
    let base = COMMANDS[Math.floor(next() * next() * COMMANDS.length)]!;
    if (next() < 0.2) base = `worker-${Math.floor(next() * 100)}`;
    let cgroup: string;
    let unit: string | null;
    let container: string | null = null;
    let pod: string | null = null;
    let uid: number;
    if (kind < 0.4) {
      unit = `${base.replace(/[^a-z0-9-]/g, '')}-${i}.service`;
      cgroup = `/system.slice/${unit}`;
      uid = next() < 0.5 ? 0 : 100 + Math.floor(next() * 900);
    } else if (kind < 0.8) {
      container = hex(64);
      pod = `${base.replace(/[^a-z0-9-]/g, '')}-${hex(5)}`;
      unit = `cri-containerd-${container}.scope`;
      cgroup = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${hex(8)}_${hex(4)}_${hex(4)}_${hex(4)}_${hex(12)}.slice/${unit}`;
      uid = next() < 0.3 ? 0 : 1000 + Math.floor(next() * 5000);
    } else {
      uid = 1000 + Math.floor(next() * 200);
      unit = `session-${i}.scope`;
      cgroup = `/user.slice/user-${uid}.slice/${unit}`;
    }
    const weights = [next(), next(), next() * 0.3, next() * 0.3];
    const sum = weights.reduce((a, b) => a + b, 0);
    const firstPid = 1000 + Math.floor(next() * 4_000_000);
    return {
      id: i + 1,
      cgroup,
      unit,
      container,
      containerName: pod === null ? null : base,
      pod,
      namespace: pod === null ? null : `team-${Math.floor(next() * 20)}`,
      command: base.slice(0, 15),
      uid,
      rate: 3e6 * (rank + 1) ** -1.1,
      shares: weights.map((w) => w / sum),
      bytesPerCall: 100 + Math.floor(next() * 8000),
      pids: Array.from({ length: PROCESSES_PER_WORKLOAD }, (_, p) => firstPid + p),
      cgroupId: 10_000 + i * 7,
    };
  });
}

/** The 8 counters of `bytes` as a workload splits them. */
function countersOf(workload: SyntheticWorkload, bytes: number): number[] {
  const counters: number[] = [];
  for (const share of workload.shares) {
    const part = Math.round(bytes * share);
    counters.push(Math.ceil(part / workload.bytesPerCall), part);
  }
  return counters;
}

/** One bucket's traffic per workload: the average rate, a daily swing, and noise that shrinks with the bucket's length. */
function bucketBytes(workloads: readonly SyntheticWorkload[], bucket: number, size: number, next: () => number): Float64Array {
  const daily = 1 + 0.4 * Math.sin((2 * Math.PI * (bucket + size / 2)) / DAY);
  const sigma = Math.max(0.1, 0.8 / Math.sqrt(size / 60));
  const bytes = new Float64Array(workloads.length);
  for (let i = 0; i < workloads.length; i++) {
    const normal = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
    bytes[i] = workloads[i]!.rate * size * daily * Math.exp(sigma * normal - (sigma * sigma) / 2);
  }
  return bytes;
}

/** Workload indexes by bytes, most first. */
function ranked(bytes: Float64Array): number[] {
  return Array.from({ length: bytes.length }, (_, i) => i).sort((a, b) => bytes[b]! - bytes[a]!);
}

function pidsText(pids: readonly number[]): string {
  return pids.slice(0, 4).join(',');
}

/**
 * Fills the store's file with every bucket the default tiers keep at `now`:
 * in the order the daemon writes them (by the moment each is complete, the
 * finer tier first), a bucket's rows ranked by bytes, `other` last.
 */
async function fill(db: DatabaseSync, workloads: readonly SyntheticWorkload[], now: number, next: () => number): Promise<void> {
  const columns = HISTORY_COUNTERS.join(', ');
  const places = HISTORY_COUNTERS.map(() => '?').join(', ');
  const insertRow = db.prepare(`INSERT INTO traffic (tier, bucket, workload, ${columns}, pids) VALUES (?, ?, ?, ${places}, ?)`);
  const buckets: Array<{ tier: number; bucket: number; complete: number; order: number }> = [];
  DEFAULT_TIERS.forEach((tier, order) => {
    const size = tier.bucketSeconds;
    for (let bucket = Math.ceil((now - tier.keepSeconds) / size) * size; bucket + size <= now; bucket += size) buckets.push({ tier: size, bucket, complete: bucket + size, order });
  });
  buckets.sort((a, b) => a.complete - b.complete || a.order - b.order);
  let inTransaction = 0;
  db.exec('BEGIN');
  for (const { tier, bucket } of buckets) {
    const bytes = bucketBytes(workloads, bucket, tier, next);
    const order = ranked(bytes);
    const other = new Array<number>(8).fill(0);
    order.forEach((index, rank) => {
      const workload = workloads[index]!;
      const counters = countersOf(workload, bytes[index]!);
      if (rank < ROWS_PER_BUCKET) insertRow.run(tier, bucket, workload.id, ...counters, pidsText(workload.pids));
      else for (let i = 0; i < 8; i++) other[i]! += counters[i]!;
    });
    insertRow.run(tier, bucket, OTHER_WORKLOAD, ...other, '');
    inTransaction += ROWS_PER_BUCKET + 1;
    if (inTransaction >= 200_000) {
      db.exec('COMMIT');
      await checkpoint();
      db.exec('BEGIN');
      inTransaction = 0;
    }
  }
  db.exec('COMMIT');
}

/** The workloads, each last written into the minute before `now`. */
function fillWorkloads(db: DatabaseSync, workloads: readonly SyntheticWorkload[], now: number): void {
  db.exec('BEGIN');
  const insert = db.prepare('INSERT INTO workloads (id, cgroup, unit, container, command, uid, last_bucket) VALUES (?, ?, ?, ?, ?, ?, ?)');
  for (const w of workloads) insert.run(w.id, w.cgroup, w.unit, w.container, w.command, w.uid, now - 60);
  db.exec('COMMIT');
}

/** How far each coarser tier is summed: every complete bucket (the 1d bucket in progress at `now` is not). */
function fillRollupState(db: DatabaseSync, now: number, lastDay: number): void {
  const setState = db.prepare('INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)');
  setState.run(`rolled_up_${DEFAULT_TIERS[1]!.bucketSeconds}`, now);
  setState.run(`rolled_up_${DEFAULT_TIERS[2]!.bucketSeconds}`, now);
  setState.run(`rolled_up_${DEFAULT_TIERS[3]!.bucketSeconds}`, lastDay);
}

/** The daemon's positions (10 processes a workload) and forgotten totals: what the store writes with every flush. */
class SyntheticPositions {
  readonly cumulative = new Map<string, number[]>();
  readonly forgotten: Map<number, number[]>;

  constructor(workloads: readonly SyntheticWorkload[]) {
    for (const workload of workloads) {
      for (const pid of workload.pids) {
        this.cumulative.set(positionKey({ kind: 0, a: pid, b: 1_000_000 + pid, cgroupId: workload.cgroupId }), countersOf(workload, (workload.rate / PROCESSES_PER_WORKLOAD) * 30 * DAY));
      }
    }
    this.forgotten = new Map(workloads.map((workload) => [workload.cgroupId, countersOf(workload, workload.rate * 10 * DAY)]));
  }

  /** Every position, each grown a little (every process sent since the last flush). */
  grown(): Map<string, Position> {
    const changed = new Map<string, Position>();
    for (const [key, counters] of this.cumulative) {
      const grown = counters.map((value, i) => value + 1 + (i % 2) * 100);
      this.cumulative.set(key, grown);
      changed.set(key, { written: grown, settled: null });
    }
    return changed;
  }
}

/** One flush through HistoryStore.write (the object built apart: fields a newer FlushWrite lacks are no error here). */
function writeFlush(store: HistoryStore, bucket: number, nowSeconds: number, traffic: NamedTraffic[], positions: SyntheticPositions, all: boolean): void {
  const flush = {
    identity: 'bench-synthetic',
    bucket,
    nowSeconds,
    expire: true,
    traffic,
    changed: positions.grown(),
    removed: new Set<string>(),
    replacePositions: all,
    forgottenBefore: all ? new Map<number, number[]>() : positions.forgotten,
    forgottenAfter: positions.forgotten,
    peers: null,
  };
  store.write(flush);
}

/**
 * Bytes per tier: the traffic table is one b-tree ordered by (tier, bucket,
 * workload), so its leaf pages in key order (dbstat's paths, sorted) hold
 * one tier after another; each page goes to the tier its cells are of (by
 * count), the interior pages in proportion.
 */
function bytesPerTier(db: DatabaseSync, rowsByTier: Map<number, number>): Map<number, number> {
  const pages = db.prepare("SELECT path, pagetype, ncell, pgsize FROM dbstat WHERE name = 'traffic' ORDER BY path").all() as Array<{ path: string; pagetype: string; ncell: number; pgsize: number }>;
  const leaves = pages.filter((page) => page.pagetype === 'leaf');
  const leafCells = leaves.reduce((sum, page) => sum + page.ncell, 0);
  const totalRows = [...rowsByTier.values()].reduce((a, b) => a + b, 0);
  const tiers = [...rowsByTier.keys()].sort((a, b) => a - b);
  const ends: number[] = []; // each tier's last cell, in leaf-cell space
  let cumulative = 0;
  for (const tier of tiers) ends.push(((cumulative += rowsByTier.get(tier)!) / totalRows) * leafCells);
  const bytes = new Map<number, number>(tiers.map((tier) => [tier, 0]));
  let seen = 0;
  for (const page of leaves) {
    const middle = seen + page.ncell / 2;
    seen += page.ncell;
    const at = ends.findIndex((end) => middle <= end);
    const tier = at === -1 ? tiers.at(-1)! : tiers[at]!;
    bytes.set(tier, bytes.get(tier)! + page.pgsize);
  }
  const interior = pages.filter((page) => page.pagetype !== 'leaf').reduce((sum, page) => sum + page.pgsize, 0);
  for (const tier of tiers) bytes.set(tier, bytes.get(tier)! + (interior * rowsByTier.get(tier)!) / totalRows);
  return bytes;
}

async function sizeAndQueries(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-history-bench-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'history.db');
  const store = HistoryStore.open(file, { tiers: DEFAULT_TIERS, peerTiers: [], rowsPerBucket: ROWS_PER_BUCKET, maxBytes: 2 ** 40, readerGroup: null }, (message) => console.log(message));
  cleanups.push(() => store.close());
  const db = store.reader;
  // A UTC midnight an hour ahead: the hour of flushes below ends on it, with every tier's rollup.
  const end = Math.floor(Date.now() / 1000 / DAY) * DAY + DAY;
  const now = end - 3600;
  const next = random(23);
  const workloads = syntheticWorkloads(next);

  console.log(`1. Size and query speed, synthetic: the default tiers (${defaults.historyTiers.map((t) => `${t.bucket} kept ${t.keep}`).join(', ')}) full,`);
  console.log(`   ${WORKLOADS} active workloads, ${ROWS_PER_BUCKET} rows + other per bucket`);
  let started = performance.now();
  db.exec('PRAGMA synchronous = OFF'); // only while filling; the daemon's setting (FULL) again below
  fillWorkloads(db, workloads, now);
  await fill(db, workloads, now, next);
  fillRollupState(db, now, end - DAY);
  db.exec('PRAGMA synchronous = FULL');
  // The positions and forgotten totals as the daemon's first flush after opening a file writes them: all of them.
  const positions = new SyntheticPositions(workloads);
  writeFlush(store, now - 60, now, [], positions, true);
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  console.log(`   filled in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const { usedBytes, rowsByTier } = store.usage();
  const totalRows = [...rowsByTier.values()].reduce((a, b) => a + b, 0);
  const fileBytes = store.sizeBytes();
  const pragma = (name: string): number => Number(Object.values(db.prepare(`PRAGMA ${name}`).get() as object)[0]);
  console.log(
    `   file: ${MiB(fileBytes)} (${thousands(fileBytes)} bytes; ${MiB(usedBytes)} in use, ${thousands(pragma('freelist_count'))} free pages of ${pragma('page_size')} bytes), ` +
      `${thousands(totalRows)} traffic rows: ${fileBytes <= DEFAULT_MAX_BYTES ? 'under' : 'OVER'} the default bound of ${MiB(DEFAULT_MAX_BYTES)} (${((fileBytes / DEFAULT_MAX_BYTES) * 100).toFixed(0)} % of it)`,
  );
  const tables = db.prepare('SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC').all() as Array<{ name: string; bytes: number }>;
  console.log(`   per table and index (dbstat): ${tables.map((t) => `${t.name} ${t.bytes >= 1 << 20 ? MiB(t.bytes) : `${(t.bytes / 1024).toFixed(0)} KiB`}`).join(', ')}`);
  const tierBytes = bytesPerTier(db, rowsByTier);
  for (const tier of DEFAULT_TIERS) {
    const rows = rowsByTier.get(tier.bucketSeconds) ?? 0;
    const bytes = tierBytes.get(tier.bucketSeconds) ?? 0;
    console.log(`   traffic table, tier ${durationText(tier.bucketSeconds).padEnd(3)} (kept ${defaults.historyTiers.find((t) => durationSeconds(t.bucket) === tier.bucketSeconds)!.keep.padEnd(4)}): ${thousands(rows).padStart(9)} rows, ${MiB(bytes).padStart(9)} (${(bytes / rows).toFixed(0)} bytes a row)`);
  }

  if (QUERY_RUNS > 0) await queries(db, now);
  await flushesIntoFullFile(store, file, workloads, positions, now, end, next);
}

/** queryHistory's times over the full file. */
async function queries(db: DatabaseSync, now: number): Promise<void> {
  let started: number;
  const YEAR = 365 * DAY;
  const cases: Array<{ label: string; range: number; step: number | null; target: number }> = [
    { label: '24 h at 1-minute steps', range: DAY, step: 60, target: 50 },
    { label: '31 days, default step', range: 31 * DAY, step: null, target: 100 },
    { label: '31 days at 10-minute steps', range: 31 * DAY, step: 600, target: 100 },
    { label: 'a year, default step', range: YEAR, step: null, target: 200 },
    { label: 'a year at hourly steps', range: YEAR, step: 3600, target: 200 },
  ];
  const peakBefore = process.resourceUsage().maxRSS / 1024;
  console.log(`   queryHistory, limit 10 by total bytes, median of up to ${QUERY_RUNS} runs after one (fewer when slow: the runs, min-max; the rows it reads; JSON.stringify of the answer):`);
  for (const c of cases) {
    for (const by of ['workload', 'command'] as const) {
      const query: HistoryQuery = { fromSeconds: now - c.range, toSeconds: now, nowSeconds: now, by, stepSeconds: c.step, filters: {}, sort: 'bytes', order: 'desc', limit: 10, onlyUid: null };
      // A first run unmeasured; then QUERY_RUNS, fewer when they are slow (at least 3 once 10 s are spent; a run over 5 s is measured once).
      started = performance.now();
      let answer = queryHistory(db, DEFAULT_TIERS, query);
      const first = performance.now() - started;
      const times: number[] = first > 5000 ? [first] : [];
      const spent = performance.now();
      while (times.length < QUERY_RUNS && !(times.length >= 3 && performance.now() - spent > 10_000) && !(times[0]! > 5000)) {
        await checkpoint();
        started = performance.now();
        answer = queryHistory(db, DEFAULT_TIERS, query);
        times.push(performance.now() - started);
      }
      await checkpoint();
      started = performance.now();
      const json = JSON.stringify(answer);
      const jsonMs = performance.now() - started;
      const rows = (db.prepare('SELECT count(*) AS n FROM traffic WHERE tier = ? AND bucket >= ? AND bucket < ?').get(answer.tierSeconds, answer.startSeconds, answer.endSeconds) as { n: number }).n;
      const ms = median(times);
      console.log(
        `   ${`${c.label}, by ${by}:`.padEnd(44)} ${ms.toFixed(1).padStart(6)} ms (target <= ${c.target} ms: ${ms <= c.target ? 'met' : 'MISSED'}) ` +
          `(${times.length} runs, ${Math.min(...times).toFixed(1)}-${Math.max(...times).toFixed(1)}; ${durationText(answer.tierSeconds)} tier, ${thousands((answer.endSeconds - answer.startSeconds) / answer.stepSeconds)} steps of ${durationText(answer.stepSeconds)}, ` +
          `${thousands(rows)} rows; ${answer.groups.length} groups + ${answer.rest.groups} summed; JSON ${jsonMs.toFixed(1)} ms, ${(json.length / 1024).toFixed(0)} KiB)`,
      );
    }
  }

  console.log(`   this process's peak RSS (node with the daemon's V8 flags when run by npm run bench:history): ${peakBefore.toFixed(0)} MiB before the queries, ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB after`);

}

/** An hour of flushes into the full file, as the daemon writes them: 1,000 workloads, 10,000 positions each time. */
async function flushesIntoFullFile(store: HistoryStore, file: string, workloads: readonly SyntheticWorkload[], positions: SyntheticPositions, now: number, end: number, next: () => number): Promise<void> {
  const pragma = (name: string): number => Number(Object.values(store.reader.prepare(`PRAGMA ${name}`).get() as object)[0]);
  let started: number;
  const writes: Array<{ ms: number; rollup: string }> = [];
  for (let bucket = now; bucket < end; bucket += 60) {
    const bytes = bucketBytes(workloads, bucket, 60, next);
    const traffic: NamedTraffic[] = workloads.map((workload, i) => ({ ...workload, counters: countersOf(workload, bytes[i]!), pids: workload.pids.slice(0, 4) }));
    const nowSeconds = bucket + 60;
    started = performance.now();
    writeFlush(store, bucket, nowSeconds, traffic, positions, false);
    store.enforceBound();
    const rollup = DEFAULT_TIERS.slice(1)
      .filter((tier) => nowSeconds % tier.bucketSeconds === 0)
      .map((tier) => durationText(tier.bucketSeconds))
      .join('+');
    writes.push({ ms: performance.now() - started, rollup });
    await checkpoint();
  }
  const plain = writes.filter((w) => !w.rollup).map((w) => w.ms);
  console.log(
    `   HistoryStore.write + enforceBound into the full file, ${writes.length} minute flushes (1,000 workloads, 10,000 positions, synchronous=FULL): ` +
      `median ${median(plain).toFixed(1)} ms, max ${Math.max(...plain).toFixed(1)} ms without a rollup; with rollups: ` +
      writes
        .filter((w) => w.rollup)
        .map((w) => `${w.rollup} ${w.ms.toFixed(1)} ms`)
        .join(', '),
  );
  const onDisk = (suffix: string): number => fs.statSync(`${file}${suffix}`, { throwIfNoEntry: false })?.size ?? 0;
  console.log(
    `   after them (each deleting what its tiers keep no longer): file ${MiB(onDisk(''))} and its write-ahead log ${MiB(onDisk('-wal'))}, ` +
      `${MiB((pragma('page_count') - pragma('freelist_count')) * pragma('page_size'))} in use, ${thousands(pragma('freelist_count'))} free pages`,
  );
}

// ---------------------------------------------------------------------------
// 2. Flush cost, the real daemon

const BASE_BUCKET_SECONDS = 10;
const DAEMON_TIERS = '10s:1h,60s:1d';
const CGROUPS = 1000;
const PER_CGROUP = 10;

function get(apiSocket: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(apiSocket, () => socket.write(`GET ${request} HTTP/1.0\r\n\r\n`));
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('end', () => resolve(text.slice(text.indexOf('\r\n\r\n') + 4)));
    socket.on('error', reject);
  });
}

function metric(text: string, name: string): number | null {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : null;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Ends a child we started: `end` asks it, then SIGKILL after `graceMs`. */
async function stop(child: ChildProcess, end: () => void, graceMs: number): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  end();
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

/** Resolves when a line of the child's stderr matches; everything it writes there is passed on (the pipe never fills). */
function forwardStderr(child: ChildProcess, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    let found = false;
    child.stderr!.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      if (found) return;
      text += chunk.toString();
      if (pattern.test(text)) {
        found = true;
        resolve();
      }
    });
    child.once('exit', (code, signal) => found || reject(new Error(`the daemon ended (${code ?? signal}) before it served`)));
  });
}

interface DaemonRun {
  cpuShare: number;
  windowSeconds: number;
  flushMs: number[];
  liveProcesses: number | null;
  fileBytes: number | null;
  workloads: number | null;
  rowsPerBucket: number | null;
}

async function runDaemon(withHistory: boolean, round: number): Promise<DaemonRun> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-history-bench-'));
  const pinDir = `/sys/fs/bpf/netacct-bench-${process.pid}-${round}${withHistory ? 'h' : 'n'}`;
  const apiSocket = path.join(dir, 'api');
  const historyFile = path.join(dir, 'history.db');
  const args = ['daemon', '--atop-socket', path.join(dir, 'atop'), '--api-socket', apiSocket, '--pin-dir', pinDir, '--no-netatop-module'];
  args.push(...(withHistory ? ['--history-file', historyFile, '--history-tiers', DAEMON_TIERS] : ['--no-history']));
  const daemon = spawn(path.join(packageRoot(), 'bin', 'netacct.js'), args, { stdio: ['ignore', 'inherit', 'pipe'] });
  const removeFiles = (): void => {
    fs.rmSync(pinDir, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const stopDaemon = (): Promise<void> => stop(daemon, () => daemon.kill('SIGTERM'), 15_000);
  const undo = async (): Promise<void> => {
    await stopDaemon();
    removeFiles();
  };
  cleanups.push(undo);
  await forwardStderr(daemon, /serving atop on/);
  const pid = daemon.pid!;

  // /metrics once a bucket, 3 s after its end (its flush is done by then), in both runs alike.
  let flushes: number | null = null;
  const flushMs: number[] = [];
  let liveProcesses: number | null = null;
  let fileBytes: number | null = null;
  const bucketMs = BASE_BUCKET_SECONDS * 1000;
  let lastScrape = 0;
  const scrapeUntil = async (untilMs: number, record: boolean): Promise<void> => {
    for (;;) {
      const at = Math.max(Math.floor((Date.now() - 3000) / bucketMs) + 1, Math.floor((lastScrape - 3000) / bucketMs) + 1) * bucketMs + 3000;
      if (at > untilMs) {
        await sleep(Math.max(0, untilMs - Date.now()));
        return;
      }
      while (Date.now() < at) await sleep(at - Date.now());
      lastScrape = at;
      const text = await get(apiSocket, '/metrics');
      liveProcesses = metric(text, 'netacct_processes\\{state="live"\\}');
      fileBytes = metric(text, 'netacct_history_file_bytes');
      const total = metric(text, 'netacct_history_flushes_total');
      const seconds = metric(text, 'netacct_history_last_flush_duration_seconds');
      if (VERBOSE) console.log(`   ${new Date().toISOString()} flushes ${total}, the last ${seconds === null ? '-' : (seconds * 1000).toFixed(1)} ms, ${liveProcesses} live processes`);
      if (total !== null && seconds !== null) {
        if (record && flushes !== null && total === flushes + 1) flushMs.push(seconds * 1000);
        flushes = total;
      }
    }
  };
  await scrapeUntil(Date.now() + WARMUP_SECONDS * 1000, false);
  const before = cpuNs(pid);
  const started = performance.now();
  await scrapeUntil(Date.now() + WINDOW_SECONDS * 1000, true);
  const elapsedNs = (performance.now() - started) * 1e6;
  const cpuShare = ((cpuNs(pid) - before) / elapsedNs) * 100;

  cleanups.splice(cleanups.indexOf(undo), 1);
  await stopDaemon();
  let workloads: number | null = null;
  let rowsPerBucket: number | null = null;
  if (withHistory) {
    const db = new DatabaseSync(historyFile, { readOnly: true });
    workloads = (db.prepare('SELECT count(*) AS n FROM workloads WHERE id <> 0').get() as { n: number }).n;
    rowsPerBucket = (db.prepare('SELECT avg(n) AS n FROM (SELECT count(*) AS n FROM traffic WHERE tier = ? GROUP BY bucket)').get(BASE_BUCKET_SECONDS) as { n: number }).n;
    db.close();
  }
  removeFiles();
  return { cpuShare, windowSeconds: elapsedNs / 1e9, flushMs, liveProcesses, fileBytes, workloads, rowsPerBucket };
}

async function flushCost(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/history part 2 needs root (HISTORY_BENCH_PARTS=size runs part 1 alone)');
  const mount = cgroup2Mount();
  if (!mount) throw new Error('no cgroup2 hierarchy in /proc/self/mountinfo');
  console.log(
    `2. Flush cost, the real daemon: --history-tiers ${DAEMON_TIERS}, ${thousands(CGROUPS * PER_CGROUP)} processes in ${thousands(CGROUPS)} cgroups of their own (${PER_CGROUP} each), ` +
      `each sending a datagram every ${BASE_BUCKET_SECONDS / 2} s; ${WARMUP_SECONDS} s warm-up, then ${WINDOW_SECONDS} s measured, per run`,
  );
  const binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'netacct-history-bench-'));
  cleanups.push(() => fs.rmSync(binDir, { recursive: true, force: true }));
  const senders = path.join(binDir, 'history-senders');
  execFileSync('cc', ['-O2', '-o', senders, path.join(packageRoot(), 'bench', 'history-senders.c')]);

  const parent = path.join(mount, `netacct-bench-history-${process.pid}`);
  const cgroups = Array.from({ length: CGROUPS }, (_, i) => path.join(parent, `w${String(i).padStart(4, '0')}`));
  fs.mkdirSync(parent);
  cleanups.push(async () => {
    // A cgroup is removable once its last process has gone (an exiting one may take a moment).
    for (const cgroup of [...cgroups, parent]) {
      for (let attempt = 0; ; attempt++) {
        try {
          fs.rmdirSync(cgroup);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt >= 100) throw err;
          await sleep(100);
        }
      }
    }
  });
  for (const cgroup of cgroups) fs.mkdirSync(cgroup);

  {
    const children = spawn(senders, [String((BASE_BUCKET_SECONDS / 2) * 1000), String(PER_CGROUP), ...cgroups], { stdio: ['pipe', 'pipe', 'inherit'] });
    cleanups.push(() => stop(children, () => children.stdin!.end(), 30_000));
    let lines = '';
    await new Promise<void>((resolve, reject) => {
      children.stdout!.on('data', (chunk: Buffer) => (lines += chunk.toString()) && /^ready$/m.test(lines) && resolve());
      children.once('exit', (code) => reject(new Error(`history-senders ended (${code}) before it was ready`)));
    });
  }

  const runs: Array<{ history: DaemonRun; none: DaemonRun }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    const history = await runDaemon(true, round);
    const none = await runDaemon(false, round);
    runs.push({ history, none });
    const flushes = history.flushMs;
    console.log(
      `   round ${round + 1}: with history ${history.cpuShare.toFixed(3)} % of a core, --no-history ${none.cpuShare.toFixed(3)} % (${history.windowSeconds.toFixed(0)} s each; ` +
        `${history.liveProcesses ?? '?'} and ${none.liveProcesses ?? '?'} live processes in the table); ` +
        `${flushes.length} flushes: median ${median(flushes).toFixed(1)} ms, max ${Math.max(...flushes).toFixed(1)} ms; ` +
        `file ${history.fileBytes === null ? '?' : MiB(history.fileBytes)}, ${history.workloads} workloads, ${history.rowsPerBucket?.toFixed(1)} rows per ${BASE_BUCKET_SECONDS} s bucket`,
    );
  }
  const flushMs = runs.flatMap((run) => run.history.flushMs);
  const difference = median(runs.map((run) => run.history.cpuShare - run.none.cpuShare));
  const scaled = (difference * BASE_BUCKET_SECONDS) / 60;
  const blocking = (flushMs.reduce((a, b) => a + b, 0) / flushMs.length / (BASE_BUCKET_SECONDS * 1000)) * 100;
  console.log(`   flush duration (the event loop waits), ${flushMs.length} flushes: median ${median(flushMs).toFixed(1)} ms, max ${Math.max(...flushMs).toFixed(1)} ms (target <= 20 ms: ${Math.max(...flushMs) <= 20 ? 'met' : 'MISSED'})`);
  console.log(
    `   daemon CPU with history minus --no-history: ${difference.toFixed(3)} % of a core at ${BASE_BUCKET_SECONDS} s buckets; ` +
      `scaled to the default 60 s bucket: ${scaled.toFixed(3)} % (target <= 0.5 %: ${scaled <= 0.5 ? 'met' : 'MISSED'}); ` +
      `the flushes alone: ${blocking.toFixed(3)} % at ${BASE_BUCKET_SECONDS} s, ${((blocking * BASE_BUCKET_SECONDS) / 60).toFixed(3)} % at 60 s`,
  );
}

try {
  if (PARTS.has('size')) await sizeAndQueries();
  if (PARTS.has('flush') && !interrupted) await flushCost();
} finally {
  await cleanUp();
}
