// The history file: one SQLite database (node:sqlite, the SQLite carried by
// Node.js itself: nothing to build or install beside the runtime the
// packages ship). This module opens it (moving a corrupt or foreign file
// aside), writes one flush in one transaction (the rows, the daemon's
// position, the rollups into the coarser tiers, what has aged out), and
// keeps the file under its size bound.
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Position } from './position-ledger.js';
import { addInto } from '../accounting/counter-math.js';
import { HISTORY_APPLICATION_ID, HISTORY_COUNTERS, HISTORY_COUNTER_COUNT, OTHER_WORKLOAD, SCHEMA_VERSION, historyBytes, historyCalls, migrate } from './schema.js';

export interface TierSetting {
  bucketSeconds: number;
  keepSeconds: number;
}

/** A workload's traffic in a bucket, named as the file stores it. */
export interface NamedTraffic {
  cgroup: string;
  unit: string | null;
  container: string | null;
  /** The container's name, and for a pod's its pod and namespace (daemon/naming/). */
  containerName: string | null;
  pod: string | null;
  namespace: string | null;
  command: string;
  uid: number | null;
  counters: number[];
  pids: number[];
}

/** What the file remembers of the daemon's position. */
export interface StoredPosition {
  /** Which kernel counters the positions are of (boot and maps); null in a new file. */
  identity: string | null;
  positions: Map<string, Position>;
  forgotten: Map<number, number[]>;
  /** Of each process's peer rows (tgid:startNs:row). */
  peerPositions: Map<string, number[]>;
  /** The newest base bucket written, or null. */
  lastBucket: number | null;
}

/** One flush: the base bucket's rows and the position after them. */
export interface FlushWrite {
  identity: string;
  /** The base bucket the traffic is counted in (its start, Unix seconds). */
  bucket: number;
  nowSeconds: number;
  /** Whether what each tier keeps no longer is deleted now (not after the clock jumped). */
  expire: boolean;
  traffic: NamedTraffic[];
  changed: Map<string, Position>;
  removed: Set<string>;
  /** `changed` is every position: the file's are replaced (and its forgotten totals written whole). */
  replacePositions: boolean;
  forgottenBefore: Map<number, number[]>;
  forgottenAfter: Map<number, number[]>;
  /** Null when per-peer counting is off. */
  peers: PeerFlushWrite | null;
}

/** SQLite result codes (the primary code: the low byte) that mean the file itself is bad. */
const SQLITE_CORRUPT = 11;
const SQLITE_NOTADB = 26;

/** Why the file cannot be used as it is: `corrupt` ones are moved aside, the others wait (a full disk, a read-only file system). */
export class HistoryFileError extends Error {
  constructor(
    message: string,
    readonly corrupt: boolean,
  ) {
    super(message);
  }
}

/** An error from node:sqlite or the file system, as a HistoryFileError. */
export function historyFileError(err: unknown): HistoryFileError {
  if (err instanceof HistoryFileError) return err;
  const { errcode, code, message } = err as { errcode?: number; code?: string; message?: string };
  const primary = typeof errcode === 'number' ? errcode & 0xff : null;
  const reason = code && !code.startsWith('ERR_SQLITE') && !message?.startsWith(code) ? `${code}: ${message}` : (message ?? String(err));
  return new HistoryFileError(reason, primary === SQLITE_CORRUPT || primary === SQLITE_NOTADB);
}

const COLUMNS = HISTORY_COUNTERS.join(', ');
const SETTLED_COLUMNS = HISTORY_COUNTERS.map((name) => `settled_${name}`).join(', ');
const PLACES = HISTORY_COUNTERS.map(() => '?').join(', ');
const SUMS = HISTORY_COUNTERS.map((name) => `SUM(${name})`).join(', ');
/**
 * The top `count` of `rows` by bytes (then calls, then `tieBreak`), and the
 * others' counters summed (null when there are none): how a bucket is bounded.
 */
function keepTop<T>(rows: readonly T[], count: number, countersOf: (row: T) => number[], tieBreak: (a: T, b: T) => number = () => 0): { kept: T[]; rest: number[] | null } {
  const ranked = [...rows];
  if (ranked.length <= count) return { kept: ranked, rest: null };
  ranked.sort((a, b) => historyBytes(countersOf(b)) - historyBytes(countersOf(a)) || historyCalls(countersOf(b)) - historyCalls(countersOf(a)) || tieBreak(a, b));
  const rest = new Array<number>(HISTORY_COUNTER_COUNT).fill(0);
  for (const row of ranked.splice(count)) addInto(rest, countersOf(row), HISTORY_COUNTER_COUNT);
  return { kept: ranked, rest };
}

