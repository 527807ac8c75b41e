// The worker program: claim a batch over the API, fetch its audio, transcribe
// all of it in one batched Whisper run, heartbeat while it works, then
// complete or fail each job with its lease token. It loads the model on the
// first batch, unloads it after `unloadAfterSeconds` without work, and exits
// after `exitAfterSeconds` without work, so an idle worker costs nothing.
import { hostname } from 'node:os';
import { basename } from 'node:path';
import PQueue from 'p-queue';
import type { Logger } from '../src/log.ts';
import { decodeAudioFile } from '../src/audio/decode.ts';
import { killDecoders } from '../src/audio/ffmpeg.ts';
import { ApiClient, isTransient, removeOwnAudio, sweepOrphanedAudio, type LeaseFields } from './apiClient.ts';
import { Batch } from './batch.ts';
import { WhisperError, WhisperModel } from '../src/whisper/index.ts';
import { transcribeMany, type ScoredSegment, type Transcript } from '../src/whisper/longAudio.ts';
import { SileroVad, speechChunksOf, type Chunk, type Segmentation } from '../src/vad/index.ts';

export interface WorkerOptions {
  api: string;
  token: string;
  modelDir: string;
  workerId?: string;
  /** cpu: short jobs; gpu: long ones (each takes the other's while that pool has no live worker). */
  pool: 'cpu' | 'gpu';
  maxJobs: number;
  maxSeconds: number;
  /** Longest single long-poll claim. */
  pollSeconds: number;
  /** Server default when undefined. */
  batchWindowMs?: number;
  unloadAfterSeconds: number;
  exitAfterSeconds: number;
  providers: string;
  dtype: string;
  threads: number;
  /** vad: decode only the speech Silero VAD finds, in chunks of up to 30 s; fixed: every 30 s window. */
  segmentation: Segmentation;
  /** Every line this worker writes carries its workerId. */
  log: Logger;
}

/** Audio the worker keeps claimed ahead of the model's free rows: about a batch of 16 full windows. */
const LOOKAHEAD_SECONDS = 16 * 30;
/** Past that, short jobs (one window) it still claims, up to a batch of them waiting; asking for them waits this long. */
const SHORT_LOOKAHEAD = 16;
const SHORT_WAIT_SECONDS = 0.5;

/** A batch made ready for the model: the jobs it can run, their audio and their chunks (in the order of `ready`). */
interface Prepared {
  batch: Batch;
  ready: LeaseFields[];
  audio: Map<string, Float32Array>;
  chunks: (Chunk[] | undefined)[];
}

export class Worker {
  readonly id: string;
  private readonly api: ApiClient;
  private model: WhisperModel | null = null;
  private vad: SileroVad | null = null;
  private modelLabel = '';
  private stopping = false;
  private readonly poll = new AbortController();
  /** The batches in hand: their jobs decoding or waiting for rows. */
  private readonly batches = new Set<Batch>();
  private readonly log: Logger;

  constructor(private readonly o: WorkerOptions) {
    this.id = o.workerId ?? `${hostname()}-${process.pid}`;
    this.log = o.log.child({ workerId: this.id });
    this.api = new ApiClient(o.api, o.token);
  }

  private get pool(): 'CPU' | 'GPU' {
    return this.o.pool === 'gpu' ? 'GPU' : 'CPU';
  }

  /** Finish the batches in hand, claim nothing more, and return from run(). */
  stop(): void {
    this.stopping = true;
    this.poll.abort();
  }

  /**
   * Out of time to finish (stop() came first): every job still held goes back to the queue without
   * counting the attempt, decoders are stopped, downloads removed, and the worker signs off. The
   * caller exits the process after it.
   */
  async handBack(): Promise<number> {
    this.stopping = true;
    // From here the batch reports nothing: a decode failing because its ffmpeg is stopped must not fail the job.
    const leases = [...this.batches].flatMap((b) => b.handBack());
    await this.giveBack(leases);
    killDecoders();
    await removeOwnAudio();
    await this.api.signOff(this.id).catch(() => {});
    if (leases.length)
      this.log.info({ event: 'worker.handed_back', jobIds: leases.map((l) => l.job.id) }, `handed back ${leases.length} job(s) unfinished`);
    return leases.length;
  }

  /** Jobs back to the queue unfinished, their attempt not counted. */
  private async giveBack(leases: LeaseFields[]): Promise<void> {
    await Promise.all(
      leases.map((l) =>
        this.api
          .release(l.job.id, l.leaseToken)
          .catch((err) =>
            this.log.error({ event: 'job.hand_back_failed', jobId: l.job.id, err }, `could not hand back job ${l.job.id}: ${err.message}`),
          ),
      ),
    );
  }

