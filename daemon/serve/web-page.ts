// The live web page (web/): three static files served at /, /app.js and
// /style.css, read once at start. The page loads nothing from elsewhere, and
// its Content-Security-Policy says so: scripts, styles and connections
// (the WebSocket stream) only from the daemon itself.
import fs from 'node:fs';
import path from 'node:path';
import type { ApiResult } from '../../protocol/http-answer.js';
import { packageRoot } from '../common/package-root.js';

const FILES: Record<string, { file: string; contentType: string }> = {
  '/': { file: 'index.html', contentType: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', contentType: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', contentType: 'text/css; charset=utf-8' },
};

const HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-cache',
};

/** The page's files by request path; throws at start if the package lacks one. */
export function webPage(dir = path.join(packageRoot(), 'web')): (requestPath: string) => ApiResult | null {
  const pages = new Map<string, ApiResult>();
  for (const [requestPath, { file, contentType }] of Object.entries(FILES)) {
    pages.set(requestPath, { status: 200, body: fs.readFileSync(path.join(dir, file)), contentType, headers: HEADERS });
  }
  return (requestPath) => pages.get(requestPath) ?? null;
}
