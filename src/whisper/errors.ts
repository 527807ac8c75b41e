// Errors the runtime raises for problems a caller can act on (src/errors.ts
// says which are permanent and which reach clients).
import { CodedError } from '../errors.ts';

export type WhisperErrorCode =
  | 'MODEL_NOT_FOUND' // the folder or one of its required files is missing
  | 'MODEL_INVALID' // a file is there but cannot be read or lacks a required field
  | 'MODEL_VARIANT_MISSING' // no ONNX files for the requested dtype
  | 'PROVIDER_UNAVAILABLE' // no execution provider in the list could create the sessions
  | 'UNKNOWN_LANGUAGE'
  | 'INVALID_OPTIONS' // a task, dtype or option value the model cannot honour
  | 'SEGMENT_TOO_LONG'; // more than 30 s of audio in one segment

export class WhisperError extends CodedError<WhisperErrorCode> {}
