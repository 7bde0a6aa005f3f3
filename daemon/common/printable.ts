// Text chosen by users (process names, cgroup paths, request paths) as it may
// be written to a terminal: a process can name itself "\e]52;c;…\a" and its
// name would otherwise clear root's screen, set its window title or write its
// clipboard when root lists processes. Every human-readable output and every
// log line goes through `printable`; JSON stays exact (JSON.stringify escapes
// control characters itself).
//
// Escaped, as visible text: C0 controls and DEL as \xNN; C1 controls, the
// bidirectional formatting characters (which reorder what follows them on
// the line, hiding or spoofing text) and the invisible ones (zero-width
// spaces and joiners, the soft hyphen, the byte order mark: "ss\u200bhd"
// would pass for sshd) as \uNNNN, tag characters as \u{NNNNN}; and UTF-16
// halves without their pair as \uNNNN. Invalid UTF-8 never gets here as bytes: the daemon
// decodes names with replacement, so it arrives as U+FFFD, shown as "?" like
// ps(1) shows what it cannot print. A backslash stays as it is (systemd
// names are full of \x2d), so an escape is not told apart from a name that
// spells one, which no terminal acts on.

// C0 and DEL; C1; U+FFFD; soft hyphen, Mongolian vowel separator, zero-width and bidi characters, word joiner and
// invisible operators, byte order mark; tag characters (U+E0000-E007F); lone surrogates.
const UNPRINTABLE =
  /[\x00-\x1f\x7f]|[\x80-\x9f]|\ufffd|[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2064\u2066-\u2069\ufeff]|\udb40[\udc00-\udc7f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escape(character: string): string {
  const code = character.codePointAt(0)!;
  if (code === 0xfffd) return '?';
  if (code < 0x80) return `\\x${code.toString(16).padStart(2, '0')}`;
  if (code > 0xffff) return `\\u{${code.toString(16)}}`;
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, escape);
}
