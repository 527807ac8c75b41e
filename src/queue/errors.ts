// Errors of the queue that a client or worker acts on, each with a stable code.
import { CodedError } from '../errors.ts';

export type QueueErrorCode =
  | 'JOB_NOT_FOUND'
  | 'LEASE_LOST' // the lease token is not the job's current one: another attempt owns the job now
  | 'JOB_CANCELLED' // the job was cancelled while a worker held it
  | 'NOT_CANCELLABLE' // the job already finished
  | 'NOT_RETRYABLE' // only failed and cancelled jobs can be retried
  | 'IDEMPOTENCY_CONFLICT' // the key is taken by a job created with other options
  | 'UPLOAD_ALREADY_USED' // the blob is another job's
  | 'DATABASE_UNAVAILABLE'; // the database does not answer (either backend: outages.ts)

export class QueueError extends CodedError<QueueErrorCode> {}
