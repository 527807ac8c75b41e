// Batched greedy decoding with the merged decoder's KV cache.
//
// The merged decoder has no attention mask: positions come from the past
// length, so every row in one run must share it. Rows are kept in cohorts of
// equal past length. Prompts of different lengths (with or without
// <|notimestamps|>, with earlier text after <|startofprev|>) start as separate
// cohorts; the shorter runs alone until it reaches the longer's length and
// then joins it. Finished rows leave their cohort at once, so they stop
// costing compute. Cross-attention keys and values are computed in the first
// run (use_cache_branch = false) and passed back in afterwards.
//
// Those keys and values are most of the memory (18 MB a row for whisper-tiny).
// Rows are ordered by prompt length so that every cohort is a contiguous range
// of one batch-wide buffer: the first runs write into it (pre-allocated
// outputs) and cohorts that join are views of it, not copies. Copying them
// cost 1.5 s of a 15 s batch of 16. Only rows leaving a cohort compact it.
import ort from 'onnxruntime-node';
import { logSumExp } from './logitRules.ts';
import type { ModelFolder } from './modelFolder.ts';
import type { Selection, SelectRow, TokenSelector } from './tokenSelector.ts';

const FIRST_RUN_ROWS = 4;

/**
 * The beams of one segment, as openai/whisper's BeamSearchDecoder keeps them:
 * `size` rows decode side by side; each step their likeliest continuations
 * (size + 1 from each) are ranked by summed log-probability, the best `size`
 * that do not end go on, and those that end are kept as candidates until
 * `maxCandidates` (size × patience) are in. The candidate with the best
 * length-penalised score is the result.
 */
export interface BeamGroup {
  size: number;
  maxCandidates: number;
  /** null: divide by the length; else ((5 + length) / 6) ^ lengthPenalty (Wu et al.). */
  lengthPenalty: number | null;
  finished: Candidate[];
}

/** A finished beam: its tokens, their summed log-probability and, when the segment times words, each sampled token's text-only probability. */
interface Candidate {
  tokens: number[];
  sumLogprob: number;
  textProbabilities?: number[];
}

export function beamGroup(size: number, patience = 1, lengthPenalty: number | null = null): BeamGroup {
  return { size, maxCandidates: Math.round(size * patience), lengthPenalty, finished: [] };
}

export interface DecodeRow extends SelectRow {
  /** Position of the request in the caller's list. */
  index: number;
  /** Index of <|startoftranscript|> in `tokens` (after the prompt, when there is one). */
  sotIndex: number;
  temperature: number;
  sumLogprob: number;
  noSpeechProb: number;
  done: boolean;
  /** Present on each of a segment's beam rows (one object for all of them); the segment is reported done once, with its best candidate. */
  beam?: BeamGroup;
}

/** Every row's cross-attention keys and values after a decode() call: 2 per layer, [rows, heads, frames, headDim]. */
export interface CrossCache {
  caches: Float32Array[];
  rows: number;
  /** The row holding a request's keys and values (its first beam's), by the request's `index`. */
  rowOf: Map<number, number>;
}

/** The batch-wide buffers of one decode() call, and one row's size in each. */
interface BatchBuffers {
  caches: Float32Array[];
  states: Float32Array;
  stateSize: number;
  cacheSize: number;
}

interface Cohort {
  rows: DecodeRow[];
  pastLength: number;
  /** Row range [start, end) in the batch-wide buffers while the cohort's caches are views of them. */
  range: [number, number] | null;
  /** [n, frames, d] */
  encoderStates: Float32Array;
  /** 2 per layer (key, value): [n, heads, past, headDim]; null before the first run. */
  decoderCache: Float32Array[] | null;
  /** 2 per layer: [n, heads, frames, headDim] */
  encoderCache: Float32Array[] | null;
}

