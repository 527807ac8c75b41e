// graphql-ws on the API's port and GraphQL path: each subscribe message is
// authenticated (its key checked again, so a key revoked meanwhile stops
// working), parsed and validated through yoga's envelop, so the same plugins
// and limits hold as over HTTP; a socket that never presents a valid key is
// closed (MURMUR_WS_AUTH_TIMEOUT_SECONDS).
import type { Server } from 'node:http';
import { useServer } from 'graphql-ws/use/ws';
import { GraphQLError, type execute, type subscribe } from 'graphql';
import type { YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer, type WebSocket } from 'ws';
import { authenticate } from './auth.ts';
import type { Caller, Context, Services } from './context.ts';
import { ApiError } from './errors.ts';
import { CLOSE_CODES, type Transport } from './streams.ts';

/** What graphql-ws runs: the execute and subscribe of yoga's envelop for the request (its plugins included). */
type Enveloped = { execute: typeof execute; subscribe: typeof subscribe };

/** A header from a plain object of headers, whatever the case of its name. */
function headerIn(headers: unknown, name: string): unknown {
  if (!headers || typeof headers !== 'object') return undefined;
  return Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
}

/** Serves graphql-ws next to `yoga` on `http`; `close` ends every socket. */
export function serveWebSockets(http: Server, yoga: YogaServerInstance<object, Context>, services: Services): { close(): Promise<void> } {
  const { wsAuthTimeoutSeconds } = services.config.streams;
  const wss = new WebSocketServer({ server: http, path: yoga.graphqlEndpoint });
  const authenticated = new WeakSet<WebSocket>();
  // The key comes in the connection parameters, the subscribe message's extensions.headers (GraphiQL), or the
  // upgrade request's header, and is checked at every
  // subscribe, so a key revoked meanwhile stops working; a connection without a valid key stays open, and
  // each of its subscriptions is refused with the reason.
  const ws = useServer(
    {
      // A socket that has not presented a valid key within MURMUR_WS_AUTH_TIMEOUT_SECONDS is closed (4401).
      onConnect: (ctx) => {
        const socket = ctx.extra.socket;
        const timer = setTimeout(() => {
          if (!authenticated.has(socket)) socket.close(CLOSE_CODES.revoked, `no valid API key within ${wsAuthTimeoutSeconds} s`);
        }, wsAuthTimeoutSeconds * 1000);
        timer.unref();
        socket.once('close', () => clearTimeout(timer));
        return true;
      },
      // Errors a stream ends with (a revoked key: UNAUTHENTICATED) keep their code; graphql-ws would drop it.
      onError: (_ctx, _id, _payload, errors) =>
        errors.map((e) => {
          const original = e.originalError;
          if (!(original instanceof ApiError) || e.extensions?.code) return e.toJSON();
          return { message: original.message, extensions: { code: original.code, ...original.details.extensions } };
        }),
      // yoga's envelop, handed over as the root value below, runs what graphql-ws receives.
      execute: (args) => (args.rootValue as Enveloped).execute(args),
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args),
      onSubscribe: async (ctx, _id, params) => {
        const req = ctx.extra.request;
        // GraphiQL sends the headers of its editor in each subscribe message's extensions, not as connection parameters.
        const param =
          ctx.connectionParams?.authorization ??
          ctx.connectionParams?.Authorization ??
          headerIn(params.extensions?.headers, 'authorization') ??
          req.headers.authorization;
        let caller: Caller;
        try {
          caller = await authenticate(typeof param === 'string' ? param : undefined, services);
        } catch (err) {
          const e = err as GraphQLError;
          return [new GraphQLError(e.message, { extensions: { code: e.extensions?.code } })];
        }
        authenticated.add(ctx.extra.socket);
        const { schema, execute, subscribe, parse, validate } = yoga.getEnveloped({ req });
        // A query that does not parse fails this subscription only; thrown, it would close the socket (4500) and every other one on it.
        let document;
        try {
          document = parse(params.query);
        } catch (err) {
          return [
            err instanceof GraphQLError
              ? err
              : new GraphQLError(String((err as Error)?.message ?? err), { extensions: { code: 'GRAPHQL_PARSE_FAILED' } }),
          ];
        }
        const args = {
          schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: {
            ...services,
            caller,
            lateArrival: services.draining.aborted,
            origin: `http://${req.headers.host}`,
            transport: wsTransport(ctx.extra.socket),
          } satisfies Context,
          rootValue: { execute, subscribe },
        };
        // The query limits (queryLimits.ts) throw their refusal from validation: answer it, as a parse error is.
        let errors: readonly GraphQLError[];
        try {
          errors = validate(args.schema, args.document);
        } catch (err) {
          if (err instanceof GraphQLError) return [err];
          throw err;
        }
        return errors.length ? errors : args;
      },
    },
    wss,
  );

  return {
    async close() {
      await ws.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

const wsTransports = new WeakMap<WebSocket, Transport>();
/** A graphql-ws socket: one per connection, closed with a code the client acts on. */
function wsTransport(socket: WebSocket): Transport {
  let transport = wsTransports.get(socket);
  if (!transport) {
    transport = {
      connection: socket,
      unsent: () => socket.bufferedAmount,
      drop: (why, reason) => socket.close(CLOSE_CODES[why], reason.slice(0, 120)),
    };
    wsTransports.set(socket, transport);
  }
  return transport;
}
