// The history file with real SQLite (node:sqlite): each bucket bounded with
// `other` keeping its sums exact, a bucket written twice merged, coarser
// tiers summed once from the finer, retention per tier, the size bound
// (oldest fine rows first, never rows not yet summed), and the migration
// from schema version 1.
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, expect, test } from 'vitest';
import { HistoryStore, type NamedTraffic, type TierSetting, readRows } from '../daemon/history/history-store.js';
import { HISTORY_COUNTERS, SCHEMA_VERSION, migrate } from '../daemon/history/schema.js';
import { scratchDir } from './helpers/fixtures.js';

const dir = scratchDir('history-store');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const TIERS: TierSetting[] = [
  { bucketSeconds: 60, keepSeconds: 3600 },
  { bucketSeconds: 600, keepSeconds: 86_400 },
  { bucketSeconds: 3600, keepSeconds: 7 * 86_400 },
];

function openStore(options: { rowsPerBucket?: number; maxBytes?: number; file?: string } = {}): HistoryStore {
  const file = options.file ?? path.join(dir, `h${++files}.db`);
  return HistoryStore.open(file, { tiers: TIERS, peerTiers: [], rowsPerBucket: options.rowsPerBucket ?? 100, maxBytes: options.maxBytes ?? 1 << 30, readerGroup: null }, (message) => {
    throw new Error(`moved aside: ${message}`);
  });
}

/** A workload's traffic: `bytes` sent over TCP in one call. */
const traffic = (command: string, bytes: number): NamedTraffic => ({ cgroup: '/test.slice', unit: 'test.slice', container: null, containerName: null, pod: null, namespace: null, command, uid: 0, counters: [1, bytes, 0, 0, 0, 0, 0, 0], pids: [1] });

/** Writes `list` into base bucket `bucket`, the clock at `nowSeconds`. */
function write(store: HistoryStore, bucket: number, nowSeconds: number, list: NamedTraffic[]): void {
  store.write({ identity: 'test', bucket, nowSeconds, expire: true, traffic: list, changed: new Map(), removed: new Set(), replacePositions: false, forgottenBefore: new Map(), forgottenAfter: new Map(), peers: null });
}

/** The rows of a tier: bucket, command, bytes sent. */
function rows(store: HistoryStore, tier: number): Array<{ bucket: number; command: string; bytes: number }> {
  const statement = store.reader.prepare('SELECT bucket, command, tcp_send_bytes AS bytes FROM traffic_named WHERE tier = ? ORDER BY bucket, bytes DESC, command');
  return readRows(statement, tier).map(([bucket, command, bytes]) => ({ bucket: bucket as number, command: command as string, bytes: bytes as number }));
}

const T0 = 1_800_000_000 - (1_800_000_000 % 3600); // an hour's start

test('a bucket keeps its top workloads by bytes and sums the rest in `other`; written again (a restart), it is merged and bounded again', () => {
  const store = openStore({ rowsPerBucket: 2 });
  try {
    write(store, T0, T0 + 30, [traffic('a', 10), traffic('b', 40), traffic('c', 20), traffic('d', 30)]);
    expect(rows(store, 60)).toEqual([
      { bucket: T0, command: 'b', bytes: 40 },
      { bucket: T0, command: '(other)', bytes: 30 }, // a + c (ties in command order)
      { bucket: T0, command: 'd', bytes: 30 },
    ]);
    write(store, T0, T0 + 50, [traffic('a', 25), traffic('e', 5)]);
    // a's first 10 are in `other` already: its 25 now rank below d's 30, and join them; the sum stays exact (130).
    expect(rows(store, 60)).toEqual([
      { bucket: T0, command: '(other)', bytes: 60 },
      { bucket: T0, command: 'b', bytes: 40 },
      { bucket: T0, command: 'd', bytes: 30 },
    ]);
  } finally {
    store.close();
  }
});

test('a coarser tier is summed from the finer once each of its buckets ends, and never twice; what ages out goes', () => {
  const store = openStore({ rowsPerBucket: 3 });
  try {
    // 25 minutes: one row a minute for 'a', one every other minute for 'b'.
    for (let minute = 0; minute < 25; minute++) {
      const list = [traffic('a', 1 + minute)];
      if (minute % 2 === 0) list.push(traffic('b', 100));
      write(store, T0 + minute * 60, T0 + minute * 60 + 60, list);
    }
    const sumOf = (tier: number, from: number, to: number, command: string): number =>
      rows(store, tier).filter((row) => row.bucket >= from && row.bucket < to && row.command === command).reduce((sum, row) => sum + row.bytes, 0);
    // Two 10-minute buckets have ended; the third (minutes 20-24) has not: not summed yet.
    expect(rows(store, 600).map((row) => row.bucket)).toEqual([T0, T0, T0 + 600, T0 + 600]);
    for (const start of [T0, T0 + 600]) {
      for (const command of ['a', 'b']) expect(sumOf(600, start, start + 600, command)).toBe(sumOf(60, start, start + 600, command));
    }
    expect(sumOf(600, T0, T0 + 600, 'a')).toBe(55); // 1 + … + 10
    // Writing more (a flush after a restart, in a later minute) does not sum a bucket again.
    write(store, T0 + 25 * 60, T0 + 26 * 60, [traffic('a', 1)]);
    expect(sumOf(600, T0, T0 + 600, 'a')).toBe(55);
    // An hour and more later: the hour is summed from the 10-minute tier, and the minutes older than an hour are gone.
    write(store, T0 + 3600 + 30 * 60, T0 + 3600 + 31 * 60, [traffic('a', 1)]);
    expect(sumOf(3600, T0, T0 + 3600, 'a')).toBe(sumOf(600, T0, T0 + 3600, 'a'));
    expect(sumOf(3600, T0, T0 + 3600, 'b')).toBe(13 * 100);
    expect(rows(store, 60).every((row) => row.bucket >= T0 + 31 * 60 - 3600)).toBe(true);
  } finally {
    store.close();
  }
});

