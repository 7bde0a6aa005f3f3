// The bytes atop reads: struct netpertask, 96 bytes, little-endian.
import { expect, test } from 'vitest';
import { COUNTERS, Direction, Family, Kind, Protocol, counterIndex } from '../daemon/kernel/layout.js';
import { AnswerEncoder, RECORD_SIZE, decodeRecord, encodeCommand } from '../protocol/netatop-record.js';

/** One answer, written as the daemon writes it. */
function encodeAnswer(processes: Array<{ tgid: number; btime: number; comm: string; counters: Float64Array }>): Buffer {
  const encoder = new AnswerEncoder(processes.length);
  for (const p of processes) encoder.add(p.tgid, p.btime, encodeCommand(p.comm), p.counters);
  return encoder.finish();
}

function counters(values: Array<[number, number, number, number, number]>): Float64Array {
  const c = new Float64Array(COUNTERS);
  for (const [family, protocol, direction, kind, value] of values) c[counterIndex(family, protocol, direction, kind)] = value;
  return c;
}

test('one record and the terminator, byte for byte', () => {
  const { ipv4, ipv6 } = Family;
  const { tcp, udp } = Protocol;
  const { send, recv } = Direction;
  const { calls, bytes } = Kind;
  const answer = encodeAnswer([
    {
      tgid: 0x01020304,
      btime: 0x1_0000_0002, // above 2^32: both halves must be written
      comm: 'curl',
      counters: counters([
        [ipv4, tcp, send, calls, 3],
        [ipv6, tcp, send, calls, 4], // IPv4 and IPv6 are summed on the wire
        [ipv4, tcp, send, bytes, 5_000_000_000],
        [ipv4, tcp, recv, calls, 6],
        [ipv6, tcp, recv, bytes, 7],
        [ipv4, udp, send, calls, 8],
        [ipv6, udp, send, bytes, 9],
        [ipv4, udp, recv, calls, 10],
        [ipv6, udp, recv, bytes, 11],
      ]),
    },
  ]);
  expect(answer.length).toBe(2 * RECORD_SIZE);
  const expected = Buffer.alloc(2 * RECORD_SIZE);
  expected.writeInt32LE(0x01020304, 0);
  expected.writeBigUInt64LE(0x1_0000_0002n, 8);
  expected.write('curl', 16, 'latin1');
  [7n, 5_000_000_000n, 6n, 7n, 8n, 9n, 10n, 11n].forEach((value, i) => expected.writeBigUInt64LE(value, 32 + i * 8));
  expect(answer.toString('hex')).toBe(expected.toString('hex'));
});

test('a command name is cut to 15 bytes and NUL terminated', () => {
  const answer = encodeAnswer([{ tgid: 1, btime: 0, comm: 'abcdefghijklmnopqrst', counters: new Float64Array(COUNTERS) }]);
  expect(answer.subarray(16, 32).toString('latin1')).toBe('abcdefghijklmno\0');
  expect(decodeRecord(answer).command).toBe('abcdefghijklmno');
});

test('an empty answer is the terminator alone', () => {
  expect(encodeAnswer([]).equals(Buffer.alloc(RECORD_SIZE))).toBe(true);
});
