// The HTTP/1.1 API on a Unix socket, for scripts (curl --unix-socket …), and
// optionally on TCP (Prometheus, a browser). On the Unix socket it keeps the
// atop socket's rules: every client's credentials come from the kernel and
// decide what it may see. Everywhere every byte is hostile (Node's parser
// bounds headers; requests time out; only GET), and JSON or msgpack answers
// as the client asks (Accept: application/msgpack).
import type { Ticker } from '../daemon/common/heartbeat.js';
import http from 'node:http';
import net from 'node:net';
import { type Logger, type RateLimitedLog, guarded, rateLimited } from '../daemon/common/log.js';
import { ApiStreams } from './api-stream.js';
import { type ApiHandler, type ApiResult, MSGPACK, closingResponse, msgpackEncoder } from './http-answer.js';
import { type ClientLimits, ClientCounts } from './client-limits.js';
import type { TimeBudgets } from './time-budget.js';
import { Listing, type Spent, jsonPieces, plainBody } from './listing-body.js';
import { type ClientIdentity, type Endpoint, SocketListener } from './socket-listener.js';
import type { BasicAuth } from './basic-auth.js';
import type { TlsSettings } from './web-config.js';
import type { ClientOwner } from './client-limits.js';

export interface ApiServerOptions {
  endpoint: Endpoint;
  /** The gid whose members see every process (root always does), or null. */
  allProcessesGroup: number | null;
  handle: ApiHandler;
  log: Logger;
  limits: ClientLimits;
  /** Each non-root owner's share of the daemon's time (shared with the other sockets). */
  budgets: TimeBudgets;
  /** The daemon's heartbeat (checks the socket file). */
  ticker: Ticker;
  /** WebSocket streams one non-root user (on TCP: one address) holds at most. */
  streamLimitPerUser: number;
  /** A request must arrive whole within this time; a connection silent this long is closed. */
  requestTimeoutMs: number;
  /** A stream client that takes no update for this long is closed. */
  streamStallTimeoutMs: number;
  /** TCP only: basic auth (the web configuration's users), or null for none. */
  auth?: BasicAuth | null;
}

/**
 * On TCP, a web page from another site must not read the API through the
 * user's browser: a Host that names a domain (DNS rebinding) and a WebSocket
 * whose Origin is another site (WebSockets ignore CORS) are refused. IP
 * literals and localhost are what a local user or Prometheus puts there.
 */
function trustedHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return name === 'localhost' || net.isIP(name) !== 0;
}

function sameOrigin(req: http.IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true; // not a browser
  try {
    return new URL(origin).host === req.headers.host?.toLowerCase();
  } catch {
    return false;
  }
}

/** A request must arrive whole within `ms` of the connection (or of the previous answer): else `expire`. */
class RequestDeadline {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ms: number,
    private readonly expire: () => void,
  ) {}

  arm(): void {
    this.disarm();
    this.timer = setTimeout(this.expire, this.ms);
    this.timer.unref();
  }

  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** The longest a request waits for its owner's time share or answer places; one that would wait longer is refused then (429). */
const THROTTLED_WAIT_MS = 1000;
/** Answers one non-root owner has built and sent at once (a listing is built a chunk per turn). */
const ANSWERS_IN_PROGRESS_PER_USER = 2;

/** A request on TCP without the web configuration's basic auth. */
const UNAUTHORIZED: ApiResult = {
  status: 401,
  body: { error: 'basic auth needed: a user and password of the web configuration' },
  headers: { 'WWW-Authenticate': 'Basic realm="netacct", charset="UTF-8"' },
};

