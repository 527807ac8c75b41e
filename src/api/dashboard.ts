// The dashboard at `/`: three files of the project and graphql-ws's own
// browser build, served as they are (no build step, nothing from a CDN). The
// page asks the API for everything, with the key the user gives it.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../dashboard/', import.meta.url));
// the package exports no path to its browser build: found beside its main file (dist/index.cjs)
const graphqlWs = join(dirname(createRequire(import.meta.url).resolve('graphql-ws')), '..', 'umd', 'graphql-ws.min.js');

const FILES: Record<string, { path: string; type: string }> = {
  '/': { path: `${dir}index.html`, type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { path: `${dir}app.js`, type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { path: `${dir}style.css`, type: 'text/css; charset=utf-8' },
  '/dashboard/graphql-ws.js': { path: graphqlWs, type: 'text/javascript; charset=utf-8' },
};

/** Read once, at the first request. */
const cache = new Map<string, Buffer>();

export function isDashboardPath(req: IncomingMessage): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && (req.url ?? '').split('?')[0] in FILES;
}

export function serveDashboard(req: IncomingMessage, res: ServerResponse): void {
  const file = FILES[req.url!.split('?')[0]];
  let body = cache.get(file.path);
  if (!body) cache.set(file.path, (body = readFileSync(file.path)));
  res.writeHead(200, {
    'content-type': file.type,
    'content-length': body.length,
    'cache-control': 'no-cache',
    // the page talks to this server only, and runs no script but its own
    'content-security-policy':
      "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
