// A client of the daemon's HTTP API over its Unix socket (the CLI's, and the tests').
import http from 'node:http';
import { unpack } from 'msgpackr';

export interface ApiResponse {
  status: number;
  contentType: string;
  /** The decoded body, as the API sent it (text for text types). */
  body: any; // JSON of any shape: callers know what the endpoint returns
}

export class ApiUnreachableError extends Error {}

export function apiGet(socketPath: string, path: string, accept = 'application/json'): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path, headers: { Accept: accept } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const contentType = res.headers['content-type'] ?? '';
        try {
          resolve({
            status: res.statusCode!,
            contentType,
            body:
              contentType === 'application/msgpack'
                ? unpack(raw)
                : contentType === 'application/json'
                  ? JSON.parse(raw.toString())
                  : raw.toString(), // /metrics, the web page
          });
        } catch (err) {
          reject(new Error(`the daemon's answer to ${path} could not be decoded: ${(err as Error).message}`));
        }
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? `the netacct daemon is not running (nothing listens on ${socketPath}); start it with: sudo netacct daemon`
          : err.code === 'EACCES'
            ? `no permission to connect to ${socketPath} (the daemon's apiSocketMode decides who may)`
            : `cannot reach the netacct daemon on ${socketPath}: ${err.message}`;
      reject(new ApiUnreachableError(why));
    });
  });
}
