// The HTTP/1.1 API on a Unix socket, for scripts (curl --unix-socket …), and
// optionally on TCP (Prometheus, a browser). On the Unix socket it keeps the
// atop socket's rules: every client's credentials come from the kernel and
// decide what it may see. Everywhere every byte is hostile (Node's parser
// bounds headers; requests time out; only GET), and JSON or msgpack answers
// as the client asks (Accept: application/msgpack).
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Logger } from '../daemon/log.js';
import { ApiStreams } from './api-stream.js';
import { type Visibility, peerOf, visibilityOf } from './peer-credentials.js';
import { listenUnix, removeSocketFile } from './unix-socket-path.js';

export interface ApiRequest {
  path: string;
  query: URLSearchParams;
  visibility: Visibility;
}

export interface ApiResult {
  status: number;
  /** Sent as JSON or msgpack, as the client asks; or as is when `contentType` is set (a string or bytes). */
  body: unknown;
  contentType?: string;
  /** Extra response headers (Content-Security-Policy for the web page). */
  headers?: Record<string, string>;
}

/** Where the API listens: a Unix socket with its file mode, or a TCP address. */
export type ApiEndpoint = { socketPath: string; mode: number } | { host: string; port: number };

export interface ApiServerOptions {
  endpoint: ApiEndpoint;
  /** The gid whose members see every process (root always does), or null. */
  allProcessesGroup: number | null;
  handle: (request: ApiRequest) => ApiResult;
  log: Logger;
}

const MSGPACK = 'application/msgpack';

/** msgpackr, loaded when a client first asks for msgpack: loading it costs ~9 MiB of RSS. */
let packMsgpack: ((value: unknown) => Buffer) | null = null;
async function msgpackEncoder(): Promise<(value: unknown) => Buffer> {
  packMsgpack ??= (await import('msgpackr')).pack;
  return packMsgpack;
}
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 1024;
/** TCP clients have no credentials: whoever may connect sees every process (the operator chose the address). */
const TCP_VISIBILITY: Visibility = { seesAll: true, uid: -1 };

/**
 * On TCP, a web page from another site must not read the API through the
 * user's browser: a Host that names a domain (DNS rebinding) and a WebSocket
 * whose Origin is another site (WebSockets ignore CORS) are refused. IP
 * literals and localhost are what a local user or Prometheus puts there.
 */
function trustedHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return name === 'localhost' || net.isIP(name) !== 0;
}

function sameOrigin(req: http.IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true; // not a browser
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export class ApiServer {
  private readonly server: http.Server;
  private readonly visibilities = new WeakMap<net.Socket, Visibility>();
  private readonly streams: ApiStreams;
  private connections = 0;

  constructor(private readonly options: ApiServerOptions) {
    this.streams = new ApiStreams(options.handle, options.log);
    this.server = http.createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS }, (req, res) =>
      this.respond(req, res),
    );
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.on('connection', (socket: net.Socket) => {
      this.connections++;
      socket.once('close', () => this.connections--);
      if (!this.isUnix) return void this.visibilities.set(socket, TCP_VISIBILITY);
      try {
        this.visibilities.set(socket, visibilityOf(peerOf(socket), this.options.allProcessesGroup));
      } catch (err) {
        this.options.log.warn(`API socket: refusing a client whose credentials cannot be read: ${(err as Error).message}`);
        socket.destroy();
      }
    });
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      const visibility = this.visibilities.get(socket);
      if (!visibility) return void socket.destroy();
      if (!this.isUnix && !(trustedHost(req.headers.host) && sameOrigin(req))) {
        return void socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      }
      this.streams.upgrade(req, socket, head, visibility).catch((err: Error) => {
        this.options.log.error(`API stream: ${err.message}`);
        socket.destroy();
      });
    });
    this.server.on('clientError', (_err, socket) => {
      // Malformed HTTP: answer 400 if the socket still takes it, never crash.
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    this.server.on('error', (err) => options.log.error(`API socket: ${err.message}`));
  }

  /** Clients connected now: all connections, of which WebSocket streams. */
  get clients(): { connections: number; streams: number } {
    return { connections: this.connections, streams: this.streams.clientCount };
  }

  private get isUnix(): boolean {
    return 'socketPath' in this.options.endpoint;
  }

  listen(): Promise<void> {
    const { endpoint } = this.options;
    if ('socketPath' in endpoint) return listenUnix(this.server, endpoint.socketPath, endpoint.mode);
    return new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: endpoint.host, port: endpoint.port, backlog: 4096 }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Where it listens, for the log: the socket path, or "tcp HOST:PORT" with the port the kernel gave for port 0. */
  get where(): string {
    const { endpoint } = this.options;
    if ('socketPath' in endpoint) return endpoint.socketPath;
    const address = this.server.address();
    const port = address && typeof address === 'object' ? address.port : endpoint.port;
    return `tcp ${net.isIPv6(endpoint.host) ? `[${endpoint.host}]` : endpoint.host}:${port}`;
  }

  private respond(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume(); // a body is never read: GET only
    if (!(req.headers.accept ?? '').includes(MSGPACK)) return this.answer(req, res, null);
    msgpackEncoder().then(
      (pack) => this.answer(req, res, pack),
      (err: Error) => {
        this.options.log.error(`API: cannot load msgpackr: ${err.message}`);
        res.destroy();
      },
    );
  }

  /** Answers in JSON, or in msgpack with `pack`. */
  private answer(req: http.IncomingMessage, res: http.ServerResponse, pack: ((value: unknown) => Buffer) | null): void {
    const msgpack = pack !== null;
    const send = ({ status, body, contentType, headers }: ApiResult): void => {
      if (contentType !== undefined) {
        const raw = typeof body === 'string' ? Buffer.from(body) : (body as Buffer);
        res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': raw.length });
        return void res.end(raw);
      }
      const payload = pack ? pack(body) : Buffer.from(`${JSON.stringify(body)}\n`);
      res.writeHead(status, { 'Content-Type': msgpack ? MSGPACK : 'application/json', 'Content-Length': payload.length });
      res.end(payload);
    };
    const visibility = this.visibilities.get(req.socket);
    if (!visibility) return void res.destroy();
    if (!this.isUnix && !trustedHost(req.headers.host)) {
      return send({ status: 403, body: { error: 'Host must be an IP address or localhost (DNS rebinding protection)' } });
    }
    if (req.method !== 'GET') return send({ status: 405, body: { error: `method ${req.method} not allowed: the API is read-only (GET)` } });
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://netacct');
    } catch {
      return send({ status: 400, body: { error: 'malformed request target' } });
    }
    try {
      send(this.options.handle({ path: url.pathname, query: url.searchParams, visibility }));
    } catch (err) {
      this.options.log.error(`API ${url.pathname}: ${(err as Error).message}`);
      send({ status: 500, body: { error: 'internal error; see the daemon log' } });
    }
  }

  /** Configuration reload: a Unix socket's mode now, the group for clients that connect from now on. */
  reconfigure(mode: number, allProcessesGroup: number | null): void {
    const { endpoint } = this.options;
    if ('socketPath' in endpoint) {
      fs.chmodSync(endpoint.socketPath, mode);
      endpoint.mode = mode;
    }
    this.options.allProcessesGroup = allProcessesGroup;
  }

  async close(): Promise<void> {
    this.streams.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    const { endpoint } = this.options;
    if ('socketPath' in endpoint) removeSocketFile(endpoint.socketPath);
  }
}
