// The Whisper runtime: load a model folder, then transcribe many ≤ 30 s
// segments at once, each with its own options.
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';
import { readFile } from 'node:fs/promises';
import { deflate } from 'pako';
import type { Logger } from '../log.ts';
import { alignmentGraph } from './alignmentGraph.ts';
import { BatchDecoder, beamGroup, CohortError, selectRows, type DecodeRow } from './decoding.ts';
import { WhisperError } from './errors.ts';
import { SAMPLE_RATE, WINDOW_FRAMES, WINDOW_SAMPLES, writeLogMel } from './features.ts';
import { languageCode } from './languages.ts';
import { argmax } from './logitRules.ts';
import { assignWords, findAlignment, prepareAlignment, type PreparedAlignment, type SegmentSpan } from './timing.ts';
import { TokenSelector } from './tokenSelector.ts';
import { mixSeed, Rng } from './rng.ts';
import { parseDtype, readModelFolder, type Dtype, type ModelFolder } from './modelFolder.ts';
import { openSession, openSessions, parseProviders, type ProviderName } from './providers.ts';
import { timedSegments, type TimedSegment } from './segments.ts';
import { WhisperTokenizer } from './tokenizer.ts';

export { logMelSpectrogram, SAMPLE_RATE, WINDOW_SAMPLES } from './features.ts';
export { WhisperError, type WhisperErrorCode } from './errors.ts';
export { parseDtype, parseProviders, type Dtype, type ProviderName };
export type { TimedSegment };

export type Task = 'transcribe' | 'translate';

export interface SegmentRequest {
  /** 16 kHz mono samples, at most 30 s. */
  audio: Float32Array;
  /** Language code or English name ('en', 'de', 'German', …); detected when absent. */
  language?: string;
  task?: Task;
  timestamps?: boolean;
  /** Seconds added to this segment's times (its place in the whole recording). */
  offset?: number;
  /**
   * Text tokens that come before this segment (names, spellings, earlier
   * text), sent after <|startofprev|>; only the last maxLength / 2 − 1 are kept.
   */
  prompt?: number[];
  /**
   * An earlier request in the same list whose output this one's prompt
   * continues (openai/whisper's condition_on_previous_text): its prompt is that
   * request's prompt and output tokens, or nothing after an output sampled
   * above temperature 0.5. It waits for that request to finish.
   */
  previous?: number;
  /** Temperatures tried in turn (default [0]: greedy, once); see Fallback. */
  temperatures?: number[];
  fallback?: Partial<Fallback>;
  /** Seeds the sampler at temperatures above 0: the same seed samples the same tokens. */
  seed?: number;
  /** Word timings from the cross-attention of the model's alignment heads (openai/whisper's): each segment's `words`. */
  wordTimestamps?: boolean;
  /**
   * Beam search at temperature 0 with this many beams (openai/whisper's
   * beam_size; absent: greedy). Each beam is a row of the batch: memory grows
   * with segments × beams.
   */
  beamSize?: number;
  /** Candidates gathered before a beam search ends: beamSize × patience (default 1). */
  patience?: number;
  /** null/absent: rank candidates by log-probability over length; else over ((5 + length) / 6) ^ lengthPenalty. */
  lengthPenalty?: number | null;
  /** Among windows waiting for a free row, lower goes first (default 0); then the order they came in. */
  priority?: number;
}

/**
 * openai/whisper's temperature fallback: an output more compressible than
 * `compressionRatio` (a loop) or less likely than `logprob` on average is
 * decoded again at the next temperature, unless it looks like silence
 * (no-speech probability above `noSpeech` and a low log-probability). With
 * more than one temperature, an output with no-speech probability above
 * `noSpeech` and an average log-probability not above `logprob` is dropped.
 */
export interface Fallback {
  compressionRatio: number;
  logprob: number;
  noSpeech: number;
}

export const DEFAULT_FALLBACK: Fallback = { compressionRatio: 2.4, logprob: -1, noSpeech: 0.6 };
/** openai/whisper's fallback temperatures: 0, 0.2, … 1. */
export const FALLBACK_TEMPERATURES = [0, 0.2, 0.4, 0.6, 0.8, 1];

