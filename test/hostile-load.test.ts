// A local user that asks for costly answers as fast as it can, on the API and
// the atop socket at once (issue "Trust"): each answer over its 3,000
// processes costs the daemon milliseconds. Its share of the daemon's time is
// bounded (protocol/time-budget.ts): the daemon's CPU is a fraction of what
// the same attack takes from a daemon with a share of the whole second, root's
// atop and API clients stay prompt and exact, and the user is told why its
// answers wait. The figures are printed.
import { expect, test } from 'vitest';
import WebSocket from 'ws';
import { apiGet } from './helpers/api-client.js';
import { Attacker } from './helpers/attacker.js';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { rootServedMs } from './helpers/root-served.js';
import { TrafficChild } from './helpers/traffic.js';

const SHARE_MS_PER_SECOND = 100;
const BURST_MS = 500;
const ATTACK_SECONDS = 6;
/** nobody's costliest question: all its processes, sorted. */
const COSTLY_PATH = '/v1/processes?sort=total.bytes&order=desc';

type RequestsReport = Record<string, number> & { retryAfter: number[]; errors: string[] };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeWithBpf('a local user asking for costly answers as fast as it can (real daemons)', () => {
  /** 32 API and 4 atop connections of nobody asking in loops for ATTACK_SECONDS against a daemon with `shareMsPerSecond`. */
  async function attack(shareMsPerSecond: number) {
    const daemon = await TestDaemon.start(['--client-time-ms-per-second', String(shareMsPerSecond), '--client-time-burst-ms', String(BURST_MS)]);
    // Started after the daemon, which counts them from their first traffic.
    const witness = await TrafficChild.start('basic');
    const nobodysProcesses = await TrafficChild.startAsNobody('spawn', '3000');
    try {
      expect((await apiGet(daemon.apiSocketPath, '/v1/processes?uid=65534&limit=1')).body.processes).toHaveLength(1); // the table holds them
      const cpuBefore = daemon.cpuSeconds();
      const started = performance.now();
      const api = Attacker.start<RequestsReport>('requests', daemon.apiSocketPath, '32', String(ATTACK_SECONDS), COSTLY_PATH);
      const atop = Attacker.start<{ answers: number }>('atop', daemon.socketPath, '4', String(ATTACK_SECONDS));
      const rootMs: number[] = [];
      await sleep(500); // the attack under way
      while (performance.now() - started < (ATTACK_SECONDS - 0.5) * 1000) {
        rootMs.push(await rootServedMs(daemon, witness));
        await sleep(200);
      }
      // The daemon's CPU over the attack's seconds (its last answers, still being paced, come after).
      await sleep(started + ATTACK_SECONDS * 1000 - performance.now());
      const seconds = (performance.now() - started) / 1000;
      const cpuSeconds = daemon.cpuSeconds() - cpuBefore;
      const [apiAttacker, atopAttacker] = await Promise.all([api, atop]);
      await Promise.all([apiAttacker.stop(), atopAttacker.stop()]);
      const { body: stats } = await apiGet(daemon.apiSocketPath, '/v1/stats');
      expect(daemon.running).toBe(true);
      return { seconds, cpuSeconds, rootMs: Math.max(...rootMs), api: apiAttacker.report, atop: atopAttacker.report, throttled: stats.limits.throttled as number, log: daemon.log };
    } finally {
      await nobodysProcesses.finish();
      await witness.finish();
      expect(await daemon.stop()).toBe(0);
    }
  }

  test(`with a share of ${SHARE_MS_PER_SECOND} ms a second the daemon takes under half the CPU the same attack takes without it; root is served promptly and exactly; nobody is told why`, async () => {
    const limited = await attack(SHARE_MS_PER_SECOND);
    const unlimited = await attack(1000);
    const describe = ({ seconds, cpuSeconds, rootMs, api, atop, throttled }: typeof limited) =>
      `daemon CPU ${((cpuSeconds / seconds) * 100).toFixed(0)}% over ${seconds.toFixed(1)} s, ${api[200] ?? 0} API answers, ${api[429] ?? 0} 429s, ${atop.answers} atop answers, ${throttled} throttled; root served within ${rootMs.toFixed(0)} ms`;
    console.log(`nobody asking for its 3,000 processes in loops, a share of ${SHARE_MS_PER_SECOND} ms/s: ${describe(limited)}`);
    console.log(`the same with a share of the whole second: ${describe(unlimited)}`);
    // The share bounds what nobody's answers cost; accepting, parsing, writing and the 429s are not charged (about a
    // fifth of a CPU here, printed above), so the bound is against the same attack with a share of the whole second.
    expect(limited.cpuSeconds).toBeLessThan(unlimited.cpuSeconds / 2);
    expect(limited.throttled).toBeGreaterThan(0);
    // nobody still had answers on both sockets, and was told why the others waited: no failed request.
    expect(limited.api[200]).toBeGreaterThan(0);
    expect(limited.atop.answers).toBeGreaterThan(0);
    expect(limited.atop.answers).toBeLessThan(unlimited.atop.answers / 2); // atop's answers waited for the share
    expect(Object.keys(limited.api).filter((outcome) => !['200', '429', 'retryAfter', 'errors'].includes(outcome))).toEqual([]);
    for (const seconds of limited.api.retryAfter) expect(seconds).toBeGreaterThanOrEqual(1);
    const tooMany = 'uid 65534 already has 2 answers in progress (the limit per user): retry after N s';
    const shareUsed = `uid 65534 used its share of the daemon's time (${SHARE_MS_PER_SECOND} ms a second): retry after N s`;
    expect(limited.api.errors).toContain(shareUsed);
    expect(limited.api.errors.filter((error) => error !== shareUsed && error !== tooMany)).toEqual([]);
    expect(unlimited.api.errors).toEqual([tooMany]); // with time enough, only its answers in progress are bounded
    expect(limited.log).toMatch(/used its share of the daemon's time/);
    // Root is never charged: prompt however hard nobody asks.
    expect(limited.rootMs).toBeLessThan(1000);
  });
});

describeWithBpf("a user whose share is spent: its stream's updates are skipped, root's are not (real daemon)", () => {
  test('with a share of 1 ms a second, nobody gets its first update of its 3,000 processes and then none; root gets one each interval', async () => {
    // 10 ms saved up at most: nobody's first update (its 3,000 rows) costs more, and the debt takes many seconds to repay.
    const daemon = await TestDaemon.start(['--client-time-ms-per-second', '1', '--client-time-burst-ms', '10']);
    const nobodysProcesses = await TrafficChild.startAsNobody('spawn', '3000');
    const ws = new WebSocket('ws+unix://' + daemon.apiSocketPath + ':/v1/stream');
    try {
      let rootUpdates = 0;
      ws.on('message', () => rootUpdates++);
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send(JSON.stringify({ view: 'processes', interval: 250, state: 'all' })); // every process: nobody's 3,000 and more
      const watcher = await Attacker.start<{ updates: number }>('watch', daemon.apiSocketPath, '3');
      const { body: stats } = await apiGet(daemon.apiSocketPath, '/v1/stats');
      console.log(`a share of 1 ms a second: nobody's stream had ${watcher.report.updates} updates in 3 s, root's ${rootUpdates}; ${stats.limits.throttled} throttled`);
      expect(watcher.report.updates).toBe(1);
      expect(rootUpdates).toBeGreaterThanOrEqual(6); // at least every other interval
      expect(stats.limits.throttled).toBeGreaterThanOrEqual(5);
      await watcher.stop();
    } finally {
      ws.terminate();
      await nobodysProcesses.finish();
      expect(await daemon.stop()).toBe(0);
    }
  });
});
