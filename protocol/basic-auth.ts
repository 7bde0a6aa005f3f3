// HTTP basic auth against bcrypt hashes (the web configuration's
// basic_auth_users). bcrypt is slow by design (~80 ms a check at cost 10), so
// it runs in a thread of its own (bcrypt-checker.ts), and a password that
// passed is remembered (as a SHA-256 of the user, the password and the hash:
// never the password): the next request costs a hash, not a bcrypt. A name
// that is not a user is checked all the same, against the costliest hash
// configured (and refused whatever the result), so that timing does not tell
// which names exist.
import crypto from 'node:crypto';
import bcrypt from 'bcryptjs';
import { BcryptChecker } from './bcrypt-checker.js';

/** Passwords remembered as passed, at most (only right ones get in: a client cannot fill it with guesses). */
const REMEMBERED = 256;

export class BasicAuth {
  private readonly passed = new Set<string>();
  private readonly checker = new BcryptChecker();
  /** What a name that is not a user is checked against. */
  private readonly costliest: string;

  constructor(private readonly users: ReadonlyMap<string, string>) {
    this.costliest = [...users.values()].reduce((a, b) => (bcrypt.getRounds(b) > bcrypt.getRounds(a) ? b : a));
  }

  /** Whether a password check would be refused now (too many waiting). */
  get busy(): boolean {
    return this.checker.full;
  }

  close(): Promise<void> {
    return this.checker.close();
  }

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

  /**
   * The user the header proves, or null, and the checking thread's time it
   * took: a bcrypt (throws when too many wait).
   */
  async verify(header: string | undefined): Promise<{ user: string | null; ms: number }> {
    const credentials = this.credentials(header);
    if (!credentials) return { user: null, ms: 0 };
    const hash = this.users.get(credentials.user);
    const { right, ms } = await this.checker.compare(credentials.password, hash ?? this.costliest);
    if (!right || !hash) return { user: null, ms };
    this.passed.add(credentials.key);
    if (this.passed.size > REMEMBERED) this.passed.delete(this.passed.values().next().value!);
    return { user: credentials.user, ms };
  }
}
