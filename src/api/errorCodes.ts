// Every error code the API can answer, in one place: GraphQL errors carry one
// in `extensions.code`, a job's `error.code` is one of JOB_ERROR_CODES, and the
// schema publishes both lists as enums (ErrorCode, JobErrorCode), so clients
// can switch on them. The codes of the queue, the audio decoders and the
// runtime are checked against this list by the type checker.
import type { AudioErrorCode } from '../audio/errors.ts';
import type { QueueErrorCode } from '../queue/errors.ts';

export const ERROR_CODES = {
  // The request
  BAD_USER_INPUT: 'a missing or malformed argument, variable or request',
  GRAPHQL_PARSE_FAILED: 'the document is not GraphQL',
  GRAPHQL_VALIDATION_FAILED: 'the document asks for what the schema does not have',
  QUERY_TOO_COMPLEX: 'the document is over a limit of tokens, depth, aliases, directives or cost',
  INPUT_TOO_LARGE: 'an upload over MURMUR_MAX_UPLOAD_BYTES, a JSON body over MURMUR_MAX_REQUEST_BYTES, a multipart field over 1 MB (413)',
  PREFLIGHT_REQUIRED: 'a multipart request without the graphql-preflight header',
  UNSUPPORTED_MEDIA_TYPE: 'a POST that is neither JSON nor multipart (415)',
  UPLOAD_STALLED: 'an upload that sent nothing for MURMUR_UPLOAD_IDLE_SECONDS (408)',
  UPLOAD_ABORTED: 'the client went away mid-upload',
  // Who is asking
  UNAUTHENTICATED: 'no API key (or worker token), or one that is unknown or revoked (401)',
  FORBIDDEN: 'a valid key that may not do this: a client key asking for the queue, a key running worker operations, the worker token running client ones',
  TOO_MANY_SUBSCRIPTIONS: 'a connection or key over MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION or MURMUR_MAX_SUBSCRIPTIONS_PER_KEY open subscriptions',
  RATE_LIMITED: 'the key is over one of its limits; extensions.retryAfterSeconds says when to try again (429)',
  // Jobs and their audio
  UNKNOWN_LANGUAGE: 'a language Whisper does not know',
  INVALID_OPTIONS: 'options the model cannot honour',
  UPLOAD_NOT_FOUND: 'an uploadKey createUpload did not hand out, or whose object is not (or no longer) in the store',
  UPLOAD_ALREADY_USED: 'an uploadKey another job took, or an uploaded file that another createJob of the same request took',
  UPLOADS_UNSUPPORTED: 'createUpload on a blob store that cannot presign (the local folder)',
  URL_FORBIDDEN: 'createJob({ url }) aimed at a scheme or an address the server does not fetch from',
  URL_UNREACHABLE: 'the URL did not answer, answered an error, redirected too often, or stalled',
  AUDIO_UNDECODABLE: 'not audio, cut short, or not decodable within its time and memory bounds',
  AUDIO_EMPTY: 'audio with no samples',
  AUDIO_UNSUPPORTED: 'audio in a form this installation cannot decode',
  AUDIO_TOO_LONG: 'longer than MURMUR_MAX_DURATION_SECONDS',
  JOB_NOT_FOUND: 'no such job (or another tenant\'s)',
  NOT_CANCELLABLE: 'the job already finished',
  NOT_RETRYABLE: 'only failed and cancelled jobs can be retried',
  IDEMPOTENCY_CONFLICT: 'the idempotency key is taken by a job created with other options',
  // Workers
  LEASE_LOST: 'the lease token is not the job\'s current one: another attempt owns the job now',
  JOB_CANCELLED: 'the job was cancelled while a worker held it',
  LEASE_EXPIRED: 'a job\'s worker stopped heartbeating (crashed, or lost its connection) too often',
  // The service
  SHUTTING_DOWN: 'this instance is stopping: send the request again (another instance, or this one restarted, takes it) (503)',
  DATABASE_UNAVAILABLE: 'the database does not answer: try again (503)',
  BLOB_STORE_UNAVAILABLE: 'the blob store does not answer: try again (503)',
  INTERNAL_SERVER_ERROR: 'anything unexpected; extensions.requestId (or the job error\'s message) names it in the server\'s log',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** What a job's `error.code` may be: why it failed, or why its last attempt did. */
export const JOB_ERROR_CODES = ['AUDIO_UNDECODABLE', 'AUDIO_EMPTY', 'AUDIO_UNSUPPORTED', 'AUDIO_TOO_LONG', 'UNKNOWN_LANGUAGE', 'INVALID_OPTIONS', 'LEASE_EXPIRED', 'INTERNAL_SERVER_ERROR'] as const satisfies readonly ErrorCode[];
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

export const isJobErrorCode = (code: string): code is JobErrorCode => (JOB_ERROR_CODES as readonly string[]).includes(code);

// The other modules' codes are in the list (a new one there fails the type check here until it is added).
type Within<T extends ErrorCode> = T;
export type Checked = Within<QueueErrorCode> | Within<AudioErrorCode>;
