// The `netacct` command line.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from './log.js';
import { packageRoot, packageVersion } from './package-root.js';

const USAGE = `usage: netacct daemon [options]
       netacct --version

netacct daemon options:
  --atop-socket PATH       atop's socket (default /run/netatop-bpf-socket)
  --atop-socket-mode MODE  its file mode, octal (default 0666: any user's atop may
                           connect, and sees only its own user's processes)
  --all-processes-group G  members of group G (name or gid) see every process,
                           as root does
  --bpf-object PATH        compiled BPF object (default: the package's bpf/netacct.bpf.o)
  --slots N                process slots in the kernel, a power of two (default 32768);
                           a process whose slot is taken is counted in the overflow map
  --overflow-capacity N    kernel entries for counters that found no slot (default 16384)
  --exited-capacity N      kernel entries for exited processes between drains (default 32768)
  --exited-retention-ms N  keep exited processes at least N ms after every atop
                           client has had them (default 10000)
  --verbose                debug messages
`;

class UsageError extends Error {}

function integerOption(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`--${name} must be an integer of at least ${min}, not '${text}'`);
  }
  return value;
}

function powerOfTwo(value: number): number {
  if (!Number.isInteger(Math.log2(value))) throw new UsageError(`--slots must be a power of two, not ${value}`);
  return value;
}

/** A group by name (from /etc/group) or number; null when not given. */
function groupId(text: string | undefined): number | null {
  if (text === undefined) return null;
  if (/^\d+$/.test(text)) return Number(text);
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === text && gid !== undefined) return Number(gid);
  }
  throw new UsageError(`--all-processes-group: no group named '${text}' in /etc/group`);
}

function fileMode(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^0?[0-7]{3}$/.test(text)) throw new UsageError(`--atop-socket-mode must be an octal mode such as 0660, not '${text}'`);
  return parseInt(text, 8);
}

async function daemonCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'atop-socket': { type: 'string' },
      'atop-socket-mode': { type: 'string' },
      'all-processes-group': { type: 'string' },
      'bpf-object': { type: 'string' },
      slots: { type: 'string' },
      'overflow-capacity': { type: 'string' },
      'exited-capacity': { type: 'string' },
      'exited-retention-ms': { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const log = createLogger({ verbose: values.verbose ?? false });
  const options = {
    atopSocket: values['atop-socket'] ?? '/run/netatop-bpf-socket',
    atopSocketMode: fileMode(values['atop-socket-mode'], 0o666),
    allProcessesGroup: groupId(values['all-processes-group']),
    bpfObject: values['bpf-object'] ?? path.join(packageRoot(), 'bpf', 'netacct.bpf.o'),
    slots: powerOfTwo(integerOption('slots', values.slots, 32768, 1)),
    overflowCapacity: integerOption('overflow-capacity', values['overflow-capacity'], 16384, 1),
    exitedCapacity: integerOption('exited-capacity', values['exited-capacity'], 32768, 1),
    drainIntervalMs: 1000,
    exitedRetentionMs: integerOption('exited-retention-ms', values['exited-retention-ms'], 10_000, 0),
    maxExited: 200_000,
    shutdownGraceMs: 5000,
  };
  try {
    // Loaded here so that a missing libbpf.so.1 is reported like any other error.
    const { runDaemon } = await import('./daemon.js');
    await runDaemon(options, log);
    return 0;
  } catch (err) {
    log.error((err as Error).message);
    return 1;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === '--version' || command === '-V') {
      process.stdout.write(`netacct ${packageVersion()}\n`);
      return 0;
    }
    if (command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    if (command === 'daemon') return await daemonCommand(rest);
    throw new UsageError(command === undefined ? 'no command given' : `unknown command '${command}'`);
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`netacct: ${(err as Error).message}\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}
