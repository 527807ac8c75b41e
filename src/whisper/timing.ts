// Word timings as openai/whisper's timing.py makes them. The decoder reads the
// window's text once more, [<|sot|> <|lang|> <|task|> <|notimestamps|> text
// <|endoftext|>], and outputs the cross-attention weights of the heads that
// follow the audio (alignment_heads). Those weights, cropped to the window's
// own frames and renormalised (openai takes the softmax after cropping; the
// renormalised softmax is the same thing), are standardised over the tokens,
// median-filtered over time, averaged over the heads, and aligned to the frames
// by dynamic time warping. A token starts where the path first reaches its
// row; a word runs from its first token's start to the next word's.
import type { WhisperTokenizer } from './tokenizer.ts';

/** 20 ms: one encoder frame. */
export const FRAMES_PER_SECOND = 50;
const PREPENDED = '"\'“¿([{-';
const APPENDED = '"\'.。,，!！?？:：”)]}、';
const SENTENCE_ENDS = '.。!！?？';
const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'; // Python's string.punctuation
/** Languages written without spaces: words split at whole characters. */
const UNSPACED = new Set(['zh', 'ja', 'th', 'lo', 'my', 'yue']);

export interface WordTiming {
  /** With its leading space, as Whisper writes it (" Hello,"). */
  word: string;
  tokens: number[];
  start: number;
  end: number;
  /** The mean probability of its tokens. */
  probability: number;
}

export interface Word {
  word: string;
  start: number;
  end: number;
  probability: number;
}

/** The median of each `width` values along a row, the row reflected at its ends (openai's median_filter); rows no longer than width / 2 stay as they are. */
export function medianFilter(row: Float32Array, width: number, out = new Float32Array(row.length)): Float32Array {
  const pad = Math.floor(width / 2);
  if (row.length <= pad) return row;
  const window = new Float32Array(width);
  const n = row.length;
  if (width === 7 && n > 6) return median7(row, out);
  for (let i = 0; i < n; i++) {
    // insertion sort of the window: a typed array's sort() costs ten times as much at width 7
    for (let k = -pad; k <= pad; k++) {
      let at = i + k;
      if (at < 0) at = -at;
      else if (at >= n) at = 2 * (n - 1) - at;
      const v = row[at];
      let j = k + pad;
      while (j > 0 && window[j - 1] > v) {
        window[j] = window[j - 1];
        j--;
      }
      window[j] = v;
    }
    out[i] = window[pad];
  }
  return out;
}

/**
 * medianFilter at width 7 (Whisper's), by Devillard's 13 compare-exchanges
 * that leave the median in the middle ("Fast median search", opt_med7), on
 * locals; the reflected ends apart, values are read straight from the row.
 */
function median7(row: Float32Array, out: Float32Array): Float32Array {
  const n = row.length;
  const at = (k: number) => row[k < 0 ? -k : k >= n ? 2 * (n - 1) - k : k];
  // A sorting network for the median of 7: some swaps' last values are not read, kept so the network reads as published.
  /* eslint-disable no-useless-assignment */
  for (let i = 0; i < n; i++) {
    const inside = i >= 3 && i < n - 3;
    let a0 = inside ? row[i - 3] : at(i - 3),
      a1 = inside ? row[i - 2] : at(i - 2),
      a2 = inside ? row[i - 1] : at(i - 1),
      a3 = row[i];
    let a4 = inside ? row[i + 1] : at(i + 1),
      a5 = inside ? row[i + 2] : at(i + 2),
      a6 = inside ? row[i + 3] : at(i + 3),
      t: number;
    if (a0 > a5) {
      t = a0;
      a0 = a5;
      a5 = t;
    }
    if (a0 > a3) {
      t = a0;
      a0 = a3;
      a3 = t;
    }
    if (a1 > a6) {
      t = a1;
      a1 = a6;
      a6 = t;
    }
    if (a2 > a4) {
      t = a2;
      a2 = a4;
      a4 = t;
    }
    if (a0 > a1) {
      t = a0;
      a0 = a1;
      a1 = t;
    }
    if (a3 > a5) {
      t = a3;
      a3 = a5;
      a5 = t;
    }
    if (a2 > a6) {
      t = a2;
      a2 = a6;
      a6 = t;
    }
    if (a2 > a3) {
      t = a2;
      a2 = a3;
      a3 = t;
    }
    if (a3 > a6) {
      t = a3;
      a3 = a6;
      a6 = t;
    }
    if (a4 > a5) {
      t = a4;
      a4 = a5;
      a5 = t;
    }
    if (a1 > a4) {
      t = a1;
      a1 = a4;
      a4 = t;
    }
    if (a1 > a3) {
      t = a1;
      a1 = a3;
      a3 = t;
    }
    if (a3 > a4) {
      t = a3;
      a3 = a4;
      a4 = t;
    }
    out[i] = a3;
  }
  /* eslint-enable no-useless-assignment */
  return out;
}

