// What the HTTP API's routes take and give, shared by the HTTP server and the
// WebSocket streams (which answer each update through the same routes): the
// request, the result, the msgpack encoder loaded on first use, and the
// response written to a socket that HTTP no longer handles.
import type { Visibility } from './peer-credentials.js';

export interface ApiRequest {
  path: string;
  query: URLSearchParams;
  visibility: Visibility;
  /**
   * performance.now() of the moment the answer must cover: requests made
   * for the same moment (stream subscribers of one interval) share one read
   * of the kernel.
   */
  asOfMs: number;
  /**
   * Only the request is checked (a stream's subscription): a good one is
   * 200 with no body, and nothing is read, filtered or sorted. Checking
   * must cost nothing near an answer: a client may subscribe ten times a
   * second on each of its streams.
   */
  validateOnly?: boolean;
}

export interface ApiResult {
  status: number;
  /**
   * Sent as JSON or msgpack, as the client asks (a Listing is encoded a
   * chunk at a time); or as is when `contentType` is set (a string or bytes).
   */
  body: unknown;
  contentType?: string;
  /** Extra response headers (Content-Security-Policy for the web page). */
  headers?: Record<string, string>;
}

/** The routes: a bad request is a 4xx result; what they throw is a 500 (logged, rate-limited). */
export type ApiHandler = (request: ApiRequest) => ApiResult;

export const MSGPACK = 'application/msgpack';

/** msgpackr, loaded when a client first asks for msgpack: loading it costs ~9 MiB of RSS. */
let packMsgpack: ((value: unknown) => Buffer) | null = null;
export async function msgpackEncoder(): Promise<(value: unknown) => Buffer> {
  packMsgpack ??= (await import('msgpackr')).pack;
  return packMsgpack;
}

/** A complete response that closes the connection, for a socket HTTP no longer handles. */
export function closingResponse(status: number, reason: string, message = '', headers: Record<string, string> = {}): string {
  const body = message ? `${JSON.stringify({ error: message })}\n` : '';
  const type = body ? 'Content-Type: application/json\r\n' : '';
  const more = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\n${type}${more}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}
