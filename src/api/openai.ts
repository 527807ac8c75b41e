// OpenAI's audio API on murmur's queue, for code that already calls it:
// POST /v1/audio/transcriptions and /v1/audio/translations take OpenAI's
// multipart form and answer in its formats (json, text, srt, vtt,
// verbose_json); GET /v1/models lists the names `model` may take. Each request
// is a normal job (seen over GraphQL, batched with other work, under the same
// keys and limits) that the request waits for: a client that hangs up cancels
// it, and a wait past MURMUR_SYNC_TIMEOUT_SECONDS answers 504 with the job's
// id, to follow over GraphQL. Errors come in OpenAI's shape.
import { isPermanentCode } from '../errors.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { WHISPER_LANGUAGES } from '../whisper/languages.ts';
import { isTerminal, type Job } from '../queue/jobQueue.ts';
import type { Segment, Transcript } from '../transcript/transcript.ts';
import { toSrt, toVtt } from '../transcript/formats.ts';
import { authenticate, tenantOf } from './auth.ts';
import type { Caller } from './context.ts';
import type { Context, Services } from './context.ts';
import { clientError } from './errors.ts';
import { followJob } from './follow.ts';
import { createJob } from './ingest.ts';
import { Stream } from './streams.ts';
import { discardUnkept, readMultipart, type StoredUpload } from './uploads.ts';

/** The name OpenAI's clients send; the configured model's own name is accepted too. */
export const OPENAI_MODEL = 'whisper-1';
const FORMATS = ['json', 'text', 'srt', 'verbose_json', 'vtt'] as const;
type Format = (typeof FORMATS)[number];
/** openai/whisper's temperatures when the request leaves temperature at 0 (OpenAI: "the model will use log probability to automatically increase the temperature"). */
const FALLBACK_TEMPERATURES = [0, 0.2, 0.4, 0.6, 0.8, 1];
const FIELDS = {
  transcriptions: [
    'model',
    'language',
    'prompt',
    'response_format',
    'temperature',
    'timestamp_granularities[]',
    'timestamp_granularities',
    'stream',
  ],
  translations: ['model', 'prompt', 'response_format', 'temperature'],
} as const;
type Route = keyof typeof FIELDS;

/** A refusal in OpenAI's error shape. */
class OpenAiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly extra: { headers?: Record<string, string>; body?: Record<string, unknown> } = {},
  ) {
    super(message);
  }
}

const invalid = (message: string, param: string | null = null, code: string | null = null) => new OpenAiError(400, message, param, code);

/** Whether the path is one of these routes (others under /v1/ are not murmur's). */
export function isOpenAiPath(url: string | undefined): boolean {
  const path = url?.split('?')[0];
  return (
    path === '/v1/models' ||
    path?.startsWith('/v1/models/') === true ||
    path === '/v1/audio/transcriptions' ||
    path === '/v1/audio/translations'
  );
}

export async function openAiRoute(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = req.url!.split('?')[0];
  try {
    if (path === '/v1/models' || path.startsWith('/v1/models/')) {
      if (req.method !== 'GET') throw new OpenAiError(405, `${req.method} is not allowed here: use GET`);
      await caller(services, req);
      const models = modelList(services);
      if (path === '/v1/models') return json(res, 200, { object: 'list', data: models });
      let name: string;
      try {
        name = decodeURIComponent(path.slice('/v1/models/'.length));
      } catch {
        throw invalid('the model name in the path is not valid percent-encoding');
      }
      const model = models.find((m) => m.id === name);
      if (!model) throw new OpenAiError(404, `The model '${name}' does not exist`, 'model', 'model_not_found');
      return json(res, 200, model);
    }
    if (req.method !== 'POST') throw new OpenAiError(405, `${req.method} is not allowed here: use POST`);
    await transcribe(services, path === '/v1/audio/translations' ? 'translations' : 'transcriptions', req, res);
  } catch (err) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e = asOpenAiError(err, services, req, res);
    json(
      res,
      e.status,
      { error: { message: e.message, type: errorType(e.status), param: e.param, code: e.code, ...e.extra.body } },
      e.extra.headers,
    );
  }
}

function modelList({ config }: Services) {
  // A fixed creation time: the models have no such date, and the field is required.
  const entry = (id: string) => ({ id, object: 'model', created: 0, owned_by: 'murmur' });
  return [...new Set([OPENAI_MODEL, config.modelName])].map(entry);
}

