// Peers as the API shows them: addresses as text (an IPv4-mapped IPv6 peer
// is an IPv4 peer), loopback marked, and the filters of /v1/peers (an address
// or a prefix, a port, a protocol), validated like every other parameter.
import net from 'node:net';
import { z } from 'zod';
import { type PeerRecord, peerAddress } from '../accounting/peer-table.js';
import { sumCounters } from '../accounting/counter-math.js';
import { Kind, Protocol } from '../kernel/layout.js';

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** What a row is: a known peer, the calls whose peer the kernel side could not see, or the process's overflow row. */
export type PeerKind = 'peer' | 'unknown' | 'overflow';

export interface PeerView {
  kind: PeerKind;
  address: string | null;
  /** The peer's port; null when not kept (a service's clients' ephemeral ports) or not known. */
  port: number | null;
  /** The local port; null when not kept (a client's ephemeral port). */
  localPort: number | null;
  loopback: boolean;
}

export function peerView(record: PeerRecord): PeerView {
  if (!record.peer) return { kind: 'overflow', address: null, port: null, localPort: null, loopback: false };
  const address = peerAddress(record.peer.address);
  const family = address && net.isIPv4(address) ? 'ipv4' : 'ipv6';
  return {
    kind: address ? 'peer' : 'unknown',
    address,
    port: record.peer.remotePort || null,
    localPort: record.peer.localPort || null,
    loopback: address !== null && LOOPBACK.check(address, family),
  };
}

/** `address=`: one address (10.1.2.3, ::1) or a prefix (10.0.0.0/8, fd00::/8). */
const AddressFilter = z
  .string()
  .max(64)
  .transform((text, ctx) => {
    const [address = '', bits, ...rest] = text.split('/');
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : null;
    const prefix = bits === undefined ? null : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (!family || rest.length > 0 || Number.isNaN(prefix) || (prefix !== null && prefix > (family === 'ipv4' ? 32 : 128))) {
      ctx.addIssue({ code: 'custom', message: 'must be an IPv4 or IPv6 address, or a prefix such as 10.0.0.0/8 or fd00::/8' });
      return z.NEVER;
    }
    const list = new net.BlockList();
    if (prefix === null) list.addAddress(address, family);
    else list.addSubnet(address, prefix, family);
    return (peer: string): boolean => list.check(peer, net.isIPv4(peer) ? 'ipv4' : 'ipv6');
  });

const whole = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a whole number')
  .transform(Number);

/** Query of /v1/peers and /v1/processes/{pid}/peers; `sortKeys`: the counter keys (tcp.send.bytes, total.bytes). */
export function peerQuery(sortKeys: readonly string[]) {
  return z.strictObject({
    pid: whole.optional(),
    cgroup: whole.optional(),
    address: AddressFilter.optional(),
    /** The peer's port or the local port. */
    port: whole.pipe(z.number().max(65535, 'must be a port, 0 to 65535')).optional(),
    protocol: z.enum(['tcp', 'udp']).optional(),
    state: z.enum(['live', 'exited', 'all']).default('all'),
    sort: z.enum(['pid', 'address', 'port', ...sortKeys] as [string, ...string[]]).default('total.bytes'),
    order: z.enum(['asc', 'desc']).default('desc'),
    limit: whole.pipe(z.number().min(1, 'must be at least 1').max(1_000_000)).default(1_000_000),
  });
}

/** Whether `record` (seen as `view`) passes the peer filters of `query`. */
export function peerMatches(
  record: PeerRecord,
  view: PeerView,
  query: { address?: ((peer: string) => boolean) | undefined; port?: number | undefined; protocol?: 'tcp' | 'udp' | undefined },
): boolean {
  if (query.address && (view.address === null || !query.address(view.address))) return false;
  if (query.port !== undefined && view.port !== query.port && view.localPort !== query.port) return false;
  if (query.protocol && sumCounters(record.counters, Kind.calls, [Protocol[query.protocol]]) === 0) return false;
  return true;
}
