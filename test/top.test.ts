// netacct top in a real terminal (tmux): it shows the process making traffic
// with its rate, switches view and sort on keys, and restores the terminal
// when it quits.
import { execFileSync } from 'node:child_process';
import { spawn } from 'node:child_process';
import { expect, test } from 'vitest';
import { NETACCT, TestDaemon } from './helpers/daemon.js';
import { fixture } from './helpers/fixtures.js';
import { describeWithBpf } from './helpers/requirements.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });

describeWithBpf('netacct top (real daemon, real terminal)', () => {
  test('live rates, keys to switch view and sort, q restores the terminal', async () => {
    const daemon = await TestDaemon.start();
    const load = spawn(fixture('traffic'), ['rate', '20000', '20'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const session = `netacct-top-${process.pid}`;
    try {
      tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '30', `${NETACCT} top --api-socket ${daemon.apiSocketPath}`);
      tmux('set-option', '-t', session, 'remain-on-exit', 'on');
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
      const withRate = await waitFor(new RegExp(`\\b${load.pid}\\s+traffic\\s+\\d+(\\.\\d)?K/s`));
      expect(withRate).toMatch(/PID\s+COMMAND\s+TCP SEND\s+TCP RECV\s+UDP SEND\s+UDP RECV/);

      tmux('send-keys', '-t', session, 'c');
      await waitFor(/netacct top — cgroups by tcp\.send\.bytes total/);
      tmux('send-keys', '-t', session, 's');
      await waitFor(/cgroups by tcp\.recv\.bytes total/);
      tmux('send-keys', '-t', session, 'r');
      await waitFor(/tcp\.recv\.bytes total ↑/);

      tmux('send-keys', '-t', session, 'q');
      const paneDead = (): boolean => tmux('display-message', '-p', '-t', session, '#{pane_dead}').trim() === '1';
      for (let i = 0; i < 40 && !paneDead(); i++) await sleep(100);
      expect(paneDead()).toBe(true);
      expect(tmux('display-message', '-p', '-t', session, '#{pane_dead_status}').trim()).toBe('0');
      expect(screen()).not.toContain('netacct top'); // back on the main screen
    } finally {
      execFileSync('tmux', ['kill-session', '-t', session], { stdio: 'ignore' });
      load.kill();
      await daemon.stop();
    }
  });
});
