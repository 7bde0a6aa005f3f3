// `netacct top`: a live view of the processes (or cgroups) with the highest
// send/receive rates, refreshed every second from the API, or of the
// (process, peer) pairs with the most traffic when the daemon counts per
// peer. Keys: q quits, c switches between processes and cgroups, p shows the
// peers, s cycles the sort column, r reverses it. The terminal is always
// restored: on q, Ctrl-C, SIGTERM, or an error.
import { apiGet } from './api-client.js';
import { printable } from '../daemon/common/printable.js';
import { type ContainerName, type Counters, type PeerRow, containerText, humanBytes, peerText } from './listing.js';

const SORTS = ['tcp.send.bytes', 'tcp.recv.bytes', 'udp.send.bytes', 'udp.recv.bytes'] as const;
const TERMINAL = { altScreen: '\x1b[?1049h', mainScreen: '\x1b[?1049l', hideCursor: '\x1b[?25l', showCursor: '\x1b[?25h', home: '\x1b[H\x1b[2J' };

const rate = (r: Counters | null | undefined, key: (typeof SORTS)[number]): string => {
  if (!r) return '-';
  const [protocol, direction] = key.split('.') as ['tcp' | 'udp', 'send' | 'recv'];
  return `${humanBytes(Math.round(r[protocol][direction].bytes))}/s`;
};

export async function runTop(socketPath: string, refreshMs = 1000): Promise<number> {
  const out = process.stdout;
  let view: 'processes' | 'cgroups' | 'peers' = 'processes';
  let sortIndex = 0;
  let descending = true;
  let message = '';
  let stopped = false;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (finish = resolve));

  const restore = (): void => {
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.pause();
    out.write(TERMINAL.showCursor + TERMINAL.mainScreen);
  };
  const quit = (code: number): void => {
    if (stopped) return;
    stopped = true;
    restore();
    finish(code);
  };

  const draw = async (): Promise<void> => {
    const sort = SORTS[sortIndex]!;
    // Processes sort by their rate; cgroups and peers have totals only, so by the counter.
    const key = view === 'processes' ? `rate.${sort}` : sort;
    const { status, body } = await apiGet(socketPath, `/v1/${view}?sort=${key}&order=${descending ? 'desc' : 'asc'}&limit=${Math.max(1, (out.rows ?? 24) - 4)}`);
    if (stopped) return;
    message = status === 200 ? '' : printable(String(body.error ?? `the daemon answered ${status}`));
    const columns = SORTS.map((s) => s.split('.').slice(0, 2).join(' ').toUpperCase().padStart(12)).join('');
    const total = (c: Counters): string => SORTS.map((s) => humanBytes(c[s.split('.')[0] as 'tcp'][s.split('.')[1] as 'send'].bytes).padStart(12)).join('');
    const header = {
      processes: `${'PID'.padStart(7)}  ${'COMMAND'.padEnd(15)}  ${'CONTAINER'.padEnd(30)}  ${columns}`,
      cgroups: `${'CGROUP OR CONTAINER'.padEnd(40)}  ${columns}`,
      peers: `${'PID'.padStart(7)}  ${'COMMAND'.padEnd(15)}  ${'PEER'.padEnd(46)}  ${'LOCAL'.padStart(5)}  ${columns}`,
    }[view];
    const rows: string[] =
      status !== 200
        ? []
        : view === 'processes'
          ? (body.processes as Array<{ pid: number; command: string; cgroup: { container: ContainerName | null; containerId: string | null }; rates: Counters | null }>).map(
              (p) =>
                `${String(p.pid).padStart(7)}  ${printable(p.command).padEnd(15)}  ${printable(containerText(p.cgroup.container, p.cgroup.containerId)).slice(-30).padEnd(30)}  ${SORTS.map((s) => rate(p.rates, s).padStart(12)).join('')}`,
            )
          : view === 'cgroups'
            ? (body.cgroups as Array<{ id: number; path: string | null; container: ContainerName | null; counters: Counters }>).map(
                (c) => `${printable(c.container ? containerText(c.container) : (c.path ?? `(id ${c.id})`)).slice(-40).padEnd(40)}  ${total(c.counters)}`,
              )
            : (body.peers as PeerRow[]).map(
                (p) => `${String(p.pid).padStart(7)}  ${printable(p.command).padEnd(15)}  ${printable(peerText(p)).padEnd(46)}  ${(p.localPort === null ? '-' : String(p.localPort)).padStart(5)}  ${total(p.counters)}`,
              );
    const keys = `q quit  c ${view === 'processes' ? 'cgroups' : 'processes'}  p peers  s sort  r reverse`;
    const title = `netacct top — ${view} by ${view === 'processes' ? `${sort} rate` : `${sort} total`} ${descending ? '↓' : '↑'}   ${keys}`;
    out.write(TERMINAL.home + [title, message, header, ...rows].join('\n'));
  };

  const refresh = async (): Promise<void> => {
    try {
      await draw();
    } catch (err) {
      restore();
      process.stderr.write(`netacct: ${printable((err as Error).message)}\n`);
      stopped = true;
      finish(1);
    }
  };

  out.write(TERMINAL.altScreen + TERMINAL.hideCursor);
  if (process.stdin.isTTY) process.stdin.setRawMode(true);
  process.stdin.resume();
  process.stdin.on('data', (keys: Buffer) => {
    for (const key of keys.toString()) {
      if (key === 'q' || key === '\x03') return quit(0);
      if (key === 'c') view = view === 'processes' ? 'cgroups' : 'processes';
      else if (key === 'p') view = 'peers';
      else if (key === 's') sortIndex = (sortIndex + 1) % SORTS.length;
      else if (key === 'r') descending = !descending;
      else continue;
      void refresh();
    }
  });
  process.once('SIGTERM', () => quit(0));
  process.once('SIGINT', () => quit(0));
  await refresh();
  const timer = setInterval(() => void refresh(), refreshMs);
  const code = await done;
  clearInterval(timer);
  return code;
}