/** Keeps the given rows of a row-major tensor whose first axis is the batch. */
export function selectRows(data: Float32Array, rows: number, keep: number[]): Float32Array {
  const size = data.length / rows;
  const out = new Float32Array(keep.length * size);
  keep.forEach((r, i) => out.set(data.subarray(r * size, (r + 1) * size), i * size));
  return out;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export class BatchDecoder {
  private readonly layers: number;
  private readonly heads: number;
  private readonly headDim: number;
  private readonly frames: number;
  private readonly vocab: number;
  /** Decoder runs made, for tests and benchmarks. */
  runs = 0;

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly selector: TokenSelector,
    private readonly model: ModelFolder,
  ) {
    this.layers = model.dims.decoderLayers;
    this.heads = model.dims.decoderHeads;
    this.headDim = model.dims.headDim;
    this.frames = model.dims.audioContext;
    this.vocab = model.dims.vocabSize;
  }

  /**
   * Logits at the last position of `prompt` for each row, one run with no
   * cache (language detection runs the decoder on <|startoftranscript|> alone).
   */
  async firstLogits(prompt: number[], encoderStates: Float32Array, n: number): Promise<Float32Array[]> {
    const result: Float32Array[] = [];
    const rowSize = encoderStates.length / n;
    const seq = prompt.length;
    for (let from = 0; from < n; from += FIRST_RUN_ROWS) {
      const count = Math.min(FIRST_RUN_ROWS, n - from);
      const states = encoderStates.subarray(from * rowSize, (from + count) * rowSize);
      const out = await this.session.run(
        this.feeds(
          Array.from({ length: count }, () => prompt),
          states,
          null,
          null,
        ),
        ['logits'],
      );
      this.runs++;
      const logits = out.logits.data as Float32Array;
      for (let i = 0; i < count; i++) result.push(logits.subarray((i * seq + seq - 1) * this.vocab, (i * seq + seq) * this.vocab));
    }
    return result;
  }

  /**
   * Decodes every row to end-of-text or the length limit. `encoderStates`
   * holds one [frames, d] block per row, in row order.
   */
  async decode(
    rows: DecodeRow[],
    encoderStates: Float32Array,
    onRowDone?: (row: DecodeRow) => void,
    /** Rows whose work nobody wants any more (their job was cancelled): they leave at the next step, unreported. */
    abandoned?: (row: DecodeRow) => boolean,
  ): Promise<CrossCache> {
    const n = rows.length;
    const order = rows.map((_, i) => i).sort((a, b) => rows[a].tokens.length - rows[b].tokens.length || a - b);
    const sorted = order.map((i) => rows[i]);
    const states = order.every((r, i) => r === i) ? encoderStates : selectRows(encoderStates, n, order);
    const stateSize = states.length / n;
    const cacheSize = this.heads * this.frames * this.headDim;
    const shared = Array.from({ length: 2 * this.layers }, () => new Float32Array(n * cacheSize));
    // The first run (cross-attention keys and values for every row) goes in chunks of rows
    // with the same prompt: whisper-tiny, 16 rows: 1717 ms in one run, 894 ms in four runs of 4.
    let cohorts: Cohort[] = [];
    for (let start = 0; start < n;) {
      let end = start + 1;
      const sameGroup = (i: number) => sorted[i].beam !== undefined && sorted[i].beam === sorted[i - 1].beam;
      while (end < n && sorted[end].tokens.length === sorted[start].tokens.length && (end - start < FIRST_RUN_ROWS || sameGroup(end)))
        end++;
      while (end < n && sameGroup(end)) end++; // a segment's beams stay in one cohort
      cohorts.push({
        rows: sorted.slice(start, end),
        pastLength: 0,
        range: [start, end],
        encoderStates: states.subarray(start * stateSize, end * stateSize),
        decoderCache: null,
        encoderCache: shared.map((t) => t.subarray(start * cacheSize, end * cacheSize)),
      });
      start = end;
    }
    const batch: BatchBuffers = { caches: shared, states, stateSize, cacheSize };
    while (cohorts.length > 0) {
      // Run first what has not started, then the cohort furthest behind.
      cohorts.sort((a, b) => (a.decoderCache ? 1 : 0) - (b.decoderCache ? 1 : 0) || a.pastLength - b.pastLength);
      await this.step(cohorts[0], onRowDone, abandoned);
      cohorts = merge(
        cohorts.filter((c) => c.rows.length > 0),
        batch,
      );
    }
    // The first runs wrote every row's cross-attention keys and values here, and nothing wrote over them since.
    const rowOf = new Map<number, number>();
    sorted.forEach((row, k) => rowOf.has(row.index) || rowOf.set(row.index, k));
    return { caches: shared, rows: n, rowOf };
  }

  /**
   * Whole sequences through a decoder, one a run, for word timings: `onRow`
   * gets each sequence's cross-attention weights of the given layers
   * ([heads, length, frames] each). `session` is the alignment graph cut from
   * the merged decoder (see alignmentGraph.ts), or the merged decoder itself.
   * One a run was the fastest (whisper-tiny-sized, 16 windows of ~105 tokens,
   * merged decoder: 2.4 s one at a time, 2.8 s two, 3.9 s four, 4.1 s
   * eight), and the next run goes on onnxruntime's threads while this one's
   * are worked through here. The cross-attention keys and values are
   * decoding's (`cross`, row `crossRows[i]` for sequence i), read in place:
   * computing them again cost more than the rest of the run.
   */
  async readAlong(
    session: ort.InferenceSession,
    sequences: number[][],
    encoderStates: Float32Array[],
    cross: CrossCache,
    crossRows: number[],
    layers: number[],
    onRow: (i: number, attentions: Float32Array[]) => Promise<void> | void,
  ): Promise<void> {
    const noPast = Array.from({ length: 2 * this.layers }, () => new Float32Array(0));
    const fetches = layers.map((l) => `cross_attentions.${l}`);
    const size = cross.caches[0].length / cross.rows;
    const run = (i: number) => {
      const caches = cross.caches.map((t) => t.subarray(crossRows[i] * size, (crossRows[i] + 1) * size));
      const feeds = this.feeds([sequences[i]], encoderStates[i], noPast, caches);
      this.runs++;
      return session.run(Object.fromEntries(session.inputNames.map((name) => [name, feeds[name]])), fetches);
    };
    let next = run(0);
    for (let i = 0; i < sequences.length; i++) {
      const out = await next;
      if (i + 1 < sequences.length) next = run(i + 1);
      await onRow(
        i,
        fetches.map((name) => out[name].data as Float32Array),
      );
    }
  }

  private feeds(
    inputs: number[][],
    encoderStates: Float32Array,
    decoderCache: Float32Array[] | null,
    encoderCache: Float32Array[] | null,
  ): Record<string, ort.Tensor> {
    const n = inputs.length;
    const seq = inputs[0].length;
    const { heads, headDim, frames } = this;
    const d = this.model.dims.dModel;
    const ids = new BigInt64Array(n * seq);
    inputs.forEach((tokens, i) => tokens.forEach((t, j) => (ids[i * seq + j] = BigInt(t))));
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [n, seq]),
      encoder_hidden_states: new ort.Tensor('float32', encoderStates, [n, encoderStates.length / n / d, d]),
      use_cache_branch: new ort.Tensor('bool', Uint8Array.of(decoderCache ? 1 : 0), [1]),
    };
    const empty = new Float32Array(0);
    for (let l = 0; l < this.layers; l++) {
      ['key', 'value'].forEach((part, p) => {
        const dec = decoderCache?.[2 * l + p] ?? empty;
        feeds[`past_key_values.${l}.decoder.${part}`] = new ort.Tensor('float32', dec, [
          n,
          heads,
          dec.length / (n * heads * headDim),
          headDim,
        ]);
        const enc = encoderCache?.[2 * l + p] ?? empty;
        feeds[`past_key_values.${l}.encoder.${part}`] = new ort.Tensor('float32', enc, [n, heads, encoderCache ? frames : 0, headDim]);
      });
    }
    return feeds;
  }

  private async step(c: Cohort, onRowDone?: (row: DecodeRow) => void, abandoned?: (row: DecodeRow) => boolean): Promise<void> {
    const first = c.decoderCache === null;
    const inputs = c.rows.map((r) => (first ? r.tokens : [r.tokens[r.tokens.length - 1]]));
    const seq = inputs[0].length;
    const n = c.rows.length;
    const fetches: Record<string, ort.Tensor | null> = { logits: null };
    for (let l = 0; l < this.layers; l++) {
      fetches[`present.${l}.decoder.key`] = null;
      fetches[`present.${l}.decoder.value`] = null;
      if (first) {
        // written in place, into this cohort's rows of the batch-wide buffers
        fetches[`present.${l}.encoder.key`] = new ort.Tensor('float32', c.encoderCache![2 * l], [n, this.heads, this.frames, this.headDim]);
        fetches[`present.${l}.encoder.value`] = new ort.Tensor('float32', c.encoderCache![2 * l + 1], [
          n,
          this.heads,
          this.frames,
          this.headDim,
        ]);
      }
    }
    const out = await this.session.run(
      this.feeds(inputs, c.encoderStates, c.decoderCache, first ? null : c.encoderCache),
      fetches as ort.InferenceSession.FetchesType,
    );
    this.runs++;
    const logits = out.logits.data as Float32Array;
    const { ids, rules } = this.model;
    const V = this.vocab;
    if (first && ids.noSpeech !== null) {
      c.rows.forEach((row, i) => {
        // openai/whisper: probability of <|nospeech|> at the <|startoftranscript|> position, before any rule.
        const atSot = logits.subarray((i * seq + row.sotIndex) * V, (i * seq + row.sotIndex + 1) * V);
        row.noSpeechProb = Math.exp(atSot[ids.noSpeech!] - logSumExp(atSot, 0, V));
      });
    }
    let last = logits;
    if (seq > 1) {
      last = new Float32Array(c.rows.length * V);
      c.rows.forEach((_, i) => last.set(logits.subarray((i * seq + seq - 1) * V, (i * seq + seq) * V), i * V));
    }
    const k = Math.max(1, ...c.rows.map((r) => (r.beam ? r.beam.size + 1 : 1)));
    const selection = await this.selector.select(last, c.rows, k);
    c.decoderCache = Object.keys(fetches)
      .filter((name) => name.includes('.decoder.'))
      .map((name) => out[name].data as Float32Array);
    c.pastLength += seq;

    // What goes on in each slot (row position) of the cohort, and the row whose past it continues (beams swap pasts).
    const bySlot: ({ row: DecodeRow; source: number } | undefined)[] = new Array(n);
    const finished: DecodeRow[] = [];
    const stepped = new Set<BeamGroup>();
    for (let i = 0; i < n; i++) {
      const row = c.rows[i];
      if (abandoned?.(row)) {
        row.done = true;
        continue;
      }
      if (!row.beam) {
        row.sumLogprob += selection.logprobs[i];
        row.tokens.push(selection.tokens[i]);
        row.textProbabilities?.push(selection.textProbabilities[i]);
        if (selection.tokens[i] === ids.eot || row.tokens.length >= rules.maxLength) {
          row.done = true;
          finished.push(row);
        } else bySlot[i] = { row, source: i };
      } else if (!stepped.has(row.beam)) {
        stepped.add(row.beam);
        const members = c.rows.flatMap((r, j) => (r.beam === row.beam ? [j] : []));
        const beams = advanceBeams(
          row.beam,
          members.map((j) => c.rows[j]),
          members,
          selection,
          k,
          ids.eot,
          rules.maxLength,
        );
        if (beams.length === 0) finished.push(bestCandidate(row));
        beams.forEach((b, m) => (bySlot[members[m]] = b));
      }
    }
    const slots = bySlot.flatMap((b, i) => (b ? [i] : []));
    const sources = slots.map((i) => bySlot[i]!.source);
    for (const row of finished) onRowDone?.(row);
    if (slots.length === 0) {
      c.rows = [];
      return;
    }
    c.rows = slots.map((i) => bySlot[i]!.row);
    if (sources.some((src, j) => src !== slots[j])) c.decoderCache = c.decoderCache.map((t) => selectRows(t, n, sources));
    else if (slots.length < n) c.decoderCache = c.decoderCache.map((t) => selectRows(t, n, slots));
    // A segment's beams share its audio: encoder states and caches only drop the rows that left.
    if (slots.length < n) {
      c.encoderStates = selectRows(c.encoderStates, n, slots);
      c.encoderCache = c.encoderCache!.map((t) => selectRows(t, n, slots));
      c.range = null;
    }
  }
}

