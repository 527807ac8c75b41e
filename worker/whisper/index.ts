// The Whisper runtime: load a model folder, then transcribe many ≤ 30 s
// segments at once, each with its own options.
import ort from 'onnxruntime-node';
import { BatchDecoder, selectRows, type DecodeRow } from './decoding.ts';
import { WhisperError } from './errors.ts';
import { SAMPLE_RATE, WINDOW_FRAMES, WINDOW_SAMPLES, writeLogMel } from './features.ts';
import { languageCode } from './languages.ts';
import { argmax } from './logitRules.ts';
import { TokenSelector } from './tokenSelector.ts';
import { parseDtype, readModelFolder, type Dtype, type ModelFolder } from './modelFolder.ts';
import { openSessions, parseProviders, type ProviderName } from './providers.ts';
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
}

export interface SegmentResult {
  text: string;
  language: string;
  /** Probability of the language when it was detected; null when it was given. */
  languageProbability: number | null;
  /** Sampled token ids, timestamps included, without the closing <|endoftext|>. */
  tokens: number[];
  segments: TimedSegment[];
  avgLogprob: number;
  noSpeechProb: number;
}

export interface LoadOptions {
  dtype?: Dtype | string;
  /** Execution providers in order of preference; the first that loads the model is used. */
  providers?: ProviderName[] | string;
  /** Intra-op threads per session; 0 lets onnxruntime choose. */
  threads?: number;
  /**
   * Segments per encoder run (default 1 on CPU, 16 elsewhere). On 2 CPU cores
   * whisper-tiny's encoder took 460 ms a window alone and 616 ms a window at 16:
   * its [batch, heads, 1500, 1500] attention scores outgrow the caches. At 1 the
   * encoder's batch axis is fixed at load time (freeDimensionOverrides), which
   * took another 13% off (399 → 345 ms).
   */
  encoderBatchSize?: number;
  log?: (line: string) => void;
}

