// CSV for spreadsheets (RFC 4180 quoting). Commands and cgroup paths are
// chosen by users, and CSV is as likely to be read on a terminal as in a
// spreadsheet: text goes through `printable` (terminal escapes), and text a
// spreadsheet would read as a formula (a process named "=HYPERLINK(...)")
// gets a leading apostrophe, OWASP's advice. --json is the exact form.
// Numbers are written as they are.
import { printable } from '../daemon/common/printable.js';

/** The first characters that make a spreadsheet read a cell as a formula. */
const FORMULA_START = /^[=+\-@\t\r]/;

function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  const text = printable(FORMULA_START.test(value) ? `'${value}` : value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One record, ended with a line feed (what Unix tools expect; spreadsheets read either ending). */
export function csvLine(fields: ReadonlyArray<string | number | null>): string {
  return `${fields.map(csvField).join(',')}\n`;
}
