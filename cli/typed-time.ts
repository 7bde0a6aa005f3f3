// Times as people type them on the command line (`netacct history --since
// 03:00`), turned into a moment GET /v1/history takes. The API knows only
// "now", relative times and RFC 3339 with an offset: it cannot know the
// user's time zone, so local forms are resolved here, on the user's side.
import { momentSeconds } from '../daemon/history/durations.js';

export const TYPED_TIME_FORMS =
  'now, a time ago such as -30m, -2h or -7d, a clock time such as 03:00 or 03:00:30 (today, or yesterday if that is still to come), ' +
  'a local date and time such as "2026-12-07 03:00", or RFC 3339 with an offset such as 2026-12-07T03:00:00Z';

/** `year-month-day hours:minutes:seconds` in local time, or null when there is no such date or time (2026-02-30, 24:00). */
function localTime(year: number, month: number, day: number, hours: number, minutes: number, seconds: number): Date | null {
  if (hours > 23 || minutes > 59 || seconds > 59) return null;
  const date = new Date(0);
  // setFullYear, not the constructor: that one takes years 0 to 99 for 1900 to 1999.
  date.setFullYear(year, month - 1, day);
  date.setHours(hours, minutes, seconds, 0);
  // A day past the month's end rolls over into the next month: refuse it rather than guess.
  if (date.getFullYear() !== year || date.getMonth() !== month - 1 || date.getDate() !== day) return null;
  return date;
}

/** The most recent moment at the clock time `hours:minutes:seconds` not after `now`: today's, else yesterday's. */
function latestClockTime(now: Date, hours: number, minutes: number, seconds: number): Date | null {
  const today = localTime(now.getFullYear(), now.getMonth() + 1, now.getDate(), hours, minutes, seconds);
  if (today === null || today.getTime() <= now.getTime()) return today;
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  return localTime(yesterday.getFullYear(), yesterday.getMonth() + 1, yesterday.getDate(), hours, minutes, seconds);
}

/** "2026-12-07T03:00:00Z": UTC, whole seconds, which every reader of RFC 3339 takes. */
export function utcText(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * What to send the API for `text`: relative times and RFC 3339 as they are
 * (the daemon resolves "-2h" with its own clock), local ones as RFC 3339 in
 * UTC; null when `text` is none of TYPED_TIME_FORMS.
 */
export function apiMoment(text: string, now: Date = new Date()): string | null {
  if (momentSeconds(text, 0) !== null) return text;
  const number = (part: string | undefined): number => (part === undefined ? 0 : Number(part));
  const clock = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(text);
  if (clock) {
    const date = latestClockTime(now, number(clock[1]), number(clock[2]), number(clock[3]));
    return date && utcText(date);
  }
  const local = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(text);
  if (local) {
    const [year, month, day, hours, minutes, seconds] = local.slice(1).map(number) as [number, number, number, number, number, number];
    const date = localTime(year, month, day, hours, minutes, seconds);
    return date && utcText(date);
  }
  return null;
}

/** "2026-12-07 03:00:00" in local time, for people. */
export function localText(date: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}
