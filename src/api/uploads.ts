// GraphQL multipart requests (the spec `curl -F operations=… -F map=… -F 0=@file`
// sends), parsed as a stream: each file goes straight from the socket into the
// blob store, never whole in memory, and one over MURMUR_MAX_UPLOAD_BYTES stops
// the request with INPUT_TOO_LARGE. Resolvers receive a StoredUpload in place
// of each file. An upload no job took (a failed mutation, a refused request)
// is deleted once the response is out.
import { randomUUID } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';
import type { Logger } from '../log.ts';
import type { BlobStore } from '../storage/blobStore.ts';
import { requestError } from './errors.ts';

export class StoredUpload {
  /** Set by whoever keeps the blob (createJob, once its job is committed). */
  kept = false;
  /** Set by the createJob that took it, so no second one in the same request takes it too. */
  taken = false;
  constructor(
    readonly key: string,
    readonly filename: string,
    readonly mimeType: string,
    readonly bytes: number,
  ) {}
}

const inputError = (message: string) => requestError('BAD_USER_INPUT', message, 400);

export interface UploadLimits {
  /** A file over this size stops the request with INPUT_TOO_LARGE. */
  maxBytes: number;
  /** A body that sends nothing for this long stops the request with UPLOAD_STALLED. */
  idleMs: number;
}

export function useStreamingUploads(store: BlobStore, limits: UploadLimits, log: Logger): Plugin {
  const uploads = new WeakMap<Request, StoredUpload[]>();
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST' || !request.headers.get('content-type')?.toLowerCase().startsWith('multipart/form-data')) return;
      setRequestParser(async (req) => {
        const stored: StoredUpload[] = [];
        uploads.set(request, stored);
        return parseMultipart(req, store, limits, stored);
      });
    },
    onResponse({ request }) {
      discardUnkept(store, uploads.get(request) ?? [], log);
    },
  };
}

/** Once the response is out: every upload of the request that no job kept is removed. */
export function discardUnkept(store: BlobStore, stored: StoredUpload[], log: Logger): void {
  for (const upload of stored) {
    if (!upload.kept)
      store
        .delete(upload.key)
        .catch((err) =>
          log.error({ event: 'upload.delete_failed', key: upload.key, err }, `could not delete upload ${upload.key}: ${err.message}`),
        );
  }
}

/** A multipart body to read: from yoga's Request or from Node's own request (the OpenAI-compatible routes). */
export interface MultipartBody {
  contentType: string;
  body: AsyncIterable<Uint8Array>;
  /** Aborts when the client goes away. */
  signal?: AbortSignal;
}

export interface MultipartParts {
  /** In the order they came; a name may come more than once (`timestamp_granularities[]`). */
  fields: [name: string, value: string][];
  /** By field name; a file over the limit is not here (the request fails). */
  files: Map<string, StoredUpload>;
}

export interface PartLimits {
  files: number;
  fields: number;
  parts: number;
}

/**
 * Reads a multipart body as a stream: fields as text (1 MB each at most),
 * each file straight into the blob store. Every file written is pushed to
 * `stored` (for whoever deletes what no job took), whether or not the request
 * succeeds. `fileAllowed` may refuse a file given the fields before it.
 */
