// What a POST to /graphql may be: JSON (read up to MURMUR_MAX_REQUEST_BYTES)
// or a multipart upload that carries a preflight header; nothing else. A
// browser sends form posts and multipart requests to any site without asking
// first (CORS "simple requests"), so a foreign page could otherwise run
// mutations with a visitor's access; a custom header makes the browser ask,
// and the CORS policy (MURMUR_CORS_ORIGINS) answers no.
import type { GraphQLParams, Plugin } from 'graphql-yoga';
import { requestError } from './errors.ts';

/** Either header forces a CORS preflight; Apollo's clients already send the first. */
export const PREFLIGHT_HEADERS = ['apollo-require-preflight', 'graphql-preflight'] as const;

export function useRequestPolicy(maxJsonBytes: number): Plugin {
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST') return;
      const type = request.headers.get('content-type')?.toLowerCase() ?? '';
      if (type.startsWith('multipart/form-data')) {
        if (!PREFLIGHT_HEADERS.some((h) => request.headers.get(h))) {
          throw requestError(
            'PREFLIGHT_REQUIRED',
            `a multipart request needs a "${PREFLIGHT_HEADERS[1]}: 1" header (it makes browsers ask before sending one across sites)`,
            400,
          );
        }
        return; // uploads.ts parses it
      }
      if (!/^application\/(graphql-response\+)?json\b/.test(type)) {
        throw requestError(
          'UNSUPPORTED_MEDIA_TYPE',
          `POST /graphql takes application/json, or multipart/form-data for uploads; not "${type || 'no content type'}"`,
          415,
        );
      }
      setRequestParser(async (req) => {
        const declared = Number(req.headers.get('content-length') ?? 0);
        if (declared > maxJsonBytes) throw requestError('INPUT_TOO_LARGE', `the request body is over ${maxJsonBytes} bytes`, 413);
        const text = await readLimited(req, maxJsonBytes);
        let params: unknown;
        try {
          params = JSON.parse(text);
        } catch {
          throw requestError('BAD_USER_INPUT', 'the request body is not JSON', 400);
        }
        if (typeof params !== 'object' || params === null || Array.isArray(params))
          throw requestError(
            'BAD_USER_INPUT',
            'the request body is one JSON object ({ "query", "variables", … }); batches are not taken',
            400,
          );
        return params as GraphQLParams;
      });
    },
  };
}

/**
 * How much of an oversize body is read and dropped before the 413 goes out: a client still sending when the server
 * closes gets a connection reset instead of the answer. Past this (or DRAIN_MS), the connection is cut.
 */
const DRAIN_BYTES = 16 << 20;
const DRAIN_MS = 5000;

async function readLimited(request: Request, max: number): Promise<string> {
  if (!request.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  let deadline = 0;
  for await (const chunk of request.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total <= max) {
      chunks.push(chunk);
      continue;
    }
    // Chunked bodies declare no length: over the limit, the rest is read and dropped so the client hears the 413.
    chunks.length = 0;
    deadline ||= Date.now() + DRAIN_MS;
    if (total > max + DRAIN_BYTES || Date.now() > deadline) break;
  }
  if (total > max) throw requestError('INPUT_TOO_LARGE', `the request body is over ${max} bytes`, 413);
  return Buffer.concat(chunks).toString('utf8');
}
