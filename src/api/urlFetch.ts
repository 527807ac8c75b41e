// Audio by URL (createJob({ url })), fetched without letting a client aim the
// server at anything it should not reach: only http(s); every address a name
// resolves to must be a public unicast one (loopback, private, link-local,
// cloud metadata, multicast, reserved and IPv4-mapped forms of them are
// refused), the connection goes to the address that was checked (a second
// lookup could answer differently), each redirect is checked again, the body
// is cut off at the size limit while it streams, and slow servers time out.
// MURMUR_ALLOW_PRIVATE_URLS=1 lifts the address check for private deployments.
import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { basename } from 'node:path';
import ipaddr from 'ipaddr.js';
import { ApiError } from './errors.ts';

export interface UrlFetchOptions {
  maxBytes: number;
  /** Connecting and receiving headers, and each pause in the body, at most. */
  timeoutMs: number;
  allowPrivate: boolean;
}

const MAX_REDIRECTS = 5;

/** Whether an address is one a client may make the server connect to. */
export function publicAddress(address: string): boolean {
  let ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  return ip.range() === 'unicast';
}

/** The response of a GET of `url` after redirects, checked; its body is for the caller to read (see limitBody). */
export async function fetchUrl(url: string, o: UrlFetchOptions): Promise<{ response: IncomingMessage; filename: string }> {
  let current = parse(url);
  for (let hop = 0; ; hop++) {
    const address = await resolveChecked(current.hostname, o.allowPrivate);
    const response = await get(current, address, o.timeoutMs);
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location) {
      response.resume();
      if (hop >= MAX_REDIRECTS) throw new ApiError('URL_UNREACHABLE', `${url} redirects more than ${MAX_REDIRECTS} times`);
      current = parse(new URL(response.headers.location, current).toString());
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw new ApiError('URL_UNREACHABLE', `${current} answered HTTP ${status}`);
    }
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > o.maxBytes) {
      response.destroy();
      throw new ApiError('INPUT_TOO_LARGE', `${current} is ${declared} bytes, over the ${o.maxBytes}-byte limit`);
    }
    return { response, filename: decodeURIComponent(basename(current.pathname)) || 'audio' };
  }
}

/** The body, cut off with INPUT_TOO_LARGE past `maxBytes` and with URL_UNREACHABLE after `timeoutMs` without data. */
export async function* limitBody(response: IncomingMessage, o: UrlFetchOptions): AsyncIterable<Uint8Array> {
  let bytes = 0;
  response.setTimeout(o.timeoutMs, () =>
    response.destroy(new ApiError('URL_UNREACHABLE', `the download stalled for ${o.timeoutMs / 1000} s`)),
  );
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes > o.maxBytes) throw new ApiError('INPUT_TOO_LARGE', `the download is over the ${o.maxBytes}-byte limit`);
      yield chunk;
    }
  } catch (err) {
    throw err instanceof ApiError ? err : new ApiError('URL_UNREACHABLE', `the download failed: ${(err as Error).message}`);
  } finally {
    response.destroy();
  }
}

function parse(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ApiError('BAD_USER_INPUT', `"${url}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ApiError('URL_FORBIDDEN', `only http and https URLs are fetched, not ${u.protocol}`);
  if (u.username || u.password) throw new ApiError('URL_FORBIDDEN', 'URLs with credentials in them are not fetched');
  return u;
}

/** The address to connect to: every address the name has must be allowed, so no answer of a later lookup can differ in kind. */
async function resolveChecked(hostname: string, allowPrivate: boolean): Promise<{ address: string; family: number }> {
  const host = hostname.replace(/^\[|\]$/g, '');
  let addresses: { address: string; family: number }[];
  try {
    addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true, verbatim: true });
  } catch (err) {
    throw new ApiError('URL_UNREACHABLE', `cannot resolve ${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (addresses.length === 0) throw new ApiError('URL_UNREACHABLE', `${host} has no address`);
  if (!allowPrivate) {
    const refused = addresses.find((a) => !publicAddress(a.address));
    if (refused) throw new ApiError('URL_FORBIDDEN', `${host} is ${refused.address}, which is not a public address`);
  }
  return addresses[0];
}

/** Refuses a URL the server would never send to (scheme, credentials, a private address); one that does not resolve yet passes. */
export async function checkUrl(url: string, allowPrivate: boolean): Promise<void> {
  const u = parse(url);
  await resolveChecked(u.hostname, allowPrivate).catch((err) => {
    if (!(err instanceof ApiError && err.code === 'URL_UNREACHABLE')) throw err;
  });
}

/** POSTs `body` to `url` past the same guard (redirects are not followed: an answer is an answer); resolves with the status. */
export async function postChecked(
  url: string,
  body: string,
  headers: Record<string, string>,
  o: { timeoutMs: number; allowPrivate: boolean },
): Promise<number> {
  const u = parse(url);
  const address = await resolveChecked(u.hostname, o.allowPrivate);
  const response = await get(u, address, o.timeoutMs, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  response.resume();
  return response.statusCode ?? 0;
}

function get(
  url: URL,
  address: { address: string; family: number },
  timeoutMs: number,
  post?: { method: 'POST'; headers: Record<string, string>; body: string },
): Promise<IncomingMessage> {
  // Connect to the checked address whatever the name resolves to by now; TLS still checks the name.
  const pinned: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all)
      (callback as (err: null, addresses: { address: string; family: number }[]) => void)(null, [address]);
    else callback(null, address.address, address.family);
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const headers = post ? { 'user-agent': 'murmur', ...post.headers } : { 'user-agent': 'murmur', accept: 'audio/*, */*' };
    const req = send(url, { method: post ? 'POST' : 'GET', lookup: pinned, headers, timeout: timeoutMs }, resolve);
    req.on('timeout', () => req.destroy(new ApiError('URL_UNREACHABLE', `${url.host} did not answer within ${timeoutMs / 1000} s`)));
    req.on('error', (err) =>
      reject(
        err instanceof ApiError
          ? err
          : new ApiError('URL_UNREACHABLE', `cannot fetch ${url}: ${(err as NodeJS.ErrnoException).code ?? err.message}`),
      ),
    );
    req.end(post?.body);
  });
}