/** Dynamic time warping of an [N, M] cost matrix (openai's dtw_cpu: float32 costs, ties go left): the path as row and column indices. */
export function dtw(x: Float32Array | Float64Array, N: number, M: number): { rows: number[]; columns: number[] } {
  const cost = new Float32Array((N + 1) * (M + 1)).fill(Infinity);
  const trace = new Int8Array((N + 1) * (M + 1)).fill(-1);
  const W = M + 1;
  cost[0] = 0;
  for (let j = 1; j <= M; j++) {
    for (let i = 1; i <= N; i++) {
      const c0 = cost[(i - 1) * W + j - 1];
      const c1 = cost[(i - 1) * W + j];
      const c2 = cost[i * W + j - 1];
      let c: number;
      let t: number;
      if (c0 < c1 && c0 < c2) [c, t] = [c0, 0];
      else if (c1 < c0 && c1 < c2) [c, t] = [c1, 1];
      else [c, t] = [c2, 2];
      cost[i * W + j] = x[(i - 1) * M + j - 1] + c;
      trace[i * W + j] = t;
    }
  }
  for (let j = 0; j <= M; j++) trace[j] = 2;
  for (let i = 0; i <= N; i++) trace[i * W] = 1;
  const rows: number[] = [];
  const columns: number[] = [];
  let i = N;
  let j = M;
  while (i > 0 || j > 0) {
    rows.push(i - 1);
    columns.push(j - 1);
    const t = trace[i * W + j];
    if (t === 0) [i, j] = [i - 1, j - 1];
    else if (t === 1) i--;
    else j--;
  }
  return { rows: rows.reverse(), columns: columns.reverse() };
}

/** openai's split_to_word_tokens: words at spaces and punctuation, or at whole characters in languages written without spaces. `tokens` ends with <|endoftext|>. */
export function splitToWordTokens(
  tokens: number[],
  tokenizer: WhisperTokenizer,
  eot: number,
  language: string,
): { words: string[]; tokens: number[][] } {
  // <|endoftext|> decodes to its own name, as tiktoken decodes it
  const decode = (ids: number[]) => tokenizer.decode(ids.filter((t) => t !== eot)) + (ids.includes(eot) ? '<|endoftext|>' : '');
  // split_tokens_on_unicode: a piece ends where its tokens decode to whole characters
  const full = decode(tokens);
  const pieces: string[] = [];
  const pieceTokens: number[][] = [];
  let current: number[] = [];
  let offset = 0;
  for (const t of tokens) {
    current.push(t);
    const decoded = decode(current);
    const bad = decoded.indexOf('\uFFFD');
    if (bad < 0 || full[offset + bad] === '\uFFFD') {
      pieces.push(decoded);
      pieceTokens.push(current);
      current = [];
      offset += decoded.length;
    }
  }
  if (UNSPACED.has(language)) return { words: pieces, tokens: pieceTokens };
  const words: string[] = [];
  const wordTokens: number[][] = [];
  pieces.forEach((piece, k) => {
    const special = pieceTokens[k][0] >= eot;
    const punctuation = PUNCTUATION.includes(piece.trim());
    if (special || piece.startsWith(' ') || punctuation || words.length === 0) {
      words.push(piece);
      wordTokens.push([...pieceTokens[k]]);
    } else {
      words[words.length - 1] += piece;
      wordTokens[wordTokens.length - 1].push(...pieceTokens[k]);
    }
  });
  return { words, tokens: wordTokens };
}

