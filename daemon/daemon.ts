// The daemon: checks the host, loads and attaches the BPF programs (counting
// starts here, whether or not a client is connected), serves atop, and on
// SIGTERM/SIGINT lets answers in flight finish, removes its socket, detaches.
import { atopAnswerBuilder } from './atop-answers.js';
import { bootEpochSeconds } from './boot-time.js';
import { Collector } from './collector.js';
import { KernelCounters } from './kernel-counters.js';
import { routeLibbpfMessages } from './libbpf.js';
import type { Logger } from './log.js';
import { checkKernelSupport, checkPrivileges, ensureTracefs } from './preflight.js';
import { ProcessTable } from './process-table.js';
import { NetatopServer } from '../protocol/netatop-server.js';
import { claimSocketPath } from '../protocol/unix-socket-path.js';

export interface DaemonOptions {
  atopSocket: string;
  atopSocketMode: number;
  /** gid whose members see every process on the sockets (root always does), or null. */
  allProcessesGroup: number | null;
  bpfObject: string;
  slots: number;
  overflowCapacity: number;
  exitedCapacity: number;
  drainIntervalMs: number;
  exitedRetentionMs: number;
  maxExited: number;
  shutdownGraceMs: number;
}

/** Runs until SIGTERM or SIGINT; resolves once everything is released. */
export async function runDaemon(options: DaemonOptions, log: Logger): Promise<void> {
  // Handlers first: a supervisor may signal as soon as it sees the ready line.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  checkPrivileges();
  await claimSocketPath(options.atopSocket); // refuse a second instance before loading anything
  ensureTracefs();
  checkKernelSupport();
  routeLibbpfMessages((level, message) => log[level](message));

  const kernel = KernelCounters.open({
    objectPath: options.bpfObject,
    slots: options.slots,
    overflowCapacity: options.overflowCapacity,
    exitedCapacity: options.exitedCapacity,
  });
  const table = new ProcessTable({
    exitedRetentionMs: options.exitedRetentionMs,
    maxExited: options.maxExited,
    slotSettleMs: 10,
  });
  const collector = new Collector(
    kernel,
    table,
    { drainIntervalMs: options.drainIntervalMs, liveInfoIntervalMs: 10_000 },
    log,
  );
  collector.start();

  const forgetServedExits = (): void => table.forgetServedExits(server.minServedExitSeq(), Date.now());
  const server: NetatopServer = new NetatopServer({
    socketPath: options.atopSocket,
    mode: options.atopSocketMode,
    answer: atopAnswerBuilder(table, collector, bootEpochSeconds()),
    allProcessesGroup: options.allProcessesGroup,
    onAnswered: forgetServedExits,
    log,
    maxPendingRequests: 1024,
    answerTimeoutMs: 10_000,
    maxAnswersInFlight: 32,
    maxAnswersInFlightPerUser: 4,
  });
  const housekeeping = setInterval(forgetServedExits, options.drainIntervalMs);
  try {
    await server.listen();
  } catch (err) {
    clearInterval(housekeeping);
    collector.stop();
    kernel.close();
    throw err;
  }
  log.info(`netacct counting; serving atop on ${options.atopSocket}`);

  const signal = await stopSignal;
  log.info(`${signal}: shutting down`);
  clearInterval(housekeeping);
  await server.close(options.shutdownGraceMs);
  collector.stop();
  kernel.close();
  log.info('stopped');
}