export interface SegmentResult {
  text: string;
  language: string;
  /** Probability of the language when it was detected; null when it was given. */
  languageProbability: number | null;
  /** Sampled token ids, timestamps included, without the closing <|endoftext|>. */
  tokens: number[];
  segments: TimedSegment[];
  /** Sum of the sampled tokens' log-probabilities (closing <|endoftext|> included) over their count, as openai/whisper averages it. */
  avgLogprob: number;
  /** UTF-8 length of the text over its zlib-compressed length (openai/whisper's repetition measure). */
  compressionRatio: number;
  /** Probability of <|nospeech|> at the <|startoftranscript|> position. */
  noSpeechProb: number;
  /** The temperature of the output kept (the last tried when every one failed). */
  temperature: number;
  /** Dropped as silence (fallback on, see Fallback): no text, no segments. */
  silence: boolean;
  /**
   * With word timestamps: the window's words before they were shared out to
   * its segments, and the segments' times as decoded, for assignWords to share
   * them out again knowing when the speech before the window ended (the
   * segments' words here take the window alone).
   */
  wordAlignment?: PreparedAlignment & { segments: SegmentSpan[] };
  /** With word timestamps: each text token's probability among the text tokens where it was decoded (the words' probabilities come from these). */
  textProbabilities?: number[];
}

export interface LoadOptions {
  dtype?: Dtype | string;
  /** Execution providers in order of preference; the first that loads the model is used. */
  providers?: ProviderName[] | string;
  /** Intra-op threads per session (default: the cores this process may use); 0 lets onnxruntime choose (one core, seen on 2-core machines). */
  threads?: number;
  /**
   * Segments per encoder run (default 1 on CPU, 16 elsewhere). On 2 CPU cores
   * whisper-tiny's encoder took 460 ms a window alone and 616 ms a window at 16:
   * its [batch, heads, 1500, 1500] attention scores outgrow the caches. At 1 the
   * encoder's batch axis is fixed at load time (freeDimensionOverrides), which
   * took another 13% off (399 → 345 ms).
   */
  encoderBatchSize?: number;
  /** Where the chosen execution provider (and any skipped) is reported; default: nowhere. */
  log?: Logger;
}

export interface TranscribeOptions {
  /** Segments decoded together (default 16). */
  batchSize?: number;
  /** Called as each segment finishes, with its position in the request list. */
  onSegmentDone?: (index: number, result: SegmentResult) => void;
  /** Requests nobody wants any more: not started, and their rows stop at the next decoder step; their results stay empty. */
  abandoned?: (index: number) => boolean;
  /**
   * A request whose decoding failed (a runtime error in a run that held it): given, the others go on and its
   * result stays empty; absent, the call fails.
   */
  onSegmentFailed?: (index: number, err: unknown) => void;
  /** Word timings' row convention (timing.ts); only for checking against transformers.js. */
  alignmentRows?: 'openai' | 'transformers.js';
}

export class WhisperModel {
  private readonly decoder: BatchDecoder;
  readonly tokenizer: WhisperTokenizer;

  private constructor(
    readonly folder: ModelFolder,
    readonly provider: ProviderName,
    private readonly encoder: ort.InferenceSession,
    private readonly decoderSession: ort.InferenceSession,
    private readonly selector: TokenSelector,
    private readonly encoderBatchSize: number,
    private readonly threads: number,
  ) {
    this.decoder = new BatchDecoder(decoderSession, selector, folder);
    this.tokenizer = new WhisperTokenizer(folder.tokenizer, folder.ids.timestampBegin);
  }

  static async load(dir: string, options: LoadOptions = {}): Promise<WhisperModel> {
    const folder = readModelFolder(dir, parseDtype(options.dtype ?? 'fp32'));
    const providers = parseProviders(options.providers ?? ['cpu']);
    const requested = options.encoderBatchSize;
    if (requested !== undefined && (!Number.isInteger(requested) || requested < 1))
      throw new WhisperError('INVALID_OPTIONS', `encoderBatchSize must be a positive integer, got ${requested}`);
    const encoderBatch = (provider: ProviderName) => requested ?? (provider === 'cpu' ? 1 : 16);
    const { provider, sessions } = await openSessions(
      (p) => [
        { path: folder.encoderPath, ...(encoderBatch(p) === 1 && { freeDimensions: { batch_size: 1 } }) },
        { path: folder.decoderPath },
      ],
      { providers, threads: options.threads ?? availableParallelism(), log: options.log },
    );
    const encoderBatchSize = encoderBatch(provider);
    const selector = await TokenSelector.create(folder.ids, folder.rules, folder.dims.vocabSize);
    return new WhisperModel(
      folder,
      provider,
      sessions[0],
      sessions[1],
      selector,
      encoderBatchSize,
      options.threads ?? availableParallelism(),
    );
  }

  /** Decoder runs so far: batching shows up as fewer runs for the same work. */
  get decoderRuns(): number {
    return this.decoder.runs;
  }

