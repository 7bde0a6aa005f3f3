// The history file's schema: documented in README ("History"), so that users
// can query it with the sqlite3 command too. A file is ours when its
// application_id is HISTORY_APPLICATION_ID; user_version is the schema's
// version, and each migration takes a file one version up, in one
// transaction.
import type { DatabaseSync } from 'node:sqlite';

/** "NACT" in ASCII: `PRAGMA application_id` of every netacct history file. */
export const HISTORY_APPLICATION_ID = 0x4e414354;

/** The eight counters of a history row, in their columns' order. */
export const HISTORY_COUNTERS = [
  'tcp_send_calls',
  'tcp_send_bytes',
  'tcp_recv_calls',
  'tcp_recv_bytes',
  'udp_send_calls',
  'udp_send_bytes',
  'udp_recv_calls',
  'udp_recv_bytes',
] as const;
export const HISTORY_COUNTER_COUNT = HISTORY_COUNTERS.length;

/** Bytes of 8 history counters: sent and received, TCP and UDP (what buckets keep their top rows by). */
export const historyBytes = (counters: readonly number[]): number => counters[1]! + counters[3]! + counters[5]! + counters[7]!;
/** Calls of 8 history counters. */
export const historyCalls = (counters: readonly number[]): number => counters[0]! + counters[2]! + counters[4]! + counters[6]!;

const counterColumns = HISTORY_COUNTERS.map((name) => `${name} INTEGER NOT NULL`).join(', ');

/** The workload id of every bucket's `other` row. */
export const OTHER_WORKLOAD = 0;

/** Version 1: workloads, traffic per tier and bucket, and the daemon's position. */
const VERSION_1 = `
  -- What a row counts: processes of one command and user in one cgroup.
  -- Id 0 is "other": the workloads past a bucket's bound, summed.
  CREATE TABLE workloads (
    id INTEGER PRIMARY KEY,
    cgroup TEXT NOT NULL,       -- the cgroup v2 path, "(removed)" when it was gone before it was named
    unit TEXT,                  -- its innermost systemd unit, if any
    container TEXT,             -- its container's id, if any
    command TEXT NOT NULL,      -- comm; "(other)", "(unattributed)", "(exited unseen)" for the rows that are no one process's
    uid INTEGER,                -- the user; NULL for rows of many users
    last_bucket INTEGER NOT NULL, -- the newest bucket it has a row in (Unix seconds): unused workloads are deleted
    UNIQUE (cgroup, command, uid)
  );
  INSERT INTO workloads (id, cgroup, command, uid, last_bucket) VALUES (0, '(other)', '(other)', NULL, 0);
  -- One row per workload per bucket of each tier: traffic counted in [bucket, bucket + tier).
  CREATE TABLE traffic (
    tier INTEGER NOT NULL,      -- the bucket's length in seconds (60, 600, 3600, 86400 by default)
    bucket INTEGER NOT NULL,    -- the bucket's start, Unix seconds (UTC)
    workload INTEGER NOT NULL REFERENCES workloads (id),
    ${counterColumns},
    pids TEXT NOT NULL,         -- a few of its processes' pids, comma-separated (a hint: pids are reused)
    PRIMARY KEY (tier, bucket, workload)
  ) WITHOUT ROWID;
  -- What the daemon has already written of each process's counters per cgroup
  -- (key "0:tgid:start ns:cgroup id") and of each unattributed row ("1:uid:0:cgroup
  -- id"), and how much of a process's part the daemon moved to the forgotten
  -- totals (settled_*): written in the same transaction as the traffic rows.
  -- Keys are text: a start time in ns passes 2^53 after 104 days of uptime.
  CREATE TABLE positions (
    key TEXT PRIMARY KEY,
    ${counterColumns},
    ${HISTORY_COUNTERS.map((name) => `settled_${name} INTEGER NOT NULL`).join(', ')}
  ) WITHOUT ROWID;
  -- The kernel's totals of forgotten processes per cgroup id, as last accounted.
  CREATE TABLE forgotten (
    cgroup_id INTEGER PRIMARY KEY,
    ${counterColumns}
  );
  -- Which kernel counters the positions refer to, how far each tier is rolled up.
  CREATE TABLE state (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
`;

