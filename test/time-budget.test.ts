// Each non-root owner's share of the daemon's time (protocol/time-budget.ts),
// on a clock the test moves: what is charged, when it may go again, root
// never charged, and the owners it tracks bounded.
import { expect, test } from 'vitest';
import { TimeBudgets } from '../protocol/time-budget.js';

const alice = { key: 'uid 1000', root: false };
const bob = { key: 'uid 1001', root: false };
const root = { key: 'uid 0', root: true };

function budgets(msPerSecond: number, burstMs: number) {
  const clock = { ms: 0 };
  return { clock, budgets: new TimeBudgets({ msPerSecond, burstMs }, () => clock.ms) };
}

test('an owner may spend its burst at once, then waits as long as it takes to earn back what it owes', () => {
  const { clock, budgets: b } = budgets(100, 500);
  expect(b.waitMs(alice)).toBe(0);
  b.charge(alice, 400);
  expect(b.waitMs(alice)).toBe(0); // 100 ms left
  b.charge(alice, 300); // 200 owed: 2 s at 100 ms a second
  expect(b.waitMs(alice)).toBe(2000);
  clock.ms += 1500;
  expect(b.waitMs(alice)).toBe(500);
  clock.ms += 500;
  expect(b.waitMs(alice)).toBe(0);
  expect(b.waitMs(bob)).toBe(0); // owners are apart
});

test('what an owner saves up stops at the burst', () => {
  const { clock, budgets: b } = budgets(100, 500);
  b.charge(alice, 100);
  clock.ms += 3_600_000; // an hour idle earns no more than the burst
  b.charge(alice, 501);
  expect(b.waitMs(alice)).toBe(10);
});

test('timed() charges the time its work took, also when it throws', () => {
  const { clock, budgets: b } = budgets(100, 500);
  expect(b.timed(alice, () => ((clock.ms += 600), 'built'))).toBe('built');
  expect(b.waitMs(alice)).toBe(1000);
  expect(() =>
    b.timed(bob, () => {
      clock.ms += 700;
      throw new Error('failed');
    }),
  ).toThrow('failed');
  expect(b.waitMs(bob)).toBe(2000);
});

test('root is never charged and never waits', () => {
  const { budgets: b } = budgets(1, 10);
  b.charge(root, 1_000_000);
  expect(b.waitMs(root)).toBe(0);
});

test('a new limit applies to what is owed at once (SIGHUP)', () => {
  const { budgets: b } = budgets(100, 500);
  b.charge(alice, 700);
  expect(b.waitMs(alice)).toBe(2000);
  b.limits = { msPerSecond: 400, burstMs: 500 };
  expect(b.waitMs(alice)).toBe(500);
});

test('owners by the thousand (TCP addresses): 1024 tracked; while all of them owe time, newcomers share one balance', () => {
  const { clock, budgets: b } = budgets(1, 10);
  const address = (i: number) => ({ key: `10.0.${i >> 8}.${i & 255}`, root: false });
  for (let i = 0; i < 5000; i++) {
    b.charge(address(i), 20);
    clock.ms += 1;
  }
  // The first 1024 have their own balances; the other 3976 all paid from the pool: it owes 3976 × 20 ms less what it earned.
  const owing = Array.from({ length: 5000 }, (_, i) => i).filter((i) => b.waitMs(address(i)) > 0);
  expect(owing.length).toBe(5000); // no address got a fresh share
  expect(b.waitMs(address(4999))).toBeGreaterThan(50_000);
  expect(b.waitMs({ key: 'a newcomer', root: false })).toBe(b.waitMs(address(4999)));
  // Once a tracked owner's balance is full again, it is dropped and a newcomer has its own.
  clock.ms += 60_000;
  expect(b.waitMs({ key: 'later', root: false })).toBe(0);
  b.charge({ key: 'later', root: false }, 5);
  expect(b.waitMs({ key: 'later', root: false })).toBe(0); // its own balance (10 - 5), not the pool's debt
});