  async dispose(): Promise<void> {
    const alignment = await this.alignment?.catch(() => null);
    await Promise.all([
      this.encoder.release(),
      this.decoderSession.release(),
      this.selector.release(),
      alignment !== this.decoderSession && alignment?.release(),
    ]);
  }

  private alignment: Promise<ort.InferenceSession> | null = null;

  /**
   * The session word timings read attention from, opened at the first words
   * asked for: the graph cut from the merged decoder that computes only the
   * alignment heads' layers (whisper-tiny-sized, 16 windows of ~105 tokens:
   * 0.43 s against 1.17 s through the merged decoder; it holds another copy
   * of the decoder's weights, less the layers after the last alignment head),
   * or the merged decoder when the cut cannot be made (weights in external
   * files).
   */
  private alignmentSession(): Promise<ort.InferenceSession> {
    this.alignment ??= (async () => {
      const cut = alignmentGraph(await readFile(this.folder.decoderPath), this.alignmentLayers());
      return cut ? openSession({ path: cut }, this.provider, this.threads) : this.decoderSession;
    })();
    return this.alignment;
  }

  /**
   * Transcribes segments, each with its own options. Calls share the model's
   * running batch: their windows join the rows of others already decoding
   * (see the engine below), so many calls at once cost about what one call
   * with all their segments costs.
   */
  async transcribe(requests: SegmentRequest[], options: TranscribeOptions = {}): Promise<SegmentResult[]> {
    requests.forEach((r, i) => this.validate(r, i));
    return new Promise((resolve, reject) => {
      const promptLimit = Math.floor(this.folder.rules.maxLength / 2) - 1;
      const sub: Submission = {
        requests,
        options,
        batchSize: Math.max(1, options.batchSize ?? 16),
        results: new Array(requests.length),
        prompts: new Array(requests.length),
        waiting: new Map(),
        failedRequests: new Set(),
        inFlight: 0,
        failed: false,
        resolve,
        reject,
      };
      const ready: number[] = [];
      requests.forEach((r, i) => {
        if (r.previous === undefined) {
          sub.prompts[i] = (r.prompt ?? []).slice(-promptLimit);
          ready.push(i);
        } else sub.waiting.set(r.previous, [...(sub.waiting.get(r.previous) ?? []), i]);
      });
      if (ready.length === 0) return resolve(sub.results);
      this.live.add(sub);
      for (const index of ready) this.enqueue({ sub, index, temperature: 0, states: null, language: undefined, languageProbability: null });
    });
  }

  // The engine. One loop a model runs every call's work: between decoder steps it admits waiting windows
  // into free rows (their encoder runs then, and language detection where asked), then runs one decoder step
  // (BatchDecoder.step: the cohort furthest behind), then times the words of windows that just ended.
  // Waiting windows are taken by their request's priority (transcribeMany: a recording's window count, so a
  // short recording goes before a long one's remaining windows), then in the order they came; a window that
  // decodes again at a higher temperature goes before fresh work. New rows are admitted only once a quarter
  // of the rows is free (or all that waits fits): each admission starts a cohort that must catch up, and
  // cohorts of one row would leave every run nearly empty. See the README's runtime section.
  private readonly live = new Set<Submission>();
  private readonly queue: Attempt[] = [];
  private readonly timing: { attempt: Attempt; result: SegmentResult; cross: Float32Array[] }[] = [];
  private readonly attempts = new Map<number, Attempt>();
  private running = false;
  private arrivals = 0;
  private ids = 0;

  /**
   * Work taken and not yet in a row: windows waiting (those that wait on another's text included) and their
   * audio-seconds. A caller feeding the model keeps this above a batch's worth, and not far above it.
   */
  get backlog(): { windows: number; seconds: number; priority: (number | undefined)[] } {
    const waiting = [
      ...this.queue.map((a) => a.sub.requests[a.index]),
      ...[...this.live].flatMap((sub) => [...sub.waiting.values()].flat().map((i) => sub.requests[i])),
    ];
    return {
      windows: waiting.length,
      seconds: waiting.reduce((t, r) => t + r.audio.length, 0) / SAMPLE_RATE,
      priority: waiting.map((r) => r.priority),
    };
  }

  /** Decoder steps and the rows they carried, for benchmarks: rowSteps / steps is how full the batch ran. */
  get engineStats(): { steps: number; rowSteps: number; rowsMoved: number; rowsMerged: number } {
    const { steps, rowSteps, rowsMoved, rowsMerged } = this.decoder;
    return { steps, rowSteps, rowsMoved, rowsMerged };
  }

