// An answer that fails as it is encoded (a bug in a route) closes that one
// connection, is logged once, and nothing escapes as an unhandled rejection
// (vitest fails a run that has one; the daemon would log it and go on): the
// server goes on answering. A real ApiServer on a Unix socket, real clients.
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Heartbeat } from '../daemon/common/heartbeat.js';
import { ApiServer } from '../protocol/http-api.js';
import { TimeBudgets } from '../protocol/time-budget.js';
import { scratchDir } from './helpers/fixtures.js';

const logged: string[] = [];
const log = { error: (m: string) => logged.push(m), warn: (m: string) => logged.push(m), info: () => {}, debug: () => {} };
let server: ApiServer;
let socketPath: string;

beforeAll(async () => {
  socketPath = path.join(scratchDir('failing-answers'), 'api.sock');
  server = new ApiServer({
    endpoint: { socketPath, mode: 0o600 },
    allProcessesGroup: null,
    handle: (request) =>
      request.path === '/v1/ok'
        ? { status: 200, body: { ok: true } }
        : { status: 200, body: { get boom(): never { throw new Error('injected failure'); } } },
    log,
    limits: { total: 16, perUser: 8, reservedForRoot: 1 },
    budgets: new TimeBudgets({ msPerSecond: 250, burstMs: 2000 }),
    ticker: new Heartbeat(1000, 1000, (err) => logged.push(err.message)),
    streamLimitPerUser: 4,
    requestTimeoutMs: 60_000, // a connection left hanging would outlast the test
    streamStallTimeoutMs: 5000,
  });
  await server.listen();
});
afterAll(async () => {
  await server?.close();
});

function get(requestPath: string, accept: string): Promise<string> {
  return new Promise((resolve) => {
    const request = http.get({ socketPath, path: requestPath, headers: { Accept: accept }, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${text.trim()}`));
      res.on('error', () => resolve('closed'));
    });
    request.on('error', () => resolve('closed'));
  });
}

test.each([['application/json'], ['application/msgpack']])('a failing %s answer closes its connection; the next is answered', async (accept) => {
  expect(await get('/v1/boom', accept)).toBe('closed');
  expect(logged.some((line) => line.includes('injected failure'))).toBe(true);
  expect(await get('/v1/ok', 'application/json')).toBe('200 {"ok":true}');
});
