// A transcript as murmur stores and serves it: the text, the language it is in,
// the model that wrote it, and its segments with times.

export interface Segment {
  /** Seconds from the start of the audio. */
  start: number;
  end: number;
  text: string;
  /** The token ids it was read from, its timestamp tokens included (absent in transcripts stored before they were kept). */
  tokens?: number[] | null;
  /** Where its window starts, in 10 ms frames (openai/whisper's `seek`). */
  seek?: number | null;
  /** The confidence of the window the segment came from (absent in transcripts stored before they were kept). */
  avgLogprob?: number | null;
  compressionRatio?: number | null;
  /** null: the model has no <|nospeech|> token. */
  noSpeechProb?: number | null;
  temperature?: number | null;
  /** With word timestamps. */
  words?: Word[] | null;
}

export interface Word {
  /** As Whisper writes it, with its leading space and merged punctuation (" Hello,"). */
  word: string;
  start: number;
  end: number;
  probability: number;
}

/** How a job is decoded beyond its language and task (createJob's options); absent: greedy, no prompt. */
export interface DecodingOptions {
  /** Text that comes before the audio: names, spellings, style. */
  prompt?: string;
  /** Each window's prompt continues with the earlier windows' text. */
  conditionOnPreviousText?: boolean;
  /** Tried in turn: more than one turns on openai/whisper's fallback. */
  temperatures?: number[];
  /** Seeds sampling above temperature 0. */
  seed?: number;
  /** Beam search with this many beams at temperature 0 (absent: greedy). */
  beamSize?: number;
  patience?: number;
  lengthPenalty?: number;
  /** Word timings in every segment. */
  wordTimestamps?: boolean;
}

export interface Transcript {
  text: string;
  language: string;
  model: string;
  segments: Segment[];
  /** A partial result's: how many of the recording's windows, from its start, it holds (a restarted attempt resumes after them). */
  windows?: number | null;
}