/** The caller behind the Bearer token. OpenAI's clients always send one: with authentication off (MURMUR_AUTH=none), one murmur does not know counts as nobody. */
async function caller(services: Services, req: IncomingMessage): Promise<Caller> {
  try {
    return await authenticate(req.headers.authorization, services);
  } catch (err) {
    if (services.config.auth === 'none') return authenticate(undefined, services);
    throw err;
  }
}

async function transcribe(services: Services, route: Route, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Arrived after shutdown began: refused (by createJob, once the form is read); arrived before: taken.
  const lateArrival = services.draining.aborted;
  const who = await caller(services, req);
  if (!req.headers['content-type']?.toLowerCase().startsWith('multipart/form-data')) {
    throw invalid('the request must be multipart/form-data, with the audio in the "file" field');
  }
  // The client going away: mid-upload it stops the upload; later it cancels the job.
  const gone = new AbortController();
  res.once('close', () => res.writableFinished || gone.abort());
  const stored: StoredUpload[] = [];
  const { config, store, queue, log } = services;
  try {
    const { fields, files } = await readMultipart(
      { contentType: req.headers['content-type'], body: req, signal: gone.signal },
      store,
      { maxBytes: config.maxUploadBytes, idleMs: config.uploadIdleSeconds * 1000 },
      stored,
      { files: 1, fields: 10, parts: 11 },
    );
    const request = readFields(route, fields, files.get('file'), services);
    const context: Context = { ...services, caller: who, lateArrival, origin: `http://${req.headers.host}`, signal: gone.signal };
    const job = await createJob(context, {
      file: request.file,
      language: request.language,
      task: route === 'translations' ? 'translate' : 'transcribe',
      timestamps: true,
      prompt: request.prompt,
      temperatures: request.temperature === 0 ? FALLBACK_TEMPERATURES : [request.temperature],
      wordTimestamps: request.words,
    });
    if (request.stream) return await streamText(services, job, res, gone.signal, config.syncTimeoutSeconds * 1000);
    const ended = await settled(services, job, gone.signal, config.syncTimeoutSeconds * 1000);
    if (ended === 'gone') {
      await queue.cancel(job.id, tenantOf(context)).catch(() => {}); // finished meanwhile: nothing to cancel
      return;
    }
    // The job goes on either way: the answer names it, to follow over GraphQL.
    const follow = { headers: { 'x-murmur-job-id': job.id }, body: { job_id: job.id } };
    const how = `follow job ${job.id} over GraphQL (query { job(id: "${job.id}") { status result { text } } })`;
    if (ended === 'timeout')
      throw new OpenAiError(
        504,
        `the transcription is still running after ${config.syncTimeoutSeconds} s: ${how}`,
        null,
        'timeout',
        follow,
      );
    if (ended === 'draining')
      throw new OpenAiError(503, `this instance is shutting down; the transcription goes on: ${how}`, null, 'shutting_down', follow);
    res.setHeader('x-murmur-job-id', job.id);
    answer(res, ended, request, route);
  } finally {
    discardUnkept(store, stored, log);
  }
}

interface AudioRequest {
  file: StoredUpload;
  language: string | null;
  prompt: string | null;
  temperature: number;
  format: Format;
  segments: boolean;
  words: boolean;
  /** stream=true: Server-Sent Events of the text as it grows (transcript.text.delta, then transcript.text.done). */
  stream: boolean;
}

