// Per-thread counters (opt-in): each thread of a real multi-threaded process
// is exact, exited threads keep their final counters, the threads add up to
// the process, and without the setting the API says there are none.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { apiGet } from './helpers/api-client.js';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const WORKERS = 6;

interface ThreadRow {
  tid: number;
  command: string;
  state: 'live' | 'exited';
  counters: { udp: { send: { calls: number; bytes: number } } };
}

const udpSend = (calls: number, bytes: number) => ({ udp: { send: { calls, bytes }, recv: { calls: 0, bytes: 0 } } });

const CONFIGURATIONS: Array<[string, string[]]> = [
  ['each thread in its slot', ['--threads']],
  // Two slots for the whole machine: nearly every thread is counted in the overflow hash.
  ['threads whose slot is taken', ['--threads', '--thread-capacity', '2', '--thread-overflow-capacity', '4096']],
];

for (const [name, threadArgs] of CONFIGURATIONS) describeWithBpf(`per-thread counters, ${name} (real daemon, real threads)`, () => {
  let daemon: TestDaemon;
  let child: TrafficChild;
  /** Each worker as the fixture printed it: tid, name, and whether it has exited. */
  let workers: Array<{ tid: number; name: string; state: string }>;
  beforeAll(async () => {
    daemon = await TestDaemon.start([...threadArgs, '--exited-retention-ms', '60000']);
    child = await TrafficChild.start('threads', String(WORKERS));
    workers = child.announced.map((line) => {
      const [tid, name, state] = line.split(' ');
      return { tid: Number(tid), name: name!, state: state! };
    });
  });
  afterAll(async () => {
    await child?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  /** The process's threads once every exited worker shows as exited (its exit tracepoint follows pthread_join). */
  async function settledThreads(): Promise<{ process: any; threads: ThreadRow[] }> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`);
      expect(status).toBe(200);
      const exited = (body.threads as ThreadRow[]).filter((t) => t.state === 'exited').length;
      if (exited === WORKERS / 2 || Date.now() > deadline) return { process: body, threads: body.threads };
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  test('every thread exact: the main thread and each worker, live and exited, by name', async () => {
    const { threads } = await settledThreads();
    expect(threads.map((t) => t.tid).sort((a, b) => a - b)).toEqual([child.pid, ...workers.map((w) => w.tid)].sort((a, b) => a - b));
    const main = threads.find((t) => t.tid === child.pid)!;
    expect(main).toMatchObject({ command: 'traffic', state: 'live', counters: udpSend(1, 10) });
    workers.forEach((worker, i) => {
      const row = threads.find((t) => t.tid === worker.tid)!;
      expect(row, worker.name).toMatchObject({ command: worker.name, state: worker.state, counters: udpSend(i + 1, 100 * (i + 1)) });
    });
  });

  test('the threads add up to the process', async () => {
    const { process, threads } = await settledThreads();
    const calls = threads.reduce((sum, t) => sum + t.counters.udp.send.calls, 0);
    const bytes = threads.reduce((sum, t) => sum + t.counters.udp.send.bytes, 0);
    const workerCalls = (WORKERS * (WORKERS + 1)) / 2;
    expect({ calls, bytes }).toEqual({ calls: 1 + workerCalls, bytes: 10 + 100 * workerCalls });
    expect(process.counters.udp.send).toEqual({ calls, bytes });
  });

  test('exited threads are read and deleted from the kernel map (stats count what is kept)', async () => {
    await settledThreads();
    const { body } = await apiGet(daemon.apiSocketPath, '/v1/stats');
    expect(body.threads.exitedKept).toBeGreaterThanOrEqual(WORKERS / 2);
    expect(body.kernel.threadsExited).toBeGreaterThanOrEqual(WORKERS / 2);
    expect(body.kernel.threadsFull).toBe(0);
  });
});

describeWithBpf('per-thread counters off (the default)', () => {
  let daemon: TestDaemon;
  let child: TrafficChild;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
    child = await TrafficChild.start('threads', '2');
  });
  afterAll(async () => {
    await child?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('the process is exact and its threads are null (not counted), not an empty list', async () => {
    const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${child.pid}`);
    expect(status).toBe(200);
    expect(body.counters.udp.send).toEqual({ calls: 4, bytes: 310 });
    expect(body.threads).toBeNull();
  });
});