export interface AlignmentInput {
  /** Text tokens of the window (no timestamps, no <|endoftext|>). */
  textTokens: number[];
  /**
   * Cross-attention weights of each alignment head over the whole sequence,
   * [heads][rows × frames] (views of the decoder's output, not copied): rows are the sequence's positions, `sotLength`
   * prompt tokens (<|sot|> <|lang|> <|task|>), then <|notimestamps|>, the text
   * and <|endoftext|>.
   */
  weights: Float32Array[];
  rows: number;
  frames: number;
  sotLength: number;
  /** The window's own frames (20 ms each): the audio's length, at most `frames`. */
  audioFrames: number;
  /** Probability of each text token where it was read (softmax over text tokens only). */
  tokenProbabilities: number[];
  medianFilterWidth: number;
  /**
   * Which rows count. openai/whisper (the default): every row is standardised,
   * and the path runs through the rows that read <|notimestamps|> … the last
   * text token. transformers.js: the row that reads <|endoftext|> is not
   * there, nor, for the path, the one that reads <|notimestamps|> (a token's
   * time is its own row's jump, which is the same row openai reads for the
   * next token's). Only for checking against transformers.js.
   */
  rowConvention?: 'openai' | 'transformers.js';
}

/** openai's find_alignment, from the attention weights on. */
export function findAlignment(input: AlignmentInput, tokenizer: WhisperTokenizer, eot: number, language: string): WordTiming[] {
  const { textTokens, weights, frames, sotLength, tokenProbabilities } = input;
  if (textTokens.length === 0) return [];
  const hf = input.rowConvention === 'transformers.js';
  const rows = hf ? input.rows - 1 : input.rows;
  const F = Math.max(1, Math.min(frames, input.audioFrames));
  const first = hf ? sotLength + 1 : sotLength;
  const N = input.rows - 1 - first; // the rows that read <|notimestamps|> … the last text token
  const matrix = new Float32Array(N * F);
  const h = new Float32Array(rows * F);
  const mean = new Float64Array(F);
  const square = new Float64Array(F);
  const filtered = new Float32Array(F);
  for (const w of weights) {
    // crop to the audio's frames and renormalise each row; sums for each frame's mean and deviation over the rows
    mean.fill(0);
    square.fill(0);
    for (let r = 0; r < rows; r++) {
      const row = w.subarray(r * frames, r * frames + F);
      let sum = 0;
      for (let f = 0; f < F; f++) sum += row[f];
      const out = h.subarray(r * F, (r + 1) * F);
      for (let f = 0; f < F; f++) {
        const v = (out[f] = row[f] / sum);
        mean[f] += v;
        square[f] += v * v;
      }
    }
    for (let f = 0; f < F; f++) {
      mean[f] /= rows;
      square[f] = Math.sqrt(Math.max(0, square[f] / rows - mean[f] * mean[f]));
    }
    // standardise each frame over the rows, median-filter each row the path runs through
    for (let r = first; r < first + N; r++) {
      const row = h.subarray(r * F, (r + 1) * F);
      for (let f = 0; f < F; f++) row[f] = (row[f] - mean[f]) / square[f];
      const median = medianFilter(row, input.medianFilterWidth, filtered);
      const out = matrix.subarray((r - first) * F, (r - first + 1) * F);
      for (let f = 0; f < F; f++) out[f] -= median[f] / weights.length;
    }
  }
  const path = dtw(matrix, N, F);
  const { words, tokens } = splitToWordTokens([...textTokens, eot], tokenizer, eot, language);
  if (tokens.length <= 1) return [];
  const jumpTimes: number[] = [];
  path.rows.forEach((r, k) => {
    if (k === 0 || r !== path.rows[k - 1]) jumpTimes.push(path.columns[k] / FRAMES_PER_SECOND);
  });
  // transformers.js: a token's time is its own row's jump; the first token's row is the path's first
  if (hf) jumpTimes.unshift(0);
  const boundaries = [0];
  for (const t of tokens.slice(0, -1)) boundaries.push(boundaries[boundaries.length - 1] + t.length);
  const timings: WordTiming[] = [];
  for (let k = 0; k + 1 < boundaries.length; k++) {
    const [from, to] = [boundaries[k], boundaries[k + 1]];
    const probabilities = tokenProbabilities.slice(from, to);
    timings.push({
      word: words[k],
      tokens: tokens[k],
      start: jumpTimes[from],
      end: jumpTimes[to],
      probability: probabilities.reduce((a, b) => a + b, 0) / probabilities.length,
    });
  }
  return timings;
}

