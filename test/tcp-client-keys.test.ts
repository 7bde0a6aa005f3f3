// Whose a TCP connection is: all of loopback one client, each chosen network
// one, an IPv6 client its /64, an IPv4 client its address.
import { expect, test } from 'vitest';
import { TcpClientKeys, checkNetwork } from '../protocol/tcp-client-keys.js';

test.each([
  ['127.0.0.1', 'loopback'],
  ['127.200.3.4', 'loopback'],
  ['::1', 'loopback'],
  ['::ffff:127.0.0.9', 'loopback'],
  ['10.1.2.3', 'network 10.0.0.0/8'],
  ['::ffff:10.9.9.9', 'network 10.0.0.0/8'],
  ['fd00:1:2:3::7', 'network fd00::/8'],
  ['192.0.2.7', '192.0.2.7'],
  ['::ffff:192.0.2.7', '192.0.2.7'],
  ['2001:db8:1:2:aaaa::1', '2001:db8:1:2::/64'],
  ['2001:db8:1:2:bbbb:cccc:dddd:eeee', '2001:db8:1:2::/64'],
  ['2001:db8::1', '2001:db8:0:0::/64'],
  ['fe80::1%eth0', 'fe80:0:0:0::/64'],
  [undefined, 'unknown address'],
])('%s is counted as %s', (address, key) => {
  expect(new TcpClientKeys(['10.0.0.0/8', 'fd00::/8']).keyOf(address)).toBe(key);
});

test('a chosen network must be ADDRESS/PREFIX', () => {
  for (const good of ['10.0.0.0/8', '192.0.2.0/24', 'fd00::/8', '::/0']) expect(() => checkNetwork(good)).not.toThrow();
  for (const bad of ['10.0.0.0', '10.0.0.0/33', 'fd00::/129', 'example.com/8', '10.0.0.0/8/1', '10.0.0.0/-1']) {
    expect(() => checkNetwork(bad)).toThrow(/is not a network/);
  }
});
