// Requests to the daemon's HTTP API: the product's client, and curl as another user.
import { execFile } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';
import { asNobody } from './fixtures.js';

export { apiGet } from '../../cli/api-client.js';

/** GET as user nobody, with curl as a script would. */
export async function apiGetAsNobody(socketPath: string, path: string): Promise<any> {
  const [command, args] = asNobody('curl', '--silent', '--unix-socket', socketPath, `http://netacct${path}`);
  const { stdout } = await promisify(execFile)(command, args);
  return JSON.parse(stdout);
}

/** GET over TCP with the given headers: status, headers and body text. */
export function tcpGet(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}
