// Many processes that each send once and exit: every one accounted exactly
// (PIDs come back fast here: pid_max is 32768), and the daemon's table and
// memory shrink back once every client has been served them.
import { expect, test } from 'vitest';
import { AtopConnection, requestOnce } from './helpers/atop-reader.js';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const PROCESSES = 10_000;

describeWithBpf('short-lived processes (real daemon, real BPF)', () => {
  test(`${PROCESSES} processes that each send one datagram and exit are all accounted exactly`, async () => {
    const daemon = await TestDaemon.start(['--exited-retention-ms', '0']);
    try {
      const atop = await AtopConnection.connect(daemon.socketPath);
      await atop.request();
      const rssBefore = daemon.rssMiB();

      const burst = await TrafficChild.start('burst', String(PROCESSES));
      const pids = burst.announced.map(Number);
      await burst.finish();
      expect(pids).toHaveLength(PROCESSES);
      // A PID may come back within the burst: atop keeps the last record of a PID.
      const lastOfPid = new Map(pids.map((pid, i) => [pid, i]));

      const answer = await atop.request();
      const rssServed = daemon.rssMiB();
      for (const [pid, i] of lastOfPid) {
        expect(answer.get(pid)?.counters, `process ${i} (pid ${pid})`).toEqual([0, 0, 0, 0, 1, (i % 1000) + 1, 0, 0]);
      }

      // Served to the only client: once their slots are freed, they are forgotten.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await atop.request();
      const later = await requestOnce(daemon.socketPath);
      expect(pids.filter((pid) => later.has(pid) && later.get(pid)!.counters[4] === 1)).toEqual([]);
      const rssAfter = daemon.rssMiB();
      console.log(
        `${PROCESSES} short-lived processes: daemon RSS ${rssBefore.toFixed(1)} MiB before, ` +
          `${rssServed.toFixed(1)} MiB with all of them in one answer, ${rssAfter.toFixed(1)} MiB after they were forgotten`,
      );
      expect(rssAfter).toBeLessThan(rssBefore + 40);
      atop.close();
      expect(daemon.log).not.toMatch(/ (warn|error) /);
    } finally {
      await daemon.stop();
    }
  });
});
