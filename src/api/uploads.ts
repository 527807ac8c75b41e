// GraphQL multipart requests (the spec `curl -F operations=… -F map=… -F 0=@file`
// sends), parsed as a stream: each file goes straight from the socket into the
// blob store, never whole in memory, and one over MURMUR_MAX_UPLOAD_BYTES stops
// the request with INPUT_TOO_LARGE. Resolvers receive a StoredUpload in place
// of each file. An upload no job took (a failed mutation, a refused request)
// is deleted once the response is out.
import { randomUUID } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import busboy from 'busboy';
import { GraphQLError } from 'graphql';
import type { GraphQLParams, Plugin } from 'graphql-yoga';
import type { BlobStore } from '../storage/blobStore.ts';

export class StoredUpload {
  /** Set by whoever keeps the blob (createJob, once its job is committed). */
  kept = false;
  constructor(
    readonly key: string,
    readonly filename: string,
    readonly mimeType: string,
    readonly bytes: number,
  ) {}
}

const inputError = (message: string, code = 'BAD_USER_INPUT', status = 400) => new GraphQLError(message, { extensions: { code, http: { status } } });

export function useStreamingUploads(store: BlobStore, maxBytes: number, log: (line: string) => void): Plugin {
  const uploads = new WeakMap<Request, StoredUpload[]>();
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST' || !request.headers.get('content-type')?.toLowerCase().startsWith('multipart/form-data')) return;
      setRequestParser(async (req) => {
        const stored: StoredUpload[] = [];
        uploads.set(request, stored);
        return parseMultipart(req, store, maxBytes, stored);
      });
    },
    onResponse({ request }) {
      for (const upload of uploads.get(request) ?? []) {
        if (!upload.kept) store.delete(upload.key).catch((err) => log(`could not delete upload ${upload.key}: ${err.message}`));
      }
    },
  };
}

async function parseMultipart(request: Request, store: BlobStore, maxBytes: number, stored: StoredUpload[]): Promise<GraphQLParams> {
  let operations: GraphQLParams | undefined;
  let map: Record<string, string[]> | undefined;
  const files = new Map<string, StoredUpload>();
  const writes: Promise<void>[] = [];
  let failure: GraphQLError | undefined;
  const parser = busboy({ headers: { 'content-type': request.headers.get('content-type')! }, limits: { fileSize: maxBytes, files: 16, fieldSize: 1 << 20 } });

  parser.on('field', (name, value) => {
    try {
      if (name === 'operations') operations = JSON.parse(value);
      else if (name === 'map') map = JSON.parse(value);
    } catch {
      failure ??= inputError(`the multipart field "${name}" is not JSON`);
    }
  });
  parser.on('file', (field, stream, info) => {
    if (!operations || !map) {
      failure ??= inputError('multipart fields out of order: "operations" and "map" come before the files');
      stream.resume();
      return;
    }
    const key = `uploads/${randomUUID()}`;
    let bytes = 0;
    let tooLarge = false;
    stream.on('limit', () => {
      tooLarge = true;
      failure ??= inputError(`the upload "${info.filename}" is over the ${maxBytes}-byte limit`, 'INPUT_TOO_LARGE', 413);
    });
    const counted = stream.pipe(new Transform({ transform: (chunk: Buffer, _enc, done) => ((bytes += chunk.length), done(null, chunk)) }));
    const upload = () => new StoredUpload(key, info.filename || 'audio', info.mimeType, bytes);
    writes.push(
      store.put(key, counted).then(() => {
        const u = upload();
        stored.push(u);
        if (!tooLarge) files.set(field, u);
      }),
    );
  });

  await new Promise<void>((resolve, reject) => {
    parser.on('close', resolve);
    parser.on('error', (err: Error) => reject(inputError(`malformed multipart request: ${err.message}`)));
    Readable.from(request.body as unknown as AsyncIterable<Uint8Array>).on('error', reject).pipe(parser);
  });
  await Promise.all(writes);
  if (failure) throw failure;
  if (!operations || !map) throw inputError('a multipart request needs the "operations" and "map" fields');

  for (const [field, paths] of Object.entries(map)) {
    const upload = files.get(field);
    if (!upload) throw inputError(`the map names file "${field}", which the request does not hold`);
    for (const path of paths) setPath(operations, path, upload);
  }
  return operations;
}

/** Puts the upload where the map says: "variables.input.file" → operations.variables.input.file. */
function setPath(target: object, path: string, value: unknown): void {
  const parts = path.split('.');
  let at: Record<string, unknown> = target as Record<string, unknown>;
  for (const part of parts.slice(0, -1)) {
    if (typeof at[part] !== 'object' || at[part] === null) throw inputError(`the map's path "${path}" is not in the operations`);
    at = at[part] as Record<string, unknown>;
  }
  at[parts.at(-1)!] = value;
}
