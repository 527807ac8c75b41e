// Sampled tokens → timed segments, as openai/whisper's transcribe() reads them:
// a segment runs from a timestamp through text to the next timestamp; an
// unclosed last segment ends where the audio ends.
import type { WhisperTokenizer } from './tokenizer.ts';

export interface TimedSegment {
  start: number;
  end: number;
  text: string;
}

export function timedSegments(sampled: number[], tokenizer: WhisperTokenizer, offset: number, duration: number, timestamps: boolean): TimedSegment[] {
  const round = (t: number) => Math.round(t * 100) / 100;
  if (!timestamps) {
    const text = tokenizer.decode(sampled).trim();
    return text ? [{ start: round(offset), end: round(offset + duration), text }] : [];
  }
  const segments: TimedSegment[] = [];
  let start: number | null = null;
  let last = 0;
  let text: number[] = [];
  const close = (end: number) => {
    const decoded = tokenizer.decode(text).trim();
    if (decoded) segments.push({ start: round(offset + (start ?? last)), end: round(offset + Math.max(end, start ?? last)), text: decoded });
    text = [];
    start = null;
  };
  for (const id of sampled) {
    if (tokenizer.isTimestamp(id)) {
      const time = tokenizer.timeOf(id);
      if (text.length > 0) close(time);
      else start = time;
      last = time;
    } else {
      text.push(id);
    }
  }
  if (text.length > 0) close(Math.max(duration, start ?? last));
  return segments;
}