test('past its bound the file loses its oldest minutes first, only those already summed, and stays under the bound', () => {
  const maxBytes = 400 * 1024;
  const store = openStore({ rowsPerBucket: 300, maxBytes });
  try {
    // 300 workloads a minute for 59 minutes (an hour's minutes are kept): ~18,000 rows, about 600 KiB.
    for (let minute = 0; minute < 59; minute++) {
      const list = Array.from({ length: 300 }, (_, i) => traffic(`workload-with-a-long-name-${i}`, 1000 + i));
      write(store, T0 + minute * 60, T0 + minute * 60 + 60, list);
    }
    const summedBefore = rows(store, 600).reduce((sum, row) => sum + row.bytes, 0);
    const deleted = store.enforceBound();
    expect(deleted).toBeGreaterThan(0);
    expect(store.sizeBytes()).toBeLessThanOrEqual(maxBytes);
    const minutes = rows(store, 60).map((row) => row.bucket);
    // The oldest went first, and never beyond what the 10-minute tier holds (summed up to minute 50).
    expect(Math.min(...minutes)).toBeGreaterThan(T0);
    expect(minutes.includes(T0 + 58 * 60)).toBe(true);
    expect(rows(store, 600).reduce((sum, row) => sum + row.bytes, 0)).toBe(summedBefore);
  } finally {
    store.close();
  }
});

test('a file of schema version 1 is migrated, its rows kept; the file is 0640', () => {
  const file = path.join(dir, 'v1.db');
  const db = new DatabaseSync(file);
  db.exec(`PRAGMA application_id = ${0x4e414354}`);
  migrate(db, 1);
  db.exec(`INSERT INTO workloads (id, cgroup, command, uid, last_bucket) VALUES (7, '/old.service', 'old', 0, ${T0})`);
  db.prepare(`INSERT INTO traffic (tier, bucket, workload, ${HISTORY_COUNTERS.join(', ')}, pids) VALUES (60, ?, 7, 1, 500, 0, 0, 0, 0, 0, 0, '9')`).run(T0);
  db.close();
  const store = openStore({ file });
  try {
    expect(SCHEMA_VERSION).toBe(5);
    expect((store.reader.prepare('PRAGMA user_version').get() as { user_version: number }).user_version).toBe(5);
    expect(store.reader.prepare('SELECT count(*) AS n FROM peer_traffic').get()).toEqual({ n: 0 });
    // Version 5: the old workload has no container names; the view shows the new columns.
    expect(store.reader.prepare('SELECT container_name, pod, namespace, command, total_bytes FROM traffic_named').all()).toEqual([{ container_name: null, pod: null, namespace: null, command: 'old', total_bytes: 500 }]);
    expect(rows(store, 60)).toEqual([{ bucket: T0, command: 'old', bytes: 500 }]);
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('640');
  } finally {
    store.close();
  }
});

test('positions of processes started after 104 days of uptime (start times past 2^53 ns) and counters past 2^53 are written and read back', () => {
  const store = openStore();
  try {
    const key = '0:4242:9007199254740993123:77';
    const big = 2 ** 53 + 2;
    store.write({
      identity: 'test',
      bucket: T0,
      nowSeconds: T0 + 60,
      expire: true,
      traffic: [{ ...traffic('huge', big), counters: [1, big, 0, 0, 0, 0, 0, 0] }],
      changed: new Map([[key, { written: [1, big, 0, 0, 0, 0, 0, 0], settled: null }]]),
      removed: new Set(),
      replacePositions: false,
      forgottenBefore: new Map(),
      forgottenAfter: new Map([[0, [0, big, 0, 0, 0, 0, 0, 0]]]),
      peers: null,
    });
    const read = store.readPosition();
    expect(read.positions.get(key)?.written[1]).toBe(big);
    expect(read.forgotten.get(0)?.[1]).toBe(big);
    expect(rows(store, 60)).toEqual([{ bucket: T0, command: 'huge', bytes: big }]);
  } finally {
    store.close();
  }
});
