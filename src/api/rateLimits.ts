// Per-key limits on what a client may queue: jobs a minute, jobs not finished
// yet, and hours of audio a day (MURMUR_KEY_*; 0 turns one off). Counted from
// the jobs table, so every API instance sees the same usage. A createJob takes
// a place under the job limits before it reads any audio (the queue's
// `reserve`, atomic across instances) and its job fills that place, so
// requests racing at a limit cannot pass it; a refused request gives its place back.
import type { Config } from '../config.ts';
import type { JobQueue } from '../queue/jobQueue.ts';
import { ApiError } from './errors.ts';

const MINUTE = 60_000;
const DAY = 86_400_000;
/** Pending jobs free up as they finish, which nobody can foretell: a polite pause. */
const PENDING_RETRY_SECONDS = 10;

function limited(message: string, retryAfterSeconds: number): ApiError {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return new ApiError('RATE_LIMITED', message, {
    extensions: { retryAfterSeconds: seconds },
    status: 429,
    headers: { 'retry-after': String(seconds) },
  });
}

/**
 * Before the audio is taken in: a place under the key's jobs a minute and pending jobs, for `create` to fill
 * (null when the limits are off); RATE_LIMITED when they are full.
 */
export async function reserveJob(
  queue: JobQueue,
  { keyLimits, requestTimeoutSeconds }: Config,
  apiKeyId: string,
  now = Date.now(),
): Promise<string | null> {
  if (!keyLimits.jobsPerMinute && !keyLimits.maxPending) return null;
  // A place outlives its request only when the process dies mid-request; it lapses when the request would have timed out.
  const limits = { perWindow: keyLimits.jobsPerMinute, windowMs: MINUTE, maxPending: keyLimits.maxPending };
  const reservation = await queue.reserve(apiKeyId, limits, now, now + requestTimeoutSeconds * 1000);
  if ('id' in reservation) return reservation.id;
  const usage = reservation.refused;
  if (keyLimits.jobsPerMinute && usage.created >= keyLimits.jobsPerMinute) {
    throw limited(
      `this key created ${usage.created} jobs in the last minute; its limit is ${keyLimits.jobsPerMinute} (MURMUR_KEY_JOBS_PER_MINUTE)`,
      (usage.firstCreatedAt! + MINUTE - now) / 1000,
    );
  }
  if (keyLimits.maxPending && usage.pending >= keyLimits.maxPending) {
    throw limited(
      `this key has ${usage.pending} jobs not finished yet; its limit is ${keyLimits.maxPending} (MURMUR_KEY_MAX_PENDING)`,
      PENDING_RETRY_SECONDS,
    );
  }
  throw new Error('reserve refused a place under no full limit');
}

/** Once the audio's length is known: hours of audio a day. */
export async function checkAudioLimit(
  queue: JobQueue,
  { keyLimits }: Config,
  apiKeyId: string,
  seconds: number,
  now = Date.now(),
): Promise<void> {
  if (!keyLimits.audioHoursPerDay) return;
  const usage = await queue.usage(apiKeyId, now - DAY);
  const allowed = keyLimits.audioHoursPerDay * 3600;
  if (usage.seconds + seconds > allowed) {
    // The oldest job of the day leaves the window first; that may or may not free enough.
    const wait = usage.firstCreatedAt === null ? DAY : usage.firstCreatedAt + DAY - now;
    throw limited(
      `this key queued ${(usage.seconds / 3600).toFixed(2)} h of audio in the last 24 h; ${(seconds / 3600).toFixed(2)} h more would pass its limit of ${keyLimits.audioHoursPerDay} h (MURMUR_KEY_AUDIO_HOURS_PER_DAY)`,
      wait / 1000,
    );
  }
}
