// createJob's work: store the upload, check that it is audio the workers can
// read, and commit the job. The mutation answers only after both the blob and
// the row are on disk; when anything fails, neither stays behind.
import { randomUUID } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { decodeWav } from '../../worker/audio/wav.ts';
import { isWhisperLanguage, languageCode } from '../../worker/whisper/languages.ts';
import type { Job, Task } from '../queue/queue.ts';
import { blobKeyFor } from '../storage/blobStore.ts';
import type { Services } from './context.ts';
import { ApiError } from './errors.ts';

export interface CreateJobInput {
  file?: File | null;
  language?: string | null;
  task?: Task | null;
  timestamps?: boolean | null;
  idempotencyKey?: string | null;
  priority?: number | null;
}

export async function createJob(services: Services, input: CreateJobInput): Promise<Job> {
  const { queue, store, config } = services;
  const { file } = input;
  if (!file) throw new ApiError('BAD_USER_INPUT', 'createJob needs `file`: send the audio as a GraphQL multipart request');
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== null && (input.idempotencyKey.length === 0 || input.idempotencyKey.length > 200)) {
    throw new ApiError('BAD_USER_INPUT', 'idempotencyKey must be 1 to 200 characters');
  }
  if (input.language && !isWhisperLanguage(input.language)) throw new ApiError('UNKNOWN_LANGUAGE', `"${input.language}" is not a language Whisper knows: give a code ("en") or an English name ("German"), or leave it out to detect it`);
  const language = input.language ? languageCode(input.language) : null;
  if (file.size > config.maxUploadBytes) throw new ApiError('INPUT_TOO_LARGE', `the upload is ${file.size} bytes; the limit is ${config.maxUploadBytes}`);
  if (input.idempotencyKey) {
    const existing = queue.findByIdempotencyKey(input.idempotencyKey);
    if (existing) return existing;
  }

  const id = randomUUID();
  const blobKey = blobKeyFor(id);
  const filename = file.name || 'audio';
  try {
    const bytes = await store.put(blobKey, file.stream() as unknown as AsyncIterable<Uint8Array>);
    const audio = decodeWav(await buffer(await store.read(blobKey)), filename);
    const { job, created } = queue.create({
      id,
      filename,
      bytes,
      durationSeconds: audio.durationSeconds,
      blobKey,
      language,
      task: input.task ?? 'transcribe',
      timestamps: input.timestamps ?? true,
      priority: input.priority ?? 0,
      idempotencyKey: input.idempotencyKey,
    });
    if (!created) await store.delete(blobKey); // the same key raced in first
    return job;
  } catch (err) {
    await store.delete(blobKey);
    throw err;
  }
}
