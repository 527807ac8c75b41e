// Recordings of any length, many at once: each is cut into chunks of at most
// 30 s (the speech chunks voice-activity detection found, or fixed 30 s
// windows) and the chunks of all recordings are decoded as one batch, so a
// worker's claimed jobs share encoder and decoder runs. Times come out on each
// recording's own timeline.
import type { Fallback, SegmentRequest, SegmentResult, Task, TimedSegment, WhisperModel } from './index.ts';
import { mixSeed } from './rng.ts';
import { assignWords } from './timing.ts';
import { chunkAudio, recordingTime, type Chunk } from '../vad/speech.ts';
import { WINDOW_SAMPLES } from './features.ts';

const round = (t: number) => Math.round(t * 100) / 100;

/** A segment with the confidence of the window it came from (openai/whisper gives every segment its window's figures). */
export interface ScoredSegment extends TimedSegment {
  /** Where its window starts in the recording, in 10 ms frames (openai/whisper's `seek`). */
  seek: number;
  avgLogprob: number;
  compressionRatio: number;
  noSpeechProb: number;
  temperature: number;
}

export interface Transcript {
  text: string;
  language: string;
  segments: ScoredSegment[];
  /** Generated token ids, window after window. */
  tokens: number[];
}

export interface Recording {
  /** 16 kHz mono samples, any length. */
  samples: Float32Array;
  /** What to decode, in order: chunks of sample ranges joined back to back, ≤ 30 s each (voice-activity segmentation); fixed 30 s windows when absent. None: nothing to decode. */
  chunks?: Chunk[];
  language?: string;
  task?: Task;
  timestamps?: boolean;
  /** Text that comes before the recording (names, spellings): the first window's prompt, and every window's without conditioning. */
  prompt?: string;
  /** Each window's prompt continues with the earlier windows' output (openai/whisper's condition_on_previous_text); windows then decode one after another. */
  conditionOnPreviousText?: boolean;
  temperatures?: number[];
  fallback?: Partial<Fallback>;
  /** Word timings in every segment (the model needs alignment heads and a decoder that outputs cross-attentions). */
  wordTimestamps?: boolean;
  /** Windows already done by an earlier attempt: decoding starts after them (the transcript holds only the rest). */
  skipWindows?: number;
  /** Sampling seed; each window samples from its own seed derived from it. */
  seed?: number;
  beamSize?: number;
  patience?: number;
  lengthPenalty?: number | null;
}

export interface ManyOptions {
  batchSize?: number;
  /** Called as each window finishes, with the recording's position in the list and its share of windows done. */
  onProgress?: (recording: number, fraction: number) => void;
  /** Called once a recording's last window is done, with its transcript: it need not wait for the others. */
  onRecordingDone?: (recording: number, transcript: Transcript) => void;
  /**
   * Called when a recording's windows done from its start grow (a window finishing out of order waits for those
   * before it), with the transcript of those windows: its segments so far, on the recording's timeline.
   */
  onPartial?: (recording: number, transcript: Transcript, windowsDone: number) => void;
  /** Recordings nobody wants any more (their job was cancelled): their windows stop at the next decoder step. */
  abandoned?: (recording: number) => boolean;
  /** A recording whose decoding failed: given, the others go on (its windows left are dropped); absent, the call fails. */
  onRecordingFailed?: (recording: number, err: unknown) => void;
}

export function fixedWindows(length: number): Chunk[] {
  const windows: Chunk[] = [];
  for (let start = 0; start < length; start += WINDOW_SAMPLES) windows.push([{ start, end: Math.min(length, start + WINDOW_SAMPLES) }]);
  return windows;
}

