// Whose connection a TCP client's is, for the connection limits and the time
// shares (TCP has no credentials). A remote address is no identity: any local
// user can bind any of 127.0.0.0/8, and an IPv6 host has a /64 to choose
// from, so keyed by address one user would get a fresh allowance per address
// and starve everyone else. So all of loopback is one client, each network
// the operator names (listenClientNetworks) is one, an IPv6 client outside
// them is its /64, and an IPv4 client its address.
import net from 'node:net';

/** The key a set of addresses is counted under, and the addresses. */
interface Network {
  key: string;
  addresses: net.BlockList;
}

function network(key: string, ...cidrs: string[]): Network {
  const addresses = new net.BlockList();
  for (const cidr of cidrs) {
    const [address, prefix] = cidr.split('/');
    addresses.addSubnet(address!, Number(prefix), net.isIPv6(address!) ? 'ipv6' : 'ipv4');
  }
  return { key, addresses };
}

/** Throws (with a message naming it) unless `cidr` is "ADDRESS/PREFIX". */
export function checkNetwork(cidr: string): void {
  const [address, prefix, extra] = cidr.split('/');
  const family = net.isIP(address ?? '');
  const bits = Number(prefix);
  if (family === 0 || extra !== undefined || !/^\d{1,3}$/.test(prefix ?? '') || bits > (family === 4 ? 32 : 128)) {
    throw new Error(`'${cidr}' is not a network such as 10.0.0.0/8 or fd00::/8`);
  }
}

export class TcpClientKeys {
  private readonly networks: Network[];

  /** `chosen`: networks, each counted as one client ("10.1.0.0/16"). */
  constructor(chosen: readonly string[]) {
    this.networks = [network('loopback', '127.0.0.0/8', '::1/128'), ...chosen.map((cidr) => network(`network ${cidr}`, cidr))];
  }

  keyOf(remoteAddress: string | undefined): string {
    if (!remoteAddress) return 'unknown address';
    // An IPv4 client of a dual-stack socket: ::ffff:a.b.c.d.
    const address = remoteAddress.startsWith('::ffff:') && net.isIPv4(remoteAddress.slice(7)) ? remoteAddress.slice(7) : remoteAddress;
    const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
    for (const { key, addresses } of this.networks) if (addresses.check(address, family)) return key;
    if (family === 'ipv4') return address;
    return `${expandIpv6(address.split('%')[0]!).slice(0, 4).join(':')}::/64`; // without a link-local address's zone
  }
}

/** The eight 16-bit groups of an IPv6 address, as hex without leading zeros. */
function expandIpv6(address: string): string[] {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.map((group) => parseInt(group, 16).toString(16));
}