function readFields(route: Route, fields: [string, string][], file: StoredUpload | undefined, { config }: Services): AudioRequest {
  const allowed: readonly string[] = FIELDS[route];
  for (const [name] of fields) {
    if (!allowed.includes(name)) throw invalid(`Unrecognized request argument supplied: ${name}`, name, 'unknown_parameter');
  }
  const one = (name: string) => fields.find(([n]) => n === name)?.[1];
  if (!file) throw invalid('the audio goes in the "file" field (a file part of the multipart form)', 'file');
  const model = one('model');
  if (!model) throw invalid('you must provide a model parameter', 'model');
  if (model !== OPENAI_MODEL && model !== config.modelName)
    throw new OpenAiError(
      404,
      `The model '${model}' does not exist: use ${OPENAI_MODEL} or ${config.modelName}`,
      'model',
      'model_not_found',
    );
  const format = (one('response_format') ?? 'json') as Format;
  if (!FORMATS.includes(format)) throw invalid(`response_format must be one of ${FORMATS.join(', ')}`, 'response_format');
  const temperatureText = one('temperature') ?? '0';
  const temperature = Number(temperatureText);
  if (temperatureText.trim() === '' || !Number.isFinite(temperature) || temperature < 0 || temperature > 1)
    throw invalid('temperature must be a number from 0 to 1', 'temperature');
  const granularities = fields.filter(([n]) => n.startsWith('timestamp_granularities')).map(([, v]) => v);
  for (const g of granularities)
    if (g !== 'word' && g !== 'segment')
      throw invalid(`timestamp_granularities may hold "word" and "segment", not "${g}"`, 'timestamp_granularities');
  if (granularities.length > 0 && format !== 'verbose_json')
    throw invalid('timestamp_granularities needs response_format verbose_json', 'timestamp_granularities');
  const stream = one('stream') ?? 'false';
  if (stream !== 'true' && stream !== 'false') throw invalid('stream must be true or false', 'stream');
  if (stream === 'true' && format !== 'json' && format !== 'text')
    throw invalid('stream=true sends the text as it grows: response_format must be json or text', 'response_format');
  return {
    file,
    language: one('language') || null,
    prompt: one('prompt') || null,
    temperature,
    format,
    segments: granularities.length === 0 || granularities.includes('segment'),
    words: granularities.includes('word'),
    stream: stream === 'true',
  };
}

/**
 * stream=true, as OpenAI's streaming transcription answers: `transcript.text.delta` events as the job's windows
 * are done (its partial result grows from the start), then `transcript.text.done` with the whole text. A job that
 * fails, or outlasts MURMUR_SYNC_TIMEOUT_SECONDS, ends the stream with an `error` event (the SDK raises it).
 */
async function streamText(services: Services, job: Job, res: ServerResponse, signal: AbortSignal, timeoutMs: number): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-murmur-job-id': job.id });
  const send = (event: object) => res.write(`data: ${JSON.stringify(event)}\n\n`);
  // The latest state only: the text grows from the start, so a state skipped loses no delta.
  const stream = followJob(services, job.id, new Stream<Job>(1, () => {}));
  const stop = () => void stream.return();
  const timer = setTimeout(stop, timeoutMs);
  signal.addEventListener('abort', stop, { once: true });
  let sent = '';
  let last: Job | undefined;
  try {
    for await (const state of stream) {
      last = state;
      const text = (state.result as Transcript | null)?.text;
      if ((state.status === 'PROCESSING' || state.status === 'DONE') && text && text.startsWith(sent) && text.length > sent.length) {
        send({ type: 'transcript.text.delta', delta: text.slice(sent.length) });
        sent = text;
      }
      if (isTerminal(state)) break;
    }
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
  if (signal.aborted) {
    await services.queue.cancel(job.id).catch(() => {}); // finished meanwhile: nothing to cancel
    return;
  }
  if (last?.status === 'DONE') send({ type: 'transcript.text.done', text: (last.result as Transcript).text });
  else {
    const why =
      !last || !isTerminal(last) ? `still running after ${timeoutMs / 1000} s` : `${last.status.toLowerCase()}: ${last.errorMessage ?? ''}`;
    send({
      error: { message: `job ${job.id} ${why}`, type: 'server_error', code: last?.errorCode?.toLowerCase() ?? 'timeout', param: null },
    });
  }
  res.end();
}

/** The job once it has ended, or why the wait stopped: the client went away, the time ran out, the instance is stopping. */
async function settled(
  services: Services,
  job: Job,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<Job | 'gone' | 'timeout' | 'draining'> {
  let deleted = false;
  // Only the latest state matters here: a buffer of one, which never overflows.
  const stream = followJob(services, job.id, new Stream<Job>(1, () => {}), () => (deleted = true));
  let outcome: 'gone' | 'timeout' | undefined;
  const end = (why: 'gone' | 'timeout') => {
    outcome ??= why;
    void stream.return();
  };
  const timer = setTimeout(() => end('timeout'), timeoutMs);
  const onGone = () => end('gone');
  signal.addEventListener('abort', onGone, { once: true });
  if (signal.aborted) onGone();
  let last: Job | undefined;
  try {
    for await (const state of stream) last = state;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onGone);
  }
  if (outcome) return outcome;
  if (last && isTerminal(last)) return last;
  if (deleted) throw new OpenAiError(410, `job ${job.id} was deleted before it finished`);
  return 'draining';
}

