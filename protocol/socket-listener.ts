// Where a server's clients come in: a Unix socket (credentials from the
// kernel) or a TCP address (no credentials: the operator chose who may
// reach it). It admits each connection under the client limits, says who the
// client is, and keeps a Unix socket's file in place: a file removed or
// replaced behind the daemon's back is noticed and created again, and its
// mode is set without following links.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger, RateLimitedLog } from '../daemon/common/log.js';
import { guarded, rateLimited } from '../daemon/common/log.js';
import { type ClientLimits, type ClientOwner, ClientCounts, type RefusalReason } from './client-limits.js';
import { type Visibility, peerOf, visibilityOf } from './peer-credentials.js';
import { listenUnix, removeSocketFile, setSocketMode, socketInode } from './unix-socket-path.js';
import type { TcpClientKeys } from './tcp-client-keys.js';
import type { TlsSettings } from './web-config.js';
import type { TimeBudgets } from './time-budget.js';
import type { Ticker } from '../daemon/common/heartbeat.js';

/**
 * Where clients connect: a Unix socket with its file mode, or a TCP address
 * with whose connection each is (clientKeys) and TLS if configured.
 */
export type Endpoint = { socketPath: string; mode: number } | { host: string; port: number; clientKeys: TcpClientKeys; tls: TlsSettings | null };

/** An admitted client: what it may see, and whose places it counts against. */
export interface ClientIdentity {
  visibility: Visibility;
  owner: ClientOwner;
}

export interface SocketListenerOptions {
  /** For the log and /metrics: "atop", "api", "tcp". */
  name: string;
  endpoint: Endpoint;
  limits: ClientLimits;
  /** The gid whose members see every process (root always does), or null. */
  allProcessesGroup: number | null;
  log: Logger;
  /** An admitted client's socket; the listener releases its place when it closes. */
  onClient: (socket: net.Socket, client: ClientIdentity) => void;
  /** The time shares: a TLS handshake is charged to its client, and refused while its share is spent. */
  budgets: TimeBudgets;
  /**
   * Written to a refused client before it is closed (an HTTP status line, so
   * that curl says why); null: closed without a word (atop's protocol has none).
   */
  refusal: ((reason: string) => string) | null;
  /** The daemon's heartbeat, which checks a Unix socket's file (a timer of its own would wake the daemon more often). */
  ticker: Ticker;
}

/** TCP clients have no credentials: whoever may connect sees every process. */
const TCP_VISIBILITY: Visibility = { seesAll: true, uid: -1 };
/**
 * What a TLS handshake costs the daemon's thread, charged to its client:
 * measured 1.1 ms (P-256 key) to 1.3 ms (RSA 2048) of CPU here. Without it a
 * client connecting and closing in a loop would cost everyone else a core.
 */
const TLS_HANDSHAKE_MS = 1.5;
/** How often a Unix socket's file is checked (a removed file locks every new client out). */
const PATH_CHECK_INTERVAL_MS = 2000;

export class SocketListener {
  private server: net.Server;
  private readonly counts: ClientCounts;
  private readonly report: RateLimitedLog;
  private readonly sockets = new Set<net.Socket>();
  /** The inode of the socket file this listener bound (Unix only). */
  private inode: number | null = null;
  private stopPathCheck: (() => void) | null = null;
  private closing = false;

  constructor(private readonly options: SocketListenerOptions) {
    this.counts = new ClientCounts(options.limits);
    this.report = rateLimited(options.log);
    this.server = this.createServer();
  }

  private createServer(): net.Server {
    const server = net.createServer({ allowHalfOpen: true }, guarded(this.report, `${this.options.name} socket: accepting a client`, (socket: net.Socket) => this.accept(socket)));
    server.on('error', (err) => this.report('error', 'server', `${this.options.name} socket: ${err.message}`));
    return server;
  }

  private get unixPath(): string | null {
    return 'socketPath' in this.options.endpoint ? this.options.endpoint.socketPath : null;
  }

  get connections(): number {
    return this.counts.connections;
  }

  get refused(): Readonly<Record<RefusalReason, number>> {
    return this.counts.refused;
  }

  private identify(socket: net.Socket): ClientIdentity {
    const { endpoint } = this.options;
    if (!('socketPath' in endpoint)) {
      // No credentials: never root's reserved places, and one key for all of loopback (any local user binds any of it).
      return { visibility: TCP_VISIBILITY, owner: { key: endpoint.clientKeys.keyOf(socket.remoteAddress), root: false } };
    }
    const peer = peerOf(socket);
    return { visibility: visibilityOf(peer, this.options.allProcessesGroup), owner: { key: `uid ${peer.uid}`, root: peer.uid === 0 } };
  }

