// The daemon's log: one line per message on stderr. Under systemd (JOURNAL_STREAM
// set) lines carry a syslog priority prefix and no timestamp: journald adds it.
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
      ? `<${PRIORITY[level]}>${message}\n`
      : `${new Date().toISOString()} ${level} ${message}\n`;
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
