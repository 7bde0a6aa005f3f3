// WebSocket streams on the API socket: updates every interval with exact
// counters, msgpack frames, and errors that name the bad field.
import { unpack } from 'msgpackr';
import { afterAll, beforeAll, expect, test } from 'vitest';
import WebSocket from 'ws';
import { TestDaemon } from './helpers/daemon.js';
import { describeWithBpf } from './helpers/requirements.js';
import { TrafficChild } from './helpers/traffic.js';

function connect(socketPath: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix:${socketPath}:/v1/stream`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** The next `count` messages, decoded (binary frames are msgpack). */
function messages(ws: WebSocket, count: number): Promise<any[]> {
  return new Promise((resolve) => {
    const received: any[] = [];
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      received.push(isBinary ? unpack(data) : JSON.parse(data.toString()));
      if (received.length === count) {
        ws.off('message', onMessage);
        resolve(received);
      }
    };
    ws.on('message', onMessage);
  });
}

describeWithBpf('API streams (real daemon, real traffic)', () => {
  let daemon: TestDaemon;
  let child: TrafficChild;
  beforeAll(async () => {
    daemon = await TestDaemon.start();
    child = await TrafficChild.start('interactive');
  });
  afterAll(async () => {
    await child?.finish();
    if (daemon) expect(await daemon.stop()).toBe(0);
  });

  test('a subscription gets an update per interval, with counters that follow the traffic', async () => {
    const ws = await connect(daemon.apiSocketPath);
    await child.exchange(3);
    const next = messages(ws, 3);
    const started = performance.now();
    ws.send(JSON.stringify({ view: 'processes', pid: child.pid, interval: 300 }));
    const [first, second] = await next.then((all) => all.slice(0, 2));
    expect(first).toMatchObject({ type: 'update', view: 'processes' });
    expect(first.processes[0].counters.udp.send).toEqual({ calls: 3, bytes: 300 });
    expect(second.at - first.at).toBeGreaterThanOrEqual(250);
    expect(performance.now() - started).toBeLessThan(5000);

    await child.exchange(2);
    const [later] = await messages(ws, 2).then((all) => all.slice(1));
    expect(later.processes[0].counters.udp.send).toEqual({ calls: 5, bytes: 500 });
    ws.close();
  });

  test('msgpack frames, the cgroups view and top N', async () => {
    const ws = await connect(daemon.apiSocketPath);
    const next = messages(ws, 1);
    ws.send(JSON.stringify({ view: 'cgroups', format: 'msgpack', top: 1, interval: 1000 }));
    const [update] = await next;
    expect(update.type).toBe('update');
    expect(update.cgroups).toHaveLength(1);
    ws.close();
  });

  test.each([
    [{ interval: 10 }, 'interval'],
    [{ view: 'threads' }, 'view'],
    [{ colour: 'red' }, 'colour'],
    [{ sort: 'fastest' }, 'sort'],
  ])('subscription %j: an error naming %s, and the connection stays usable', async (subscription, field) => {
    const ws = await connect(daemon.apiSocketPath);
    const next = messages(ws, 1);
    ws.send(JSON.stringify(subscription));
    const [error] = await next;
    expect(error).toMatchObject({ type: 'error', field });
    const recovered = messages(ws, 1);
    ws.send(JSON.stringify({ pid: child.pid, interval: 1000 }));
    expect((await recovered)[0].type).toBe('update');
    ws.close();
  });
});
