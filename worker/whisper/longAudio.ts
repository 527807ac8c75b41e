// Audio longer than one window, cut into fixed 30 s windows that are decoded
// as one batch. (Voice-activity segmentation replaces the fixed cut later.)
import type { SegmentResult, Task, TimedSegment, WhisperModel } from './index.ts';
import { SAMPLE_RATE, WINDOW_SAMPLES } from './features.ts';

export interface Transcript {
  text: string;
  language: string;
  segments: TimedSegment[];
  /** Generated token ids, window after window. */
  tokens: number[];
}

export interface LongOptions {
  language?: string;
  task?: Task;
  timestamps?: boolean;
}

export function fixedWindows(samples: Float32Array): { audio: Float32Array; offset: number }[] {
  const windows: { audio: Float32Array; offset: number }[] = [];
  for (let start = 0; start < samples.length; start += WINDOW_SAMPLES) {
    windows.push({ audio: samples.subarray(start, start + WINDOW_SAMPLES), offset: start / SAMPLE_RATE });
  }
  return windows;
}

export async function transcribeLong(model: WhisperModel, samples: Float32Array, options: LongOptions = {}): Promise<Transcript> {
  const windows = fixedWindows(samples);
  // One language for the whole recording, from its first window (as openai/whisper does).
  const language = options.language ?? (windows.length > 1 ? (await model.detectLanguage(windows[0].audio)).language : undefined);
  const results: SegmentResult[] = await model.transcribe(windows.map((w) => ({ ...w, ...options, language })));
  return {
    text: results.map((r) => r.text).filter(Boolean).join(' '),
    language: results[0]?.language ?? language ?? 'en',
    segments: results.flatMap((r) => r.segments),
    tokens: results.flatMap((r) => r.tokens),
  };
}
