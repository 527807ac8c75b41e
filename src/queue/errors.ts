// Errors of the queue that a client or worker acts on, each with a stable code.

export type QueueErrorCode =
  | 'JOB_NOT_FOUND'
  | 'LEASE_LOST' // the lease token is not the job's current one: another attempt owns the job now
  | 'JOB_CANCELLED' // the job was cancelled while a worker held it
  | 'NOT_CANCELLABLE' // the job already finished
  | 'NOT_RETRYABLE' // only failed and cancelled jobs can be retried
  | 'IDEMPOTENCY_CONFLICT' // the key is taken by a job created with other options
  | 'UPLOAD_ALREADY_USED'; // the blob is another job's

export class QueueError extends Error {
  constructor(
    readonly code: QueueErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'QueueError';
  }
}