/** The two row tables: per workload (every tier), and per workload and peer (the peer tiers). */
interface RowKind {
  table: 'traffic' | 'peer_traffic';
  /** The columns that tell a bucket's rows apart (the first: the workload). */
  keys: readonly string[];
  /** The key of the `other` row. */
  other: ReadonlyArray<string | number>;
  withPids: boolean;
  /** Where each of its coarser tiers stands in `state`. */
  rolledUpKey: (size: number) => string;
}
const WORKLOAD_ROWS: RowKind = { table: 'traffic', keys: ['workload'], other: [OTHER_WORKLOAD], withPids: true, rolledUpKey: (size) => `rolled_up_${size}` };
const PEER_ROWS: RowKind = { table: 'peer_traffic', keys: ['workload', 'peer', 'port'], other: [OTHER_WORKLOAD, '', 0], withPids: false, rolledUpKey: (size) => `peer_rolled_up_${size}` };

/** A row being written: its key (a workload id, and for peers the peer and port) and its sums. */
interface BucketRow {
  key: Array<string | number>;
  counters: number[];
  pids: string;
}

/** A workload's traffic with one peer in a bucket, named as the file stores it. */
export interface NamedPeerTraffic extends Omit<NamedTraffic, 'pids'> {
  peer: string;
  port: number;
}

/** The peer rows of one flush (the daemon runs with --peers). */
export interface PeerFlushWrite {
  traffic: NamedPeerTraffic[];
  changed: Map<string, number[]>;
  removed: Set<string>;
  /** `changed` is every position: the file's are replaced. */
  replacePositions: boolean;
}

export interface HistoryStoreOptions {
  tiers: readonly TierSetting[];
  /** The tiers that hold peer rows (the second and third by default: 10 minutes and an hour). */
  peerTiers: readonly TierSetting[];
  /** Rows of one bucket (and one `other`). */
  rowsPerBucket: number;
  maxBytes: number;
  /** The group that may read the file (allProcessesGroup), or null: root only. */
  readerGroup: number | null;
}

/** Workload ids looked up, at most (past it, the cache starts over). */
const MAX_CACHED_WORKLOADS = 20_000;
/** The WAL is truncated to this once checkpointed (after every write): a nearly full disk does not lose its last megabytes to it. */
const WAL_LIMIT_BYTES = 1024 * 1024;
/** Of the size bound, what a pass that had to delete leaves used. */
const BOUND_TARGET = 0.9;

export class HistoryStore {
  private readonly statements = new Map<string, StatementSync>();
  private readonly workloadIds = new Map<string, number>();
  /** When unused workloads were last deleted (the history's clock, Unix seconds). */
  private lastWorkloadSweep = -Infinity;

  private constructor(
    readonly file: string,
    private readonly db: DatabaseSync,
    private readonly options: HistoryStoreOptions,
  ) {}

  /**
   * Opens (or creates) the file. A file that is no netacct history, or a
   * corrupt one, is moved aside to `<file>.corrupt` (replacing an older
   * one), and a new one started: `onMovedAside` says so. Throws a
   * HistoryFileError when the file cannot be opened or created now.
   */
  static open(file: string, options: HistoryStoreOptions, onMovedAside: (message: string) => void): HistoryStore {
    try {
      return HistoryStore.openAsIs(file, options);
    } catch (err) {
      const error = historyFileError(err);
      if (!error.corrupt) throw error;
      onMovedAside(`history file ${file} cannot be used (${error.message}): moved to ${moveAside(file)}; a new one is started`);
      try {
        return HistoryStore.openAsIs(file, options);
      } catch (again) {
        throw historyFileError(again);
      }
    }
  }