  private enqueue(a: Omit<Attempt, 'order' | 'id'>, front = false): void {
    a.sub.inFlight++;
    this.queue.push({ ...a, id: this.ids++, order: front ? -this.arrivals++ : this.arrivals++ });
    if (!this.running) {
      this.running = true;
      // After the caller's other windows are queued too (it queues them in one go): they are admitted together.
      queueMicrotask(() => void this.loop());
    }
  }

  private async loop(): Promise<void> {
    for (;;) {
      await this.admit();
      if (this.decoder.activeRows === 0 && this.timing.length === 0) {
        if (this.queue.length === 0) {
          this.running = false;
          return;
        }
        continue;
      }
      try {
        await this.decoder.step({
          onRowDone: (row, cross) => this.rowDone(this.attempts.get(row.index)!, row, cross),
          abandoned: (row) => !this.wanted(this.attempts.get(row.index)!),
          onRowDropped: (row) => this.settle(this.attempts.get(row.index)!),
        });
      } catch (err) {
        const failed = err instanceof CohortError ? new Set(err.rows.map((r) => this.attempts.get(r.index)!)) : new Set<Attempt>();
        for (const a of failed) this.failAttempt(a, err instanceof CohortError ? err.reason : err);
      }
      if (this.timing.length > 0) await this.timeWords(this.timing.splice(0));
    }
  }

  private wanted(a: Attempt): boolean {
    return !a.sub.failed && !a.sub.failedRequests.has(a.index) && !a.sub.options.abandoned?.(a.index);
  }

  /** Rows an attempt takes: a segment's beams at temperature 0, else one. */
  private rowsOf(a: Attempt): number {
    const r = a.sub.requests[a.index];
    return r.beamSize !== undefined && (r.temperatures ?? [0])[a.temperature] === 0 ? r.beamSize : 1;
  }

