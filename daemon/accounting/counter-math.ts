// Arithmetic on the 16 counters of bpf/netacct.h (see layout.ts for their
// order), shared by the process table, the API and /metrics.
import { COUNTERS, Direction, Family, Protocol, counterIndex } from '../kernel/layout.js';

/** Plain arrays: per entry they take far less memory than small typed arrays. */
export function zeroCounters(): number[] {
  return new Array<number>(COUNTERS).fill(0);
}

/** Adds the first `count` of `counters` into `into`: the daemon's 16 by default, history's 8 for its own sums. */
export function addInto(into: number[], counters: ArrayLike<number>, count: number = COUNTERS): void {
  for (let i = 0; i < count; i++) into[i]! += counters[i]!;
}

/** Adds `counters` to the sum kept under `key` (a copy of them if there is none yet). */
export function addUnder<K>(sums: Map<K, number[]>, key: K, counters: ArrayLike<number>, count: number = COUNTERS): void {
  const sum = sums.get(key);
  if (sum) addInto(sum, counters, count);
  else sums.set(key, Array.from(counters));
}

const BOTH_FAMILIES = [Family.ipv4, Family.ipv6];
const BOTH_PROTOCOLS = [Protocol.tcp, Protocol.udp];
const BOTH_DIRECTIONS = [Direction.send, Direction.recv];

/** The sum of the `kind` counters (calls or bytes) over the protocols, directions and families given (default: all). */
export function sumCounters(
  counters: ArrayLike<number>,
  kind: number,
  protocols: readonly number[] = BOTH_PROTOCOLS,
  directions: readonly number[] = BOTH_DIRECTIONS,
  families: readonly number[] = BOTH_FAMILIES,
): number {
  let sum = 0;
  for (const family of families)
    for (const protocol of protocols) for (const direction of directions) sum += counters[counterIndex(family, protocol, direction, kind)]!;
  return sum;
}
