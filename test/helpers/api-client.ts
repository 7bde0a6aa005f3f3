// Requests to the daemon's HTTP API over its Unix socket.
import { execFile } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';
import { unpack } from 'msgpackr';
import { asNobody } from './fixtures.js';

export interface ApiResponse {
  status: number;
  contentType: string;
  /** The decoded body, as the API sent it. */
  body: any;
}

export function apiGet(socketPath: string, path: string, accept = 'application/json'): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path, headers: { Accept: accept } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const contentType = res.headers['content-type'] ?? '';
        resolve({
          status: res.statusCode!,
          contentType,
          body: contentType === 'application/msgpack' ? unpack(raw) : JSON.parse(raw.toString()),
        });
      });
    });
    req.on('error', reject);
  });
}

/** GET as user nobody, with curl as a script would. */
export async function apiGetAsNobody(socketPath: string, path: string): Promise<any> {
  const [command, args] = asNobody('curl', '--silent', '--unix-socket', socketPath, `http://netacct${path}`);
  const { stdout } = await promisify(execFile)(command, args);
  return JSON.parse(stdout);
}