  private accept(socket: net.Socket): void {
    socket.on('error', (err) => this.options.log.debug(`${this.options.name} client: ${err.message}`));
    if (this.closing) return void socket.destroy();
    let client: ClientIdentity;
    try {
      client = this.identify(socket);
    } catch (err) {
      this.report('warn', 'credentials', `${this.options.name} socket: refusing a client whose credentials cannot be read: ${(err as Error).message}`);
      return void socket.destroy();
    }
    const refusal = this.counts.admit(client.owner);
    if (refusal) {
      const { total, perUser } = this.options.limits;
      const why =
        refusal === 'per_user'
          ? `${client.owner.key} already has ${perUser} connections (the limit per user)`
          : `${total} connections are open (the limit; the last places are kept for root)`;
      this.report('warn', `refused ${refusal}`, `${this.options.name} socket: refused a connection: ${why}`);
      // Plain text where the client speaks TLS would only be a protocol error to it.
      const text = this.tlsSettings ? null : this.options.refusal?.(why);
      if (text) socket.end(text, () => socket.destroy());
      else socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.counts.release(client.owner);
    });
    const settings = this.tlsSettings;
    if (settings) this.secure(socket, client, settings);
    else this.options.onClient(socket, client);
  }

  /** The TCP endpoint's TLS settings, or null (plain TCP, or a Unix socket). */
  private get tlsSettings(): TlsSettings | null {
    const { endpoint } = this.options;
    return 'tls' in endpoint ? endpoint.tls : null;
  }

  /**
   * A TLS server that takes admitted TCP connections (Node's, for its checks
   * of client certificates), and the connections it is handshaking, by remote
   * and local address and port (how its secure side is matched to its client).
   */
  private tls: { server: tls.Server; handshaking: Map<string, ClientIdentity> } | null = null;

  /** Hands an admitted connection to the TLS server; its place is the raw socket's, released when that closes. */
  private secure(socket: net.Socket, client: ClientIdentity, settings: TlsSettings): void {
    if (!this.tls) {
      const server = tls.createServer(settings.server);
      const handshaking = new Map<string, ClientIdentity>();
      server.on('secureConnection', guarded(this.report, `${this.options.name} socket: a TLS client`, (secure: tls.TLSSocket) => {
        const key = connectionKey(secure);
        const known = handshaking.get(key);
        handshaking.delete(key);
        const presented = Object.keys(secure.getPeerCertificate()).length > 0;
        const refusal = !known
          ? 'its connection is gone'
          : settings.requireCert && !presented
            ? 'no client certificate'
            : settings.verifyIfGiven && presented && !secure.authorized
              ? `its certificate is not vouched for (${String(secure.authorizationError)})`
              : null;
        if (refusal) {
          this.report('warn', 'client certificate', `${this.options.name} socket: closed a TLS client: ${refusal}`);
          return void secure.destroy();
        }
        secure.on('error', (err) => this.options.log.debug(`${this.options.name} client: ${err.message}`));
        this.options.onClient(secure, known!);
      }));
      server.on('tlsClientError', (err, secure) => {
        this.options.log.debug(`${this.options.name} client: TLS: ${err.message}`);
        secure.destroy();
      });
      this.tls = { server, handshaking };
    }
    const { budgets } = this.options;
    if (budgets.waitMs(client.owner) > 0) {
      budgets.throttled++;
      this.report('warn', 'tls throttled', `${this.options.name} socket: refused a TLS connection of ${client.owner.key}: its share of the daemon's time is spent`);
      return void socket.destroy();
    }
    budgets.charge(client.owner, TLS_HANDSHAKE_MS);
    // The listener keeps half-open sockets (a client's end of input is not the end of its answer); TLS must not: a
    // client gone before or after its handshake would keep its place (and its TLS socket) until the timeouts.
    socket.allowHalfOpen = false;
    // This server's map, not whichever is current when it closes (a reload makes a new one).
    const { server, handshaking } = this.tls;
    const key = connectionKey(socket);
    handshaking.set(key, client);
    socket.once('close', () => handshaking.delete(key));
    server.emit('connection', socket);
  }

  async listen(): Promise<void> {
    const { endpoint } = this.options;
    if ('socketPath' in endpoint) {
      await listenUnix(this.server, endpoint.socketPath, endpoint.mode);
      this.inode = socketInode(endpoint.socketPath);
      this.stopPathCheck?.();
      this.stopPathCheck = this.options.ticker.every(PATH_CHECK_INTERVAL_MS, guarded(this.report, `${this.options.name} socket: checking its file`, () => this.checkPath()));
      return;
    }
    await new Promise<void>((resolve, reject) => {
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

  /**
   * The socket file is still the one this listener bound; if it was removed
   * or replaced, a new one is bound (clients already connected stay).
   */
  checkPath(): boolean {
    const path = this.unixPath;
    if (!path || this.closing || socketInode(path) === this.inode) return true;
    this.options.log.warn(`${this.options.name} socket ${path} was removed or replaced: creating it again`);
    const old = this.server;
    this.server = this.createServer();
    old.close();
    this.listen().catch((err: Error) => {
      this.report('error', 'relisten', `${this.options.name} socket ${path}: cannot create it again (${err.message}); retrying`);
      this.inode = null;
    });
    return false;
  }

  /** Configuration reload: the socket file's mode (links are never followed), the group, the limits. */
  reconfigure(mode: number, allProcessesGroup: number | null, limits: ClientLimits): void {
    const { endpoint } = this.options;
    this.options.allProcessesGroup = allProcessesGroup;
    this.counts.limits = limits;
    if (!('socketPath' in endpoint)) return;
    endpoint.mode = mode;
    // A socket bound again gets the new mode as it is created.
    if (this.checkPath() && this.inode !== null) setSocketMode(endpoint.socketPath, mode, this.inode);
  }

  /**
   * Configuration reload: TLS settings (a renewed certificate, a new CA) for
   * connections from now on; those open keep the settings they began with.
   */
  setTls(settings: TlsSettings | null): void {
    const { endpoint } = this.options;
    if (!('tls' in endpoint)) return;
    endpoint.tls = settings;
    this.tls = null; // the next connection makes a TLS server with them
  }

  /** Stops accepting and destroys every client; removes the socket file if it is still this listener's. */
  async close(): Promise<void> {
    this.closing = true;
    this.stopPathCheck?.();
    this.stopPathCheck = null;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    const path = this.unixPath;
    if (path && this.inode !== null && socketInode(path) === this.inode) removeSocketFile(path);
  }

}

/** A TCP connection's two ends (unique among open connections: one remote end may reach two local addresses). */
function connectionKey(socket: net.Socket): string {
  return `${socket.localAddress}:${socket.localPort} ${socket.remoteAddress}:${socket.remotePort}`;
}
