// The daemon's log: one line per message on stderr. Under systemd (JOURNAL_STREAM
// set) lines carry a syslog priority prefix and no timestamp: journald adds it.
// Messages carry what clients chose (process names, cgroup paths, request
// lines): escaped, so that a line is one line and a terminal following the log
// runs no escape sequence of theirs.
import { printable } from './printable.js';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

const PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, info: 6, debug: 7 };

/** A logger whose debug messages can be switched on and off (SIGHUP reload). */
export interface DaemonLogger extends Logger {
  setVerbose(verbose: boolean): void;
}

export function createLogger(options: { verbose: boolean; journal?: boolean }): DaemonLogger {
  const journal = options.journal ?? process.env['JOURNAL_STREAM'] !== undefined;
  let verbose = options.verbose;
  const write = (level: LogLevel, message: string): void => {
    if (level === 'debug' && !verbose) return;
    const line = journal
      ? `<${PRIORITY[level]}>${printable(message)}\n`
      : `${new Date().toISOString()} ${level} ${printable(message)}\n`;
    process.stderr.write(line);
  };
  return {
    error: (m) => write('error', m),
    warn: (m) => write('warn', m),
    info: (m) => write('info', m),
    debug: (m) => write('debug', m),
    setVerbose: (v) => (verbose = v),
  };
}

/**
 * Reports a condition that a client can make happen again and again (an
 * error on its request, a limit it hit): at most one line per `key` every
 * `intervalMs`, the next one saying how many were held back. Keys are fixed
 * strings chosen by the code, never taken from a client, so the map stays small.
 */
export type RateLimitedLog = (level: LogLevel, key: string, message: string) => void;

export function rateLimited(log: Logger, intervalMs = 10_000): RateLimitedLog {
  const last = new Map<string, { atMs: number; heldBack: number }>();
  return (level, key, message) => {
    const now = performance.now();
    const seen = last.get(key);
    if (seen && now - seen.atMs < intervalMs) {
      seen.heldBack++;
      return;
    }
    const heldBack = seen?.heldBack ?? 0;
    last.set(key, { atMs: now, heldBack: 0 });
    log[level](heldBack > 0 ? `${message} (and ${heldBack} more like it in the last ${Math.round(intervalMs / 1000)} s)` : message);
  };
}

/**
 * `run` as a callback that never throws: what it throws is logged
 * (rate-limited under `what`) and the daemon goes on. For every timer, socket
 * and stream callback, where an exception would otherwise end the process.
 */
export function guarded<Args extends unknown[]>(report: RateLimitedLog, what: string, run: (...args: Args) => void): (...args: Args) => void {
  return (...args) => {
    try {
      run(...args);
    } catch (err) {
      report('error', what, `${what}: ${(err as Error).message}`);
    }
  };
}