  async run(): Promise<'idle' | 'stopped'> {
    const { log } = this;
    const orphans = await sweepOrphanedAudio();
    if (orphans)
      log.info({ event: 'worker.orphans_removed', folders: orphans }, `removed ${orphans} audio folder(s) left by workers that died`);
    log.info(
      { event: 'worker.polling', pool: this.o.pool, api: this.o.api, maxJobs: this.o.maxJobs, maxSeconds: this.o.maxSeconds },
      `worker ${this.id} (${this.o.pool} pool): polling ${this.o.api} for up to ${this.o.maxJobs} jobs / ${this.o.maxSeconds} s of audio a batch`,
    );
    let lastWork = Date.now();
    // Batches go to the model as they are claimed: their windows wait in its backlog and take rows as rows free
    // up, whichever batch they came from (the runtime batches continuously). The worker claims again while the
    // backlog holds less than LOOKAHEAD_SECONDS of audio, so the next work is downloaded, decoded and segmented
    // while the model runs, and no more is leased than the model will soon start on (the rest stays in the
    // queue for other workers). A backlog full of long work still takes short jobs (one window at most): their
    // windows go ahead of it, so a short job never waits behind the long ones claimed before it.
    const running = new Set<Promise<void>>();
    while (!this.stopping) {
      const backlog = running.size > 0 && this.model ? this.model.backlog : null;
      const full = backlog !== null && backlog.seconds >= LOOKAHEAD_SECONDS;
      const shortWaiting = backlog?.priority.filter((p) => (p ?? 0) <= 1).length ?? 0;
      if (full && shortWaiting >= SHORT_LOOKAHEAD) {
        await Promise.race([...running, new Promise((r) => setTimeout(r, 100))]);
        continue;
      }
      if (running.size > 0) lastWork = Date.now();
      const idle = (Date.now() - lastWork) / 1000;
      if (running.size === 0 && idle >= this.o.exitAfterSeconds) break;
      if (running.size === 0 && this.model && idle >= this.o.unloadAfterSeconds) await this.unload('idle', idle);
      const prepared = await this.claimAndPrepare(running.size > 0 ? 0 : idle, full ? SHORT_LOOKAHEAD - shortWaiting : undefined);
      if (!prepared) continue;
      const transcribing: Promise<void> = this.transcribeBatch(prepared).finally(() => {
        running.delete(transcribing);
        lastWork = Date.now();
      });
      running.add(transcribing);
    }
    // Stopping: what was claimed is finished (the backlog is bounded by the lookahead).
    await Promise.all(running);
    await this.unload('exiting');
    await this.api.signOff(this.id).catch(() => {});
    log.info(
      { event: this.stopping ? 'worker.stopped' : 'worker.idle_exit' },
      this.stopping ? 'stopped' : `exiting after ${this.o.exitAfterSeconds} s without work`,
    );
    return this.stopping ? 'stopped' : 'idle';
  }

  /**
   * A batch claimed (long-polling) and made ready for the model; null when nothing came. `shortOnly`: the model
   * is full of long work, so up to that many jobs of one window at most, with a short wait.
   */
  private async claimAndPrepare(idle: number, shortOnly?: number): Promise<Prepared | null> {
    const nextMilestone = (this.model ? this.o.unloadAfterSeconds : this.o.exitAfterSeconds) - idle;
    let leases: LeaseFields[];
    try {
      leases = await this.api.claim(
        {
          workerId: this.id,
          pool: this.pool,
          provider: this.model?.provider,
          host: hostname(),
          maxJobs: shortOnly ? Math.min(shortOnly, this.o.maxJobs) : this.o.maxJobs,
          maxSeconds: this.o.maxSeconds,
          ...(shortOnly && { maxJobSeconds: 30 }),
          waitSeconds: shortOnly ? SHORT_WAIT_SECONDS : Math.max(0.05, Math.min(this.o.pollSeconds, nextMilestone)),
          batchWindowMs: this.o.batchWindowMs,
        },
        this.poll.signal,
      );
    } catch (err) {
      if (this.stopping) return null;
      if (!isTransient(err)) throw err;
      this.log.warn({ event: 'worker.claim_failed', err }, `${(err as Error).message}; retrying`);
      await new Promise((r) => setTimeout(r, 1000));
      return null;
    }
    if (leases.length === 0) return null;
    const seconds = leases.reduce((s, l) => s + l.job.input.durationSeconds, 0);
    this.log.info(
      { event: 'batch.started', jobIds: leases.map((l) => l.job.id), audioSeconds: seconds },
      `batch of ${leases.length} job(s), ${seconds.toFixed(1)} s of audio`,
    );
    const batch = new Batch(leases, this.api, () => ({ workerId: this.id, pool: this.pool, provider: this.model?.provider }), this.log);
    this.batches.add(batch);
    try {
      const audio = await this.fetchAudio(batch);
      if (!batch.live().some((l) => audio.has(l.job.id))) return { batch, ready: [], audio, chunks: [] };
      const model = await this.load();
      const ready = await this.refuseWhatModelCannot(batch, model, audio);
      return { batch, ready, audio, chunks: await this.segment(ready, audio, seconds) };
    } catch (err) {
      for (const lease of batch.live()) await batch.fail(lease, err);
      return { batch, ready: [], audio: new Map(), chunks: [] };
    }
  }

