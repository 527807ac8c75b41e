// From speech probabilities to the ≤ 30 s chunks that Whisper decodes in a
// batch. Speech regions follow Silero's own get_speech_timestamps (a start
// threshold, a lower end threshold, minimum speech and silence durations,
// padding); a region longer than 30 s is split at its quietest frame near the
// limit; then regions are packed, silence cut out, into chunks of at most 30 s
// of speech, as faster-whisper's batched mode does. Every chunk costs one
// 30 s encoder window whatever it holds, so dense chunks are what make
// batching pay; and silence that is never decoded cannot hallucinate text.
import { FRAME_SAMPLES } from './silero.ts';

export type Segmentation = 'vad' | 'fixed';

export interface SpeechOptions {
  threshold: number;
  /** Speech ends below this (hysteresis). */
  negThreshold: number;
  minSpeechMs: number;
  minSilenceMs: number;
  padMs: number;
  /** Longest chunk, in seconds. */
  maxChunkSeconds: number;
}

// Silero's own defaults, but for the minimum silence: 300 ms rather than 100 keeps a sentence's pauses inside one region.
export const DEFAULT_SPEECH: SpeechOptions = {
  threshold: 0.5,
  negThreshold: 0.35,
  minSpeechMs: 250,
  minSilenceMs: 300,
  padMs: 30,
  maxChunkSeconds: 30,
};

/** A range of samples [start, end). */
export interface Span {
  start: number;
  end: number;
}

const RATE = 16000;

/** Speech regions in samples, padded and clamped to the audio and to each other. */
export function speechRegions(probs: Float32Array, totalSamples: number, o: SpeechOptions = DEFAULT_SPEECH): Span[] {
  const minSpeech = (o.minSpeechMs * RATE) / 1000;
  const minSilence = (o.minSilenceMs * RATE) / 1000;
  const regions: Span[] = [];
  let start: number | null = null;
  let silenceFrom: number | null = null;
  for (let f = 0; f < probs.length; f++) {
    const at = f * FRAME_SAMPLES;
    const p = probs[f];
    if (p >= o.threshold) {
      silenceFrom = null;
      start ??= at;
    } else if (start !== null && p < o.negThreshold) {
      silenceFrom ??= at;
      if (at + FRAME_SAMPLES - silenceFrom >= minSilence) {
        if (silenceFrom - start >= minSpeech) regions.push({ start, end: silenceFrom });
        start = null;
        silenceFrom = null;
      }
    }
  }
  if (start !== null) {
    const end = silenceFrom ?? totalSamples;
    if (end - start >= minSpeech) regions.push({ start, end });
  }
  const pad = (o.padMs * RATE) / 1000;
  return regions.map((r, i) => ({
    start: Math.max(0, i > 0 ? Math.max(r.start - pad, Math.floor((regions[i - 1].end + r.start) / 2)) : r.start - pad),
    end: Math.min(
      totalSamples,
      i < regions.length - 1 ? Math.min(r.end + pad, Math.floor((r.end + regions[i + 1].start) / 2)) : r.end + pad,
    ),
  }));
}

/** A chunk is the speech spans it joins, in order: its audio is their concatenation. */
export type Chunk = Span[];

/** Packs regions into chunks of at most maxChunkSeconds of speech, splitting longer regions at their quietest frame. */
export function speechChunks(regions: Span[], probs: Float32Array, o: SpeechOptions = DEFAULT_SPEECH): Chunk[] {
  const max = o.maxChunkSeconds * RATE;
  const pieces: Span[] = [];
  for (const region of regions) {
    let { start } = region;
    while (region.end - start > max) {
      // The quietest frame in the last third of the allowed length: a pause between words, usually.
      const from = Math.ceil((start + (max * 2) / 3) / FRAME_SAMPLES);
      const to = Math.floor((start + max) / FRAME_SAMPLES) - 1;
      let cut = to;
      for (let f = from; f <= to; f++) if (probs[f] < probs[cut]) cut = f;
      const at = Math.min(start + max, Math.max(start + 1, cut * FRAME_SAMPLES));
      pieces.push({ start, end: at });
      start = at;
    }
    pieces.push({ start, end: region.end });
  }
  const chunks: Chunk[] = [];
  let length = 0;
  for (const piece of pieces) {
    const last = chunks.at(-1);
    const n = piece.end - piece.start;
    if (last && length + n <= max) {
      // Touching pieces (a long region's split) stay one span.
      if (last.at(-1)!.end === piece.start) last.at(-1)!.end = piece.end;
      else last.push({ ...piece });
      length += n;
    } else {
      chunks.push([{ ...piece }]);
      length = n;
    }
  }
  return chunks;
}

/** The chunk's audio: its spans, back to back. */
export function chunkAudio(samples: Float32Array, chunk: Chunk): Float32Array {
  if (chunk.length === 1) return samples.subarray(chunk[0].start, chunk[0].end);
  const out = new Float32Array(chunk.reduce((n, s) => n + s.end - s.start, 0));
  let at = 0;
  for (const s of chunk) {
    out.set(samples.subarray(s.start, s.end), at);
    at += s.end - s.start;
  }
  return out;
}

/**
 * A time in the chunk's audio (seconds) on the recording's timeline. A time
 * exactly at a joint belongs to the span before it when it ends something
 * (`end`), to the span after it otherwise.
 */
export function recordingTime(chunk: Chunk, seconds: number, end = false): number {
  let at = seconds * RATE;
  for (const [i, s] of chunk.entries()) {
    const n = s.end - s.start;
    if (at < n || (end && at === n) || i === chunk.length - 1) return (s.start + Math.min(at, n)) / RATE;
    at -= n;
  }
  return 0;
}
