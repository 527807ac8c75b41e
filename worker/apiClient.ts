// The worker's side of the worker protocol: GraphQL over HTTP with the worker
// token, and the audio download. A GraphQL error arrives as an ApiCallError
// carrying the server's `extensions.code`.
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isUnavailableCode } from '../src/errors.ts';
import type { Transcript } from '../src/transcript/transcript.ts';

/** Each worker's downloads go to folders named for its process id: murmur-audio-<pid>-XXXXXX. */
const AUDIO_DIR_PREFIX = 'murmur-audio-';

/** Removes this process's own download folders (a worker stopping mid-batch). */
export async function removeOwnAudio(dir = tmpdir()): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith(`${AUDIO_DIR_PREFIX}${process.pid}-`)) await rm(join(dir, name), { recursive: true, force: true });
  }
}

/** Removes download folders left by workers that died (SIGKILL, out of memory) before cleaning up. Returns how many. */
export async function sweepOrphanedAudio(dir = tmpdir()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(/^murmur-audio-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid || alive(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/** Whether a process with this id runs (one of another user's counts). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class ApiCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiCallError';
  }
}

/** Failures of the API or what stands behind it, not of the request: the worker waits and tries again. */
export const isTransient = (err: unknown) => err instanceof ApiCallError && isUnavailableCode(err.code);

export interface JobFields {
  id: string;
  input: { filename: string; durationSeconds: number };
  /** A partial result left by an earlier attempt: the windows it did, from the start (the attempt resumes after them). */
  result: (Omit<Transcript, 'model'> & { partial: boolean }) | null;
  options: {
    language: string | null;
    task: 'TRANSCRIBE' | 'TRANSLATE';
    timestamps: boolean;
    prompt: string | null;
    conditionOnPreviousText: boolean;
    temperatures: number[];
    seed: number;
    beamSize: number | null;
    patience: number | null;
    lengthPenalty: number | null;
    wordTimestamps: boolean;
  };
}

export interface LeaseFields {
  job: JobFields;
  leaseToken: number;
  leaseExpiresAt: string;
  leaseSeconds: number;
  audioUrl: string;
  maxDurationSeconds: number;
}

export type LeaseState = 'ACTIVE' | 'CANCELLED' | 'LOST';

export class ApiClient {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  async claim(
    input: {
      workerId: string;
      pool: 'CPU' | 'GPU';
      provider?: string;
      host?: string;
      maxJobs: number;
      maxSeconds: number;
      maxJobSeconds?: number;
      waitSeconds: number;
      batchWindowMs?: number;
    },
    signal?: AbortSignal,
  ): Promise<LeaseFields[]> {
    const data = await this.call<{ claimJobs: LeaseFields[] }>(
      `mutation Claim($input: ClaimInput!) {
        claimJobs(input: $input) {
          leaseToken leaseExpiresAt leaseSeconds audioUrl maxDurationSeconds
          job {
            id input { filename durationSeconds }
            options { language task timestamps prompt conditionOnPreviousText temperatures seed beamSize patience lengthPenalty wordTimestamps }
            result { partial windows text language segments { start end text tokens seek avgLogprob compressionRatio noSpeechProb temperature } }
          }
        }
      }`,
      { input },
      signal,
    );
    return data.claimJobs;
  }

  async heartbeat(
    worker: { workerId: string; pool: 'CPU' | 'GPU'; provider?: string },
    leases: { jobId: string; leaseToken: number; progress: number; partial?: Transcript }[],
  ): Promise<{ jobId: string; state: LeaseState }[]> {
    const data = await this.call<{ heartbeat: { jobId: string; state: LeaseState }[] }>(
      `mutation Beat($workerId: String!, $pool: Pool, $provider: String, $leases: [LeaseProgressInput!]!) { heartbeat(workerId: $workerId, pool: $pool, provider: $provider, leases: $leases) { jobId state } }`,
      { ...worker, leases },
    );
    return data.heartbeat;
  }

  async complete(jobId: string, leaseToken: number, result: Transcript): Promise<void> {
    await this.call(
      `mutation Done($jobId: ID!, $leaseToken: Int!, $result: TranscriptInput!) { completeJob(jobId: $jobId, leaseToken: $leaseToken, result: $result) { id } }`,
      {
        jobId,
        leaseToken,
        result,
      },
    );
  }

  async fail(jobId: string, leaseToken: number, error: { code: string; message: string; retryable: boolean }): Promise<void> {
    await this.call(
      `mutation Fail($jobId: ID!, $leaseToken: Int!, $code: String!, $message: String!, $retryable: Boolean!) {
        failJob(jobId: $jobId, leaseToken: $leaseToken, code: $code, message: $message, retryable: $retryable) { id }
      }`,
      { jobId, leaseToken, ...error },
    );
  }

  /** Gives a job back unfinished: pending again at once, the attempt not counted. */
  async release(jobId: string, leaseToken: number): Promise<void> {
    await this.call(`mutation Release($jobId: ID!, $leaseToken: Int!) { releaseJob(jobId: $jobId, leaseToken: $leaseToken) { id } }`, {
      jobId,
      leaseToken,
    });
  }

  async signOff(workerId: string): Promise<void> {
    await this.call(`mutation Bye($workerId: String!) { signOff(workerId: $workerId) }`, { workerId });
  }

  /**
   * Streams a job's audio into a temporary file (never whole in memory); remove() deletes it. The worker
   * token goes only to the API itself: a presigned blob-store URL carries its own signature.
   */
  async download(url: string): Promise<{ path: string; remove: () => Promise<void> }> {
    const ours = new URL(url).origin === new URL(this.url).origin;
    const res = await fetch(url, { headers: ours ? { authorization: `Bearer ${this.token}` } : {} });
    if (!res.ok || !res.body)
      throw new ApiCallError(res.status === 404 ? 'JOB_NOT_FOUND' : 'API_UNAVAILABLE', `GET ${url}: ${res.status} ${await res.text()}`);
    const dir = await mkdtemp(join(tmpdir(), `${AUDIO_DIR_PREFIX}${process.pid}-`));
    const path = join(dir, 'audio');
    const remove = () => rm(dir, { recursive: true, force: true });
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(path));
    } catch (err) {
      await remove();
      throw new ApiCallError('API_UNAVAILABLE', `GET ${url}: ${(err as Error).message}`);
    }
    return { path, remove };
  }

  private async call<T>(query: string, variables: Record<string, unknown>, signal?: AbortSignal): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
        body: JSON.stringify({ query, variables }),
        signal,
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ApiCallError('API_UNAVAILABLE', `cannot reach ${this.url}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    const body = (await res.json().catch(() => null)) as {
      data?: T;
      errors?: { message: string; extensions?: { code?: string } }[];
    } | null;
    if (body?.errors?.length) {
      const [first] = body.errors;
      throw new ApiCallError(first.extensions?.code ?? 'API_ERROR', first.message);
    }
    if (!res.ok || !body?.data) throw new ApiCallError('API_UNAVAILABLE', `${this.url} answered ${res.status}`);
    return body.data;
  }
}