export async function readMultipart(
  input: MultipartBody,
  store: BlobStore,
  limits: UploadLimits,
  stored: StoredUpload[],
  parts: PartLimits = { files: 16, fields: 8, parts: 24 },
  fileAllowed: (fields: MultipartParts['fields']) => GraphQLError | undefined = () => undefined,
): Promise<MultipartParts> {
  const fields: MultipartParts['fields'] = [];
  const files = new Map<string, StoredUpload>();
  const writes: Promise<void>[] = [];
  const open = new Set<Readable>();
  let failure: GraphQLError | undefined;
  let parser: busboy.Busboy;
  try {
    // defParamCharset: filenames are UTF-8 (what browsers and curl send), not busboy's default latin1.
    parser = busboy({
      headers: { 'content-type': input.contentType },
      defParamCharset: 'utf8',
      limits: { fileSize: limits.maxBytes, ...parts, fieldSize: 1 << 20 },
    });
  } catch (err) {
    throw inputError(`malformed multipart request: ${(err as Error).message}`);
  }

  // busboy drops what is over a count silently: refuse the request instead (a second audio file sent to
  // the OpenAI route would otherwise vanish unseen).
  parser.on('filesLimit', () => (failure ??= requestError('INPUT_TOO_LARGE', `more than ${parts.files} file(s) in one request`, 413)));
  parser.on('fieldsLimit', () => (failure ??= requestError('INPUT_TOO_LARGE', `more than ${parts.fields} field(s) in one request`, 413)));
  parser.on('partsLimit', () => (failure ??= requestError('INPUT_TOO_LARGE', `more than ${parts.parts} parts in one request`, 413)));
  parser.on('field', (name, value, info) => {
    if (info.valueTruncated) failure ??= requestError('INPUT_TOO_LARGE', `the multipart field "${name}" is over 1 MB`, 413);
    else fields.push([name, value]);
  });
  parser.on('file', (field, stream, info) => {
    // Refused or hung up already (a file can still start from what the parser had buffered): nothing more is stored.
    if (failure) {
      stream.resume();
      return;
    }
    const refused = fileAllowed(fields);
    if (refused) {
      failure ??= refused;
      stream.resume();
      return;
    }
    const key = `uploads/${randomUUID()}`;
    let bytes = 0;
    let tooLarge = false;
    stream.on('limit', () => {
      tooLarge = true;
      failure ??= requestError('INPUT_TOO_LARGE', `the upload "${info.filename}" is over the ${limits.maxBytes}-byte limit`, 413);
    });
    const counted = new Transform({ transform: (chunk: Buffer, _enc, done) => ((bytes += chunk.length), done(null, chunk)) });
    // pipeline, not pipe: a file stream that dies mid-upload must fail the store's write, not leave it waiting.
    open.add(counted);
    // A hang-up destroys it with the reason once the store may have stopped listening (the whole file read, its write
    // finishing): the reason reaches the request as `failure`; unheard, the error would end the process.
    counted.on('error', () => {});
    pipeline(stream, counted).catch(() => {});
    const upload = () => new StoredUpload(key, info.filename || 'audio', info.mimeType, bytes);
    writes.push(
      store.put(key, counted).then(
        () => {
          open.delete(counted);
          const u = upload();
          stored.push(u);
          if (!tooLarge) files.set(field, u);
        },
        (err) => {
          open.delete(counted);
          throw err;
        },
      ),
    );
  });

  const body = Readable.from(input.body);
  // A client that goes away, or stops sending, ends the request: its partial files are removed and nothing stays open.
  const abort = (err: GraphQLError, gone: boolean) => {
    failure ??= err;
    body.unpipe(parser);
    // A client still connected gets its answer; what it may still send is read and dropped.
    if (gone) body.destroy();
    else body.resume();
    parser.destroy();
    for (const s of open) s.destroy(err);
  };
  let lastData = Date.now();
  body.on('data', () => (lastData = Date.now()));
  const stall = setInterval(
    () => {
      if (Date.now() - lastData > limits.idleMs)
        abort(requestError('UPLOAD_STALLED', `the upload stalled: nothing arrived for ${limits.idleMs / 1000} s`, 408), false);
    },
    Math.min(1000, limits.idleMs / 2),
  );
  const aborted = () => abort(requestError('UPLOAD_ABORTED', 'the client went away mid-upload', 400), true);
  input.signal?.addEventListener('abort', aborted);
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('close', resolve);
      parser.on('error', (err: Error) => reject(failure ?? inputError(`malformed multipart request: ${err.message}`)));
      body.on('error', (err) => reject(failure ?? err));
      body.on('close', () => failure && reject(failure));
      body.pipe(parser);
    });
    // Every write settled before answering, so none is still open when the response goes out.
    const failed = (await Promise.allSettled(writes)).find((w) => w.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    for (const s of open) s.destroy(failure ?? (err as Error));
    await Promise.allSettled(writes);
    throw failure ?? err;
  } finally {
    clearInterval(stall);
    input.signal?.removeEventListener('abort', aborted);
  }
  if (failure) throw failure;
  return { fields, files };
}

/** A GraphQL multipart request: the "operations" and "map" fields, then the files the map puts into the operations. */
async function parseMultipart(request: Request, store: BlobStore, limits: UploadLimits, stored: StoredUpload[]): Promise<GraphQLParams> {
  const body = {
    contentType: request.headers.get('content-type')!,
    body: request.body as unknown as AsyncIterable<Uint8Array>,
    signal: request.signal,
  };
  const has = (fields: MultipartParts['fields'], name: string) => fields.some(([n]) => n === name);
  const inOrder = (fields: MultipartParts['fields']) =>
    has(fields, 'operations') && has(fields, 'map')
      ? undefined
      : inputError('multipart fields out of order: "operations" and "map" come before the files');
  const { fields, files } = await readMultipart(body, store, limits, stored, undefined, inOrder);
  const json = (name: string) => {
    const value = [...fields].reverse().find(([n]) => n === name)?.[1];
    if (value === undefined) throw inputError('a multipart request needs the "operations" and "map" fields');
    try {
      return JSON.parse(value);
    } catch {
      throw inputError(`the multipart field "${name}" is not JSON`);
    }
  };
  const operations = json('operations') as GraphQLParams;
  const map = json('map') as Record<string, string[]>;

  if (typeof operations !== 'object' || operations === null || Array.isArray(operations))
    throw inputError('the multipart field "operations" is a JSON object');
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw inputError('the multipart field "map" is a JSON object of file names to lists of paths');
  for (const [field, paths] of Object.entries(map)) {
    const upload = files.get(field);
    if (!upload) throw inputError(`the map names file "${field}", which the request does not hold`);
    if (!Array.isArray(paths)) throw inputError(`the map's entry for file "${field}" is a list of paths`);
    for (const path of paths) setPath(operations, path, upload);
  }
  return operations;
}

/** Path segments that would reach an object's prototype instead of its own fields. */
const UNSAFE = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Puts the upload where the map says: "variables.input.file" → operations.variables.input.file.
 * Only through the operations' own fields: a path through `__proto__` once polluted every
 * object of the process (each JSON request after it was refused) and is refused itself.
 */
function setPath(target: object, path: unknown, value: unknown): void {
  if (typeof path !== 'string') throw inputError('each path in the multipart "map" is a string such as "variables.file"');
  const parts = path.split('.');
  if (parts.some((p) => UNSAFE.has(p))) throw inputError(`the map's path "${path}" is not allowed`);
  let at: Record<string, unknown> = target as Record<string, unknown>;
  for (const part of parts.slice(0, -1)) {
    if (!Object.hasOwn(at, part) || typeof at[part] !== 'object' || at[part] === null)
      throw inputError(`the map's path "${path}" is not in the operations`);
    at = at[part] as Record<string, unknown>;
  }
  at[parts.at(-1)!] = value;
}
