// createJob's work: the upload is already in the blob store (streamed there by
// uploads.ts); probe it (format, duration, rate, channels, and that it decodes
// whole), then commit the job. The mutation answers only after both the blob
// and the row are on disk; when anything fails, neither stays behind.
import { probeAudioFile } from '../../worker/audio/decode.ts';
import { isWhisperLanguage, languageCode } from '../../worker/whisper/languages.ts';
import type { Job, Task } from '../queue/queue.ts';
import type { Services } from './context.ts';
import { ApiError } from './errors.ts';
import { StoredUpload } from './uploads.ts';

export interface CreateJobInput {
  file?: StoredUpload | null;
  language?: string | null;
  task?: Task | null;
  timestamps?: boolean | null;
  idempotencyKey?: string | null;
  priority?: number | null;
}

export async function createJob(services: Services, input: CreateJobInput): Promise<Job> {
  const { queue, store, config } = services;
  const { file } = input;
  if (!(file instanceof StoredUpload)) throw new ApiError('BAD_USER_INPUT', 'createJob needs `file`: send the audio as a GraphQL multipart request');
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== null && (input.idempotencyKey.length === 0 || input.idempotencyKey.length > 200)) {
    throw new ApiError('BAD_USER_INPUT', 'idempotencyKey must be 1 to 200 characters');
  }
  if (input.language && !isWhisperLanguage(input.language)) {
    throw new ApiError('UNKNOWN_LANGUAGE', `"${input.language}" is not a language Whisper knows: give a code ("en") or an English name ("German"), or leave it out to detect it`);
  }
  const language = input.language ? languageCode(input.language) : null;
  if (input.idempotencyKey) {
    const existing = queue.findByIdempotencyKey(input.idempotencyKey);
    if (existing) return existing;
  }

  const facts = await store.withLocalFile(file.key, (path) => probeAudioFile(path, { name: file.filename, maxSeconds: config.maxDurationSeconds }));
  const { job, created } = queue.create({
    filename: file.filename,
    bytes: file.bytes,
    ...facts,
    blobKey: file.key,
    language,
    task: input.task ?? 'transcribe',
    timestamps: input.timestamps ?? true,
    priority: input.priority ?? 0,
    idempotencyKey: input.idempotencyKey,
  });
  // When the same key raced in first, this upload is not kept and goes with the response.
  if (created) file.kept = true;
  return job;
}
