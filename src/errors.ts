// Every error code murmur raises, in one place, and what each one means for
// whoever meets it: `shown` codes reach clients as they are (GraphQL
// `extensions.code`, published as the ErrorCode enum), the rest are masked and
// logged in full; a `permanent` failure gives the same answer however often the
// same input is tried (a worker fails the job at once instead of retrying);
// `unavailable` means a part of the service is down, not that the request is
// wrong (try again later); `job` codes may be a job's `error.code`. Callers
// test these flags on the error (`CodedError`), never lists of codes.

interface CodeInfo {
  readonly about: string;
  readonly shown?: true;
  readonly permanent?: true;
  readonly unavailable?: true;
  readonly job?: true;
  /** The HTTP status the API answers with, when not 200. */
  readonly status?: number;
}

export const ERROR_CODES = {
  // The request
  BAD_USER_INPUT: { shown: true, about: 'a missing or malformed argument, variable or request' },
  GRAPHQL_PARSE_FAILED: { shown: true, about: 'the document is not GraphQL' },
  GRAPHQL_VALIDATION_FAILED: { shown: true, about: 'the document asks for what the schema does not have' },
  QUERY_TOO_COMPLEX: { shown: true, about: 'the document is over a limit of tokens, depth, aliases, directives or cost' },
  INPUT_TOO_LARGE: {
    shown: true,
    about: 'an upload over MURMUR_MAX_UPLOAD_BYTES, a JSON body over MURMUR_MAX_REQUEST_BYTES, a multipart field over 1 MB (413)',
  },
  PREFLIGHT_REQUIRED: { shown: true, about: 'a multipart request without the graphql-preflight header' },
  UNSUPPORTED_MEDIA_TYPE: { shown: true, about: 'a POST that is neither JSON nor multipart (415)' },
  UPLOAD_STALLED: { shown: true, about: 'an upload that sent nothing for MURMUR_UPLOAD_IDLE_SECONDS (408)' },
  UPLOAD_ABORTED: { shown: true, about: 'the client went away mid-upload' },
  // Who is asking
  UNAUTHENTICATED: { shown: true, about: 'no API key (or worker token), or one that is unknown or revoked (401)' },
  FORBIDDEN: {
    shown: true,
    about:
      'a valid key that may not do this: a client key asking for the queue, a key running worker operations, the worker token running client ones',
  },
  TOO_MANY_SUBSCRIPTIONS: {
    shown: true,
    about: 'a connection or key over MURMUR_MAX_SUBSCRIPTIONS_PER_CONNECTION or MURMUR_MAX_SUBSCRIPTIONS_PER_KEY open subscriptions',
  },
  RATE_LIMITED: { shown: true, about: 'the key is over one of its limits; extensions.retryAfterSeconds says when to try again (429)' },
  // Jobs and their audio
  UNKNOWN_LANGUAGE: { shown: true, permanent: true, job: true, about: 'a language Whisper does not know' },
  INVALID_OPTIONS: { shown: true, permanent: true, job: true, about: 'options the model cannot honour' },
  UPLOAD_NOT_FOUND: {
    shown: true,
    about: 'an uploadKey createUpload did not hand out, or whose object is not (or no longer) in the store',
  },
  UPLOAD_ALREADY_USED: {
    shown: true,
    about: 'an uploadKey another job took, or an uploaded file that another createJob of the same request took',
  },
  UPLOADS_UNSUPPORTED: { shown: true, about: 'createUpload on a blob store that cannot presign (the local folder)' },
  URL_FORBIDDEN: { shown: true, about: 'createJob({ url }) aimed at a scheme or an address the server does not fetch from' },
  URL_UNREACHABLE: { shown: true, about: 'the URL did not answer, answered an error, redirected too often, or stalled' },
  AUDIO_UNDECODABLE: {
    shown: true,
    permanent: true,
    job: true,
    about: 'not audio, cut short, or not decodable within its time and memory bounds',
  },
  AUDIO_EMPTY: { shown: true, permanent: true, job: true, about: 'audio with no samples' },
  AUDIO_UNSUPPORTED: { shown: true, permanent: true, job: true, about: 'audio in a form this installation cannot decode' },
  AUDIO_TOO_LONG: { shown: true, permanent: true, job: true, about: 'longer than MURMUR_MAX_DURATION_SECONDS' },
  JOB_NOT_FOUND: { shown: true, about: "no such job (or another tenant's)" },
  NOT_CANCELLABLE: { shown: true, about: 'the job already finished' },
  NOT_RETRYABLE: { shown: true, about: 'only failed and cancelled jobs can be retried' },
  IDEMPOTENCY_CONFLICT: { shown: true, about: 'the idempotency key is taken by a job created with other options' },
  // Workers
  LEASE_LOST: { shown: true, about: "the lease token is not the job's current one: another attempt owns the job now" },
  JOB_CANCELLED: { shown: true, about: 'the job was cancelled while a worker held it' },
  LEASE_EXPIRED: { shown: true, job: true, about: "a job's worker stopped heartbeating (crashed, or lost its connection) too often" },
  // The service
  SHUTTING_DOWN: {
    shown: true,
    status: 503,
    about: 'this instance is stopping: send the request again (another instance, or this one restarted, takes it) (503)',
  },
  DATABASE_UNAVAILABLE: { shown: true, unavailable: true, status: 503, about: 'the database does not answer: try again (503)' },
  BLOB_STORE_UNAVAILABLE: { shown: true, unavailable: true, status: 503, about: 'the blob store does not answer: try again (503)' },
  INTERNAL_SERVER_ERROR: {
    shown: true,
    unavailable: true,
    job: true,
    about: "anything unexpected; extensions.requestId (or the job error's message) names it in the server's log",
  },
  // Inside the service: logged and masked, never a client's answer
  API_UNAVAILABLE: { unavailable: true, about: 'a worker could not reach the API' },
  MODEL_NOT_FOUND: { about: 'the model folder or one of its required files is missing' },
  MODEL_INVALID: { about: 'a model file is there but cannot be read or lacks a required field' },
  MODEL_VARIANT_MISSING: { about: 'no ONNX files for the requested dtype' },
  PROVIDER_UNAVAILABLE: { about: 'no execution provider in the list could create the sessions' },
  SEGMENT_TOO_LONG: { about: 'more than 30 s of audio in one segment given to the runtime' },
  KEY_NOT_FOUND: { about: 'no API key of that name or id' },
  KEY_NAME_TAKEN: { about: 'an API key of that name exists' },
  KEY_INVALID: { about: 'a key name, tenant or role that is not allowed' },
  CONFIG_INVALID: { about: 'a configuration variable with a bad value' },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;
type CodesWith<F extends 'shown' | 'job'> = { [C in ErrorCode]: (typeof ERROR_CODES)[C] extends Record<F, true> ? C : never }[ErrorCode];
/** The codes clients see (the ErrorCode enum). */
export type ShownCode = CodesWith<'shown'>;
/** What a job's `error.code` may be: why it failed, or why its last attempt did. */
export type JobErrorCode = CodesWith<'job'>;

const info = (code: string): CodeInfo | undefined => (ERROR_CODES as Record<string, CodeInfo>)[code];
const codesWith = <C extends ErrorCode>(flag: 'shown' | 'job') =>
  (Object.keys(ERROR_CODES) as ErrorCode[]).filter((c) => info(c)![flag]) as C[];
export const SHOWN_CODES = codesWith<ShownCode>('shown');
export const JOB_ERROR_CODES = codesWith<JobErrorCode>('job');

export const isJobErrorCode = (code: string): code is JobErrorCode => info(code)?.job === true;
/** A job's code that says its input is at fault (the client's to fix), not the service. */
export const isPermanentCode = (code: string | null | undefined): boolean => code != null && info(code)?.permanent === true;
/** A code (from anywhere: another process, the API's answer) that says a part of the service is down. */
export const isUnavailableCode = (code: string): boolean => info(code)?.unavailable === true;

/** The base of murmur's errors: a stable code, and what the code says about the failure. */
export class CodedError<C extends ErrorCode = ErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }

  /** Trying the same input again gives the same answer. */
  get permanent(): boolean {
    return info(this.code)?.permanent === true;
  }

  /** The code and message are meant for the client. */
  get shown(): boolean {
    return info(this.code)?.shown === true;
  }

  /** A part of the service is down; the request may succeed later. */
  get unavailable(): boolean {
    return info(this.code)?.unavailable === true;
  }

  get status(): number | undefined {
    return info(this.code)?.status;
  }
}
