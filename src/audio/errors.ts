// Errors for audio that cannot be used. All are permanent (src/errors.ts):
// retrying the same bytes gives the same answer.
import { CodedError } from '../errors.ts';

export type AudioErrorCode =
  | 'AUDIO_UNDECODABLE' // not audio, a format no decoder here reads, or cut short
  | 'AUDIO_EMPTY' // decodes to no samples
  | 'AUDIO_UNSUPPORTED' // audio in a form this installation cannot decode (e.g. M4A without ffmpeg)
  | 'AUDIO_TOO_LONG'; // longer than the configured maximum duration

export class AudioError extends CodedError<AudioErrorCode> {}
