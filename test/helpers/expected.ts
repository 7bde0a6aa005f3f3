// Expected counters written the way a reader thinks of them.
import { COUNTERS, Direction, Family, Kind, Protocol, counterIndex } from '../../daemon/kernel/layout.js';

type FamilyName = keyof typeof Family;
type ProtocolName = keyof typeof Protocol;
type DirectionName = keyof typeof Direction;

/** e.g. { 'ipv4 tcp send': [101, 100500] } → the 16 counters as a plain array. */
export function expectedCounters(spec: Record<string, [calls: number, bytes: number]>): number[] {
  const counters = new Array<number>(COUNTERS).fill(0);
  for (const [key, [calls, bytes]] of Object.entries(spec)) {
    const [family, protocol, direction] = key.split(' ') as [FamilyName, ProtocolName, DirectionName];
    counters[counterIndex(Family[family], Protocol[protocol], Direction[direction], Kind.calls)] = calls;
    counters[counterIndex(Family[family], Protocol[protocol], Direction[direction], Kind.bytes)] = bytes;
  }
  return counters;
}

/** What the basic scenario of test/fixtures/traffic.c does, call by call. */
export const BASIC_SCENARIO = expectedCounters({
  'ipv4 tcp send': [100 + 1, 100 * 1000 + 500],
  'ipv4 tcp recv': [100 + 1, 100 * 1000 + 500],
  'ipv6 tcp send': [50, 50 * 3000],
  'ipv6 tcp recv': [50, 50 * 3000],
  'ipv4 udp send': [20, 20 * 200],
  'ipv4 udp recv': [20, 20 * 200],
  'ipv6 udp send': [10 + 1, 10 * 100],
  'ipv6 udp recv': [10 + 1, 10 * 100],
});

/** The 8 netpertask counters atop gets for 16 counters (IPv4 + IPv6). */
export function wireCounters(counters: number[]): number[] {
  const wire: number[] = [];
  for (const protocol of [Protocol.tcp, Protocol.udp]) {
    for (const direction of [Direction.send, Direction.recv]) {
      for (const kind of [Kind.calls, Kind.bytes]) {
        wire.push(
          counters[counterIndex(Family.ipv4, protocol, direction, kind)]! +
            counters[counterIndex(Family.ipv6, protocol, direction, kind)]!,
        );
      }
    }
  }
  return wire;
}

/** The basic scenario of test/fixtures/traffic.c as the API shows it. */
export const BASIC_SCENARIO_API = {
  tcp: { send: { calls: 151, bytes: 250_500 }, recv: { calls: 151, bytes: 250_500 } },
  udp: { send: { calls: 31, bytes: 5000 }, recv: { calls: 31, bytes: 5000 } },
  ipv4: {
    tcp: { send: { calls: 101, bytes: 100_500 }, recv: { calls: 101, bytes: 100_500 } },
    udp: { send: { calls: 20, bytes: 4000 }, recv: { calls: 20, bytes: 4000 } },
  },
  ipv6: {
    tcp: { send: { calls: 50, bytes: 150_000 }, recv: { calls: 50, bytes: 150_000 } },
    udp: { send: { calls: 11, bytes: 1000 }, recv: { calls: 11, bytes: 1000 } },
  },
};

type ApiTraffic = Record<'tcp' | 'udp', Record<'send' | 'recv', { calls: number; bytes: number }>>;
/** The counters of a process or peer row as the API shows them. */
export type ApiCounters = ApiTraffic & { ipv4: ApiTraffic; ipv6: ApiTraffic };

/** e.g. { 'ipv4 tcp send': [3, 3000] } as the API's counters object (tcp, udp, then per family). */
export function apiCounters(spec: Record<string, [calls: number, bytes: number]>): ApiCounters {
  const counters = expectedCounters(spec);
  const traffic = (families: number[]): ApiTraffic => {
    const pick = (protocol: number, direction: number) => {
      const sum = (kind: number) => families.reduce((total, family) => total + counters[counterIndex(family, protocol, direction, kind)]!, 0);
      return { calls: sum(Kind.calls), bytes: sum(Kind.bytes) };
    };
    const byDirection = (protocol: number) => ({ send: pick(protocol, Direction.send), recv: pick(protocol, Direction.recv) });
    return { tcp: byDirection(Protocol.tcp), udp: byDirection(Protocol.udp) };
  };
  return { ...traffic([Family.ipv4, Family.ipv6]), ipv4: traffic([Family.ipv4]), ipv6: traffic([Family.ipv6]) };
}

/** The sum of API counters objects, field by field. */
export function addApiCounters(rows: readonly ApiCounters[]): ApiCounters {
  const sum = apiCounters({});
  const add = (into: ApiTraffic, from: ApiTraffic): void => {
    for (const protocol of ['tcp', 'udp'] as const) {
      for (const direction of ['send', 'recv'] as const) {
        into[protocol][direction].calls += from[protocol][direction].calls;
        into[protocol][direction].bytes += from[protocol][direction].bytes;
      }
    }
  };
  for (const row of rows) {
    add(sum, row);
    add(sum.ipv4, row.ipv4);
    add(sum.ipv6, row.ipv6);
  }
  return sum;
}
