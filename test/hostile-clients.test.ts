// Clients that misbehave on the atop socket: garbage, partial and huge
// requests, floods, clients that never read or hang up mid-answer, and a
// thousand at once. The daemon stays up, keeps answering the others, and its
// memory stays bounded; the figures are printed.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { RECORD_SIZE } from '../protocol/netatop-record.js';
import { requestOnce } from './helpers/atop-reader.js';
import { TestDaemon } from './helpers/daemon.js';
import { asNobody, fixture } from './helpers/fixtures.js';
import { BASIC_SCENARIO, wireCounters } from './helpers/expected.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

function connect(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends `bytes`, reads whatever comes back until the daemon closes or `ms` pass. */
async function sendAndDrain(path: string, bytes: Buffer, ms = 2000): Promise<number> {
  const socket = await connect(path);
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  socket.on('error', () => {});
  socket.write(bytes);
  await new Promise((resolve) => {
    socket.once('close', resolve);
    setTimeout(resolve, ms);
  });
  socket.destroy();
  return received;
}

describeWithBpf('hostile clients on the atop socket (real daemon)', () => {
  let daemon: TestDaemon;
  let spawner: TrafficChild;
  let witness: TrafficChild;
  let rssStart: number;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
    spawner = await TrafficChild.start('spawn', '3000'); // answers of ~290 kB
    witness = await TrafficChild.start('basic');
    rssStart = daemon.rssMiB();
  });
  afterAll(async () => {
    await spawner?.finish();
    await witness?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  /** A well-behaved client still gets an exact answer. */
  async function othersStillServed(): Promise<void> {
    expect(daemon.running).toBe(true);
    expect((await requestOnce(daemon.socketPath)).get(witness.pid)?.counters).toEqual(wireCounters(BASIC_SCENARIO));
  }

  test('random bytes, partial requests, a 1 MiB request', async () => {
    const random = Buffer.alloc(RECORD_SIZE * 3 + 17);
    for (let i = 0; i < random.length; i++) random[i] = (i * 7919) & 0xff;
    const answered = await sendAndDrain(daemon.socketPath, random, 500);
    expect(answered % RECORD_SIZE).toBe(0); // whole answers to the three whole requests, nothing for the rest
    expect(await sendAndDrain(daemon.socketPath, Buffer.alloc(RECORD_SIZE - 1), 300)).toBe(0);
    await sendAndDrain(daemon.socketPath, Buffer.alloc(1 << 20, 0x5a)); // 10,922 requests: disconnected
    expect(daemon.log).toMatch(/queued more than 1024 requests without reading answers: disconnected/);
    await othersStillServed();
  });

  test('clients that never read do not block the others, and are dropped after the answer timeout', async () => {
    const stuck = await Promise.all(Array.from({ length: 20 }, () => connect(daemon.socketPath)));
    for (const socket of stuck) {
      socket.pause();
      socket.on('error', () => {});
      socket.write(Buffer.alloc(RECORD_SIZE * 5));
    }
    const started = performance.now();
    await othersStillServed();
    console.log(`with 20 clients that never read: another client served in ${(performance.now() - started).toFixed(1)} ms; daemon RSS ${daemon.rssMiB().toFixed(1)} MiB`);
    for (const socket of stuck) socket.destroy();
  });

  test("an unprivileged user's clients that never read cannot hold every answer slot", async () => {
    // nobody owns 3,000 processes, so its answers (~290 kB) overflow the
    // socket buffer and stay in flight while its 40 clients do not read.
    const nobodysProcesses = await TrafficChild.startAsNobody('spawn', '3000');
    const stuckClients = spawn(...asNobody(fixture('atop-client'), daemon.socketPath, 'stuck', '40'), {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise((resolve) => stuckClients.stdout!.once('data', resolve)); // "connected"
      await new Promise((resolve) => setTimeout(resolve, 500));
      const started = performance.now();
      await othersStillServed();
      const ms = performance.now() - started;
      console.log(`with 40 stuck clients of an unprivileged user: root's client served in ${ms.toFixed(1)} ms`);
      expect(ms).toBeLessThan(5000); // well under the 10 s answer timeout that frees stuck slots
    } finally {
      stuckClients.kill();
      await nobodysProcesses.finish();
    }
  });

  test('clients that hang up in the middle of an answer, many times over', async () => {
    for (let i = 0; i < 50; i++) {
      const socket = await connect(daemon.socketPath);
      socket.on('error', () => {});
      socket.write(Buffer.alloc(RECORD_SIZE));
      await new Promise<void>((resolve) => socket.once('data', () => resolve()));
      socket.destroy();
    }
    await othersStillServed();
  });

  test('1,000 clients at once, each served a whole answer', async () => {
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 1000 }, () => requestOnce(daemon.socketPath)));
    const seconds = (performance.now() - started) / 1000;
    for (const answer of answers) expect(answer.get(witness.pid)?.counters).toEqual(wireCounters(BASIC_SCENARIO));
    console.log(
      `1,000 concurrent clients, ${answers[0]!.size} records each: all served in ${seconds.toFixed(2)} s; ` +
        `daemon RSS ${rssStart.toFixed(1)} MiB before the hostile clients, ${daemon.rssMiB().toFixed(1)} MiB now`,
    );
    await othersStillServed();
    expect(daemon.rssMiB()).toBeLessThan(rssStart + 300);
  });
});