export async function transcribeMany(model: WhisperModel, recordings: Recording[], options: ManyOptions = {}): Promise<Transcript[]> {
  // A resumed recording starts at its first window not yet done; its windows keep their places (seeds, times).
  const skipped = recordings.map((r) => Math.max(0, r.skipWindows ?? 0));
  const chunks = recordings.map((r, i) => (r.chunks ?? fixedWindows(r.samples.length)).slice(skipped[i]));
  const windows = recordings.map((r, i) => chunks[i].map((c) => ({ audio: chunkAudio(r.samples, c) })));
  // One language for a whole recording, from its first window (as openai/whisper does);
  // a recording of one window detects it in the batch itself.
  const languages: (string | undefined)[] = [];
  for (const [i, r] of recordings.entries()) {
    languages.push(r.language ?? (windows[i].length > 1 ? (await model.detectLanguage(windows[i][0].audio)).language : undefined));
    if (windows[i].length === 0) options.onProgress?.(i, 1);
  }
  const owner = windows.flatMap((ws, i) => ws.map(() => i));
  const done = recordings.map(() => 0);
  const requests: SegmentRequest[] = [];
  for (const [i, r] of recordings.entries()) {
    const prompt = r.prompt?.trim() ? model.encodePrompt(r.prompt) : undefined;
    for (const [k, w] of windows[i].entries()) {
      requests.push({
        ...w,
        task: r.task,
        timestamps: r.timestamps,
        language: languages[i],
        temperatures: r.temperatures,
        fallback: r.fallback,
        seed: mixSeed(r.seed ?? 0, skipped[i] + k),
        beamSize: r.beamSize,
        wordTimestamps: r.wordTimestamps,
        patience: r.patience,
        lengthPenalty: r.lengthPenalty,
        // Among windows waiting for rows (of this call and others on the model), a shorter recording's go first.
        priority: windows[i].length,
        ...(r.conditionOnPreviousText && k > 0 ? { previous: requests.length - 1 } : { prompt }),
      });
    }
  }
  const first = windows.map((_, i) => windows.slice(0, i).reduce((n, ws) => n + ws.length, 0));
  const results: SegmentResult[] = new Array(requests.length);
  const transcripts: Transcript[] = new Array(recordings.length);
  const prefixes = recordings.map(() => 0);
  const finish = (i: number) => {
    transcripts[i] = assemble(results.slice(first[i], first[i] + windows[i].length), chunks[i], languages[i]);
    options.onRecordingDone?.(i, transcripts[i]);
  };
  for (const i of recordings.keys()) if (windows[i].length === 0) finish(i);
  const failed = new Set<number>();
  await model.transcribe(requests, {
    batchSize: options.batchSize,
    abandoned: (index: number) => failed.has(owner[index]) || (options.abandoned?.(owner[index]) ?? false),
    ...(options.onRecordingFailed && {
      onSegmentFailed: (index: number, err: unknown) => {
        if (failed.has(owner[index])) return;
        failed.add(owner[index]);
        options.onRecordingFailed!(owner[index], err);
      },
    }),
    onSegmentDone: (index, result) => {
      results[index] = result;
      const i = owner[index];
      done[i]++;
      options.onProgress?.(i, (skipped[i] + done[i]) / (skipped[i] + windows[i].length));
      if (done[i] === windows[i].length) return finish(i);
      if (!options.onPartial) return;
      // The windows done from the recording's start: the segments a reader can take as final.
      let prefix = prefixes[i];
      while (prefix < windows[i].length && results[first[i] + prefix] !== undefined) prefix++;
      if (prefix === prefixes[i]) return;
      prefixes[i] = prefix;
      options.onPartial(i, assemble(results.slice(first[i], first[i] + prefix), chunks[i], languages[i]), prefix);
    },
  });
  return transcripts;
}

/** One recording's transcript from its windows' results, on its own timeline. */
function assemble(mine: SegmentResult[], chunks: Chunk[], language: string | undefined): Transcript {
  // Word rules look at the pause before a window's first word: the speech before it ended where the last window's did.
  let lastSpeech = 0;
  const withWords = (r: SegmentResult, chunk: Chunk): TimedSegment[] => {
    if (!r.wordAlignment) return r.segments;
    const chunkStart = recordingTime(chunk, 0);
    const assigned = assignWords(r.wordAlignment.segments, r.wordAlignment, 0, chunkAudioSeconds(chunk), lastSpeech - chunkStart);
    if (assigned.segments.some((s) => s.words.length > 0)) lastSpeech = recordingTime(chunk, assigned.lastSpeech, true);
    return r.segments.map((seg, k) => ({ ...seg, ...assigned.segments[k] }));
  };
  return {
    text: mine
      .map((r) => r.text)
      .filter(Boolean)
      .join(' '),
    language: mine[0]?.language ?? language ?? 'en',
    // The runtime times each chunk from 0; on the recording, a chunk's spans sit where they were cut from.
    segments: mine.flatMap((r, k) =>
      withWords(r, chunks[k]).map((seg) => ({
        ...seg,
        start: round(recordingTime(chunks[k], seg.start)),
        end: round(recordingTime(chunks[k], seg.end, true)),
        ...(seg.words && {
          words: seg.words.map((w) => ({
            ...w,
            start: round(recordingTime(chunks[k], w.start)),
            end: round(recordingTime(chunks[k], w.end, true)),
          })),
        }),
        seek: Math.round(recordingTime(chunks[k], 0) * 100),
        avgLogprob: r.avgLogprob,
        compressionRatio: r.compressionRatio,
        noSpeechProb: r.noSpeechProb,
        temperature: r.temperature,
      })),
    ),
    tokens: mine.flatMap((r) => r.tokens),
  };
}

/** Seconds of audio a chunk holds (its spans back to back). */
function chunkAudioSeconds(chunk: Chunk): number {
  return chunk.reduce((n, s) => n + s.end - s.start, 0) / 16000;
}