/** Each query parameter once: a repeated one is ambiguous, so it is refused. */
function repeatedParameter(query: URLSearchParams): string | null {
  const seen = new Set<string>();
  for (const name of query.keys()) {
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return null;
}

export class ApiServer {
  private readonly server: http.Server;
  private readonly listener: SocketListener;
  private readonly clientsOf = new WeakMap<net.Socket, ClientIdentity>();
  private readonly deadlines = new WeakMap<net.Socket, RequestDeadline>();
  private readonly streams: ApiStreams;
  private readonly report: RateLimitedLog;
  /** Answers being built and sent, per owner (root's are counted, never refused). */
  private readonly answering = new ClientCounts({ total: Infinity, perUser: ANSWERS_IN_PROGRESS_PER_USER, reservedForRoot: 0 });
  /** Passwords being checked (bcrypt), per owner: one at a time. */
  private readonly verifying = new ClientCounts({ total: Infinity, perUser: 1, reservedForRoot: 0 });

  constructor(private readonly options: ApiServerOptions) {
    this.report = rateLimited(options.log);
    this.streams = new ApiStreams({
      handle: options.handle,
      log: options.log,
      budgets: options.budgets,
      limitPerUser: options.streamLimitPerUser,
      stallTimeoutMs: options.streamStallTimeoutMs,
      subscribeTimeoutMs: options.requestTimeoutMs,
    });
    const timeout = options.requestTimeoutMs;
    this.server = http.createServer(
      guarded(this.report, 'API request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        this.deadlines.get(req.socket)?.disarm();
        res.once('finish', () => this.deadlines.get(req.socket)?.arm()); // the next request on the connection
        this.respond(req, res);
      }),
    );
    this.server.timeout = timeout; // a connection that sends nothing (or stops sending) for this long is destroyed
    this.server.keepAliveTimeout = Math.min(5000, timeout);
    this.listener = new SocketListener({
      name: 'socketPath' in options.endpoint ? 'API' : 'API (TCP)',
      endpoint: options.endpoint,
      limits: options.limits,
      allProcessesGroup: options.allProcessesGroup,
      budgets: options.budgets,
      ticker: options.ticker,
      log: options.log,
      onClient: (socket, client) => {
        this.clientsOf.set(socket, client);
        // Node checks request timeouts only on servers that listen themselves; this one is handed its sockets.
        const deadline = new RequestDeadline(timeout, () =>
          socket.end(closingResponse(408, 'Request Timeout', `the request did not arrive whole within ${timeout} ms`), () => socket.destroy()),
        );
        this.deadlines.set(socket, deadline);
        socket.once('close', () => deadline.disarm());
        deadline.arm();
        this.server.emit('connection', socket);
      },
      refusal: (why) => closingResponse(503, 'Service Unavailable', `too many connections: ${why}`),
    });
    this.server.on(
      'upgrade',
      guarded(this.report, 'API stream upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        const client = this.clientsOf.get(socket);
        if (!client) return void socket.destroy();
        this.deadlines.get(socket)?.disarm();
        if (!this.isUnix && !(trustedHost(req.headers.host) && sameOrigin(req))) {
          return void socket.end(closingResponse(403, 'Forbidden'), () => socket.destroy());
        }
        const upgrade = (owner: ClientOwner): void => {
          if (socket.destroyed) return; // gone while its password was checked
          this.streams.upgrade(req, socket, head, { ...client, owner }).catch((err: Error) => {
            this.report('error', 'stream', `API stream: ${err.message}`);
            socket.destroy();
          });
        };
        const auth = this.isUnix ? null : this.options.auth;
        if (!auth) return upgrade(client.owner);
        // A stream needs the same basic auth as a request.
        this.prove(req, client.owner, auth)
          .then((proven) => {
            if (socket.destroyed) return;
            if ('owner' in proven) return upgrade(proven.owner);
            const { status, body, headers } = proven.refusal;
            socket.end(closingResponse(status, status === 401 ? 'Unauthorized' : 'Too Many Requests', (body as { error: string }).error, headers), () => socket.destroy());
          })
          .catch((err: Error) => {
            this.report('error', 'basic auth', `API (TCP): checking a password failed: ${err.message}`);
            socket.destroy();
          });
      }),
    );
    this.server.on('clientError', (_err: Error, socket: net.Socket) => {
      // Malformed: answer if the socket still takes it, then destroy it (never half-open).
      if (!socket.writable) return void socket.destroy();
      socket.end(closingResponse(400, 'Bad Request'), () => socket.destroy());
      setTimeout(() => socket.destroy(), 1000).unref(); // a peer that does not read the answer
    });
    this.server.on('error', (err) => this.report('error', 'server', `API: ${err.message}`));
  }

  /** Clients connected now: all connections, of which WebSocket streams; and connections refused by the limits. */
  get clients(): { connections: number; streams: number; refused: SocketListener['refused']; streamsRefused: number; streamUpdatesSkipped: number } {
    return {
      connections: this.listener.connections,
      streams: this.streams.clientCount,
      refused: this.listener.refused,
      streamsRefused: this.streams.refused,
      streamUpdatesSkipped: this.streams.skippedUpdates,
    };
  }

  private get isUnix(): boolean {
    return 'socketPath' in this.options.endpoint;
  }

  listen(): Promise<void> {
    return this.listener.listen();
  }

  /** Where it listens, for the log: the socket path, or "tcp HOST:PORT". */
  get where(): string {
    return this.listener.where;
  }

  /** Checks `req`, then answers it for its owner (with basic auth on TCP: the user it proves). */
  private respond(req: http.IncomingMessage, res: http.ServerResponse): void {
    const client = this.clientsOf.get(req.socket);
    if (!client) return void res.destroy();
    const refuse = (status: number, error: string): void => this.send(req, res, { status, body: { error } }, null);
    // A body is never read: the API is GET only, and a client must not make the daemon take one in.
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody) {
      res.shouldKeepAlive = false;
      return refuse(413, 'requests have no body: the API is read-only (GET and HEAD)');
    }
    if (!this.isUnix && !trustedHost(req.headers.host)) {
      return refuse(403, 'Host must be an IP address or localhost (DNS rebinding protection)');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return refuse(405, `method ${req.method} not allowed: the API is read-only (GET and HEAD)`);
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://netacct');
    } catch {
      return refuse(400, 'malformed request target');
    }
    const repeated = repeatedParameter(url.searchParams);
    if (repeated) return refuse(400, `invalid parameter '${repeated}': given more than once`);
    const auth = this.isUnix ? null : this.options.auth;
    if (!auth) return this.answer(req, res, url, client, client.owner);
    this.prove(req, client.owner, auth)
      .then((proven) => {
        if (res.destroyed) return;
        if ('owner' in proven) this.answer(req, res, url, client, proven.owner);
        else this.send(req, res, proven.refusal, null);
      })
      .catch((err: Error) => {
        this.report('error', 'basic auth', `API (TCP): checking a password failed: ${err.message}`);
        res.destroy();
      });
  }

  /**
   * The owner a request's basic auth proves (a user is its own owner: its
   * time share is not the one its network's other clients spend), or the
   * answer that refuses it. A password not seen to pass costs a bcrypt in the
   * checking thread, charged to the connection's owner's time share: one at a
   * time per owner, none while its share is spent, and a bounded number
   * waiting in all (past any, 429; a scraper whose password passed before is
   * not held up at all).
   */
  private async prove(req: http.IncomingMessage, owner: ClientOwner, auth: BasicAuth): Promise<{ owner: ClientOwner } | { refusal: ApiResult }> {
    const asUser = (user: string): { owner: ClientOwner } => ({ owner: { key: `user ${user}`, root: false } });
    const remembered = auth.remembered(req.headers.authorization);
    if (remembered !== null) return asUser(remembered);
    if (req.headers.authorization === undefined) return { refusal: UNAUTHORIZED };
    const { budgets } = this.options;
    const waitMs = budgets.waitMs(owner);
    if (waitMs > 0 || auth.busy || this.verifying.admit(owner) !== null) {
      budgets.throttled++;
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      const error = `${owner.key} is checking a password already, used its share of the daemon's time, or too many passwords are being checked: retry after ${seconds} s`;
      return { refusal: { status: 429, body: { error }, headers: { 'Retry-After': String(seconds) } } };
    }
    try {
      const { user, ms } = await auth.verify(req.headers.authorization);
      budgets.charge(owner, ms);
      if (user !== null) return asUser(user);
      this.report('warn', 'basic auth', `API (TCP): ${owner.key}: wrong user or password`);
      return { refusal: UNAUTHORIZED };
    } finally {
      this.verifying.release(owner);
    }
  }

  /** Answers `req` for `owner`; `waited`: it already waited for its owner's time share once (THROTTLED_WAIT_MS). */
  private answer(req: http.IncomingMessage, res: http.ServerResponse, url: URL, client: ClientIdentity, owner: ClientOwner, waited = false): void {
    const { budgets } = this.options;
    // Admitted when its owner has time left and a place for one more answer in progress (answers are charged as they
    // are built: the places bound what an owner can overdraw by asking for many at once).
    const waitMs = budgets.waitMs(owner);
    const busy = waitMs === 0 && this.answering.admit(owner) !== null;
    if (waitMs > 0 || busy) {
      if (!waited) {
        budgets.throttled++; // once per request: each refused one waited first
        // It waits (a second at most, within the idle timeout): a client that asks in a loop asks once a second per connection.
        const retry = setTimeout(
          guarded(this.report, 'API request', () => !res.destroyed && this.answer(req, res, url, client, owner, true)),
          Math.min(waitMs || THROTTLED_WAIT_MS, THROTTLED_WAIT_MS, this.options.requestTimeoutMs / 2),
        );
        res.once('close', () => clearTimeout(retry));
        return;
      }
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      const error = busy
        ? `${owner.key} already has ${ANSWERS_IN_PROGRESS_PER_USER} answers in progress (the limit per user): retry after ${seconds} s`
        : `${owner.key} used its share of the daemon's time (${budgets.limits.msPerSecond} ms a second): retry after ${seconds} s`;
      this.report('warn', 'throttled', `API: ${error}`);
      return this.send(req, res, { status: 429, body: { error }, headers: { 'Retry-After': String(seconds) } }, null);
    }
    res.once('close', () => this.answering.release(owner));
    let result: ApiResult;
    try {
      const request = { path: url.pathname, query: url.searchParams, visibility: client.visibility, asOfMs: performance.now() };
      result = budgets.timed(owner, () => this.options.handle(request));
    } catch (err) {
      this.report('error', 'route', `API ${url.pathname}: ${(err as Error).message}`);
      result = { status: 500, body: { error: 'internal error; see the daemon log' } };
    }
    const spent = (ms: number): void => budgets.charge(owner, ms);
    const wantsMsgpack = (req.headers.accept ?? '').includes(MSGPACK);
    if (!wantsMsgpack || result.contentType !== undefined) return this.send(req, res, result, null, spent);
    msgpackEncoder()
      .then((pack) => this.send(req, res, result, pack, spent))
      .catch((err: Error) => {
        this.report('error', 'msgpack', `API ${url.pathname}: the msgpack answer failed: ${err.message}`);
        res.destroy();
      });
  }

  /** Sends `result` as JSON, or msgpack with `pack`; HEAD gets the headers alone. Building a listing's rows is `spent`. */
  private send(req: http.IncomingMessage, res: http.ServerResponse, result: ApiResult, pack: ((value: unknown) => Buffer) | null, spent?: Spent): void {
    const { status, body, contentType, headers } = result;
    const head = req.method === 'HEAD';
    const whole = (type: string, raw: Buffer): void => {
      res.writeHead(status, { ...headers, 'Content-Type': type, 'Content-Length': raw.length });
      res.end(head ? undefined : raw);
    };
    if (contentType !== undefined) return whole(contentType, typeof body === 'string' ? Buffer.from(body) : (body as Buffer));
    const failed = (err: Error): void => {
      this.report('error', 'encode', `API ${req.url}: encoding the answer failed: ${err.message}`);
      res.destroy();
    };
    if (pack) {
      // Encoding runs in the fulfilment handler: what it throws is caught there too.
      plainBody(body, {}, spent).then((plain) => whole(MSGPACK, pack(plain))).catch(failed);
      return;
    }
    if (!(body instanceof Listing)) {
      let json: string;
      try {
        json = JSON.stringify(body);
      } catch (err) {
        return failed(err as Error);
      }
      return whole('application/json', Buffer.from(`${json}\n`));
    }
    res.writeHead(status, { ...headers, 'Content-Type': 'application/json' }); // chunked: written as it is encoded
    if (head) return void res.end();
    writePieces(res, jsonPieces(body, {}, spent)).catch(failed);
  }

  /** Configuration reload: a Unix socket's mode now; the group and limits for clients that connect from now on. */
  reconfigure(mode: number, allProcessesGroup: number | null, limits: ClientLimits, streamLimitPerUser: number): void {
    this.listener.reconfigure(mode, allProcessesGroup, limits);
    this.streams.limitPerUser = streamLimitPerUser;
  }

  /**
   * Configuration reload (TCP): the web configuration read again. Passwords
   * remembered as passed are forgotten with the old users (a revoked one stops
   * working at once); the checks in progress end with their connections.
   */
  setWebConfig(tls: TlsSettings | null, auth: BasicAuth | null): void {
    const old = this.options.auth;
    this.options.auth = auth;
    this.listener.setTls(tls);
    old?.close().catch((err: Error) => this.report('error', 'basic auth', `API (TCP): stopping the old password checker: ${err.message}`));
  }

  async close(): Promise<void> {
    this.streams.close();
    this.server.closeAllConnections();
    await this.listener.close();
    await this.options.auth?.close(); // after the last client: no check starts a new thread past it
  }
}

/** Writes the pieces one after the other, waiting for the client to take each (memory stays one piece). */
async function writePieces(res: http.ServerResponse, pieces: AsyncGenerator<string>): Promise<void> {
  for await (const piece of pieces) {
    if (res.destroyed) return void (await pieces.return(undefined));
    if (res.write(piece)) continue;
    await new Promise<void>((resolve) => {
      const go = (): void => {
        res.off('drain', go);
        res.off('close', go);
        resolve();
      };
      res.on('drain', go);
      res.on('close', go);
    });
  }
  res.end('\n');
}
