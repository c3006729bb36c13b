import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { packageRoot } from '../package-root.js';
import type { Router } from './router.js';

/**
 * Scripts and styles come only from this server, so no inline code can run; the page talks only to
 * this server; nothing may frame it.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface Asset {
  readonly type: string;
  readonly body: Buffer;
  readonly etag: string;
}

/**
 * The page's files live in page/ at the package root, beside sql/, so that the same path serves them from
 * the source tree and from an installed package (tsc copies no .html, .css or .js into dist/).
 */
export function pageDirectory(): string {
  return path.join(packageRoot(), 'page');
}

/** Read once when the routes are registered: a missing file stops start-up instead of failing a request. */
function asset(type: string, file: string): Asset {
  const body = fs.readFileSync(path.join(pageDirectory(), file));
  return { type, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

function serve(request: http.IncomingMessage, response: http.ServerResponse, file: Asset): void {
  const headers = {
    'content-type': file.type,
    'cache-control': 'no-cache',
    etag: file.etag,
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
  };
  if (request.headers['if-none-match'] === file.etag) {
    response.writeHead(304, headers);
    response.end();
    return;
  }
  response.writeHead(200, { ...headers, 'content-length': String(file.body.length) });
  response.end(request.method === 'HEAD' ? undefined : file.body);
}

/** GET /: the staff page and its assets. Public: they hold no data. */
export function registerPage(router: Router): void {
  const page = asset('text/html; charset=utf-8', 'index.html');
  const script = asset('text/javascript; charset=utf-8', 'app.js');
  const style = asset('text/css; charset=utf-8', 'app.css');
  const icon = asset('image/svg+xml', 'icon.svg');
  router.get('/', ({ request, response }) => serve(request, response, page));
  router.get('/assets/app.js', ({ request, response }) => serve(request, response, script));
  router.get('/assets/app.css', ({ request, response }) => serve(request, response, style));
  router.get('/assets/icon.svg', ({ request, response }) => serve(request, response, icon));
  // Browsers ask for it whatever the page says.
  router.get('/favicon.ico', ({ request, response }) => serve(request, response, icon));
}