  private static openAsIs(file: string, options: HistoryStoreOptions): HistoryStore {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    // The daemon runs as root: a directory another user may write to could swap the file (or its journal) for a link.
    const directory = fs.statSync(path.dirname(file));
    if (directory.uid !== 0 || (directory.mode & 0o022) !== 0) {
      throw new HistoryFileError(`its directory ${path.dirname(file)} must be root's and writable by root alone (it is uid ${directory.uid}, mode ${(directory.mode & 0o777).toString(8)})`, false);
    }
    const existing = fs.lstatSync(file, { throwIfNoEntry: false });
    if (existing && !existing.isFile()) throw new HistoryFileError('it is not a regular file', true);
    // Created 0640 before SQLite opens it: its journal files take the same mode and owner.
    if (!existing) fs.closeSync(fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW, 0o640));
    fs.chownSync(file, 0, options.readerGroup ?? 0);
    fs.chmodSync(file, 0o640);
    // Foreign keys are not enforced (node:sqlite turns them on): the daemon deletes workloads only once no row names them.
    const db = new DatabaseSync(file, { timeout: 100, enableForeignKeyConstraints: false });
    try {
      const applicationId = (db.prepare('PRAGMA application_id').get() as { application_id: number }).application_id;
      const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
      if (applicationId !== HISTORY_APPLICATION_ID) {
        const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number }).n;
        if (tables > 0 || version !== 0) throw new HistoryFileError('it is not a netacct history file (another application_id)', true);
        // A new file: incremental vacuum must be chosen before the first table.
        db.exec(`PRAGMA auto_vacuum = INCREMENTAL; PRAGMA application_id = ${HISTORY_APPLICATION_ID}`);
      }
      // A newer netacct's file (after a downgrade) is left exactly as it is: not even its journal mode is set.
      if (version > SCHEMA_VERSION) throw new HistoryFileError(`its schema is version ${version}, newer than this daemon's ${SCHEMA_VERSION}: history waits (a newer netacct wrote it)`, false);
      db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA journal_size_limit = ${WAL_LIMIT_BYTES}`);
      migrate(db);
      return new HistoryStore(file, db, options);
    } catch (err) {
      db.close();
      throw historyFileError(err);
    }
  }

  /** The file (and its journal files) readable by `group` from now on. */
  setReaderGroup(group: number | null): void {
    this.options.readerGroup = group;
    for (const suffix of ['', '-wal', '-shm']) {
      try {
        fs.chownSync(`${this.file}${suffix}`, 0, group ?? 0);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }

  close(): void {
    try {
      this.db.close();
    } catch {
      // already closed
    }
  }

  private statement(sql: string): StatementSync {
    let statement = this.statements.get(sql);
    if (!statement) this.statements.set(sql, (statement = this.db.prepare(sql)));
    return statement;
  }

  /** A value of the `state` table, or null. */
  private state(key: string): unknown {
    return (this.statement('SELECT value FROM state WHERE key = ?').get(key) as { value: unknown } | undefined)?.value ?? null;
  }

  /** A PRAGMA's number (page_count, freelist_count, page_size). */
  private pragma(name: string): number {
    return Number(Object.values(this.statement(`PRAGMA ${name}`).get() as object)[0]);
  }

  /** The daemon's position as last written. */
  readPosition(): StoredPosition {
    const state = (key: string): unknown => this.state(key);
    const positions = new Map<string, Position>();
    for (const row of readRows(this.statement(`SELECT key, ${COLUMNS}, ${SETTLED_COLUMNS} FROM positions`))) {
      const settled = row.slice(1 + HISTORY_COUNTER_COUNT) as number[];
      positions.set(row[0] as string, { written: row.slice(1, 1 + HISTORY_COUNTER_COUNT) as number[], settled: settled.some((value) => value > 0) ? settled : null });
    }
    const forgotten = new Map<number, number[]>();
    for (const row of readRows(this.statement(`SELECT cgroup_id, ${COLUMNS} FROM forgotten`))) forgotten.set(row[0] as number, row.slice(1) as number[]);
    const peerPositions = new Map<string, number[]>();
    for (const row of readRows(this.statement(`SELECT key, ${COLUMNS} FROM peer_positions`))) peerPositions.set(row[0] as string, row.slice(1) as number[]);
    const lastBucket = state('last_bucket');
    return { identity: (state('identity') as string | null) ?? null, positions, forgotten, peerPositions, lastBucket: lastBucket === null ? null : Number(lastBucket) };
  }

  /** Writes one flush in one transaction; throws a HistoryFileError (nothing written) when it cannot. */
  write(flush: FlushWrite): void {
    try {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const base = this.options.tiers[0]!.bucketSeconds;
        if (flush.traffic.length > 0) {
          // Bounded before any workload gets an id: names churning by the thousand never reach the workloads table.
          const { kept, rest } = keepTop(flush.traffic, this.options.rowsPerBucket, (traffic) => traffic.counters);
          const rows = kept.map((traffic) => ({ key: [this.workloadId(traffic, flush.bucket)], counters: traffic.counters, pids: traffic.pids.join(',') }));
          if (rest) rows.push({ key: [OTHER_WORKLOAD], counters: rest, pids: '' });
          this.writeBucket(WORKLOAD_ROWS, base, flush.bucket, rows);
        }
        this.writePositions(flush);
        const completeEnd = Math.floor(flush.nowSeconds / base) * base;
        const { peers } = flush;
        const peerTier = this.options.peerTiers[0];
        if (peers && peerTier) {
          if (peers.traffic.length > 0) {
            const { kept, rest } = keepTop(peers.traffic, this.options.rowsPerBucket, (traffic) => traffic.counters);
            const rows = kept.map((traffic) => ({ key: [this.workloadId(traffic, flush.bucket), traffic.peer, traffic.port], counters: traffic.counters, pids: '' }));
            if (rest) rows.push({ key: [...PEER_ROWS.other], counters: rest, pids: '' });
            this.writeBucket(PEER_ROWS, peerTier.bucketSeconds, Math.floor(flush.bucket / peerTier.bucketSeconds) * peerTier.bucketSeconds, rows);
          }
          this.writePeerPositions(peers);
        }
        const setState = this.statement('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
        setState.run('identity', flush.identity);
        setState.run('last_bucket', flush.bucket);
        this.rollUp(WORKLOAD_ROWS, this.options.tiers, completeEnd, flush.bucket);
        this.rollUp(PEER_ROWS, this.options.peerTiers, completeEnd, flush.bucket);
        if (flush.expire) this.expire(flush.nowSeconds);
        this.db.exec('COMMIT');
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    } catch (err) {
      this.workloadIds.clear(); // ids made in the rolled-back transaction are gone
      throw historyFileError(err);
    }
    // Into the file at once, never waiting for a reader (sqlite3 on it): the write-ahead log stays one flush long.
    // The flush is written whatever happens here: a checkpoint that fails (a full disk) is tried again after the next.
    try {
      this.db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    } catch {
      // the next write's log grows instead; a full disk then pauses history there
    }
  }

  /** The id of a workload, made (and its last bucket noted) if new. */
  private workloadId(traffic: Omit<NamedTraffic, 'pids'>, bucket: number): number {
    const key = `${traffic.cgroup}\u0000${traffic.uid ?? ''}\u0000${traffic.command}`;
    let id = this.workloadIds.get(key);
    if (id === undefined) {
      const found = this.statement('SELECT id FROM workloads WHERE cgroup = ? AND command = ? AND uid IS ?').get(traffic.cgroup, traffic.command, traffic.uid) as { id: number } | undefined;
      const names = [traffic.containerName, traffic.pod, traffic.namespace] as const;
      if (found && names.some((name) => name !== null)) {
        // A container named after its workload's first row (past the naming budget then): named from now on.
        this.statement('UPDATE workloads SET container_name = ?, pod = ?, namespace = ? WHERE id = ? AND container_name IS NULL AND pod IS NULL').run(...names, found.id);
      }
      id =
        found?.id ??
        Number(
          this.statement('INSERT INTO workloads (cgroup, unit, container, container_name, pod, namespace, command, uid, last_bucket) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
            traffic.cgroup,
            traffic.unit,
            traffic.container,
            ...names,
            traffic.command,
            traffic.uid,
            bucket,
          ).lastInsertRowid,
        );
      if (this.workloadIds.size >= MAX_CACHED_WORKLOADS) this.workloadIds.clear();
      this.workloadIds.set(key, id);
    }
    this.statement('UPDATE workloads SET last_bucket = ? WHERE id = ? AND last_bucket < ?').run(bucket, id, bucket);
    return id;
  }

  /**
   * Writes rows into a bucket, merged with those it has (a bucket written
   * again after a restart, a rollup catching up, the peer rows of each
   * flush), keeping the top `rowsPerBucket` by bytes and summing the rest
   * into `other`: the bucket's sums stay exact.
   */
  private writeBucket(kind: RowKind, tier: number, bucket: number, rows: readonly BucketRow[]): void {
    const merged = new Map<string, BucketRow>();
    const keyColumns = kind.keys.join(', ');
    const existing = readRows(this.statement(`SELECT ${keyColumns}, ${COLUMNS}${kind.withPids ? ', pids' : ''} FROM ${kind.table} WHERE tier = ? AND bucket = ?`), tier, bucket);
    const add = (row: BucketRow): void => {
      const id = JSON.stringify(row.key);
      const into = merged.get(id);
      if (!into) merged.set(id, { key: row.key, counters: [...row.counters], pids: row.pids });
      else {
        addInto(into.counters, row.counters, HISTORY_COUNTER_COUNT);
        into.pids = mergePids(into.pids, row.pids);
      }
    };
    const keyCount = kind.keys.length;
    for (const row of existing) {
      add({ key: row.slice(0, keyCount) as Array<string | number>, counters: row.slice(keyCount, keyCount + HISTORY_COUNTER_COUNT) as number[], pids: (row[keyCount + HISTORY_COUNTER_COUNT] as string | undefined) ?? '' });
    }
    for (const row of rows) add(row);
    const other = merged.get(JSON.stringify(kind.other)) ?? { key: [...kind.other], counters: new Array<number>(HISTORY_COUNTER_COUNT).fill(0), pids: '' };
    const { kept: ranked, rest } = keepTop(
      [...merged.values()].filter((row) => row.key[0] !== OTHER_WORKLOAD),
      this.options.rowsPerBucket,
      (row) => row.counters,
      (a, b) => (JSON.stringify(a.key) < JSON.stringify(b.key) ? -1 : 1),
    );
    if (rest) addInto(other.counters, rest, HISTORY_COUNTER_COUNT);
    other.pids = '';
    if (other.counters.some((value) => value > 0)) ranked.push(other);
    if (existing.length > 0) this.statement(`DELETE FROM ${kind.table} WHERE tier = ? AND bucket = ?`).run(tier, bucket);
    const places = kind.keys.map(() => '?').join(', ');
    const insert = this.statement(`INSERT INTO ${kind.table} (tier, bucket, ${keyColumns}, ${COLUMNS}${kind.withPids ? ', pids' : ''}) VALUES (?, ?, ${places}, ${PLACES}${kind.withPids ? ', ?' : ''})`);
    for (const row of ranked) insert.run(tier, bucket, ...row.key, ...row.counters, ...(kind.withPids ? [row.pids] : []));
  }

  private writePeerPositions(peers: PeerFlushWrite): void {
    if (peers.replacePositions) this.db.exec('DELETE FROM peer_positions');
    const upsert = this.statement(`INSERT OR REPLACE INTO peer_positions (key, ${COLUMNS}) VALUES (?, ${PLACES})`);
    for (const [key, counters] of peers.changed) upsert.run(key, ...counters);
    const remove = this.statement('DELETE FROM peer_positions WHERE key = ?');
    for (const key of peers.removed) remove.run(key);
  }

  private writePositions(flush: FlushWrite): void {
    if (flush.replacePositions) this.db.exec('DELETE FROM positions; DELETE FROM forgotten');
    const forgottenBefore = flush.replacePositions ? new Map<number, number[]>() : flush.forgottenBefore;
    const upsert = this.statement(`INSERT OR REPLACE INTO positions (key, ${COLUMNS}, ${SETTLED_COLUMNS}) VALUES (?, ${PLACES}, ${PLACES})`);
    const none = new Array<number>(HISTORY_COUNTER_COUNT).fill(0);
    for (const [key, position] of flush.changed) upsert.run(key, ...position.written, ...(position.settled ?? none));
    const remove = this.statement('DELETE FROM positions WHERE key = ?');
    for (const key of flush.removed) remove.run(key);
    const setForgotten = this.statement(`INSERT OR REPLACE INTO forgotten (cgroup_id, ${COLUMNS}) VALUES (?, ${PLACES})`);
    for (const [cgroupId, counters] of flush.forgottenAfter) {
      const before = forgottenBefore.get(cgroupId);
      if (!before || before.some((value, i) => value !== counters[i])) setForgotten.run(cgroupId, ...counters);
    }
    const dropForgotten = this.statement('DELETE FROM forgotten WHERE cgroup_id = ?');
    for (const cgroupId of forgottenBefore.keys()) if (!flush.forgottenAfter.has(cgroupId)) dropForgotten.run(cgroupId);
  }

  /**
   * Sums each coarser tier's buckets that are complete (they end at or
   * before `completeEnd`) from the tier below, once each: where each tier
   * stands is kept in `state`, in the same transaction. A bucket still
   * written to (the one in progress) is never rolled up before it ends.
   */
  private rollUp(kind: RowKind, tiers: readonly TierSetting[], completeEnd: number, writtenBucket: number): void {
    const keyColumns = kind.keys.join(', ');
    for (let k = 1; k < tiers.length; k++) {
      const size = tiers[k]!.bucketSeconds;
      const source = tiers[k - 1]!.bucketSeconds;
      const key = kind.rolledUpKey(size);
      const stored = this.state(key) as number | null;
      const from = stored ?? Math.floor(writtenBucket / size) * size;
      const to = Math.floor(completeEnd / size) * size;
      if (to > from) {
        const sums = readRows(
          this.statement(
            `SELECT (bucket / ${size}) * ${size} AS coarse, ${keyColumns}, ${SUMS}${kind.withPids ? ', group_concat(pids) AS pids' : ''} FROM ${kind.table} WHERE tier = ? AND bucket >= ? AND bucket < ? GROUP BY coarse, ${keyColumns}`,
          ),
          source,
          from,
          to,
        );
        const byBucket = new Map<number, BucketRow[]>();
        const keyCount = kind.keys.length;
        for (const row of sums) {
          const coarse = row[0] as number;
          if (!byBucket.has(coarse)) byBucket.set(coarse, []);
          byBucket.get(coarse)!.push({
            key: row.slice(1, 1 + keyCount) as Array<string | number>,
            counters: row.slice(1 + keyCount, 1 + keyCount + HISTORY_COUNTER_COUNT) as number[],
            pids: mergePids('', (row[1 + keyCount + HISTORY_COUNTER_COUNT] as string | null | undefined) ?? ''),
          });
        }
        for (const [coarse, rows] of byBucket) this.writeBucket(kind, size, coarse, rows);
      }
      if (stored === null || to > from) this.statement('INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)').run(key, Math.max(from, to));
    }
  }

  /** Deletes what each tier keeps no longer, and workloads no row names any more. */
  private expire(nowSeconds: number): void {
    for (const [kind, tiers] of [[WORKLOAD_ROWS, this.options.tiers], [PEER_ROWS, this.options.peerTiers]] as const) {
      const deleteOlder = this.statement(`DELETE FROM ${kind.table} WHERE tier = ? AND bucket < ?`);
      for (const tier of tiers) deleteOlder.run(tier.bucketSeconds, nowSeconds - tier.keepSeconds);
    }
    this.dropUnusedWorkloads(nowSeconds);
  }

  /**
   * Deletes the workloads no row names any more (their rows aged out or were
   * deleted for the bound), at most once an hour of the history's clock
   * (each workload costs a look-up per tier in the index by workload).
   */
  private dropUnusedWorkloads(nowSeconds: number, force = false): void {
    if (!force && nowSeconds - this.lastWorkloadSweep < 3600) return;
    this.lastWorkloadSweep = nowSeconds;
    const tiers = [...new Set([...this.options.tiers, ...this.options.peerTiers].map((tier) => tier.bucketSeconds))].join(', ');
    const dropped = this.statement(
      `DELETE FROM workloads WHERE id <> ${OTHER_WORKLOAD} AND NOT EXISTS (SELECT 1 FROM traffic WHERE tier IN (${tiers}) AND workload = workloads.id) ` +
        `AND NOT EXISTS (SELECT 1 FROM peer_traffic WHERE workload = workloads.id)`,
    ).run();
    if (Number(dropped.changes) > 0) this.workloadIds.clear();
  }

  /** The bytes the file and its write-ahead log take. */
  sizeBytes(): number {
    const size = (file: string): number => fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
    return size(this.file) + size(`${this.file}-wal`);
  }

  /** Bytes in use (pages not free), and the rows of each tier (for the benchmark: a count over every row). */
  usage(): { usedBytes: number; rowsByTier: Map<number, number> } {
    const usedBytes = (this.pragma('page_count') - this.pragma('freelist_count')) * this.pragma('page_size');
    const rowsByTier = new Map<number, number>();
    for (const row of this.statement('SELECT tier, count(*) AS n FROM traffic GROUP BY tier').all() as Array<{ tier: number; n: number }>) rowsByTier.set(row.tier, row.n);
    return { usedBytes, rowsByTier };
  }

  /**
   * Keeps the file under its bound: past it, deletes the oldest buckets of
   * the finest tier that are already rolled up into the next (the oldest
   * fine rows go first; the coarsest tier's oldest last), down to 90 % of
   * the bound, and gives the freed pages back to the file system. Returns
   * the rows deleted.
   */
  enforceBound(): number {
    const pageSize = this.pragma('page_size');
    const used = (): number => (this.pragma('page_count') - this.pragma('freelist_count')) * pageSize;
    if (this.sizeBytes() <= this.options.maxBytes && used() <= this.options.maxBytes) return 0;
    const target = this.options.maxBytes * BOUND_TARGET;
    // Finest first; at one bucket length, the peer rows (the detail) before the workload rows.
    const order = [
      ...this.options.peerTiers.map((tier, k) => ({ kind: PEER_ROWS, size: tier.bucketSeconds, next: this.options.peerTiers[k + 1] })),
      ...this.options.tiers.map((tier, k) => ({ kind: WORKLOAD_ROWS, size: tier.bucketSeconds, next: this.options.tiers[k + 1] })),
    ].sort((a, b) => a.size - b.size);
    let deleted = 0;
    try {
      this.db.exec('BEGIN IMMEDIATE');
      for (const { kind, size, next } of order) {
        if (used() <= target) break;
        // Only what the next tier already holds (the coarsest: anything).
        const limit = next ? ((this.state(kind.rolledUpKey(next.bucketSeconds)) as number | null) ?? -Infinity) : Infinity;
        for (;;) {
          if (used() <= target) break;
          const oldest = this.statement(`SELECT min(bucket) AS b, count(*) AS n FROM ${kind.table} WHERE tier = ?`).get(size) as { b: number | null; n: number };
          if (oldest.b === null || oldest.b >= limit) break;
          // A twentieth of the tier's rows at a time, whole buckets.
          const cut = this.statement(`SELECT bucket FROM ${kind.table} WHERE tier = ? ORDER BY bucket LIMIT 1 OFFSET ?`).get(size, Math.max(0, Math.floor(oldest.n / 20))) as { bucket: number } | undefined;
          const end = Math.min(limit, Math.max(oldest.b + size, cut?.bucket ?? oldest.b + size));
          deleted += Number(this.statement(`DELETE FROM ${kind.table} WHERE tier = ? AND bucket < ?`).run(size, end).changes);
        }
      }
      if (deleted > 0) this.dropUnusedWorkloads(0, true);
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw historyFileError(err);
    }
    this.db.exec('PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE)');
    return deleted;
  }

  /** The database, for the queries (history-query.ts), which only read. */
  get reader(): DatabaseSync {
    return this.db;
  }
}

/**
 * A statement's rows as arrays, integers read exactly (a counter or a sum
 * past 2^53 would make node:sqlite throw) and given as numbers.
 */
export function readRows(statement: StatementSync, ...parameters: Array<string | number | null>): unknown[][] {
  statement.setReadBigInts(true);
  statement.setReturnArrays(true);
  return (statement.all(...parameters) as unknown as unknown[][]).map((row) => row.map((value) => (typeof value === 'bigint' ? Number(value) : value)));
}

/** At most a few distinct pids, comma-separated. */
function mergePids(a: string, b: string): string {
  const pids = new Set<string>();
  for (const pid of `${a},${b}`.split(',')) if (pid && pids.size < 4) pids.add(pid);
  return [...pids].join(',');
}

/** Moves the file (and its journal files) to `<file>.corrupt`, replacing an older one; returns where. */
export function moveAside(file: string): string {
  const aside = `${file}.corrupt`;
  for (const suffix of ['', '-wal', '-shm']) {
    fs.rmSync(`${aside}${suffix}`, { force: true, recursive: true });
    if (fs.existsSync(`${file}${suffix}`)) fs.renameSync(`${file}${suffix}`, `${aside}${suffix}`);
  }
  return aside;
}
