// Recordings of any length, many at once: each is cut into fixed 30 s windows
// and the windows of all recordings are decoded as one batch, so a worker's
// claimed jobs share encoder and decoder runs. (Voice-activity segmentation
// replaces the fixed cut later.)
import type { SegmentResult, Task, TimedSegment, WhisperModel } from './index.ts';
import { SAMPLE_RATE, WINDOW_SAMPLES } from './features.ts';

export interface Transcript {
  text: string;
  language: string;
  segments: TimedSegment[];
  /** Generated token ids, window after window. */
  tokens: number[];
}

export interface Recording {
  /** 16 kHz mono samples, any length. */
  samples: Float32Array;
  language?: string;
  task?: Task;
  timestamps?: boolean;
}

export interface ManyOptions {
  batchSize?: number;
  /** Called as each window finishes, with the recording's position in the list and its share of windows done. */
  onProgress?: (recording: number, fraction: number) => void;
}

export function fixedWindows(samples: Float32Array): { audio: Float32Array; offset: number }[] {
  const windows: { audio: Float32Array; offset: number }[] = [];
  for (let start = 0; start < samples.length; start += WINDOW_SAMPLES) {
    windows.push({ audio: samples.subarray(start, start + WINDOW_SAMPLES), offset: start / SAMPLE_RATE });
  }
  return windows;
}

export async function transcribeMany(model: WhisperModel, recordings: Recording[], options: ManyOptions = {}): Promise<Transcript[]> {
  const windows = recordings.map((r) => fixedWindows(r.samples));
  // One language for a whole recording, from its first window (as openai/whisper does);
  // a recording of one window detects it in the batch itself.
  const languages: (string | undefined)[] = [];
  for (const [i, r] of recordings.entries()) {
    languages.push(r.language ?? (windows[i].length > 1 ? (await model.detectLanguage(windows[i][0].audio)).language : undefined));
  }
  const owner = windows.flatMap((ws, i) => ws.map(() => i));
  const done = recordings.map(() => 0);
  const results: SegmentResult[] = await model.transcribe(
    windows.flatMap((ws, i) => ws.map((w) => ({ ...w, task: recordings[i].task, timestamps: recordings[i].timestamps, language: languages[i] }))),
    {
      batchSize: options.batchSize,
      onSegmentDone: (index) => {
        const i = owner[index];
        options.onProgress?.(i, ++done[i] / windows[i].length);
      },
    },
  );
  let next = 0;
  return recordings.map((_, i) => {
    const mine = results.slice(next, (next += windows[i].length));
    return {
      text: mine.map((r) => r.text).filter(Boolean).join(' '),
      language: mine[0]?.language ?? languages[i] ?? 'en',
      segments: mine.flatMap((r) => r.segments),
      tokens: mine.flatMap((r) => r.tokens),
    };
  });
}

export async function transcribeLong(model: WhisperModel, samples: Float32Array, options: Omit<Recording, 'samples'> = {}): Promise<Transcript> {
  return (await transcribeMany(model, [{ samples, ...options }]))[0];
}
