// The blob store could not be reached (or answered with a server error): the
// request may succeed later, nothing was lost.
import { CodedError } from '../errors.ts';

export class StorageError extends CodedError<'BLOB_STORE_UNAVAILABLE'> {
  constructor(store: string, cause: unknown) {
    super(
      'BLOB_STORE_UNAVAILABLE',
      `the blob store ${store} is unavailable: ${(cause as Error)?.name ?? ''} ${(cause as Error)?.message ?? cause}`.trim(),
      { cause },
    );
  }
}

/** No HTTP answer at all, or a 5xx: the store is down or failing, not refusing this request. */
export function storeUnavailable(err: unknown): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  return status === undefined || status >= 500;
}
