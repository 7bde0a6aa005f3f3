// WebSocket streams on the API socket (/v1/stream): a client subscribes with
// a message and receives an update every interval, built by the same routes
// as the HTTP endpoints (so the same validation and visibility apply). ws is
// loaded on the first upgrade: loading it costs ~16 MiB of RSS.
import type http from 'node:http';
import type net from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import type { Logger } from '../daemon/log.js';
import type { ApiRequest, ApiResult } from './http-api.js';
import type { Visibility } from './peer-credentials.js';

const Subscription = z.strictObject({
  view: z.enum(['processes', 'cgroups']).default('processes'),
  interval: z.number().int().min(250).max(60_000).default(1000),
  format: z.enum(['json', 'msgpack']).default('json'),
  top: z.number().int().min(1).max(1_000_000).optional(),
  pid: z.number().int().nonnegative().optional(),
  uid: z.number().int().nonnegative().optional(),
  cgroup: z.number().int().nonnegative().optional(),
  command: z.string().optional(),
  state: z.string().optional(),
  sort: z.string().optional(),
  order: z.string().optional(),
});
type Subscription = z.infer<typeof Subscription>;

/** The HTTP request the routes answer for one update of `subscription`. */
function asRequest(subscription: Subscription, visibility: Visibility): ApiRequest {
  const { view, interval: _interval, format: _format, top, ...filters } = subscription;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value !== undefined) query.set(name, String(value));
  if (top !== undefined) query.set('limit', String(top));
  return { path: `/v1/${view}`, query, visibility };
}

export class ApiStreams {
  private server: WebSocketServer | null = null;
  private pack: ((value: unknown) => Buffer) | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly handle: (request: ApiRequest) => ApiResult,
    private readonly log: Logger,
  ) {}

  async upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer, visibility: Visibility): Promise<void> {
    if (new URL(req.url ?? '/', 'http://netacct').pathname !== '/v1/stream') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (!this.server) {
      const { WebSocketServer: Server } = await import('ws');
      this.server = new Server({ noServer: true, maxPayload: 64 * 1024 });
    }
    this.server.handleUpgrade(req, socket, head, (ws) => this.serve(ws, visibility));
  }

  private serve(ws: WebSocket, visibility: Visibility): void {
    let timer: NodeJS.Timeout | null = null;
    const stop = (): void => {
      if (timer) {
        clearInterval(timer);
        this.timers.delete(timer);
      }
      timer = null;
    };
    const send = async (message: object, format: 'json' | 'msgpack'): Promise<void> => {
      if (format === 'msgpack') this.pack ??= (await import('msgpackr')).pack;
      ws.send(format === 'msgpack' ? this.pack!(message) : JSON.stringify(message));
    };
    ws.on('message', (data, isBinary) => {
      stop(); // a new subscription replaces the previous one
      let parsed: unknown;
      try {
        parsed = JSON.parse(isBinary ? Buffer.from(data as Buffer).toString() : data.toString());
      } catch {
        void send({ type: 'error', error: 'a subscription is a JSON object' }, 'json');
        return;
      }
      const subscription = Subscription.safeParse(parsed);
      if (!subscription.success) {
        const issue = subscription.error.issues[0]!;
        const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.');
        void send({ type: 'error', error: `invalid field '${field}': ${issue.message}`, field }, 'json');
        return;
      }
      const { view, interval, format } = subscription.data;
      const update = (): boolean => {
        const { status, body } = this.handle(asRequest(subscription.data, visibility));
        if (status !== 200) {
          void send({ type: 'error', ...(body as object) }, 'json');
          return false;
        }
        void send({ type: 'update', view, at: Date.now(), ...(body as object) }, format);
        return true;
      };
      if (!update()) return; // the routes refused a filter: no subscription
      timer = setInterval(update, interval);
      this.timers.add(timer);
    });
    ws.on('close', stop);
    ws.on('error', (err) => this.log.debug(`API stream: ${err.message}`));
  }

  /** WebSocket clients connected now. */
  get clientCount(): number {
    return this.server?.clients.size ?? 0;
  }

  close(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.clear();
    for (const client of this.server?.clients ?? []) client.terminate();
  }
}
