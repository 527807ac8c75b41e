// One coded error for a database that does not answer, whichever backend:
// each says how it recognises an outage, and the queue (with its key store) is
// wrapped so every call turns one into QueueError('DATABASE_UNAVAILABLE').
// The API then tests the error, as it does StorageError, and never looks at a
// driver's codes.
import type { JobQueue } from './jobQueue.ts';
import { QueueError } from './errors.ts';

/** Every method of `target` (and of the objects named in `nested`) rethrows what `isOutage` recognises as DATABASE_UNAVAILABLE. */
function guard<T extends object>(target: T, isOutage: (err: unknown) => boolean, nested: readonly string[] = []): T {
  const rethrow = (err: unknown): never => {
    if (isOutage(err)) throw new QueueError('DATABASE_UNAVAILABLE', 'the database is unavailable; try again shortly', { cause: err });
    throw err;
  };
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(obj, name, receiver) {
      const value = Reflect.get(obj, name, receiver);
      if (nested.includes(name as string) && value && typeof value === 'object') {
        if (!wrapped.has(name)) wrapped.set(name, guard(value, isOutage));
        return wrapped.get(name);
      }
      if (typeof value !== 'function') return value;
      if (!wrapped.has(name)) {
        wrapped.set(name, (...args: unknown[]) => {
          try {
            const result = value.apply(obj, args);
            return result instanceof Promise ? result.catch(rethrow) : result;
          } catch (err) {
            return rethrow(err);
          }
        });
      }
      return wrapped.get(name);
    },
  });
}

export const withOutages = (queue: JobQueue, isOutage: (err: unknown) => boolean): JobQueue => guard(queue, isOutage, ['keys']);

const SQLITE_DOWN = /^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|FULL)/;

/** SQLite: the file is locked past the busy timeout, unreadable or full. */
export const sqliteOutage = (err: unknown): boolean => SQLITE_DOWN.test(String((err as { code?: string })?.code ?? ''));
