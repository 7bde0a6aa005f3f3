// Durations as people write them ("90s", "10m", "48h", "31d", "13mo", "5y")
// and times as they ask for them (RFC 3339, or relative: "-2h", "now"):
// shared by the tiers' settings, the /v1/history query and the CLI.

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, mo: 2_629_746, y: 31_556_952 };

/** Seconds in "48h", "31d", "13mo" (a month: 1/12 of a Gregorian year); null when it is not a duration. */
export function durationSeconds(text: string): number | null {
  const match = /^(\d{1,9})(s|m|h|d|w|mo|y)$/.exec(text);
  if (!match) return null;
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2]!]!;
  return seconds > 0 ? Math.round(seconds) : null;
}

/** The shortest way to write `seconds` in one unit ("600" → "10m"). */
export function durationText(seconds: number): string {
  for (const unit of ['y', 'mo', 'w', 'd', 'h', 'm']) {
    const size = UNIT_SECONDS[unit]!;
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/**
 * A moment in Unix seconds from "now", a relative time ("-2h": two hours
 * ago) or an RFC 3339 date-time (with its offset or Z); null when it is none
 * of these.
 */
export function momentSeconds(text: string, nowSeconds: number): number | null {
  if (text === 'now') return nowSeconds;
  if (text.startsWith('-')) {
    const ago = durationSeconds(text.slice(1));
    return ago === null ? null : nowSeconds - ago;
  }
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}
