// Sampled tokens → timed segments, as openai/whisper's transcribe() reads them:
// a segment runs from a timestamp through text to the next timestamp; an
// unclosed last segment ends where the audio ends. Times never pass the end of
// the segment's audio (a window is padded to 30 s, and a timestamp can point
// into the padding).
import type { Word } from './timing.ts';
import type { WhisperTokenizer } from './tokenizer.ts';

export interface TimedSegment {
  start: number;
  end: number;
  text: string;
  /** The tokens it was read from, its timestamp tokens included. */
  tokens: number[];
  /** With word timestamps. */
  words?: Word[];
}

export function timedSegments(
  sampled: number[],
  tokenizer: WhisperTokenizer,
  offset: number,
  duration: number,
  timestamps: boolean,
): TimedSegment[] {
  const round = (t: number) => Math.round(t * 100) / 100;
  const clamp = (t: number) => Math.min(Math.max(t, 0), duration);
  if (!timestamps) {
    const text = tokenizer.decode(sampled).trim();
    return text ? [{ start: round(offset), end: round(offset + duration), text, tokens: sampled }] : [];
  }
  const segments: TimedSegment[] = [];
  let start: number | null = null;
  let last = 0;
  let text: number[] = [];
  let tokens: number[] = [];
  const close = (end: number) => {
    const decoded = tokenizer.decode(text).trim();
    const from = clamp(start ?? last);
    if (decoded) segments.push({ start: round(offset + from), end: round(offset + Math.max(clamp(end), from)), text: decoded, tokens });
    text = [];
    tokens = [];
    start = null;
  };
  for (const id of sampled) {
    if (tokenizer.isTimestamp(id)) {
      const time = tokenizer.timeOf(id);
      if (text.length > 0) {
        tokens.push(id);
        close(time);
      } else {
        start = time;
        tokens = [id];
      }
      last = time;
    } else {
      text.push(id);
      tokens.push(id);
    }
  }
  if (text.length > 0) close(duration);
  return segments;
}