  /** The model's part: each job is reported as soon as its own windows are done, not at the end of the batch. */
  private async transcribeBatch({ batch, ready, audio, chunks }: Prepared): Promise<void> {
    const reports: Promise<void>[] = [];
    let decoded = 0;
    try {
      // Jobs cancelled while they waited their turn are not run; the shortest go first (their windows take the
      // first rows), so a short job is reported while a long one in the same batch still runs.
      const running = ready
        .filter((l) => batch.live().includes(l))
        .sort((a, b) => a.job.input.durationSeconds - b.job.input.durationSeconds);
      if (running.length === 0) return;
      const resumed = running.map(resumeOf);
      for (const [i, r] of resumed.entries())
        if (r)
          this.log.info(
            { event: 'job.resumed', jobId: running[i].job.id, windows: r.windows },
            `job ${running[i].job.id} resumes after its first ${r.windows} window(s), done by an earlier attempt`,
          );
      // What an earlier attempt did comes first; this attempt's windows follow it.
      const joined = (i: number, t: Transcript, windows?: number) => {
        const earlier = resumed[i];
        const segments = t.segments.map(segmentInput);
        return {
          text: [earlier?.text, t.text].filter(Boolean).join(' '),
          language: earlier?.language ?? t.language,
          model: this.modelLabel,
          segments: earlier ? [...earlier.segments, ...segments] : segments,
          ...(windows !== undefined && { windows: (earlier?.windows ?? 0) + windows }),
        };
      };
      await transcribeMany(
        await this.load(),
        running.map((l, i) => requestOf(l, audio.get(l.job.id)!, chunks[ready.indexOf(l)], resumed[i])),
        {
          batchSize: 16,
          onProgress: (i, fraction) => {
            decoded++;
            batch.advance(running[i].job.id, fraction);
          },
          // A job cancelled mid-run: its windows stop at the next decoder step, and the rows go to the others.
          abandoned: (i) => batch.isDropped(running[i].job.id),
          onPartial: (i, t, windows) => batch.partial(running[i].job.id, joined(i, t, windows)),
          onRecordingDone: (i, t) => reports.push(batch.complete(running[i], joined(i, t))),
          // A run that failed fails the jobs it held, not the batch.
          onRecordingFailed: (i, err) => reports.push(batch.fail(running[i], err)),
        },
      );
      await Promise.all(reports);
    } catch (err) {
      await Promise.all(reports);
      for (const lease of batch.live()) await batch.fail(lease, err);
    } finally {
      batch.end();
      this.batches.delete(batch);
      // maxRSS is in KiB: the worker's high-water mark so far, for sizing machines.
      const peakMiB = Math.round(process.resourceUsage().maxRSS / 1024);
      this.log.info(
        // The model's decoder steps and the rows they carried so far (all batches): how full the running batch is.
        { event: 'batch.done', jobIds: batch.leases.map((l) => l.job.id), windows: decoded, peakMiB, engine: this.model?.engineStats },
        `batch done: ${decoded} window(s) decoded; peak memory ${peakMiB} MiB`,
      );
    }
  }

  /** Each job's audio, downloaded (four at a time) and decoded to 16 kHz; a job whose audio fails fails alone. */
  private async fetchAudio(batch: Batch): Promise<Map<string, Float32Array>> {
    const fetches = new PQueue({ concurrency: 4 });
    const audio = new Map<string, Float32Array>();
    await Promise.all(
      batch.leases.map((lease) =>
        fetches.add(async () => {
          try {
            const file = await this.api.download(lease.audioUrl);
            try {
              audio.set(
                lease.job.id,
                (await decodeAudioFile(file.path, { name: lease.job.input.filename, maxSeconds: lease.maxDurationSeconds })).samples,
              );
            } finally {
              await file.remove();
            }
          } catch (err) {
            await batch.fail(lease, err);
          }
        }),
      ),
    );
    return audio;
  }

  /** The jobs with audio that the model can serve; one asking for what it cannot do fails alone, not with its batch. */
  private async refuseWhatModelCannot(batch: Batch, model: WhisperModel, audio: Map<string, Float32Array>): Promise<LeaseFields[]> {
    const noWords = model.wordTimestampsUnavailable();
    for (const l of batch.live())
      if (audio.has(l.job.id) && l.job.options.wordTimestamps && noWords) await batch.fail(l, new WhisperError('INVALID_OPTIONS', noWords));
    return batch.live().filter((l) => audio.has(l.job.id));
  }

