// WebSocket streams on the API socket (/v1/stream): a client subscribes with
// a message and receives an update every interval, built by the same routes
// as the HTTP endpoints (so the same validation and visibility apply). ws is
// loaded on the first upgrade: loading it costs ~16 MiB of RSS.
//
// Many subscribers cost little more than one: subscribers of the same
// interval are updated on one timer from one read of the kernel, and those
// whose subscriptions and visibility are the same get one encoded payload.
// A subscriber that does not take its updates is skipped (updates are whole
// states, so the next one replaces what it missed) and closed when it has
// taken nothing for the stall timeout: one update at most waits per client.
import type http from 'node:http';
import type net from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import { type Logger, type RateLimitedLog, guarded, rateLimited } from '../daemon/common/log.js';
import { type ApiHandler, type ApiRequest, closingResponse, msgpackEncoder } from './http-answer.js';
import { jsonPieces, plainBody } from './listing-body.js';
import { ClientCounts } from './client-limits.js';
import type { TimeBudgets } from './time-budget.js';
import type { ClientIdentity } from './socket-listener.js';

const Subscription = z.strictObject({
  view: z.enum(['processes', 'cgroups', 'peers']).default('processes'),
  interval: z.number().int().min(250).max(60_000).default(1000),
  format: z.enum(['json', 'msgpack']).default('json'),
  top: z.number().int().min(1).max(1_000_000).optional(),
  pid: z.number().int().nonnegative().optional(),
  uid: z.number().int().nonnegative().optional(),
  cgroup: z.number().int().nonnegative().optional(),
  command: z.string().optional(),
  /** peers: the remote address or prefix, a port, a protocol (as /v1/peers takes them). */
  address: z.string().optional(),
  port: z.number().int().nonnegative().optional(),
  protocol: z.string().optional(),
  state: z.string().optional(),
  sort: z.string().optional(),
  order: z.string().optional(),
});
type Subscription = z.infer<typeof Subscription>;

export interface ApiStreamsOptions {
  handle: ApiHandler;
  log: Logger;
  /** Each non-root owner's share of the daemon's time: an update it cannot pay for is skipped. */
  budgets: TimeBudgets;
  /** Streams one non-root user (on TCP: one address) holds at most. */
  limitPerUser: number;
  /** A client that takes no update for this long is closed. */
  stallTimeoutMs: number;
  /** A client that has no subscription this long after connecting is closed. */
  subscribeTimeoutMs: number;
}

/** A client may replace its subscription this often with an update at once; more often, it waits for its timer. */
const IMMEDIATE_UPDATE_INTERVAL_MS = 1000;
/** Subscription messages a client may send in a second; a client that sends more is closed. */
const MESSAGES_PER_SECOND = 10;

/** The close code for a client that broke the protocol's rules (RFC 6455, 7.4.1). */
const POLICY_VIOLATION = 1008;
/** How long a client closed for a timeout has to answer the close before its socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

/**
 * Runs `check` once the input already waiting on the sockets is read. Timers
 * fire before the event loop reads its sockets: when the daemon fell behind
 * (a busy host), a timeout or a stall check run at once would judge clients
 * by bytes they sent or took that the daemon had not looked at yet.
 */
function afterPendingInput(check: () => void): void {
  setImmediate(check);
}

interface Subscriber {
  readonly ws: WebSocket;
  readonly client: ClientIdentity;
  subscription: Subscription;
  /** Subscribers with the same key get the same bytes: the subscription and the visibility. */
  key: string;
  /** performance.now() when it last took an update (or subscribed). */
  lastTakenMs: number;
}

/** The HTTP request the routes answer for one update of `subscription`. */
function asRequest(subscription: Subscription, client: ClientIdentity, asOfMs: number, validateOnly = false): ApiRequest {
  const { view, interval: _interval, format: _format, top, ...filters } = subscription;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value !== undefined) query.set(name, String(value));
  if (top !== undefined) query.set('limit', String(top));
  return { path: `/v1/${view}`, query, visibility: client.visibility, asOfMs, validateOnly };
}

export class ApiStreams {
  private server: WebSocketServer | null = null;
  private readonly report: RateLimitedLog;
  /** Subscribers by interval, each interval with its one timer. */
  private readonly groups = new Map<number, { timer: NodeJS.Timeout; subscribers: Set<Subscriber> }>();
  /** Streams per owner: the connection limits' mechanism, with no total (connections bound that). */
  private readonly streams: ClientCounts;
  /** Keys whose update is being built now. */
  private readonly building = new Set<string>();
  /** Subscribers waiting for their first update (deliverSoon). */
  private readonly firstUpdates: Subscriber[] = [];
  /** Updates skipped for clients that had not taken the previous one (or whose previous one was still being built). */
  skippedUpdates = 0;

