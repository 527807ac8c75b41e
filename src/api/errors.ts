// Errors clients act on reach them with a stable `extensions.code`; anything
// else is masked ("Unexpected error.") and logged in full on the server. Which
// is which is the code's `shown` flag (src/errors.ts).
import { GraphQLError } from 'graphql';
import { CodedError, type ShownCode } from '../errors.ts';
import type { Logger } from '../log.ts';

/** Every code the API answers: the list, with what each means, is in src/errors.ts. */
export type ApiErrorCode = ShownCode;

/** A refusal of the HTTP request itself (before any resolver runs), with its status. */
export function requestError(code: ApiErrorCode, message: string, status: number): GraphQLError {
  return new GraphQLError(message, { extensions: { code, http: { status } } });
}

export class ApiError extends CodedError<ApiErrorCode> {
  constructor(
    code: ApiErrorCode,
    message: string,
    /** More for the client to act on (RATE_LIMITED: retryAfterSeconds), and the HTTP status when it is not 200. */
    readonly details: { extensions?: Record<string, unknown>; status?: number; headers?: Record<string, string> } = {},
  ) {
    super(code, message);
  }
}

/** Errors whose code and message are meant for the client. */
export function clientError(
  err: unknown,
): { code: string; message: string; status?: number; extensions?: Record<string, unknown>; headers?: Record<string, string> } | null {
  // An outage (DATABASE_UNAVAILABLE, BLOB_STORE_UNAVAILABLE) is down, not wrong: 503, and what was acknowledged before is safe.
  if (!(err instanceof CodedError) || !err.shown) return null;
  return { code: err.code, message: err.message, status: err.status, ...(err instanceof ApiError && err.details) };
}

/** yoga's maskError: coded errors pass with their code, the rest are masked and logged. */
export function maskError(error: unknown, message: string, requestId: string, log: Logger): Error {
  const original = error instanceof GraphQLError ? error.originalError : error;
  if (error instanceof GraphQLError && !original) return error; // parse and validation errors, already client-facing
  if (original instanceof GraphQLError && original.extensions?.code) return original;
  // graphql-js's own refusals of a variable's value ("Int cannot represent …") carry no code: they are the client's mistake.
  if (error instanceof GraphQLError && original instanceof GraphQLError) {
    return new GraphQLError(error.message, {
      nodes: error.nodes,
      path: error.path,
      extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } },
    });
  }
  const known = clientError(original);
  if (known) {
    return new GraphQLError(known.message, {
      nodes: error instanceof GraphQLError ? error.nodes : undefined,
      path: error instanceof GraphQLError ? error.path : undefined,
      extensions: {
        code: known.code,
        ...known.extensions,
        ...((known.status || known.headers) && { http: { status: known.status, headers: known.headers } }),
      },
    });
  }
  log.error({ event: 'request.unexpected_error', requestId, err: original ?? error }, `request ${requestId}: unexpected error`);
  return new GraphQLError(message, {
    path: error instanceof GraphQLError ? error.path : undefined,
    extensions: { code: 'INTERNAL_SERVER_ERROR', requestId },
  });
}
