// Errors for audio that cannot be used, each with a stable code. All are
// permanent: retrying the same bytes gives the same answer.

export type AudioErrorCode =
  | 'AUDIO_UNDECODABLE' // not a file this decoder reads, or cut short
  | 'AUDIO_EMPTY' // decodes to no samples
  | 'AUDIO_UNSUPPORTED'; // a valid file in a form this build does not take yet

export class AudioError extends Error {
  constructor(
    readonly code: AudioErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AudioError';
  }
}