/** Joins started cohorts that have reached the same past length: as views when their rows are adjacent in the batch-wide buffers, else in one copy. */
function merge(cohorts: Cohort[], batch: BatchBuffers): Cohort[] {
  const groups = new Map<number, Cohort[]>();
  const merged: Cohort[] = [];
  for (const c of cohorts) {
    if (!c.decoderCache) merged.push(c);
    else groups.set(c.pastLength, [...(groups.get(c.pastLength) ?? []), c]);
  }
  for (const group of groups.values()) {
    if (group.length === 1) {
      merged.push(group[0]);
      continue;
    }
    group.sort((a, b) => (a.range?.[0] ?? 0) - (b.range?.[0] ?? 0));
    const adjacent = group.every((c, i) => c.range && (i === 0 || group[i - 1].range![1] === c.range[0]));
    const decoderCache = group[0].decoderCache!.map((_, i) => concat(group.map((c) => c.decoderCache![i])));
    const base = { rows: group.flatMap((c) => c.rows), pastLength: group[0].pastLength, decoderCache };
    if (adjacent) {
      const [start, end] = [group[0].range![0], group[group.length - 1].range![1]];
      const { caches, states, stateSize, cacheSize } = batch;
      merged.push({
        ...base,
        range: [start, end],
        encoderStates: states.subarray(start * stateSize, end * stateSize),
        encoderCache: caches.map((t) => t.subarray(start * cacheSize, end * cacheSize)),
      });
    } else {
      merged.push({
        ...base,
        range: null,
        encoderStates: concat(group.map((c) => c.encoderStates)),
        encoderCache: group[0].encoderCache!.map((_, i) => concat(group.map((c) => c.encoderCache![i]))),
      });
    }
  }
  return merged;
}

