// The exits kept for clients: in exit order for answers, forgotten per user
// at the cost of what is forgotten, never of what a user's client holds.
import { expect, test } from 'vitest';
import { ExitedEntries } from '../daemon/accounting/exited-entries.js';
import type { ServedExits } from '../protocol/netatop-server.js';

interface Entry {
  exit: { seq: number; atMs: number; uid: number } | null;
  name: string;
}

function kept(): { exits: ExitedEntries<Entry>; add: (uid: number, name?: string) => Entry; requeue: (entry: Entry) => void } {
  const exits = new ExitedEntries<Entry>();
  let seq = 0;
  return {
    exits,
    add: (uid, name = '') => {
      const entry = { exit: { seq: ++seq, atMs: 0, uid }, name };
      exits.add(entry);
      return entry;
    },
    requeue: (entry) => {
      entry.exit!.seq = ++seq;
      exits.moved(entry);
    },
  };
}

const NOBODY = 65534;
const heldByNobody = (seq: number): ServedExits => ({ all: null, byUid: new Map([[NOBODY, seq]]) });

test("100,000 exits held by one user's idle client: others' are forgotten, each call looks at a handful of entries", () => {
  const { exits, add } = kept();
  for (let i = 0; i < 100_000; i++) add(NOBODY);
  for (let i = 0; i < 10; i++) add(0);
  let looked = 0;
  const forgotten: Entry[] = [];
  const forget = (): number =>
    exits.forgetServed(heldByNobody(0), 1000, 0, { maxKept: 1_000_000, maxPerUser: 1_000_000 }, () => (looked++, true), (entry) => forgotten.push(entry));
  expect(forget()).toBe(0);
  expect(forgotten.map((e) => e.exit!.uid)).toEqual(new Array(10).fill(0));
  expect(looked).toBe(10);
  looked = 0;
  for (let call = 0; call < 1000; call++) forget(); // a connection, an answer, a disconnect each
  expect(looked).toBe(0);
  expect(exits.size).toBe(100_000);
  // Its client served them all (or gone): forgotten.
  exits.forgetServed({ all: null, byUid: new Map() }, 1000, 0, { maxKept: 1_000_000, maxPerUser: 1_000_000 }, () => true, (entry) => forgotten.push(entry));
  expect(exits.size).toBe(0);
  expect(forgotten).toHaveLength(100_010);
});

test('forgotten exits leave nothing behind: a million exits through a queue keep its arrays small', () => {
  const { exits, add } = kept();
  const internals = exits as unknown as { bySeq: { refs: unknown[] }; byUid: Map<number, { refs: unknown[] }> };
  for (let i = 0; i < 1_000_000; i++) {
    add(i % 3);
    if (i % 1000 === 999) exits.forgetServed({ all: null, byUid: new Map() }, 1000, 0, { maxKept: 1_000_000, maxPerUser: 1_000_000 }, () => true, () => {});
  }
  expect(exits.size).toBe(0);
  expect(internals.bySeq.refs.length).toBeLessThan(3000);
  expect(internals.byUid.size).toBe(0);
});

test('answers get the exits after a seq, in order; an exit served again moves to the end; one taken back is gone', () => {
  const { exits, add, requeue } = kept();
  const [a, b, c] = [add(0, 'a'), add(0, 'b'), add(NOBODY, 'c')];
  expect(exits.after(0).map((e) => e.name)).toEqual(['a', 'b', 'c']);
  requeue(a);
  expect(exits.after(0).map((e) => e.name)).toEqual(['b', 'c', 'a']);
  expect(exits.after(c.exit!.seq).map((e) => e.name)).toEqual(['a']);
  b.exit = null;
  exits.removed(0);
  expect(exits.after(0).map((e) => e.name)).toEqual(['c', 'a']);
  expect(exits.size).toBe(2);
});

test('retention, a slot not read for the last time, and a client behind hold an exit; past maxKept the oldest go, owed or not', () => {
  const { exits, add } = kept();
  const entries = [add(0, 'old'), add(0, 'slot'), add(0, 'young')];
  entries[2]!.exit!.atMs = 900;
  const forgotten: string[] = [];
  const forget = (entry: Entry): number => forgotten.push(entry.name);
  exits.forgetServed({ all: null, byUid: new Map() }, 1000, 500, { maxKept: 100, maxPerUser: 100 }, (e) => e.name !== 'slot', forget);
  expect(forgotten).toEqual(['old']); // 'slot' holds the rest of its user's queue
  exits.forgetServed({ all: 0, byUid: new Map() }, 2000, 500, { maxKept: 1, maxPerUser: 100 }, () => true, forget);
  expect(forgotten).toEqual(['old', 'slot']); // owed to a client at 0, but one kept at most
  expect(exits.size).toBe(1);
});

test("a user's held exits beyond maxPerUser go, oldest first, its own only; root's are not capped", () => {
  const { exits, add } = kept();
  for (let i = 0; i < 30; i++) add(NOBODY, `n${i}`);
  for (let i = 0; i < 30; i++) add(0, `r${i}`);
  const forgotten: string[] = [];
  const held: ServedExits = { all: 0, byUid: new Map([[NOBODY, 0]]) }; // root's and nobody's clients served nothing
  const dropped = exits.forgetServed(held, 1000, 0, { maxKept: 1000, maxPerUser: 20 }, () => true, (e) => forgotten.push(e.name));
  expect(dropped).toBe(10);
  expect(forgotten).toEqual(Array.from({ length: 10 }, (_, i) => `n${i}`));
  expect(exits.size).toBe(50);
});

test('past maxKept the oldest go in order, however many stale references lie before them', () => {
  const { exits, add } = kept();
  for (let i = 0; i < 2000; i++) add(1, `a${i}`);
  for (let i = 0; i < 3000; i++) add(2, `b${i}`);
  const heldFor2: ServedExits = { all: null, byUid: new Map([[2, 0]]) };
  exits.forgetServed(heldFor2, 1000, 0, { maxKept: 1_000_000, maxPerUser: 1_000_000 }, () => true, () => {}); // uid 1's go
  expect(exits.forgetServed(heldFor2, 1000, 0, { maxKept: 1000, maxPerUser: 1_000_000 }, () => true, () => {})).toBe(2000);
  expect(exits.after(0).map((e) => e.name)).toEqual(Array.from({ length: 1000 }, (_, i) => `b${i + 2000}`));
  expect(exits.size).toBe(1000);
});
