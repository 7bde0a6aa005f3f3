// Asking a test daemon's history, and timing traffic inside its buckets.
import { HistoryStore } from '../../daemon/history/history-store.js';
import { apiGet } from './api-client.js';
import type { TestDaemon } from './daemon.js';

/** The 8 counters of a history row, as the API's series and the file hold them. */
export type HistoryCounters = number[];

/** `calls` exchanges of the interactive scenario (UDP/IPv4, 100 bytes each way), as history counts them. */
export function udpExchanges(calls: number): HistoryCounters {
  return [0, 0, 0, 0, calls, calls * 100, calls, calls * 100];
}

export function sumCounters(...all: HistoryCounters[]): HistoryCounters {
  const sum = new Array<number>(8).fill(0);
  for (const counters of all) for (let i = 0; i < 8; i++) sum[i]! += counters[i]!;
  return sum;
}

/** A group of the answer as its 8 counters. */
export function flatCounters(group: { counters: { tcp: any; udp: any } }): HistoryCounters {
  const { tcp, udp } = group.counters;
  return [tcp.send.calls, tcp.send.bytes, tcp.recv.calls, tcp.recv.bytes, udp.send.calls, udp.send.bytes, udp.recv.calls, udp.recv.bytes];
}

/** GET /v1/history with these parameters; throws unless 200. */
export async function historyOf(daemon: TestDaemon, parameters: Record<string, string>): Promise<any> {
  const answer = await apiGet(daemon.apiSocketPath, `/v1/history?${new URLSearchParams(parameters)}`);
  if (answer.status !== 200) throw new Error(`/v1/history: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the middle of the next bucket of `seconds`: traffic made now lands in it, whatever the flush's delay. */
export async function middleOfNextBucket(seconds: number): Promise<number> {
  const size = seconds * 1000;
  const next = Math.floor(Date.now() / size) * size + size;
  await sleep(next + size / 2 - Date.now());
  return next / 1000;
}

/** Waits until the bucket of `seconds` that holds now has ended and been flushed (its flush runs 50 ms after the end). */
export async function afterThisBucket(seconds: number): Promise<void> {
  const size = seconds * 1000;
  await sleep(Math.floor(Date.now() / size) * size + size + 400 - Date.now());
}

/** Polls until `done` holds for the answer (history flushes at bucket ends), for at most `timeoutMs`. */
export async function historyUntil(daemon: TestDaemon, parameters: Record<string, string>, done: (answer: any) => boolean, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await historyOf(daemon, parameters);
    if (done(answer) || Date.now() > deadline) return answer;
    await sleep(250);
  }
}

/**
 * A history file with `hours` of 1-minute buckets (the daemon's schema),
 * each holding `workloads` workloads of user `uid`: what a busy host's file
 * holds, for questions that cost what they cost there.
 */
export function filledHistoryFile(file: string, hours: number, workloads: number, uid: number): void {
  const tiers = [
    { bucketSeconds: 60, keepSeconds: 48 * 3600 },
    { bucketSeconds: 600, keepSeconds: 31 * 86_400 },
  ];
  const store = HistoryStore.open(file, { tiers, peerTiers: [], rowsPerBucket: workloads, maxBytes: 1 << 30, readerGroup: null }, (message) => {
    throw new Error(message);
  });
  try {
    const now = Math.floor(Date.now() / 1000);
    const first = Math.floor((now - hours * 3600) / 60) * 60;
    for (let bucket = first; bucket < now - 60; bucket += 60) {
      const traffic = Array.from({ length: workloads }, (_, i) => ({
        cgroup: `/busy.slice/w${i}.service`,
        unit: `w${i}.service`,
        container: null,
        containerName: null,
        pod: null,
        namespace: null,
        command: `w${i}`,
        uid,
        counters: [1, 1000 + i, 1, 1000, 0, 0, 0, 0],
        pids: [1000 + i],
      }));
      store.write({ identity: 'filled', bucket, nowSeconds: bucket + 60, expire: true, traffic, changed: new Map(), removed: new Set(), replacePositions: false, forgottenBefore: new Map(), forgottenAfter: new Map(), peers: null });
    }
  } finally {
    store.close();
  }
}
