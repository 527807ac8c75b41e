// The API's HTTP server: GraphQL (yoga) at /graphql with GraphiQL on GET,
// graphql-ws on the same port and path (websocket.ts), SSE subscriptions through yoga, and
// /audio/:id, where workers fetch a job's upload with the worker token.
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { createYoga } from 'graphql-yoga';
import { currentRequestId, inRequest, type Logger } from '../log.ts';
import { DTYPE_SUFFIXES, parseDtype } from '../whisper/modelFolder.ts';
import { arrivedDraining, callerOf, presentsWorkerToken, useAuthentication } from './auth.ts';
import type { Context, Services } from './context.ts';
import { Metrics } from './metrics.ts';
import { maskError } from './errors.ts';
import { graphiqlTabs } from './graphiql.ts';
import { isOpenAiPath, openAiRoute } from './openai.ts';
import { isDashboardPath, serveDashboard } from './dashboard.ts';
import { schema } from './schema/index.ts';
import { useQueryLimits } from './queryLimits.ts';
import { useRequestPolicy } from './requestPolicy.ts';
import { useStreamingUploads } from './uploads.ts';
import { StreamRegistry, type Transport } from './streams.ts';
import { serveWebSockets } from './websocket.ts';

export interface ApiServer {
  http: Server;
  /** Stops taking work: new jobs and uploads are refused (SHUTTING_DOWN), waiting claims return empty, subscriptions end, /readyz answers 503. */
  drain(): void;
  /** Waits up to `graceMs` for the requests in flight, then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

export function createApiServer(base: Omit<Services, 'metrics' | 'draining' | 'streams'>): ApiServer {
  const draining = new AbortController();
  // Every subscription and waiting request listens for the drain: hundreds are normal (Node warns past 10).
  setMaxListeners(0, draining.signal);
  const { backlog, perConnection, perKey, recheckSeconds } = base.config.streams;
  const streams = new StreamRegistry(base.queue.keys, { backlog, perConnection, perKey, recheckMs: recheckSeconds * 1000 }, base.log);
  const services: Services = {
    ...base,
    metrics: new Metrics(base.queue, { threads: base.config.threads }),
    draining: draining.signal,
    streams,
  };
  const { config, log } = services;
  const yoga = graphqlOverHttp(services);

  // Requests in flight (WebSocket connections are not requests): a stopping server waits for them.
  let inFlight = 0;
  let settled: (() => void) | null = null;
  // Node answers 408 and closes a request that has not arrived whole within MURMUR_REQUEST_TIMEOUT_SECONDS: an upload
  // trickled a byte at a time (each byte resetting MURMUR_UPLOAD_IDLE_SECONDS) still ends. Checked every second.
  const http = createServer({ requestTimeout: config.requestTimeoutSeconds * 1000, connectionsCheckingInterval: 1000 }, (req, res) => {
    // Every answer names its request (the client's own x-request-id when it sent a sane one): an
    // INTERNAL_SERVER_ERROR carries it too, and the server's log line about it.
    const sent = req.headers['x-request-id'];
    const requestId = typeof sent === 'string' && /^[\w.:-]{1,100}$/.test(sent) ? sent : randomUUID();
    res.setHeader('x-request-id', requestId);
    inRequest(requestId, () => handle(req, res, requestId));
  });
  const handle = (req: IncomingMessage, res: ServerResponse, requestId: string) => {
    inFlight++;
    const started = performance.now();
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) settled?.();
      accessLine(log, req, res, requestId, performance.now() - started, presentsWorkerToken(req.headers.authorization, config.workerToken));
    });
    route(services, yoga, req, res);
  };

  const ws = serveWebSockets(http, yoga, services);

  return {
    http,
    drain: () => draining.abort(),
    async close(graceMs = 0) {
      draining.abort();
      streams.stop();
      // No new connections; idle keep-alive ones close now, busy ones once their request is answered.
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeIdleConnections();
      if (inFlight > 0 && graceMs > 0) {
        await new Promise<void>((resolve) => {
          settled = resolve;
          setTimeout(resolve, graceMs).unref();
        });
      }
      await ws.close();
      http.closeAllConnections();
      await closed;
    },
  };
}

/**
 * An SSE response: a reader too slow to catch up is cut off at once (it reads nothing more anyway); after a
 * revocation the stream's error event gets two seconds to go out first.
 */
function httpTransport(req: IncomingMessage, res: ServerResponse): Transport {
  return {
    connection: req.socket,
    unsent: () => res.writableLength + req.socket.writableLength,
    drop: (why) => {
      if (why === 'slow') req.socket.destroy();
      else setTimeout(() => res.writableFinished || req.socket.destroy(), 2000).unref();
    },
  };
}

/** Which part answers a request: the probes and metrics, the dashboard, the OpenAI routes, workers' audio, or GraphQL. */
function route(services: Services, yoga: ReturnType<typeof graphqlOverHttp>, req: IncomingMessage, res: ServerResponse): void {
  const { log } = services;
  if (req.url === '/metrics' || req.url === '/healthz' || req.url === '/readyz') {
    plainRoute(services, req.url).then(
      ({ status, type, body }) => res.writeHead(status, { 'content-type': type }).end(body),
      (err) => res.writeHead(500).end(String(err?.message ?? err)),
    );
    return;
  }
  if (isDashboardPath(req)) {
    serveDashboard(req, res);
    return;
  }
  if (isOpenAiPath(req.url)) {
    openAiRoute(services, req, res).catch(() => res.destroy());
    return;
  }
  if (req.url?.startsWith('/audio/')) {
    serveAudio(services, req, res).catch((err) => {
      log.error({ event: 'request.unexpected_error', err }, `audio route: ${err?.message ?? err}`);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
    return;
  }
  void yoga(req, res);
}

/** GraphQL over HTTP (yoga): the schema, GraphiQL, the plugins that bound and authenticate requests, each resolver's context. */
function graphqlOverHttp(services: Services) {
  const { config, log } = services;
  return createYoga<{ req?: IncomingMessage; res?: ServerResponse }, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    logging: false,
    maskedErrors: {
      maskError: (error, message) => {
        return maskError(error, message, currentRequestId() ?? randomUUID(), services.log);
      },
    },
    // GET /graphql?key=<API key> opens GraphiQL sending that key (the link the first start prints).
    graphiql: (request) => {
      const key = new URL(request.url).searchParams.get('key');
      return {
        title: 'murmur',
        defaultTabs: graphiqlTabs,
        subscriptionsProtocol: 'WS',
        ...(key && { headers: JSON.stringify({ Authorization: `Bearer ${key}` }) }),
      };
    },
    renderGraphiQL,
    // Bodies are bounded by the plugins: JSON by MURMUR_MAX_REQUEST_BYTES, each uploaded file by MURMUR_MAX_UPLOAD_BYTES
    // (yoga's own 25 MB limit on the whole body would refuse a 30-minute MP3).
    maxRequestBodySize: false,
    cors: config.corsOrigins.length ? { origin: config.corsOrigins, credentials: true } : false,
    plugins: [
      useQueryLimits(),
      useAuthentication(services),
      useRequestPolicy(config.maxRequestBytes),
      useStreamingUploads(services.store, { maxBytes: config.maxUploadBytes, idleMs: config.uploadIdleSeconds * 1000 }, log),
    ],
    context: ({ request, req, res }) => ({
      ...services,
      transport: req && res && httpTransport(req, res),
      caller: callerOf(request),
      lateArrival: arrivedDraining(request),
      origin: new URL(request.url).origin,
      signal: request.signal,
    }),
  });
}

const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * One line a request, when it ends (with the body's declared `bytes`): at info for clients, at debug for workers' polls and heartbeats
 * and for probes (they would drown the rest), at error for a 5xx. The path only: a query string may
 * hold a key (GraphiQL's and the dashboard's `?key=`).
 */
function accessLine(log: Logger, req: IncomingMessage, res: ServerResponse, requestId: string, ms: number, worker: boolean): void {
  const path = (req.url ?? '').split('?')[0];
  const status = res.writableFinished ? res.statusCode : 0;
  const level = status >= 500 ? 'error' : worker || PROBES.has(path) ? 'debug' : 'info';
  const bytes = Number(req.headers['content-length'] ?? 0) || undefined;
  log[level](
    {
      event: 'request',
      requestId,
      method: req.method,
      path,
      status,
      ms: Math.round(ms * 10) / 10,
      ...(bytes && { bytes }),
      ...(worker && { worker }),
    },
    `${req.method} ${path} ${status || 'hung up'} ${ms.toFixed(0)} ms`,
  );
}

/**
 * /healthz: the process answers. /readyz: the database and the blob store answer too, and the
 * model folder is there (a load balancer stops sending work while one is not). /metrics: Prometheus.
 */
async function plainRoute(
  { queue, store, metrics, draining, modelDir, config }: Services,
  url: string,
): Promise<{ status: number; type: string; body: string }> {
  if (url === '/healthz') return { status: 200, type: 'text/plain', body: 'ok\n' };
  if (url === '/metrics') return { status: 200, type: metrics.registry.contentType, body: await metrics.registry.metrics() };
  if (draining.aborted) return { status: 503, type: 'text/plain', body: 'shutting down\n' };
  const checks = await Promise.all([
    queue.ping().then(
      () => 'database: ok',
      (err) => `database: ${err.message}`,
    ),
    store.check().then(
      () => `blob store: ok`,
      (err) => `blob store ${store.name}: ${err.name ?? ''} ${err.message}`,
    ),
    modelFiles(modelDir, config.dtype).then(
      () => 'model folder: ok',
      (err) => `model folder ${modelDir}: ${err.message}`,
    ),
  ]);
  const ready = checks.every((c) => c.endsWith(': ok'));
  return { status: ready ? 200 : 503, type: 'text/plain', body: checks.join('\n') + '\n' };
}

/** The files a worker loads from the model folder, there and readable (not read: /readyz is asked often). */
async function modelFiles(dir: string, dtype: string): Promise<void> {
  const suffix = DTYPE_SUFFIXES[parseDtype(dtype)];
  for (const file of [
    'config.json',
    'generation_config.json',
    'tokenizer.json',
    `onnx/encoder_model${suffix}.onnx`,
    `onnx/decoder_model_merged${suffix}.onnx`,
  ]) {
    await access(join(dir, file), constants.R_OK).catch(() => {
      throw new Error(`${file} is missing or unreadable`);
    });
  }
}

async function serveAudio(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!presentsWorkerToken(req.headers.authorization, services.config.workerToken)) {
    res.writeHead(401, { 'content-type': 'text/plain' }).end('the worker token is required');
    return;
  }
  let id: string;
  try {
    id = decodeURIComponent(req.url!.slice('/audio/'.length));
  } catch {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('the job id in the path is not valid percent-encoding');
    return;
  }
  const job = await services.queue.get(id);
  const size = job && (await services.store.size(job.blobKey));
  if (!job || size === null || size === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`no audio for job ${id}`);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  await pipeline(await services.store.read(job.blobKey), res);
}
