// createJob's work. The audio is either a multipart upload, already streamed
// into the blob store by uploads.ts, or an object a client put into the store
// with a presigned URL (uploadKey), or fetched from a URL (urlFetch.ts). Probe it (format, duration, rate,
// channels, and that it decodes whole), then commit the job. The mutation
// answers only after both the blob and the row are durable; when anything is
// refused, neither stays behind.
import { randomUUID } from 'node:crypto';
import { HEAD_BYTES, probeAudioFile, probeHead } from '../audio/decode.ts';
import { isWhisperLanguage, languageCode } from '../whisper/languages.ts';
import type { Job, NewJob, Task } from '../queue/jobQueue.ts';
import type { DecodingOptions } from '../transcript/transcript.ts';
import { ownerOf, shuttingDown } from './auth.ts';
import type { Context, Services } from './context.ts';
import { ApiError } from './errors.ts';
import { checkAudioLimit, reserveJob } from './rateLimits.ts';
import { uploadFilename } from './presignedUploads.ts';
import { checkUrl, fetchUrl, limitBody } from './urlFetch.ts';
import { StoredUpload } from './uploads.ts';

export interface CreateJobInput {
  file?: StoredUpload | null;
  uploadKey?: string | null;
  url?: string | null;
  language?: string | null;
  task?: Task | null;
  timestamps?: boolean | null;
  idempotencyKey?: string | null;
  priority?: number | null;
  callbackUrl?: string | null;
  prompt?: string | null;
  conditionOnPreviousText?: boolean | null;
  temperatures?: number[] | null;
  seed?: number | null;
  beamSize?: number | null;
  patience?: number | null;
  lengthPenalty?: number | null;
  wordTimestamps?: boolean | null;
}

const MAX_PROMPT_CHARACTERS = 4000;

/** The decoding options of createJob, checked; null when they are all defaults. */
export function decodingOptions(input: CreateJobInput): DecodingOptions | null {
  if (input.prompt != null && input.prompt.length > MAX_PROMPT_CHARACTERS) {
    throw new ApiError('BAD_USER_INPUT', `prompt is over ${MAX_PROMPT_CHARACTERS} characters (Whisper keeps only its last 223 tokens)`);
  }
  const temperatures = input.temperatures ?? undefined;
  if (
    temperatures &&
    (temperatures.length < 1 || temperatures.length > 10 || !temperatures.every((t) => Number.isFinite(t) && t >= 0 && t <= 1))
  ) {
    throw new ApiError('BAD_USER_INPUT', 'temperatures must be 1 to 10 numbers from 0 to 1');
  }
  if (input.beamSize != null && !(input.beamSize >= 1 && input.beamSize <= 16))
    throw new ApiError('BAD_USER_INPUT', 'beamSize must be from 1 to 16');
  if (input.patience != null && !(input.patience >= 1 && input.patience <= 4))
    throw new ApiError('BAD_USER_INPUT', 'patience must be from 1 to 4');
  if (input.lengthPenalty != null && !(input.lengthPenalty >= 0 && input.lengthPenalty <= 2))
    throw new ApiError('BAD_USER_INPUT', 'lengthPenalty must be from 0 to 2');
  if ((input.patience != null || input.lengthPenalty != null) && input.beamSize == null)
    throw new ApiError('BAD_USER_INPUT', 'patience and lengthPenalty need a beamSize');
  const options: DecodingOptions = {
    ...(input.prompt?.trim() && { prompt: input.prompt }),
    ...(input.conditionOnPreviousText && { conditionOnPreviousText: true }),
    ...(temperatures && !(temperatures.length === 1 && temperatures[0] === 0) && { temperatures }),
    ...(input.seed != null && input.seed !== 0 && { seed: input.seed }),
    ...(input.beamSize != null && { beamSize: input.beamSize }),
    ...(input.patience != null && { patience: input.patience }),
    ...(input.lengthPenalty != null && { lengthPenalty: input.lengthPenalty }),
    ...(input.wordTimestamps && { wordTimestamps: true }),
  };
  return Object.keys(options).length > 0 ? options : null;
}

interface Audio {
  key: string;
  filename: string;
  bytes: number;
  /** The blob is the job's from now on. */
  keep(): void;
  /** The blob is refused: remove it. */
  discard(): Promise<void>;
}

export async function createJob(services: Context, input: CreateJobInput): Promise<Job> {
  const { queue, config } = services;
  const owner = ownerOf(services);
  if (services.lateArrival) throw shuttingDown();
  if ([input.file, input.uploadKey, input.url].filter((x) => x != null).length !== 1) {
    throw new ApiError(
      'BAD_USER_INPUT',
      'createJob needs exactly one of `file` (a GraphQL multipart request), `uploadKey` (from createUpload) or `url`',
    );
  }
  if (input.file != null && !(input.file instanceof StoredUpload))
    throw new ApiError('BAD_USER_INPUT', '`file` must be sent as a GraphQL multipart request');
  if (
    input.idempotencyKey !== undefined &&
    input.idempotencyKey !== null &&
    (input.idempotencyKey.length === 0 || input.idempotencyKey.length > 200)
  ) {
    throw new ApiError('BAD_USER_INPUT', 'idempotencyKey must be 1 to 200 characters');
  }
  if (input.language && !isWhisperLanguage(input.language)) {
    throw new ApiError(
      'UNKNOWN_LANGUAGE',
      `"${input.language}" is not a language Whisper knows: give a code ("en") or an English name ("German"), or leave it out to detect it`,
    );
  }
  const language = input.language ? languageCode(input.language) : null;
  const decoding = decodingOptions(input);
  if (input.idempotencyKey) {
    const existing = await queue.findByIdempotencyKey(input.idempotencyKey, owner.tenant);
    if (existing) return existing;
  }
  if (input.callbackUrl != null) {
    if (input.callbackUrl.length > 2000) throw new ApiError('BAD_USER_INPUT', 'callbackUrl is over 2000 characters');
    await checkUrl(input.callbackUrl, config.allowPrivateUrls);
  }
  const reservation = owner.apiKeyId ? await reserveJob(queue, config, owner.apiKeyId) : null;
  try {
    return await ingest(services, input, { language, decoding, reservation, ...owner });
  } catch (err) {
    // A refused request gives its place back; a stored job filled it in create's transaction.
    if (reservation)
      await queue
        .unreserve(reservation)
        .catch((e) =>
          services.log.error({ event: 'reservation.release_failed', err: e }, `could not give back a key's reservation: ${e.message}`),
        );
    throw err;
  }
}

