// A local user asking history its costliest questions as fast as it can:
// 32 connections of nobody, each asking for 12 hours of 1-minute steps over
// a file of 100 workloads a minute (its own: the user's rows are read, not
// skipped). Its share of the daemon's time bounds what the answers cost
// (protocol/time-budget.ts); root's atop and API answers stay prompt and
// exact; the daemon's flushes go on. The figures are printed.
import path from 'node:path';
import { expect, test } from 'vitest';
import { apiGet } from './helpers/api-client.js';
import { Attacker } from './helpers/attacker.js';
import { TestDaemon } from './helpers/daemon.js';
import { NOBODY_UID, scratchDir } from './helpers/fixtures.js';
import { filledHistoryFile } from './helpers/history.js';
import { describeWithBpf } from './helpers/requirements.js';
import { rootServedMs } from './helpers/root-served.js';
import { TrafficChild } from './helpers/traffic.js';

const ATTACK_SECONDS = 6;
const COSTLY_PATH = '/v1/history?from=-12h&step=1m&by=workload&limit=100';

type RequestsReport = Record<string, number> & { retryAfter: number[]; errors: string[] };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeWithBpf('a local user asking history its costliest questions (real daemon, a filled file)', () => {
  test('its share of the daemon bounds what they cost; root is served promptly and exactly; history goes on', async () => {
    const file = path.join(scratchDir('history'), 'history.db');
    filledHistoryFile(file, 12, 100, NOBODY_UID);
    const daemon = await TestDaemon.start(['--history-file', file, '--history-tiers', '1m:48h,10m:31d', '--client-time-ms-per-second', '100', '--client-time-burst-ms', '500']);
    const witness = await TrafficChild.start('basic');
    try {
      // One answer's cost, as root (never charged).
      const started = performance.now();
      const one = await apiGet(daemon.apiSocketPath, COSTLY_PATH + '&uid=' + NOBODY_UID);
      const oneMs = performance.now() - started;
      expect(one.status).toBe(200);
      expect(one.body.groups).toHaveLength(100);
      expect(one.body.steps).toBeGreaterThanOrEqual(720);
      const cpuBefore = daemon.cpuSeconds();
      const attackStart = performance.now();
      const attacker = Attacker.start<RequestsReport>('requests', daemon.apiSocketPath, '32', String(ATTACK_SECONDS), COSTLY_PATH);
      const rootMs: number[] = [];
      await sleep(500);
      while (performance.now() - attackStart < (ATTACK_SECONDS - 0.5) * 1000) {
        rootMs.push(await rootServedMs(daemon, witness));
        await sleep(200);
      }
      const report = (await attacker).report;
      await (await attacker).stop();
      const seconds = (performance.now() - attackStart) / 1000;
      const cpu = (daemon.cpuSeconds() - cpuBefore) / seconds;
      console.log(
        `nobody asking 12 h at 1-minute steps (${oneMs.toFixed(0)} ms an answer) on 32 connections for ${ATTACK_SECONDS} s: ${report[200] ?? 0} answers, ${report[429] ?? 0} 429s; ` +
          `daemon CPU ${(cpu * 100).toFixed(0)}%; root served within ${Math.max(...rootMs).toFixed(0)} ms`,
      );
      expect(report[200]).toBeGreaterThan(0);
      expect(report[429]).toBeGreaterThan(0);
      expect(Object.keys(report).filter((outcome) => !['200', '429', 'retryAfter', 'errors'].includes(outcome))).toEqual([]);
      expect(Math.max(...rootMs)).toBeLessThan(1000);
      expect(daemon.running).toBe(true);
      const stats = (await apiGet(daemon.apiSocketPath, '/v1/stats')).body;
      expect(stats.history.state).toBe('writing');
    } finally {
      await witness.finish();
      expect(await daemon.stop()).toBe(0);
    }
  });
});