  constructor(private readonly options: ApiStreamsOptions) {
    this.report = rateLimited(options.log);
    this.streams = new ClientCounts({ total: Infinity, perUser: options.limitPerUser, reservedForRoot: 0 });
  }

  /** Upgrades refused by the per-user limit. */
  get refused(): number {
    return this.streams.refused.per_user;
  }

  set limitPerUser(limit: number) {
    this.streams.limits = { ...this.streams.limits, perUser: limit };
  }

  async upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, client: ClientIdentity): Promise<void> {
    let path: string | null = null;
    try {
      path = new URL(req.url ?? '/', 'http://netacct').pathname;
    } catch {
      // a malformed target: 404 below
    }
    if (path !== '/v1/stream') return void socket.end(closingResponse(404, 'Not Found'), () => socket.destroy());
    // Counted before the first upgrade waits for ws to load: upgrades at once count too.
    if (this.streams.admit(client.owner)) {
      const why = `${client.owner.key} already has ${this.streams.limits.perUser} streams (the limit per user)`;
      this.report('warn', 'per user', `API stream refused: ${why}`);
      return void socket.end(closingResponse(429, 'Too Many Requests', why), () => socket.destroy());
    }
    socket.once('close', () => this.streams.release(client.owner));
    if (!this.server) {
      const { WebSocketServer: Server } = await import('ws');
      this.server ??= new Server({ noServer: true, maxPayload: 64 * 1024 });
    }
    this.server.handleUpgrade(req, socket, head, (ws) => this.serve(ws, client));
  }

  private serve(ws: WebSocket, client: ClientIdentity): void {
    let subscriber: Subscriber | null = null;
    let lastImmediateMs = -Infinity;
    // A stream without a subscription is an idle connection: it gets the request timeout.
    const unsubscribed = setTimeout(
      () =>
        afterPendingInput(
          guarded(this.report, 'API stream: the subscription timeout', () => {
            if (subscriber || ws.readyState !== ws.OPEN) return;
            ws.close(POLICY_VIOLATION, `no subscription within ${this.options.subscribeTimeoutMs} ms`);
            setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref(); // a client that does not answer the close
          }),
        ),
      this.options.subscribeTimeoutMs,
    );
    unsubscribed.unref();
    let second = { startMs: -Infinity, messages: 0 };
    const refuse = (error: object): void => this.sendError(ws, error);
    ws.on(
      'message',
      guarded(this.report, 'API stream: a subscription', (data: Buffer, isBinary: boolean) => {
        const now = performance.now();
        if (now - second.startMs >= 1000) second = { startMs: now, messages: 0 };
        if (++second.messages > MESSAGES_PER_SECOND) {
          this.report('warn', 'flood', `API stream: a client of ${client.owner.key} sent more than ${MESSAGES_PER_SECOND} subscriptions in a second: closed`);
          return void ws.terminate();
        }
        if (subscriber) this.leave(subscriber); // a new subscription replaces the previous one
        subscriber = null;
        let parsed: unknown;
        try {
          parsed = JSON.parse(isBinary ? Buffer.from(data).toString() : data.toString());
        } catch {
          return refuse({ error: 'a subscription is a JSON object' });
        }
        const checked = Subscription.safeParse(parsed);
        if (!checked.success) {
          const issue = checked.error.issues[0]!;
          const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.');
          return refuse({ error: `invalid field '${field}': ${issue.message}`, field });
        }
        const subscription = checked.data;
        // The routes check the filters (and build nothing): a refused one is an error and no subscription.
        const check = this.options.handle(asRequest(subscription, client, now, true));
        if (check.status !== 200) return refuse(check.body as object);
        const { interval: _interval, ...shape } = subscription;
        const key = `${client.visibility.seesAll ? 'all' : `uid ${client.visibility.uid}`} ${JSON.stringify(shape)}`;
        subscriber = { ws, client, subscription, key, lastTakenMs: now };
        this.join(subscriber);
        if (now - lastImmediateMs >= IMMEDIATE_UPDATE_INTERVAL_MS) {
          lastImmediateMs = now;
          this.deliverSoon(subscriber);
        }
      }),
    );
    ws.on('close', () => {
      clearTimeout(unsubscribed);
      if (subscriber) this.leave(subscriber);
    });
    ws.on('error', (err) => this.options.log.debug(`API stream: ${err.message}`));
  }

  private sendError(ws: WebSocket, error: object): void {
    ws.send(JSON.stringify({ type: 'error', ...error }));
  }

  private join(subscriber: Subscriber): void {
    const { interval } = subscriber.subscription;
    let group = this.groups.get(interval);
    if (!group) {
      const subscribers = new Set<Subscriber>();
      const timer = setInterval(() => afterPendingInput(() => void this.deliver([...subscribers], performance.now())), interval);
      this.groups.set(interval, (group = { timer, subscribers }));
    }
    group.subscribers.add(subscriber);
  }

  /**
   * A new subscriber's first update, at the end of this turn of the event
   * loop, with every other subscriber that came in it: hundreds subscribing
   * at once share one read and one payload per key.
   */
  private deliverSoon(subscriber: Subscriber): void {
    this.firstUpdates.push(subscriber);
    if (this.firstUpdates.length > 1) return;
    setImmediate(() => {
      const batch = this.firstUpdates.splice(0);
      void this.deliver(batch, performance.now());
    });
  }

  private leave(subscriber: Subscriber): void {
    const group = this.groups.get(subscriber.subscription.interval);
    if (!group?.subscribers.delete(subscriber) || group.subscribers.size > 0) return;
    clearInterval(group.timer);
    this.groups.delete(subscriber.subscription.interval);
  }

  /**
   * One update for each of `subscribers`, as of `asOfMs` (one kernel read for
   * all of them), one payload per distinct key. Never throws.
   */
  private async deliver(subscribers: readonly Subscriber[], asOfMs: number): Promise<void> {
    const payloads = new Map<string, Promise<Buffer | null>>();
    for (const subscriber of subscribers) {
      const { ws } = subscriber;
      if (ws.readyState !== ws.OPEN) continue;
      if (ws.bufferedAmount > 0) {
        // It has not taken the previous update: skip this one, or give up on it.
        this.skippedUpdates++;
        if (performance.now() - subscriber.lastTakenMs > this.options.stallTimeoutMs) {
          this.report('warn', 'stalled', `API stream: a client of ${subscriber.client.owner.key} took no update for ${this.options.stallTimeoutMs} ms: closed`);
          ws.terminate();
        }
        continue;
      }
      const { subscription, key } = subscriber;
      let payload = payloads.get(key);
      if (!payload) {
        // Its previous update is still being built (a large one): skip this one, updates never pile up.
        if (this.building.has(key)) {
          this.skippedUpdates++;
          continue;
        }
        // Its owner used its time share: skipped (another subscriber of the key may still have it built for both).
        if (this.options.budgets.waitMs(subscriber.client.owner) > 0) {
          this.skippedUpdates++;
          this.options.budgets.throttled++;
          continue;
        }
        this.building.add(key);
        payloads.set(key, (payload = this.encode(subscriber, asOfMs).finally(() => this.building.delete(key))));
      }
      subscriber.lastTakenMs = performance.now();
      payload.then(
        (bytes) => {
          if (bytes !== null && ws.readyState === ws.OPEN) ws.send(bytes, { binary: subscription.format === 'msgpack' });
        },
        () => {},
      );
    }
    await Promise.allSettled(payloads.values());
  }

  /**
   * The update message for `subscriber`'s subscription, encoded once as bytes
   * (every subscriber of the same key is sent this one buffer, never a copy);
   * null (reported) when it could not be built.
   */
  private async encode(subscriber: Subscriber, asOfMs: number): Promise<Buffer | null> {
    const { subscription, client, ws } = subscriber;
    const { budgets } = this.options;
    const spent = (ms: number): void => budgets.charge(client.owner, ms);
    try {
      const { status, body } = budgets.timed(client.owner, () => this.options.handle(asRequest(subscription, client, asOfMs)));
      if (status !== 200) {
        this.sendError(ws, body as object);
        return null;
      }
      const head = { type: 'update', view: subscription.view, at: Date.now() };
      if (subscription.format === 'msgpack') {
        const pack = await msgpackEncoder();
        return pack(await plainBody(body, head, spent));
      }
      let text = '';
      for await (const piece of jsonPieces(body, head, spent)) text += piece;
      return Buffer.from(text);
    } catch (err) {
      this.report('error', 'update', `API stream: building an update failed: ${(err as Error).message}`);
      return null;
    }
  }

  /** WebSocket clients connected now. */
  get clientCount(): number {
    return this.server?.clients.size ?? 0;
  }

  close(): void {
    for (const { timer } of this.groups.values()) clearInterval(timer);
    this.groups.clear();
    for (const client of this.server?.clients ?? []) client.terminate();
  }
}
