// The netatop-bpf socket atop -K connects to. Every 96 bytes a client sends
// are one request; each request gets one whole answer. Answers are written in
// slices of whole records (at most 340), one write in flight at a time, so
// that atop's recv(fd, buf, 96, 0) without MSG_WAITALL never sees a record
// split across two kernel buffers (shared/atop-protocol.md, framing rule).
import type { Ticker } from '../daemon/common/heartbeat.js';
import type net from 'node:net';
import { type Logger, type RateLimitedLog, guarded, rateLimited } from '../daemon/common/log.js';
import type { ClientLimits, ClientOwner } from './client-limits.js';
import type { TimeBudgets } from './time-budget.js';
import { MAX_WRITE_BYTES, RECORD_SIZE } from './netatop-record.js';
import type { Visibility } from './peer-credentials.js';
import { type ClientIdentity, SocketListener } from './socket-listener.js';

/**
 * What the connected clients have been served, as exit sequence numbers: the
 * lowest among clients that see every process (null: none connected), and
 * per uid the lowest among clients that see only that user's processes.
 */
export interface ServedExits {
  all: number | null;
  byUid: ReadonlyMap<number, number>;
}

export interface NetatopAnswer {
  records: Buffer;
  /** The latest exit sequence number the answer covers. */
  exitSeq: number;
}

export interface NetatopServerOptions {
  socketPath: string;
  mode: number;
  /**
   * Builds the answer for a client that has been served exits up to
   * `servedExitSeq`, covering everything up to `requestedAtMs`
   * (performance.now()), with the processes `visibility` lets it see.
   */
  answer: (servedExitSeq: number, requestedAtMs: number, visibility: Visibility) => NetatopAnswer;
  /** The gid whose members see every process (root always does), or null. */
  allProcessesGroup: number | null;
  /** Called after each completed answer (exited entries may now be forgotten). */
  onAnswered: () => void;
  log: Logger;
  /** Requests a client may queue before it is disconnected as abusive. */
  maxPendingRequests: number;
  /** A client that has not taken an answer within this time is disconnected. */
  answerTimeoutMs: number;
  /**
   * Answers being written at once; other clients wait their turn. Bounds the
   * daemon's memory whatever the number of clients (each answer in flight
   * holds its buffer until the client has read it).
   */
  maxAnswersInFlight: number;
  /**
   * Answers in flight for one non-root uid, so that clients of an
   * unprivileged user that never read cannot hold the slots of everyone.
   */
  maxAnswersInFlightPerUser: number;
  /** Connections held at most, in all and per user. */
  limits: ClientLimits;
  /** Each non-root owner's share of the daemon's time: past it, its next answer waits until it is earned. */
  budgets: TimeBudgets;
  /** The daemon's heartbeat (checks the socket file). */
  ticker: Ticker;
  /** A client that sends no request within this time of connecting is closed (atop asks at once). */
  firstRequestTimeoutMs: number;
  /** A client silent this long after its last answer is closed (atop asks every interval). */
  idleTimeoutMs: number;
}

interface Client {
  readonly socket: net.Socket;
  readonly name: string;
  readonly visibility: Visibility;
  readonly owner: ClientOwner;
  /** Bytes of an incomplete request received so far (0..95). */
  partialBytes: number;
  pendingRequests: number;
  /** performance.now() when the latest request bytes arrived. */
  lastRequestAtMs: number;
  writing: boolean;
  servedExitSeq: number;
  answerTimer: NodeJS.Timeout | null;
  /** Set while its owner earns the time its next answer needs. */
  budgetTimer: NodeJS.Timeout | null;
}

