// A loaded host, made on purpose: busy loops on every CPU and one more, at the
// daemon's own priority, for as long as a test runs. Bugs that hide on an
// idle machine (a daemon that gets its CPU late judging clients by input it
// has not read yet) show at once under it.
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { stopAtFileEnd } from './leftovers.js';

export async function withBusyCpus<T>(run: () => Promise<T>): Promise<T> {
  const loops: ChildProcess[] = Array.from({ length: os.availableParallelism() + 1 }, () => spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  const stop = () => {
    for (const loop of loops) loop.kill('SIGKILL');
  };
  const forget = stopAtFileEnd(stop);
  try {
    return await run();
  } finally {
    stop();
    forget();
  }
}