/**
 * One step of one segment's beam search (openai/whisper's BeamSearchDecoder.update):
 * the next beams, each with the row whose past it continues, or none when the
 * segment is done (enough candidates, or the length limit).
 */
export function advanceBeams(
  group: BeamGroup,
  rows: DecodeRow[],
  indices: number[],
  selection: Selection,
  k: number,
  eot: number,
  maxLength: number,
): { row: DecodeRow; source: number }[] {
  // Keyed by the whole sequence: beams that are still alike (the first step) give each continuation once.
  const scores = new Map<string, { source: number; prefix: DecodeRow; token: number; score: number; textProbability: number }>();
  rows.forEach((row, m) => {
    const prefix = row.tokens.join(',');
    for (let t = 0; t < group.size + 1; t++) {
      const at = indices[m] * k + t;
      const logprob = selection.topLogprobs[at];
      if (logprob === -Infinity) break; // fewer tokens allowed than candidates asked for
      const token = selection.topTokens[at];
      scores.set(`${prefix},${token}`, {
        source: indices[m],
        prefix: row,
        token,
        score: row.sumLogprob + logprob,
        textProbability: selection.topTextProbabilities[at],
      });
    }
  });
  const next: { row: DecodeRow; source: number }[] = [];
  const ended: Candidate[] = [];
  for (const c of [...scores.values()].sort((a, b) => b.score - a.score)) {
    const textProbabilities = c.prefix.textProbabilities && [...c.prefix.textProbabilities, c.textProbability];
    if (c.token === eot) ended.push({ tokens: [...c.prefix.tokens, eot], sumLogprob: c.score, textProbabilities });
    else {
      next.push({ row: { ...c.prefix, tokens: [...c.prefix.tokens, c.token], sumLogprob: c.score, textProbabilities }, source: c.source });
      if (next.length === group.size) break;
    }
  }
  for (const e of ended) {
    if (group.finished.length >= group.maxCandidates) break;
    group.finished.push(e);
  }
  const atLimit = next.length === 0 || next[0].row.tokens.length >= maxLength;
  // A beam cut off, closed with <|endoftext|> as openai/whisper's finalize closes it (no probability was read for that token).
  const closed = (row: DecodeRow): Candidate => ({
    tokens: [...row.tokens, eot],
    sumLogprob: row.sumLogprob,
    textProbabilities: row.textProbabilities && [...row.textProbabilities, NaN],
  });
  if (atLimit && group.finished.length === 0 && next.length === 0) group.finished.push(closed(rows[0]));
  if (group.finished.length < group.maxCandidates && !atLimit) return next;
  if (atLimit) {
    // openai/whisper's finalize: unfinished beams, likeliest first, fill the candidates up to the beam size.
    for (const b of next) {
      if (group.finished.length >= group.size) break;
      group.finished.push(closed(b.row));
    }
  }
  return [];
}

/** openai/whisper's MaximumLikelihoodRanker: the best summed log-probability over a length penalty. */
export function bestCandidate(row: DecodeRow): DecodeRow {
  const group = row.beam!;
  const score = (c: Candidate) => {
    const length = c.tokens.length - row.sampleBegin - 1; // sampled tokens without <|endoftext|>
    return c.sumLogprob / (group.lengthPenalty === null ? length : ((5 + length) / 6) ** group.lengthPenalty);
  };
  let best = group.finished[0];
  for (const c of group.finished) if (score(c) > score(best)) best = c;
  return { ...row, tokens: best.tokens, sumLogprob: best.sumLogprob, textProbabilities: best.textProbabilities, done: true };
}