export class NetatopServer {
  private readonly listener: SocketListener;
  private readonly report: RateLimitedLog;
  private readonly clients = new Set<Client>();
  private nextClientNumber = 1;
  private answersInFlight = 0;
  private readonly answersInFlightByUid = new Map<number, number>();
  /** Clients with requests, waiting for an answer slot, in arrival order. */
  private readonly waiting = new Set<Client>();
  private closing = false;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(private readonly options: NetatopServerOptions) {
    this.report = rateLimited(options.log);
    this.listener = new SocketListener({
      name: 'atop',
      endpoint: { socketPath: options.socketPath, mode: options.mode },
      limits: options.limits,
      allProcessesGroup: options.allProcessesGroup,
      budgets: options.budgets,
      ticker: options.ticker,
      log: options.log,
      onClient: (socket, client) => this.accept(socket, client),
      refusal: null, // atop's protocol has no way to say why
    });
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Connections refused by the limits since start, by reason. */
  get refused(): SocketListener['refused'] {
    return this.listener.refused;
  }

  listen(): Promise<void> {
    return this.listener.listen();
  }

  /** Configuration reload: the socket's mode now; the group and limits for clients that connect from now on. */
  reconfigure(mode: number, allProcessesGroup: number | null, limits: ClientLimits): void {
    this.listener.reconfigure(mode, allProcessesGroup, limits);
  }

  /** What the connected clients have been served, by whom they may see (ProcessTable.forgetServedExits). */
  servedExits(): ServedExits {
    let all: number | null = null;
    const byUid = new Map<number, number>();
    for (const { servedExitSeq, visibility } of this.clients) {
      if (visibility.seesAll) all = all === null ? servedExitSeq : Math.min(all, servedExitSeq);
      else byUid.set(visibility.uid, Math.min(byUid.get(visibility.uid) ?? servedExitSeq, servedExitSeq));
    }
    return { all, byUid };
  }

  private accept(socket: net.Socket, { visibility, owner }: ClientIdentity): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const client: Client = {
      socket,
      visibility,
      owner,
      name: `atop client ${this.nextClientNumber++} (uid ${visibility.uid})`,
      partialBytes: 0,
      pendingRequests: 0,
      lastRequestAtMs: 0,
      writing: false,
      servedExitSeq: 0,
      answerTimer: null,
      budgetTimer: null,
    };
    this.clients.add(client);
    this.options.log.debug(`${client.name} connected`);
    // Silence closes a client: before its first request, and between answers.
    socket.setTimeout(this.options.firstRequestTimeoutMs);
    socket.on('timeout', () => {
      this.report('info', 'idle', `${client.name} sent no request for ${client.lastRequestAtMs === 0 ? this.options.firstRequestTimeoutMs : this.options.idleTimeoutMs} ms: closed`);
      socket.destroy();
    });
    socket.on('data', guarded(this.report, 'atop socket: a request', (chunk: Buffer) => this.received(client, chunk.length)));
    socket.on('end', () => {
      // The client will send nothing more; finish what it asked for, then close.
      if (!client.writing && client.pendingRequests === 0) socket.end();
    });
    socket.on('close', guarded(this.report, 'atop socket: a client leaving', () => this.forget(client)));
  }

  private received(client: Client, bytes: number): void {
    if (client.lastRequestAtMs === 0) client.socket.setTimeout(this.options.idleTimeoutMs);
    client.lastRequestAtMs = performance.now();
    const total = client.partialBytes + bytes;
    client.pendingRequests += Math.floor(total / RECORD_SIZE);
    client.partialBytes = total % RECORD_SIZE;
    if (client.pendingRequests > this.options.maxPendingRequests) {
      this.report('warn', 'queued', `${client.name} queued more than ${this.options.maxPendingRequests} requests without reading answers: disconnected`);
      client.socket.destroy();
      return;
    }
    this.answerNext(client);
  }

