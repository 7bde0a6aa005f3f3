// netacct top in a real terminal (tmux): it shows the process making traffic
// with its rate, switches view (processes, cgroups, peers) and sort on keys,
// and restores the terminal when it quits.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { NETACCT, TestDaemon } from './helpers/daemon.js';
import { fixture } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });

describeWithBpf('netacct top (real daemon, real terminal)', () => {
  test('live rates, keys to switch view and sort, q restores the terminal', async () => {
    const daemon = await TestDaemon.start(['--peers']);
    const load = spawn(fixture('traffic'), ['rate', '20000', '20'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const session = `netacct-top-${process.pid}`;
    try {
      // remain-on-exit before top starts, so that whatever it prints stays visible.
      tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '30', 'sleep 600');
      tmux('set-option', '-t', session, 'remain-on-exit', 'on');
      const exitFile = `${path.dirname(daemon.apiSocketPath)}/top-exit-code`;
      tmux('respawn-pane', '-k', '-t', session, `sh -c '${NETACCT} top --api-socket ${daemon.apiSocketPath}; echo $? > ${exitFile}'`);
      const alternateScreen = (): string => tmux('display-message', '-p', '-t', session, '#{alternate_on}').trim();
      const screen = (): string => tmux('capture-pane', '-p', '-t', session);
      const waitFor = async (pattern: RegExp): Promise<string> => {
        for (let i = 0; i < 40; i++) {
          const text = screen();
          if (pattern.test(text)) return text;
          await sleep(250);
        }
        throw new Error(`the screen never showed ${pattern}:\n${screen()}`);
      };

      await waitFor(/netacct top — processes by tcp\.send\.bytes rate/);
      // After two refreshes the traffic process has a rate (about 640 KB/s each way).
      const withRate = await waitFor(new RegExp(`\\b${load.pid}\\s+traffic\\s+-\\s+\\d+(\\.\\d)?K/s`)); // in no container: "-"
      expect(withRate).toMatch(/PID\s+COMMAND\s+CONTAINER\s+TCP SEND\s+TCP RECV\s+UDP SEND\s+UDP RECV/);

      tmux('send-keys', '-t', session, 'c');
      await waitFor(/netacct top — cgroups by tcp\.send\.bytes total/);
      tmux('send-keys', '-t', session, 's');
      await waitFor(/cgroups by tcp\.recv\.bytes total/);
      tmux('send-keys', '-t', session, 'r');
      await waitFor(/tcp\.recv\.bytes total ↑/);
      // The peers: the traffic process's loopback connection (both ports ephemeral: both kept), largest first.
      tmux('send-keys', '-t', session, 'p', 'r');
      const peers = await waitFor(new RegExp(`\\b${load.pid}\\s+traffic\\s+127\\.0\\.0\\.1:\\d+\\s+\\d+\\s+\\d`));
      expect(peers).toMatch(/peers by tcp\.recv\.bytes total ↓/);
      expect(peers).toMatch(/PID\s+COMMAND\s+PEER\s+LOCAL\s+TCP SEND\s+TCP RECV/);

      expect(alternateScreen()).toBe('1'); // top draws on the alternate screen
      tmux('send-keys', '-t', session, 'q');
      for (let i = 0; i < 40 && !fs.existsSync(exitFile); i++) await sleep(100);
      expect(fs.readFileSync(exitFile, 'utf8').trim(), screen()).toBe('0');
      expect(alternateScreen()).toBe('0'); // the terminal is back on its main screen
    } finally {
      execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' });
      load.kill();
      await daemon.stop();
    }
  });
});