  /** Waiting windows into the free rows, with their encoder run (and language detection where asked). */
  private async admit(): Promise<void> {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.wanted(this.queue[i])) continue;
      const [gone] = this.queue.splice(i, 1);
      this.settle(gone);
    }
    if (this.queue.length === 0) return;
    const capacity = Math.max(...[...this.live].map((s) => s.batchSize));
    this.decoder.capacity = capacity;
    const active = this.decoder.activeRows;
    const free = capacity - active;
    const priority = (a: Attempt) => a.sub.requests[a.index].priority ?? 0;
    this.queue.sort((a, b) => (a.states ? 0 : 1) - (b.states ? 0 : 1) || priority(a) - priority(b) || a.order - b.order);
    const waitingRows = this.queue.reduce((n, a) => n + this.rowsOf(a), 0);
    if (active > 0 && free < Math.min(Math.ceil(capacity / 4), waitingRows)) return;
    const picked: Attempt[] = [];
    let rows = 0;
    while (this.queue.length > 0 && rows + this.rowsOf(this.queue[0]) <= free) {
      rows += this.rowsOf(this.queue[0]);
      picked.push(this.queue.shift()!);
    }
    // A segment with more beams than the batch has rows runs alone.
    if (picked.length === 0 && active === 0) picked.push(this.queue.shift()!);
    if (picked.length === 0) return;
    const fresh = picked.filter((a) => a.states === null);
    try {
      if (fresh.length > 0) {
        const requests = fresh.map((a) => a.sub.requests[a.index]);
        const states = await this.encode(requests);
        const detected = await this.detectLanguages(requests, states);
        const rowSize = this.folder.dims.audioContext * this.folder.dims.dModel;
        fresh.forEach((a, i) => {
          const r = requests[i];
          a.states = states.subarray(i * rowSize, (i + 1) * rowSize);
          a.language = r.language !== undefined ? languageCode(r.language) : detected.get(i)!.language;
          a.languageProbability = detected.get(i)?.probability ?? null;
        });
      }
    } catch (err) {
      for (const a of picked) this.failAttempt(a, err);
      return;
    }
    const rowsToAdd: DecodeRow[] = [];
    for (const a of picked) {
      if (!this.wanted(a)) {
        this.settle(a);
        continue;
      }
      this.attempts.set(a.id, a);
      rowsToAdd.push(...this.rowsFor(a));
    }
    this.decoder.add(
      rowsToAdd,
      rowsToAdd.map((row) => this.attempts.get(row.index)!.states!),
    );
  }

  /** The decoder rows of one attempt: its prompt, sampler and, with beam search, one row a beam. */
  private rowsFor(a: Attempt): DecodeRow[] {
    const r = a.sub.requests[a.index];
    const temperature = (r.temperatures ?? [0])[a.temperature];
    const { tokens, sotIndex } = this.prompt(a.language!, r.task ?? 'transcribe', r.timestamps ?? false, a.sub.prompts[a.index]);
    const row: DecodeRow = {
      index: a.id,
      tokens,
      sotIndex,
      sampleBegin: tokens.length,
      timestamps: r.timestamps ?? false,
      temperature,
      sampler: temperature > 0 ? new Rng(mixSeed(r.seed ?? 0, a.temperature)) : null,
      sumLogprob: 0,
      noSpeechProb: NaN,
      done: false,
      ...(r.wordTimestamps && { textProbabilities: [] }),
    };
    // Beam search at temperature 0 only (openai/whisper samples above it).
    if (r.beamSize === undefined || temperature > 0) return [row];
    const beam = beamGroup(r.beamSize!, r.patience ?? 1, r.lengthPenalty ?? null);
    return Array.from({ length: r.beamSize! }, () => ({ ...row, tokens: [...tokens], beam }));
  }

  private rowDone(a: Attempt, row: DecodeRow, cross: Float32Array[]): void {
    const r = a.sub.requests[a.index];
    const result = this.result(row, r, a.language!, a.languageProbability);
    const temperatures = r.temperatures ?? [0];
    const fallback = { ...DEFAULT_FALLBACK, ...r.fallback };
    if (a.temperature + 1 < temperatures.length && needsFallback(result, fallback)) {
      // Decoded again at the next temperature, with other work; its encoder output is kept.
      this.enqueue({ ...a, temperature: a.temperature + 1 });
      this.settle(a);
      return;
    }
    const kept =
      temperatures.length > 1 && isSilence(result, fallback) ? { ...result, text: '', tokens: [], segments: [], silence: true } : result;
    // Word timings take one more decoder run, after this step, with its cross-attention keys and values (kept now: the slot is reused).
    if (r.wordTimestamps && kept.tokens.length > 0) this.timing.push({ attempt: a, result: kept, cross: cross.map((t) => t.slice()) });
    else this.finish(a, kept);
  }

  private async timeWords(windows: { attempt: Attempt; result: SegmentResult; cross: Float32Array[] }[]): Promise<void> {
    const wanted = windows.filter((w) => this.wanted(w.attempt));
    for (const w of windows) if (!this.wanted(w.attempt)) this.settle(w.attempt);
    if (wanted.length === 0) return;
    try {
      await this.addWords(
        wanted.map((w) => ({
          result: w.result,
          request: w.attempt.sub.requests[w.attempt.index],
          states: w.attempt.states!,
          cross: w.cross,
        })),
        wanted[0].attempt.sub.options.alignmentRows,
      );
    } catch (err) {
      for (const w of wanted) this.failAttempt(w.attempt, err);
      return;
    }
    for (const w of wanted) this.finish(w.attempt, w.result);
  }

  /** A window done: its result is reported, and the windows that continue its text can start. */
  private finish(a: Attempt, result: SegmentResult): void {
    const { sub, index } = a;
    if (this.wanted(a)) {
      sub.results[index] = result;
      sub.options.onSegmentDone?.(index, result);
      const next = sub.waiting.get(index) ?? [];
      sub.waiting.delete(index);
      // openai/whisper: no earlier text after an output sampled above 0.5; a window dropped as silence adds none.
      const carried = result.temperature > 0.5 ? [] : [...sub.prompts[index], ...result.tokens];
      const promptLimit = Math.floor(this.folder.rules.maxLength / 2) - 1;
      // Windows others wait on go first: they are the longest chain.
      for (const k of next) {
        sub.prompts[k] = carried.slice(-promptLimit);
        this.enqueue({ sub, index: k, temperature: 0, states: null, language: undefined, languageProbability: null }, true);
      }
    }
    this.settle(a);
  }

  /** A window that failed fails its request alone when the caller takes failures one by one, else the whole call. */
  private failAttempt(a: Attempt, err: unknown): void {
    const { sub } = a;
    if (this.wanted(a)) {
      if (sub.options.onSegmentFailed) {
        sub.failedRequests.add(a.index);
        sub.options.onSegmentFailed(a.index, err);
      } else {
        sub.failed = true;
        sub.reject(err);
      }
    }
    this.settle(a);
  }

  /** An attempt is over (done, dropped or failed); the call ends with its last. */
  private settle(a: Attempt): void {
    this.attempts.delete(a.id);
    if (--a.sub.inFlight > 0) return;
    this.live.delete(a.sub);
    if (!a.sub.failed) a.sub.resolve(a.sub.results);
  }

  /**
   * Word timings for finished windows (openai/whisper's find_alignment, then
   * its word rules, the window taken alone): sets `alignment`, and each
   * segment's `words`. The attention comes from openai's extra run over the
   * window's text alone; the words' probabilities come from decoding itself
   * (each token's text-only softmax where it was decoded), which saves that
   * run the output projection over the whole vocabulary, half its cost. They
   * equal openai's when the window was decoded without timestamps or prompt;
   * otherwise openai reads the text again without them and gets slightly
   * different numbers.
   */
  private async addWords(
    windows: { result: SegmentResult; request: SegmentRequest; states: Float32Array; cross: Float32Array[] }[],
    rowConvention?: 'openai' | 'transformers.js',
  ): Promise<void> {
    const { ids, alignment: settings, dims } = this.folder;
    const heads = settings.heads!;
    const layers = this.alignmentLayers();
    // <|sot|> [<|lang|> <|task|>]: the prompt without earlier text
    const sots = windows.map(({ result, request }) => this.prompt(result.language, request.task ?? 'transcribe', true, []).tokens);
    const sequences = windows.map(({ result }, i) => [...sots[i], ids.noTimestamps, ...result.tokens.filter((t) => t < ids.eot), ids.eot]);
    const session = await this.alignmentSession();
    await this.decoder.readAlong(
      session,
      sequences,
      windows.map((w) => w.states),
      windows.map((w) => w.cross),
      layers,
      (i, attentions) => {
        const { result, request } = windows[i];
        const sequence = sequences[i];
        const rows = sequence.length;
        const frames = dims.audioContext;
        const first = sots[i].length;
        const textTokens = sequence.slice(first + 1, -1);
        // each alignment head's rows
        const weights = heads.map(([l, h]) => attentions[layers.indexOf(l)].subarray(h * rows * frames, (h + 1) * rows * frames));
        const audioFrames = Math.floor(request.audio.length / 320);
        const alignment = prepareAlignment(
          findAlignment(
            {
              textTokens,
              weights,
              rows,
              frames,
              sotLength: first,
              audioFrames,
              tokenProbabilities: result.textProbabilities!,
              medianFilterWidth: settings.medianFilterWidth,
              rowConvention,
            },
            this.tokenizer,
            ids.eot,
            result.language,
          ),
        );
        const spans = result.segments.map((s) => ({ start: s.start, end: s.end, textTokens: s.tokens.filter((t) => t < ids.eot).length }));
        result.wordAlignment = { ...alignment, segments: spans };
        const offset = request.offset ?? 0;
        const assigned = assignWords(spans, alignment, offset, request.audio.length / SAMPLE_RATE, offset);
        result.segments = result.segments.map((s, k) => ({
          ...s,
          start: assigned.segments[k].start,
          end: assigned.segments[k].end,
          words: assigned.segments[k].words,
        }));
      },
    );
  }

  /** The decoder layers that hold the alignment heads. */
  private alignmentLayers(): number[] {
    return [...new Set(this.folder.alignment.heads!.map(([l]) => l))];
  }

  /** The language of one window, as openai/whisper detects it (the first window of a long recording). */
  async detectLanguage(audio: Float32Array): Promise<{ language: string; probability: number }> {
    const request = { audio };
    this.validate(request, 0);
    return (await this.detectLanguages([request], await this.encode([request]))).get(0)!;
  }

  private validate(r: SegmentRequest, i: number): void {
    if (r.previous !== undefined && !(Number.isInteger(r.previous) && r.previous >= 0 && r.previous < i)) {
      throw new WhisperError('INVALID_OPTIONS', `segment ${i}: previous must be the index of an earlier segment, got ${r.previous}`);
    }
    const temperatures = r.temperatures ?? [0];
    if (temperatures.length === 0 || !temperatures.every((t) => Number.isFinite(t) && t >= 0 && t <= 2)) {
      throw new WhisperError(
        'INVALID_OPTIONS',
        `segment ${i}: temperatures must be one or more numbers from 0 to 2, got ${JSON.stringify(r.temperatures)}`,
      );
    }
    if (r.beamSize !== undefined && !(Number.isInteger(r.beamSize) && r.beamSize >= 1 && r.beamSize <= 16))
      throw new WhisperError('INVALID_OPTIONS', `segment ${i}: beamSize must be an integer from 1 to 16, got ${r.beamSize}`);
    if (r.patience !== undefined && !(Number.isFinite(r.patience) && r.patience >= 1 && r.patience <= 4))
      throw new WhisperError('INVALID_OPTIONS', `segment ${i}: patience must be from 1 to 4, got ${r.patience}`);
    if (r.lengthPenalty != null && !(Number.isFinite(r.lengthPenalty) && r.lengthPenalty >= 0 && r.lengthPenalty <= 2))
      throw new WhisperError('INVALID_OPTIONS', `segment ${i}: lengthPenalty must be from 0 to 2, got ${r.lengthPenalty}`);
    const noWords = r.wordTimestamps ? this.wordTimestampsUnavailable() : null;
    if (noWords) throw new WhisperError('INVALID_OPTIONS', `segment ${i}: ${noWords}`);
    if (r.prompt?.length && this.folder.ids.startOfPrev === null)
      throw new WhisperError('MODEL_INVALID', 'the model has no <|startofprev|> token for prompts');
    if (r.audio.length > WINDOW_SAMPLES)
      throw new WhisperError(
        'SEGMENT_TOO_LONG',
        `segment ${i} holds ${(r.audio.length / SAMPLE_RATE).toFixed(2)} s; at most 30 s fit one window`,
      );
    const task = r.task ?? 'transcribe';
    if (task !== 'transcribe' && task !== 'translate')
      throw new WhisperError('INVALID_OPTIONS', `segment ${i}: unknown task "${task}": expected transcribe or translate`);
    if (this.folder.multilingual) {
      if (r.language !== undefined && !this.folder.ids.languages.has(languageCode(r.language))) {
        throw new WhisperError(
          'UNKNOWN_LANGUAGE',
          `segment ${i}: language "${r.language}" is not one of this model's ${this.folder.ids.languages.size} languages`,
        );
      }
    } else {
      if (r.language !== undefined && languageCode(r.language) !== 'en')
        throw new WhisperError('UNKNOWN_LANGUAGE', `segment ${i}: this model is English-only; language "${r.language}" is not available`);
      if (task === 'translate') throw new WhisperError('INVALID_OPTIONS', `segment ${i}: this model is English-only and cannot translate`);
    }
  }

  /** Why this model cannot time words, or null when it can. */
  wordTimestampsUnavailable(): string | null {
    const { heads } = this.folder.alignment;
    if (!heads) return 'word timestamps need the model\'s alignment heads: its generation_config.json lists no "alignment_heads"';
    const missing = this.alignmentLayers().filter((l) => !this.decoderSession.outputNames.includes(`cross_attentions.${l}`));
    if (missing.length > 0)
      return `word timestamps need a decoder that outputs its cross-attention weights (an export "with timestamps"): this one has no cross_attentions.${missing[0]}`;
    return null;
  }

  /** Tokens encoded as a prompt (names, spellings) the way openai/whisper encodes its initial prompt. */
  encodePrompt(text: string): number[] {
    return this.tokenizer.encodePrompt(text);
  }

  private prompt(language: string, task: Task, timestamps: boolean, earlier: number[]): { tokens: number[]; sotIndex: number } {
    const { ids, multilingual } = this.folder;
    const tokens = earlier.length > 0 ? [ids.startOfPrev!, ...earlier] : [];
    const sotIndex = tokens.length;
    tokens.push(ids.sot);
    if (multilingual) {
      tokens.push(ids.languages.get(language)!);
      const taskId = task === 'translate' ? ids.translate : ids.transcribe;
      if (taskId === null) throw new WhisperError('MODEL_INVALID', `the model has no <|${task}|> token`);
      tokens.push(taskId);
    }
    if (!timestamps) tokens.push(ids.noTimestamps);
    return { tokens, sotIndex };
  }

  /**
   * Log-mel features and the encoder for one batch: [n, frames, d]. (Computing
   * the next window's features while the encoder runs was slower on 2 cores:
   * the encoder's threads then wait on the busiest core.)
   */
  private async encode(batch: SegmentRequest[]): Promise<Float32Array> {
    const runSize = this.encoderBatchSize;
    const { audioContext, dModel, nMels } = this.folder.dims;
    const states = new Float32Array(batch.length * audioContext * dModel);
    const features = (from: number) => {
      const part = batch.slice(from, from + runSize);
      const out = new Float32Array(part.length * nMels * WINDOW_FRAMES);
      part.forEach((r, i) => writeLogMel(r.audio, nMels, out.subarray(i * nMels * WINDOW_FRAMES, (i + 1) * nMels * WINDOW_FRAMES)));
      return new ort.Tensor('float32', out, [part.length, nMels, WINDOW_FRAMES]);
    };
    for (let from = 0; from < batch.length; from += runSize) {
      const out = await this.encoder.run({ [this.encoder.inputNames[0]]: features(from) });
      states.set(out[this.encoder.outputNames[0]].data as Float32Array, from * audioContext * dModel);
    }
    return states;
  }

  /** openai/whisper's detect_language: the decoder on <|startoftranscript|> alone, argmax over language tokens. */
  private async detectLanguages(
    batch: SegmentRequest[],
    states: Float32Array,
  ): Promise<Map<number, { language: string; probability: number }>> {
    const detected = new Map<number, { language: string; probability: number }>();
    const { ids, multilingual } = this.folder;
    const pending = batch.flatMap((r, i) => (r.language === undefined ? [i] : []));
    if (pending.length === 0) return detected;
    if (!multilingual) {
      for (const i of pending) detected.set(i, { language: 'en', probability: 1 });
      return detected;
    }
    const logits = await this.decoder.firstLogits([ids.sot], selectRows(states, batch.length, pending), pending.length);
    const languages = [...ids.languages.entries()];
    pending.forEach((index, j) => {
      const scores = Float32Array.from(languages, ([, id]) => logits[j][id]);
      const best = argmax(scores);
      const max = scores[best];
      let sum = 0;
      for (const s of scores) sum += Math.exp(s - max);
      detected.set(index, { language: languages[best][0], probability: 1 / sum });
    });
    return detected;
  }

  private result(row: DecodeRow, r: SegmentRequest, language: string, languageProbability: number | null): SegmentResult {
    const sampled = row.tokens.slice(row.sampleBegin);
    const tokens = sampled[sampled.length - 1] === this.folder.ids.eot ? sampled.slice(0, -1) : sampled;
    const textProbabilities = row.textProbabilities?.filter((_, k) => tokens[k] < this.folder.ids.eot);
    const duration = r.audio.length / SAMPLE_RATE;
    const segments = timedSegments(tokens, this.tokenizer, r.offset ?? 0, duration, row.timestamps);
    const text = this.tokenizer.decode(tokens).trim();
    return {
      text,
      language,
      languageProbability,
      tokens,
      segments,
      // openai/whisper divides by the tokens without <|endoftext|>, plus one (its finalize() appends one to every row).
      avgLogprob: row.sumLogprob / (tokens.length + 1),
      compressionRatio: compressionRatio(text),
      noSpeechProb: row.noSpeechProb,
      temperature: row.temperature,
      silence: false,
      ...(textProbabilities && { textProbabilities }),
    };
  }
}