  /** Each job's speech chunks (VAD), or undefined for fixed 30 s windows. */
  private async segment(ready: LeaseFields[], audio: Map<string, Float32Array>, seconds: number): Promise<(Chunk[] | undefined)[]> {
    // One after another: Silero carries a recurrent state through each recording.
    const chunks: (Chunk[] | undefined)[] = [];
    for (const l of ready) chunks.push(await this.chunks(audio.get(l.job.id)!));
    if (this.o.segmentation === 'vad') {
      const speech = chunks.flat(2).reduce((t, x) => t + (x ? x.end - x.start : 0), 0) / 16000;
      const count = chunks.reduce((n, c) => n + c!.length, 0);
      this.log.info(
        { event: 'batch.speech', chunks: count, speechSeconds: speech, audioSeconds: seconds },
        `${count} speech chunk(s), ${speech.toFixed(1)} s of speech in ${seconds.toFixed(1)} s of audio`,
      );
    }
    return chunks;
  }

  private async load(): Promise<WhisperModel> {
    if (this.model) return this.model;
    const started = Date.now();
    this.model = await WhisperModel.load(this.o.modelDir, {
      providers: this.o.providers,
      dtype: this.o.dtype,
      threads: this.o.threads,
      log: this.log,
    });
    const synthetic = this.model.folder.synthetic !== null;
    this.modelLabel = synthetic
      ? `synthetic (${basename(this.o.modelDir)}): random weights, the text is meaningless; set MURMUR_MODEL_DIR to real Whisper weights`
      : `${basename(this.o.modelDir)} (${this.model.folder.dtype})`;
    this.log.info(
      { event: 'model.loaded', model: this.modelLabel, provider: this.model.provider, threads: this.o.threads, ms: Date.now() - started },
      `loaded ${this.modelLabel} on ${this.model.provider} (${this.o.threads} threads a session) in ${Date.now() - started} ms`,
    );
    return this.model;
  }

  /** Speech chunks found by VAD; undefined for fixed 30 s windows. */
  private async chunks(samples: Float32Array): Promise<Chunk[] | undefined> {
    if (this.o.segmentation === 'fixed') return undefined;
    this.vad ??= await SileroVad.load();
    return speechChunksOf(this.vad, samples);
  }

  private async unload(reason: 'idle' | 'exiting', idleSeconds?: number): Promise<void> {
    if (!this.model) return;
    await this.model.dispose();
    await this.vad?.release();
    this.vad = null;
    this.model = null;
    this.log.info(
      { event: 'model.unloaded', reason, idleSeconds },
      `model unloaded (${reason === 'idle' ? `idle for ${Math.round(idleSeconds!)} s` : reason})`,
    );
  }
}

/** What the runtime is asked for one job: its samples, chunks and the options its client chose. */
/**
 * The partial result an earlier attempt left, when this attempt can take up after it: its windows decode alone
 * (no prompt carried from one to the next, no word timings, which look across windows), so the transcript equals
 * an uninterrupted run's.
 */
function resumeOf(l: LeaseFields): (NonNullable<LeaseFields['job']['result']> & { windows: number }) | null {
  const r = l.job.result;
  if (!r?.partial || !r.windows || l.job.options.conditionOnPreviousText || l.job.options.wordTimestamps) return null;
  return r as NonNullable<LeaseFields['job']['result']> & { windows: number };
}

function requestOf(
  l: LeaseFields,
  samples: Float32Array,
  chunks: Chunk[] | undefined,
  resumed: { windows: number; language: string } | null,
) {
  const o = l.job.options;
  return {
    samples,
    chunks,
    skipWindows: resumed?.windows,
    // The rest keeps the language the first window gave.
    language: resumed?.language ?? o.language ?? undefined,
    task: o.task === 'TRANSLATE' ? ('translate' as const) : ('transcribe' as const),
    timestamps: o.timestamps,
    prompt: o.prompt ?? undefined,
    conditionOnPreviousText: o.conditionOnPreviousText,
    temperatures: o.temperatures,
    seed: o.seed,
    beamSize: o.beamSize ?? undefined,
    patience: o.patience ?? undefined,
    lengthPenalty: o.lengthPenalty,
    wordTimestamps: o.wordTimestamps,
  };
}

/** A segment as the API takes it: its times, text, confidence and words (not its tokens). */
function segmentInput({ start, end, text, tokens, seek, avgLogprob, compressionRatio, noSpeechProb, temperature, words }: ScoredSegment) {
  return {
    start,
    end,
    text,
    tokens,
    seek,
    avgLogprob,
    compressionRatio,
    noSpeechProb: Number.isFinite(noSpeechProb) ? noSpeechProb : null,
    temperature,
    ...(words && { words }),
  };
}
