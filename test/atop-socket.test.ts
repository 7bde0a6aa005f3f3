// The real daemon serving atop's socket: exact counters on the wire, answers
// of thousands of records read exactly as atop reads them, exited processes
// delivered to every client, and clients that misbehave.
import fs from 'node:fs';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { AtopConnection, requestOnce } from './helpers/atop-reader.js';
import { hangUpMidAnswer, readLikeAtop } from './helpers/atop-c-client.js';
import { TestDaemon } from './helpers/daemon.js';
import { BASIC_SCENARIO, wireCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

const BASIC_ON_WIRE = wireCounters(BASIC_SCENARIO);
const MANY = 5000;

function startSeconds(pid: number): number {
  // Field 22 of /proc/PID/stat: start time in clock ticks (100 per second) after boot.
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))![1]);
  return btime + Math.floor(ticks / 100);
}

describeWithBpf('atop socket (real daemon, real BPF)', () => {
  let daemon: TestDaemon;
  beforeAll(async () => {
    // Retention 0: only the per-client delivery rule keeps exited processes.
    daemon = await TestDaemon.start(['--exited-retention-ms', '0']);
  });
  afterAll(async () => {
    if (daemon?.running) expect(await daemon.stop()).toBe(0);
  });

  test('a process: exact counters, its command and start time; after its exit, its final counters', async () => {
    const child = await TrafficChild.start('basic');
    // As atop does, a request right after connecting: the daemon closes a connection that sends none (requestTimeoutMs).
    const atop = await AtopConnection.connect(daemon.socketPath);
    const started = startSeconds(child.pid);
    const record = (await atop.request()).get(child.pid)!;
    expect(record.counters).toEqual(BASIC_ON_WIRE);
    expect(record.command).toBe('traffic');
    expect(record.btime).toBe(started);

    await child.finish();
    expect((await atop.request()).get(child.pid)?.counters).toEqual(BASIC_ON_WIRE);
    atop.close();
  });

  test('two clients both receive the final counters of every process that exited between their requests', async () => {
    const first = await AtopConnection.connect(daemon.socketPath);
    const second = await AtopConnection.connect(daemon.socketPath);
    await first.request();
    await second.request();

    const children = await Promise.all([1, 2, 3].map(() => TrafficChild.start('basic')));
    await Promise.all(children.map((c) => c.finish()));

    const firstAnswer = await first.request();
    const secondAnswer = await second.request(); // after the first client was served them
    for (const child of children) {
      expect(firstAnswer.get(child.pid)?.counters).toEqual(BASIC_ON_WIRE);
      expect(secondAnswer.get(child.pid)?.counters).toEqual(BASIC_ON_WIRE);
    }
    // Served to every client: once their slots have settled (10 ms) and been
    // freed, later answers, even a new client's, no longer carry them.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await first.request();
    const later = [await first.request(), await second.request(), await requestOnce(daemon.socketPath)];
    for (const answer of later) for (const child of children) expect(answer.has(child.pid)).toBe(false);
    first.close();
    second.close();
  });

  test(`${MANY} processes: atop's way of reading gets every record whole, with its exact counters`, async () => {
    const spawner = await TrafficChild.start('spawn', String(MANY));
    try {
      // traffic.c prints each child's pid; child i sent one UDP datagram of i+1 bytes.
      const childPids = spawner.announced.map(Number);
      expect(childPids).toHaveLength(MANY);

      const answer = await readLikeAtop(daemon.socketPath);
      expect(answer.shortReads).toBe(0);
      expect(answer.records).toBeGreaterThanOrEqual(MANY);
      childPids.forEach((pid, i) => {
        expect(answer.byPid.get(pid), `child ${i} (pid ${pid})`).toEqual([0, 0, 0, 0, 1, i + 1, 0, 0]);
      });

      // A client that hangs up in the middle of this large answer does not
      // disturb the daemon: the next client gets a whole answer.
      expect(await hangUpMidAnswer(daemon.socketPath)).toBe('hung up after 1 record');
      const after = await readLikeAtop(daemon.socketPath);
      expect(after.shortReads).toBe(0);
      expect(after.records).toBeGreaterThanOrEqual(MANY);
      expect(daemon.running).toBe(true);
    } finally {
      await spawner.finish();
    }
  });

  test('clients sending garbage, partial requests and floods do not stop the others', async () => {
    const net = await import('node:net');
    const send = (bytes: Buffer): Promise<void> =>
      new Promise((resolve) => {
        const socket = net.connect(daemon.socketPath, () => {
          socket.end(bytes);
        });
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.resume();
      });
    await send(Buffer.from('not a request'));
    await send(Buffer.alloc(95, 0xff));
    await send(Buffer.alloc(96 * 2000, 0xab)); // more requests than a client may queue
    const child = await TrafficChild.start('basic');
    expect((await requestOnce(daemon.socketPath)).get(child.pid)?.counters).toEqual(BASIC_ON_WIRE);
    await child.finish();
    expect(daemon.running).toBe(true);
  });
});