/** Takes in the audio, probes it and stores the job (with the rest of its row in `row`). */
async function ingest(
  services: Context,
  input: CreateJobInput,
  row: Pick<NewJob, 'language' | 'decoding' | 'reservation' | 'tenant' | 'apiKeyId'>,
): Promise<Job> {
  const { queue, store, config } = services;
  // One stored upload is one job's: a multipart map (or a variable) that hands one file to two createJobs is refused
  // for the second, which would otherwise fail on a blob the first one's end deletes.
  if (input.file) {
    if (input.file.taken)
      throw new ApiError(
        'UPLOAD_ALREADY_USED',
        `the uploaded file "${input.file.filename}" is already another job's in this request: send it once for each job`,
      );
    input.file.taken = true;
  }
  const audio = input.file
    ? multipart(input.file)
    : input.uploadKey
      ? await presigned(services, input.uploadKey)
      : await fetched(services, input.url!);
  let facts;
  try {
    const options = { name: audio.filename, maxSeconds: config.maxDurationSeconds };
    // A WAV is told from its header (one ranged read of an S3 object); other formats are decoded whole, from a local file.
    const head = audio.bytes === 0 ? Buffer.alloc(0) : await store.readRange(audio.key, 0, HEAD_BYTES);
    facts =
      probeHead(head, audio.bytes, audio.filename, options) ??
      (await store.withLocalFile(audio.key, (path) => probeAudioFile(path, options)));
    if (row.apiKeyId) await checkAudioLimit(queue, config, row.apiKeyId, facts.durationSeconds);
  } catch (err) {
    await audio.discard();
    throw err;
  }
  const { job, created } = await queue.create({
    filename: audio.filename,
    bytes: audio.bytes,
    ...facts,
    blobKey: audio.key,
    task: input.task ?? 'transcribe',
    timestamps: input.timestamps ?? true,
    priority: input.priority ?? 0,
    idempotencyKey: input.idempotencyKey,
    webhookUrl: input.callbackUrl,
    ...row,
  });
  // When the same idempotency key raced in first, this audio is not the job's.
  if (created) {
    audio.keep();
    services.log.info(
      {
        event: 'job.created',
        jobId: job.id,
        tenant: job.tenant,
        keyId: job.apiKeyId,
        bytes: job.bytes,
        durationSeconds: job.durationSeconds,
        format: job.format,
      },
      `job ${job.id} created: ${job.filename}, ${job.durationSeconds.toFixed(1)} s`,
    );
  } else if (job.blobKey !== audio.key) await audio.discard();
  return job;
}

/** Audio by URL: fetched past the SSRF guard (urlFetch.ts) straight into the blob store. */
async function fetched({ store, config, log }: Services, url: string): Promise<Audio> {
  const limits = { maxBytes: config.maxUploadBytes, timeoutMs: config.urlTimeoutSeconds * 1000, allowPrivate: config.allowPrivateUrls };
  const { response, filename } = await fetchUrl(url, limits);
  const key = `uploads/${randomUUID()}`;
  const bytes = await store.put(key, limitBody(response, limits));
  const discard = () =>
    store
      .delete(key)
      .catch((err) => log.error({ event: 'upload.delete_failed', key, err }, `could not delete the download ${key}: ${err.message}`));
  return { key, filename, bytes, keep: () => {}, discard };
}

function multipart(file: StoredUpload): Audio {
  return {
    key: file.key,
    filename: file.filename,
    bytes: file.bytes,
    keep: () => (file.kept = true),
    // Not kept: uploads.ts deletes it once the response is out.
    discard: async () => {},
  };
}

async function presigned({ queue, store, config, log }: Services, key: string): Promise<Audio> {
  const filename = uploadFilename(key);
  if (await queue.findByBlobKey(key)) throw new ApiError('UPLOAD_ALREADY_USED', `the upload ${key} belongs to another job`);
  const bytes = await store.size(key);
  if (bytes === null) throw new ApiError('UPLOAD_NOT_FOUND', `nothing was uploaded to ${key} (or the upload expired)`);
  const discard = () =>
    store
      .delete(key)
      .catch((err) => log.error({ event: 'upload.delete_failed', key, err }, `could not delete upload ${key}: ${err.message}`));
  if (bytes > config.maxUploadBytes) {
    await discard();
    throw new ApiError('INPUT_TOO_LARGE', `the upload is ${bytes} bytes, over the ${config.maxUploadBytes}-byte limit`);
  }
  return { key, filename, bytes, keep: () => {}, discard };
}