  private answerNext(client: Client): void {
    const { socket } = client;
    if (client.writing || client.budgetTimer || socket.destroyed) return;
    if (this.closing) client.pendingRequests = 0; // only answers in flight finish
    if (client.pendingRequests === 0) {
      if (socket.readableEnded) socket.end();
      this.notifyIfIdle();
      return;
    }
    if (!this.mayStartAnswer(client)) {
      this.waiting.add(client);
      return;
    }
    const waitMs = this.closing ? 0 : this.options.budgets.waitMs(client.owner);
    if (waitMs > 0) {
      this.options.budgets.throttled++;
      // atop's protocol has no way to say "later": the answer comes once it is paid for.
      this.report('warn', 'throttled', `${client.name}: ${client.owner.key} used its share of the daemon's time: answers wait ${waitMs} ms`);
      client.budgetTimer = setTimeout(
        guarded(this.report, 'atop socket: an answer that waited', () => {
          client.budgetTimer = null;
          this.answerNext(client);
        }),
        waitMs,
      );
      return;
    }
    client.pendingRequests--;
    let answer: NetatopAnswer;
    try {
      answer = this.options.budgets.timed(client.owner, () => this.options.answer(client.servedExitSeq, client.lastRequestAtMs, client.visibility));
    } catch (err) {
      this.report('error', 'answer', `building an answer for ${client.name} failed: ${(err as Error).message}`);
      socket.destroy();
      return;
    }
    client.writing = true;
    this.countInFlight(client, 1);
    client.answerTimer = setTimeout(() => {
      this.report('warn', 'slow reader', `${client.name} did not read its answer within ${this.options.answerTimeoutMs} ms: disconnected`);
      socket.destroy();
    }, this.options.answerTimeoutMs);
    this.writeSlices(client, answer.records, 0, () => {
      client.servedExitSeq = answer.exitSeq;
      this.finishAnswer(client);
      this.options.onAnswered();
      this.answerNext(client);
    });
  }

  /** The client's answer is written, or the client is gone: free its slot for a waiting one. */
  private finishAnswer(client: Client): void {
    if (client.answerTimer) clearTimeout(client.answerTimer);
    client.answerTimer = null;
    if (!client.writing) return;
    client.writing = false;
    this.countInFlight(client, -1);
    for (const next of this.waiting) {
      if (!this.mayStartAnswer(next)) continue;
      this.waiting.delete(next);
      this.answerNext(next);
      return;
    }
  }

  private mayStartAnswer(client: Client): boolean {
    if (this.answersInFlight >= this.options.maxAnswersInFlight) return false;
    const { uid } = client.visibility;
    return uid === 0 || (this.answersInFlightByUid.get(uid) ?? 0) < this.options.maxAnswersInFlightPerUser;
  }

  private countInFlight(client: Client, delta: number): void {
    this.answersInFlight += delta;
    const { uid } = client.visibility;
    const count = (this.answersInFlightByUid.get(uid) ?? 0) + delta;
    if (count === 0) this.answersInFlightByUid.delete(uid);
    else this.answersInFlightByUid.set(uid, count);
  }

  /** Writes `records` from `offset` one slice at a time, each after the previous completed. */
  private writeSlices(client: Client, records: Buffer, offset: number, done: () => void): void {
    if (offset >= records.length) {
      done();
      return;
    }
    const end = Math.min(offset + MAX_WRITE_BYTES, records.length);
    client.socket.write(
      records.subarray(offset, end),
      guarded(this.report, 'atop socket: writing an answer', (err?: Error | null) => {
        if (!err) this.writeSlices(client, records, end, done);
      }),
    );
  }

  private forget(client: Client): void {
    if (client.budgetTimer) clearTimeout(client.budgetTimer);
    client.budgetTimer = null;
    this.waiting.delete(client);
    this.finishAnswer(client);
    this.clients.delete(client);
    this.options.log.debug(`${client.name} disconnected`);
    this.options.onAnswered(); // a slow client gone may release exited entries
    this.notifyIfIdle();
  }

  private busy(): boolean {
    for (const client of this.clients) if (client.writing) return true;
    return false;
  }

  private notifyIfIdle(): void {
    if (!this.closing || this.busy()) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Stops accepting, lets answers in flight finish (up to graceMs), closes the rest. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    if (this.busy()) {
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
    }
    for (const client of this.clients) client.pendingRequests = 0;
    await this.listener.close();
  }
}
