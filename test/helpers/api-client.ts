// Requests to the daemon's HTTP API: the product's client, and curl as another user.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { asNobody } from './fixtures.js';

export { apiGet } from '../../daemon/api-client.js';

/** GET as user nobody, with curl as a script would. */
export async function apiGetAsNobody(socketPath: string, path: string): Promise<any> {
  const [command, args] = asNobody('curl', '--silent', '--unix-socket', socketPath, `http://netacct${path}`);
  const { stdout } = await promisify(execFile)(command, args);
  return JSON.parse(stdout);
}