export interface TranscribeOptions {
  /** Segments decoded together (default 16). */
  batchSize?: number;
  /** Called as each segment finishes, with its position in the request list. */
  onSegmentDone?: (index: number, result: SegmentResult) => void;
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
  ) {
    this.decoder = new BatchDecoder(decoderSession, selector, folder);
    this.tokenizer = new WhisperTokenizer(folder.tokenizer, folder.ids.timestampBegin);
  }

  static async load(dir: string, options: LoadOptions = {}): Promise<WhisperModel> {
    const folder = readModelFolder(dir, parseDtype(options.dtype ?? 'fp32'));
    const providers = parseProviders(options.providers ?? ['cpu']);
    const requested = options.encoderBatchSize;
    if (requested !== undefined && (!Number.isInteger(requested) || requested < 1)) throw new WhisperError('INVALID_OPTIONS', `encoderBatchSize must be a positive integer, got ${requested}`);
    const encoderBatch = (provider: ProviderName) => requested ?? (provider === 'cpu' ? 1 : 16);
    const { provider, sessions } = await openSessions(
      (p) => [{ path: folder.encoderPath, ...(encoderBatch(p) === 1 && { freeDimensions: { batch_size: 1 } }) }, { path: folder.decoderPath }],
      { providers, threads: options.threads ?? 0, log: options.log },
    );
    const encoderBatchSize = encoderBatch(provider);
    const selector = await TokenSelector.create(folder.ids, folder.rules, folder.dims.vocabSize);
    return new WhisperModel(folder, provider, sessions[0], sessions[1], selector, encoderBatchSize);
  }

  /** Decoder runs so far: batching shows up as fewer runs for the same work. */
  get decoderRuns(): number {
    return this.decoder.runs;
  }

  async dispose(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoderSession.release(), this.selector.release()]);
  }

  async transcribe(requests: SegmentRequest[], options: TranscribeOptions = {}): Promise<SegmentResult[]> {
    requests.forEach((r, i) => this.validate(r, i));
    const batchSize = Math.max(1, options.batchSize ?? 16);
    const results: SegmentResult[] = new Array(requests.length);
    for (let from = 0; from < requests.length; from += batchSize) {
      const batch = requests.slice(from, from + batchSize);
      const states = await this.encode(batch);
      const detected = await this.detectLanguages(batch, states);
      const languages = batch.map((r, i) => (r.language !== undefined ? languageCode(r.language) : detected.get(i)!.language));
      const rows: DecodeRow[] = batch.map((r, i) => {
        const tokens = this.prompt(languages[i], r.task ?? 'transcribe', r.timestamps ?? false);
        return { index: i, tokens, sampleBegin: tokens.length, timestamps: r.timestamps ?? false, sumLogprob: 0, noSpeechProb: NaN, done: false };
      });
      await this.decoder.decode(rows, states, (row) => {
        const result = this.result(row, batch[row.index], languages[row.index], detected.get(row.index)?.probability ?? null);
        results[from + row.index] = result;
        options.onSegmentDone?.(from + row.index, result);
      });
    }
    return results;
  }

  /** The language of one window, as openai/whisper detects it (the first window of a long recording). */
  async detectLanguage(audio: Float32Array): Promise<{ language: string; probability: number }> {
    const request = { audio };
    this.validate(request, 0);
    return (await this.detectLanguages([request], await this.encode([request]))).get(0)!;
  }

  private validate(r: SegmentRequest, i: number): void {
    if (r.audio.length > WINDOW_SAMPLES) throw new WhisperError('SEGMENT_TOO_LONG', `segment ${i} holds ${(r.audio.length / SAMPLE_RATE).toFixed(2)} s; at most 30 s fit one window`);
    const task = r.task ?? 'transcribe';
    if (task !== 'transcribe' && task !== 'translate') throw new WhisperError('INVALID_OPTIONS', `segment ${i}: unknown task "${task}": expected transcribe or translate`);
    if (this.folder.multilingual) {
      if (r.language !== undefined && !this.folder.ids.languages.has(languageCode(r.language))) {
        throw new WhisperError('UNKNOWN_LANGUAGE', `segment ${i}: language "${r.language}" is not one of this model's ${this.folder.ids.languages.size} languages`);
      }
    } else {
      if (r.language !== undefined && languageCode(r.language) !== 'en') throw new WhisperError('UNKNOWN_LANGUAGE', `segment ${i}: this model is English-only; language "${r.language}" is not available`);
      if (task === 'translate') throw new WhisperError('INVALID_OPTIONS', `segment ${i}: this model is English-only and cannot translate`);
    }
  }

  private prompt(language: string, task: Task, timestamps: boolean): number[] {
    const { ids, multilingual } = this.folder;
    const tokens = [ids.sot];
    if (multilingual) {
      tokens.push(ids.languages.get(language)!);
      const taskId = task === 'translate' ? ids.translate : ids.transcribe;
      if (taskId === null) throw new WhisperError('MODEL_INVALID', `the model has no <|${task}|> token`);
      tokens.push(taskId);
    }
    if (!timestamps) tokens.push(ids.noTimestamps);
    return tokens;
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
  private async detectLanguages(batch: SegmentRequest[], states: Float32Array): Promise<Map<number, { language: string; probability: number }>> {
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
    const generated = sampled.length;
    const tokens = sampled[sampled.length - 1] === this.folder.ids.eot ? sampled.slice(0, -1) : sampled;
    const duration = r.audio.length / SAMPLE_RATE;
    const segments = timedSegments(tokens, this.tokenizer, r.offset ?? 0, duration, row.timestamps);
    return {
      text: this.tokenizer.decode(tokens).trim(),
      language,
      languageProbability,
      tokens,
      segments,
      avgLogprob: generated > 0 ? row.sumLogprob / generated : 0,
      noSpeechProb: row.noSpeechProb,
    };
  }
}
