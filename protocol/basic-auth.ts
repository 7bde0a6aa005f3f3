// HTTP basic auth against bcrypt hashes (the web configuration's
// basic_auth_users). bcrypt is slow by design (~80 ms a check at cost 10 in
// this process), so a password that passed is remembered (as a SHA-256 of the
// user, the password and the hash: never the password) and the next request
// costs a hash, not a bcrypt; a name that is not a user is checked against a
// dummy hash all the same, so that timing does not tell which names exist.
// The bcrypt runs asynchronously (in slices): other clients go on meanwhile.
import crypto from 'node:crypto';
import bcrypt from 'bcryptjs';

/** Passwords remembered as passed, at most (only right ones get in: a client cannot fill it with guesses). */
const REMEMBERED = 256;
const DUMMY_HASH = bcrypt.hashSync('netacct: not a user', 10);

export class BasicAuth {
  private readonly passed = new Set<string>();

  constructor(private readonly users: ReadonlyMap<string, string>) {}

  /** The user and password an `Authorization: Basic …` header holds, or null when it holds none. */
  private credentials(header: string | undefined): { user: string; password: string; key: string } | null {
    const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header?.trim() ?? '');
    const decoded = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0) return null;
    const [user, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
    const key = crypto.createHash('sha256').update(`${user}\0${password}\0${this.users.get(user) ?? ''}`).digest('base64');
    return { user, password, key };
  }

  /** The user the header proves if its password passed before (a hash: cheap); else null. */
  remembered(header: string | undefined): string | null {
    const credentials = this.credentials(header);
    return credentials && this.passed.has(credentials.key) ? credentials.user : null;
  }

  /** The user the header proves, or null: a bcrypt (slow: the caller charges its client). */
  async verify(header: string | undefined): Promise<string | null> {
    const credentials = this.credentials(header);
    if (!credentials) return null;
    const hash = this.users.get(credentials.user);
    const right = await bcrypt.compare(credentials.password, hash ?? DUMMY_HASH);
    if (!right || !hash) return null;
    this.passed.add(credentials.key);
    if (this.passed.size > REMEMBERED) this.passed.delete(this.passed.values().next().value!);
    return credentials.user;
  }
}
