// A transcript as murmur stores and serves it: the text, the language it is in,
// the model that wrote it, and its segments with times.

export interface Segment {
  /** Seconds from the start of the audio. */
  start: number;
  end: number;
  text: string;
}

export interface Transcript {
  text: string;
  language: string;
  model: string;
  segments: Segment[];
}