function answer(res: ServerResponse, job: Job, request: AudioRequest, route: Route): void {
  if (job.status === 'CANCELLED') throw new OpenAiError(409, `job ${job.id} was cancelled before it finished`, null, 'job_cancelled');
  if (job.status === 'FAILED') {
    // The input's fault (permanent: the audio, the language, the options) is a 400; anything else the server's.
    const audio = isPermanentCode(job.errorCode);
    throw new OpenAiError(
      audio ? 400 : 500,
      `job ${job.id} failed: ${job.errorMessage ?? 'unknown error'}`,
      null,
      job.errorCode?.toLowerCase() ?? null,
    );
  }
  const transcript = job.result as Transcript;
  const usage = { type: 'duration', seconds: Math.ceil(job.durationSeconds) };
  switch (request.format) {
    case 'text':
      return text(res, 'text/plain', `${transcript.text}\n`);
    case 'srt':
      return text(res, 'text/plain', toSrt(transcript.segments));
    case 'vtt':
      return text(res, 'text/vtt', toVtt(transcript.segments));
    case 'json':
      return json(res, 200, { text: transcript.text, usage });
    case 'verbose_json':
      return json(res, 200, {
        task: route === 'translations' ? 'translate' : 'transcribe',
        language: WHISPER_LANGUAGES.find(([code]) => code === transcript.language)?.[1] ?? transcript.language,
        duration: job.durationSeconds,
        text: transcript.text,
        ...(request.segments && { segments: transcript.segments.map(verboseSegment) }),
        ...(request.words && {
          words: transcript.segments.flatMap((s) => s.words ?? []).map((w) => ({ word: w.word.trim(), start: w.start, end: w.end })),
        }),
        usage,
      });
  }
}

/** openai/whisper's segment fields, from what the worker stored (null where a transcript stored before they were kept lacks one). */
function verboseSegment(s: Segment, id: number) {
  return {
    id,
    seek: s.seek ?? null,
    start: s.start,
    end: s.end,
    text: s.text,
    tokens: s.tokens ?? null,
    temperature: s.temperature ?? null,
    avg_logprob: s.avgLogprob ?? null,
    compression_ratio: s.compressionRatio ?? null,
    no_speech_prob: s.noSpeechProb ?? null,
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

function text(res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, { 'content-type': `${type}; charset=utf-8` }).end(body);
}

/** OpenAI's error types by status. */
function errorType(status: number): string {
  if (status === 401) return 'invalid_request_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 504) return 'timeout';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

/** Statuses of murmur's codes that carry none of their own. */
const STATUS: Record<string, number> = { FORBIDDEN: 403, RATE_LIMITED: 429, JOB_NOT_FOUND: 404, IDEMPOTENCY_CONFLICT: 409 };

/** Any failure as an OpenAI error: murmur's stable code, lower-cased, as `code`. */
function asOpenAiError(err: unknown, { log }: Services, req: IncomingMessage, res: ServerResponse): OpenAiError {
  if (err instanceof OpenAiError) return err;
  // refusals of the request itself (auth.ts, uploads.ts) carry their code and status
  if (err instanceof GraphQLError && typeof err.extensions?.code === 'string') {
    const code = err.extensions.code;
    const status = (err.extensions.http as { status?: number } | undefined)?.status ?? STATUS[code] ?? 400;
    return new OpenAiError(status, err.message, null, code === 'UNAUTHENTICATED' ? 'invalid_api_key' : code.toLowerCase());
  }
  const known = clientError(err);
  if (known) {
    const status = known.status ?? STATUS[known.code] ?? 400;
    return new OpenAiError(status, known.message, known.code === 'UNKNOWN_LANGUAGE' ? 'language' : null, known.code.toLowerCase(), {
      headers: known.headers,
    });
  }
  const requestId = String(res.getHeader('x-request-id') ?? '');
  log.error({ event: 'request.unexpected_error', url: req.url, err }, `request ${requestId} (${req.url}): unexpected error`);
  return new OpenAiError(500, `Unexpected error (request ${requestId}).`, null, 'internal_server_error');
}