/** openai's merge_punctuations: opening marks join the word after them, closing marks the word before (their own timings are dropped). */
export function mergePunctuations(alignment: WordTiming[], prepended = PREPENDED, appended = APPENDED): void {
  let i = alignment.length - 2;
  let j = alignment.length - 1;
  while (i >= 0) {
    const [previous, following] = [alignment[i], alignment[j]];
    if (previous.word.startsWith(' ') && prepended.includes(previous.word.trim())) {
      following.word = previous.word + following.word;
      following.tokens = [...previous.tokens, ...following.tokens];
      previous.word = '';
      previous.tokens = [];
    } else j = i;
    i--;
  }
  i = 0;
  j = 1;
  while (j < alignment.length) {
    const [previous, following] = [alignment[i], alignment[j]];
    if (!previous.word.endsWith(' ') && appended.includes(following.word)) {
      previous.word += following.word;
      previous.tokens = [...previous.tokens, ...following.tokens];
      following.word = '';
      following.tokens = [];
    } else i = j;
    j++;
  }
}

export interface PreparedAlignment {
  alignment: WordTiming[];
  /** The median word duration, at most 0.7 s. */
  medianDuration: number;
}

/** The median word duration (at most 0.7 s) and, with it, long words at sentence ends shortened, then punctuation merged: the first half of openai's add_word_timestamps. */
export function prepareAlignment(alignment: WordTiming[]): PreparedAlignment {
  const durations = alignment.map((t) => t.end - t.start).filter((d) => d !== 0);
  const sorted = [...durations].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length === 0 ? 0 : sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const medianDuration = Math.min(0.7, median);
  const maxDuration = medianDuration * 2;
  if (durations.length > 0) {
    for (let i = 1; i < alignment.length; i++) {
      if (alignment[i].end - alignment[i].start > maxDuration) {
        if (SENTENCE_ENDS.includes(alignment[i].word)) alignment[i].end = alignment[i].start + maxDuration;
        else if (SENTENCE_ENDS.includes(alignment[i - 1].word)) alignment[i].start = alignment[i].end - maxDuration;
      }
    }
  }
  mergePunctuations(alignment);
  return { alignment, medianDuration };
}

/** A segment as decoded: its times and how many text tokens it holds. */
export interface SegmentSpan {
  start: number;
  end: number;
  textTokens: number;
}

export interface TimedWords {
  start: number;
  end: number;
  words: Word[];
}

const round2 = (t: number) => Math.round(t * 100) / 100;

/**
 * The second half of openai's add_word_timestamps: the window's words shared
 * out to its segments (by their text token counts), long first words after a
 * pause and over-long edge words cut back, and each segment's start and end
 * moved to its words'. Times are the window's own plus `offset`; no word ends
 * after `duration`. Returns the segments and the last speech time, for the
 * next window.
 */
export function assignWords(
  segments: SegmentSpan[],
  prepared: PreparedAlignment,
  offset: number,
  duration: number,
  lastSpeech: number,
): { segments: TimedWords[]; lastSpeech: number } {
  const { alignment, medianDuration } = prepared;
  const maxDuration = medianDuration * 2;
  const clamp = (t: number) => Math.min(t, offset + duration);
  let index = 0;
  const out: TimedWords[] = [];
  for (const segment of segments) {
    const seg = { start: segment.start, end: segment.end, words: [] as Word[] };
    let saved = 0;
    while (index < alignment.length && saved < segment.textTokens) {
      const t = alignment[index];
      if (t.word)
        seg.words.push({ word: t.word, start: round2(offset + t.start), end: round2(offset + t.end), probability: t.probability });
      saved += t.tokens.length;
      index++;
    }
    const words = seg.words;
    if (words.length > 0) {
      // the first and second word after a pause are no longer than twice the median word
      if (
        words[0].end - lastSpeech > medianDuration * 4 &&
        (words[0].end - words[0].start > maxDuration || (words.length > 1 && words[1].end - words[0].start > maxDuration * 2))
      ) {
        if (words.length > 1 && words[1].end - words[1].start > maxDuration) {
          const boundary = Math.max(words[1].end / 2, words[1].end - maxDuration);
          words[0].end = words[1].start = boundary;
        }
        words[0].start = Math.max(0, words[0].end - maxDuration);
      }
      // the segment's own start when the first word is too long, else the first word's
      if (seg.start < words[0].end && seg.start - 0.5 > words[0].start)
        words[0].start = Math.max(0, Math.min(words[0].end - medianDuration, seg.start));
      else seg.start = words[0].start;
      // and the same at the end
      const last = words[words.length - 1];
      if (seg.end > last.start && seg.end + 0.5 < last.end) last.end = Math.max(last.start + medianDuration, seg.end);
      else seg.end = last.end;
      for (const w of words) [w.start, w.end] = [clamp(w.start), clamp(w.end)];
      seg.end = clamp(seg.end);
      lastSpeech = seg.end;
    }
    out.push(seg);
  }
  return { segments: out, lastSpeech };
}