/** One transcribe() call in the engine: its requests, their prompts and results. */
interface Submission {
  requests: SegmentRequest[];
  options: TranscribeOptions;
  batchSize: number;
  results: SegmentResult[];
  /** Each request's prompt tokens, once known (a request that continues another's text knows it when that one ends). */
  prompts: number[][];
  /** Requests that wait on another's output, by the one they wait on. */
  waiting: Map<number, number[]>;
  /** Requests that failed alone (onSegmentFailed). */
  failedRequests: Set<number>;
  /** Its attempts waiting, decoding or having their words timed: the call ends when none is left. */
  inFlight: number;
  /** The call failed as a whole: nothing more of it runs. */
  failed: boolean;
  resolve: (results: SegmentResult[]) => void;
  reject: (err: unknown) => void;
}

/** One decoding of one request: the first, or another at a higher temperature. */
interface Attempt {
  id: number;
  sub: Submission;
  index: number;
  /** Position in the request's temperatures. */
  temperature: number;
  /** The request's encoder output, from its admission on (kept for another attempt); null before. */
  states: Float32Array | null;
  /** Given or detected at admission. */
  language: string | undefined;
  languageProbability: number | null;
  /** Arrival: earlier first among equal priorities (negative: put in front). */
  order: number;
}

/**
 * openai/whisper's get_compression_ratio: UTF-8 bytes over zlib-compressed
 * bytes at zlib's default level. Through pako, a port of reference zlib:
 * Node's own zlib is Chromium's fork, whose matches differ (the same text
 * compressed one byte longer in two of four tries), so its ratios would not be
 * the ones Python's zlib gives openai/whisper.
 */
export function compressionRatio(text: string): number {
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length / deflate(bytes).length;
}

/** openai/whisper's decode_with_fallback: too repetitive or too unlikely, unless it is silence. */
function needsFallback(r: SegmentResult, f: Fallback): boolean {
  const unlikely = r.avgLogprob < f.logprob;
  if (r.noSpeechProb > f.noSpeech && unlikely) return false;
  return r.compressionRatio > f.compressionRatio || unlikely;
}

/** openai/whisper's transcribe: skip a window likely silent, unless its text is likely enough. */
function isSilence(r: SegmentResult, f: Fallback): boolean {
  return r.noSpeechProb > f.noSpeech && !(r.avgLogprob > f.logprob);
}
