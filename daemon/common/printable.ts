// Text chosen by users (process names, cgroup paths, request paths) as it may
// be written to a terminal: a process can name itself "\e]52;c;…\a" and its
// name would otherwise clear root's screen, set its window title or write its
// clipboard when root lists processes. Every human-readable output and every
// log line goes through `printable`; JSON stays exact (JSON.stringify escapes
// control characters itself).
//
// Escaped, as visible text: C0 controls and DEL as \xNN, C1 controls and the
// bidirectional formatting characters (which reorder what follows them on
// the line, hiding or spoofing text) as \uNNNN, and UTF-16 halves without
// their pair as \uNNNN. Invalid UTF-8 never gets here as bytes: the daemon
// decodes names with replacement, so it arrives as U+FFFD, shown as "?" like
// ps(1) shows what it cannot print. A backslash stays as it is (systemd
// names are full of \x2d), so an escape is not told apart from a name that
// spells one, which no terminal acts on.

// C0 and DEL; C1; U+FFFD; bidi embedding, override and isolate characters, marks; line and paragraph separators; lone surrogates.
const UNPRINTABLE = /[\x00-\x1f\x7f]|[\x80-\x9f]|\ufffd|[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escape(character: string): string {
  const code = character.charCodeAt(0);
  if (code === 0xfffd) return '?';
  if (code < 0x80) return `\\x${code.toString(16).padStart(2, '0')}`;
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, escape);
}