/** Version 2: a view that names each row, for people reading the file with sqlite3. */
const VERSION_2 = `
  CREATE VIEW traffic_named AS
    SELECT t.tier, t.bucket, datetime(t.bucket, 'unixepoch') AS bucket_utc,
           w.cgroup, w.unit, w.container, w.command, w.uid,
           ${HISTORY_COUNTERS.map((name) => `t.${name}`).join(', ')},
           t.tcp_send_bytes + t.tcp_recv_bytes + t.udp_send_bytes + t.udp_recv_bytes AS total_bytes, t.pids
    FROM traffic t JOIN workloads w ON w.id = t.workload;
`;

/**
 * Version 3: per-peer rows (the daemon runs with --peers), in the second and
 * third tiers (10 minutes and an hour by default), and the positions of each
 * process's peer rows.
 */
const VERSION_3 = `
  -- One row per workload and peer per bucket: workload 0, peer '' is "other".
  CREATE TABLE peer_traffic (
    tier INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    workload INTEGER NOT NULL REFERENCES workloads (id),
    peer TEXT NOT NULL,         -- the peer's address; "(unknown)" when the kernel could not see it, "(overflow)" for a process's pairs past the map
    port INTEGER NOT NULL,      -- the peer's port for a client, the local port for a service (0: neither kept)
    ${counterColumns},
    PRIMARY KEY (tier, bucket, workload, peer, port)
  ) WITHOUT ROWID;
  CREATE TABLE peer_positions (
    key TEXT PRIMARY KEY,       -- "tgid:start ns:" and the kernel's key: address (hex)/remote port/local port
    ${counterColumns}
  ) WITHOUT ROWID;
`;

/**
 * Version 4: the rows of one workload in time order, so that a series reads
 * only its own, and whether a workload still has rows is a look-up.
 */
const VERSION_4 = `
  CREATE INDEX traffic_by_workload ON traffic (tier, workload, bucket);
  CREATE INDEX peer_traffic_by_workload ON peer_traffic (workload);
`;

/**
 * Version 5: the names of a workload's container (daemon/naming/): its name,
 * and for a Kubernetes pod's its pod and namespace; in the view too.
 */
const VERSION_5 = `
  ALTER TABLE workloads ADD COLUMN container_name TEXT;  -- the runtime's name for it ("POD" for a pod's sandbox)
  ALTER TABLE workloads ADD COLUMN pod TEXT;             -- Kubernetes: its pod's name…
  ALTER TABLE workloads ADD COLUMN namespace TEXT;       -- …and namespace
  DROP VIEW traffic_named;
  CREATE VIEW traffic_named AS
    SELECT t.tier, t.bucket, datetime(t.bucket, 'unixepoch') AS bucket_utc,
           w.cgroup, w.unit, w.container, w.container_name, w.pod, w.namespace, w.command, w.uid,
           ${HISTORY_COUNTERS.map((name) => `t.${name}`).join(', ')},
           t.tcp_send_bytes + t.tcp_recv_bytes + t.udp_send_bytes + t.udp_recv_bytes AS total_bytes, t.pids
    FROM traffic t JOIN workloads w ON w.id = t.workload;
`;

/** MIGRATIONS[n] takes a file from version n to n + 1 (version 0: an empty file). */
export const MIGRATIONS: readonly string[] = [VERSION_1, VERSION_2, VERSION_3, VERSION_4, VERSION_5];
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings an empty file or one of an older version up to SCHEMA_VERSION; throws for a newer one. */
export function migrate(db: DatabaseSync, to = SCHEMA_VERSION): void {
  const version = Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  if (version > SCHEMA_VERSION) throw new Error(`its schema is version ${version}, newer than this daemon's ${SCHEMA_VERSION}`);
  for (let from = version; from < to; from++) {
    db.exec('BEGIN IMMEDIATE');
    try {
      db.exec(MIGRATIONS[from]!);
      db.exec(`PRAGMA user_version = ${from + 1}`);
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  }
}
