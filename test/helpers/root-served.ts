// Root's atop and API clients, asked while a hostile user attacks the daemon:
// each answer exact for the witness (BASIC_SCENARIO's traffic), and how long
// the slower of the two took.
import { expect } from 'vitest';
import { apiGet } from './api-client.js';
import { requestOnce } from './atop-reader.js';
import type { TestDaemon } from './daemon.js';
import { BASIC_SCENARIO, wireCounters } from './expected.js';
import type { TrafficChild } from './traffic.js';

export async function rootServedMs(daemon: TestDaemon, witness: TrafficChild): Promise<number> {
  const started = performance.now();
  expect((await requestOnce(daemon.socketPath)).get(witness.pid)?.counters).toEqual(wireCounters(BASIC_SCENARIO));
  const atopMs = performance.now() - started;
  const { status, body } = await apiGet(daemon.apiSocketPath, `/v1/processes/${witness.pid}`);
  expect(status).toBe(200);
  expect(body.counters.ipv4.udp.send.bytes).toBe(20 * 200); // BASIC_SCENARIO's IPv4 UDP
  return Math.max(atopMs, performance.now() - started - atopMs);
}
