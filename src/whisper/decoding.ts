// Continuous batched decoding with the merged decoder's KV cache.
//
// The decoder keeps a running set of rows. Rows are added whenever the caller
// has work and free rows (add()), and each step() is one decoder run; a row
// leaves at once when it ends, so the batch stays full and a short window
// never waits for a long one.
//
// The merged decoder has no attention mask: positions come from the past
// length, so every row in one run must share it. Rows are kept in cohorts of
// equal past length. New rows (and prompts of different lengths: with or
// without <|notimestamps|>, with earlier text after <|startofprev|>) start as
// cohorts of their own; each step runs the cohort furthest behind, so a
// cohort that joined late runs alone until it reaches the one ahead and then
// merges with it, and from then on they share every run. The other ways to
// let rows of different lengths share a run were weighed and not taken:
// padding the shorter past changes what the rows attend to (different
// tokens), and an attention mask needs a decoder export that the ONNX exports
// of Whisper do not have. Catching up costs no extra row-steps, only runs
// with fewer rows until the merge; running every cohort each step instead
// (round robin) would never merge two cohorts that advance together.
//
// Memory: cross-attention keys and values are most of it (18 MB a row for
// whisper-tiny, written by a cohort's first run into its own buffers, never
// computed again). A cohort owns buffers with room for more rows than it
// holds: a cohort that catches up is copied into the spare room of the one it
// joins (only the joining rows move), and a row that leaves is filled by the
// cohort's last row (one row moves), so no step copies a whole batch. (An
// earlier static batcher that compacted every cohort whenever a row left
// spent 1.5 s of a 15 s batch of 16 copying.)
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

/** What becomes of the rows of a step: each row that ends, with views of its cross-attention keys and values (valid until the call returns), and each row given up. */
export interface StepHandlers {
  onRowDone?: (row: DecodeRow, cross: Float32Array[]) => void;
  /** Rows whose work nobody wants any more (their job was cancelled): they leave at the next step, unreported. */
  abandoned?: (row: DecodeRow) => boolean;
  /** A row that left without a result (abandoned). */
  onRowDropped?: (row: DecodeRow) => void;
}

interface Cohort {
  rows: DecodeRow[];
  pastLength: number;
  /** Rows the buffers hold room for (≥ rows.length): rows [0, rows.length) are in use. */
  capacity: number;
  /** [capacity, frames, d] */
  encoderStates: Float32Array;
  /** 2 per layer (key, value): [n, heads, past, headDim]; null before the first run. */
  decoderCache: Float32Array[] | null;
  /** 2 per layer: [capacity, heads, frames, headDim] */
  encoderCache: Float32Array[];
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
  private readonly stateSize: number;
  private readonly cacheSize: number;
  private cohorts: Cohort[] = [];
  /** Decoder runs made, for tests and benchmarks. */
  runs = 0;
  /** Decoding runs (step()) and the rows they stepped: rowSteps / steps is how full the batch was. */
  steps = 0;
  rowSteps = 0;
  /** Rows moved within a cohort's buffers into a slot a row left, and rows copied into another cohort's when cohorts merged. */
  rowsMoved = 0;
  rowsMerged = 0;
  /** Rows a cohort's buffers are made for when it grows (the caller's batch size). */
  capacity = 16;

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
    this.stateSize = model.dims.audioContext * model.dims.dModel;
    this.cacheSize = this.heads * this.frames * this.headDim;
  }

  /** Rows decoding now (each beam is a row). */
  get activeRows(): number {
    return this.cohorts.reduce((n, c) => n + c.rows.length, 0);
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
   * Rows that join the running set, each with its encoder output
   * (`encoderStates[i]`, [frames, d], copied). They start as cohorts of their own (of up to
   * four rows with the same prompt length: whisper-tiny, 16 rows: 1717 ms in
   * one first run, 894 ms in four runs of 4), which run first at the next
   * steps. A segment's beams stay in one cohort.
   */
  add(rows: DecodeRow[], encoderStates: Float32Array[]): void {
    const n = rows.length;
    const order = rows.map((_, i) => i).sort((a, b) => rows[a].tokens.length - rows[b].tokens.length || a - b);
    const sorted = order.map((i) => rows[i]);
    const sameGroup = (i: number) => sorted[i].beam !== undefined && sorted[i].beam === sorted[i - 1].beam;
    const { stateSize, cacheSize } = this;
    for (let start = 0; start < n;) {
      let end = start + 1;
      while (end < n && sorted[end].tokens.length === sorted[start].tokens.length && (end - start < FIRST_RUN_ROWS || sameGroup(end)))
        end++;
      while (end < n && sameGroup(end)) end++;
      const size = end - start;
      const states = new Float32Array(size * stateSize);
      for (let k = 0; k < size; k++) states.set(encoderStates[order[start + k]], k * stateSize);
      this.cohorts.push({
        rows: sorted.slice(start, end),
        pastLength: 0,
        capacity: size,
        encoderStates: states,
        decoderCache: null,
        encoderCache: Array.from({ length: 2 * this.layers }, () => new Float32Array(size * cacheSize)),
      });
      start = end;
    }
  }

  /**
   * One decoder run: a cohort that has not started, else the one furthest
   * behind; then cohorts that have come to the same past length merge. A run
   * that fails throws a CohortError with its rows, which have left; the rest
   * go on.
   */
  async step(handlers: StepHandlers = {}): Promise<void> {
    if (this.cohorts.length === 0) return;
    this.cohorts.sort((a, b) => (a.decoderCache ? 1 : 0) - (b.decoderCache ? 1 : 0) || a.pastLength - b.pastLength);
    const cohort = this.cohorts[0];
    try {
      await this.run(cohort, handlers);
    } catch (err) {
      this.cohorts = this.cohorts.filter((c) => c !== cohort);
      throw new CohortError(err, cohort.rows);
    }
    this.cohorts = this.merge(this.cohorts.filter((c) => c.rows.length > 0));
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
   * decoding's (`cross[i]` for sequence i, kept when its row ended):
   * computing them again cost more than the rest of the run.
   */
  async readAlong(
    session: ort.InferenceSession,
    sequences: number[][],
    encoderStates: Float32Array[],
    cross: Float32Array[][],
    layers: number[],
    onRow: (i: number, attentions: Float32Array[]) => Promise<void> | void,
  ): Promise<void> {
    const noPast = Array.from({ length: 2 * this.layers }, () => new Float32Array(0));
    const fetches = layers.map((l) => `cross_attentions.${l}`);
    const run = (i: number) => {
      const feeds = this.feeds([sequences[i]], encoderStates[i], noPast, cross[i]);
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

  private async run(c: Cohort, { onRowDone, abandoned, onRowDropped }: StepHandlers): Promise<void> {
    const first = c.decoderCache === null;
    const inputs = c.rows.map((r) => (first ? r.tokens : [r.tokens[r.tokens.length - 1]]));
    const seq = inputs[0].length;
    const n = c.rows.length;
    const { cacheSize, stateSize } = this;
    const encoderCache = c.encoderCache.map((t) => t.subarray(0, n * cacheSize));
    const fetches: Record<string, ort.Tensor | null> = { logits: null };
    for (let l = 0; l < this.layers; l++) {
      fetches[`present.${l}.decoder.key`] = null;
      fetches[`present.${l}.decoder.value`] = null;
      // the first run writes the cross-attention keys and values in place, into the cohort's own buffers
      if (first)
        for (const [p, part] of ['key', 'value'].entries())
          fetches[`present.${l}.encoder.${part}`] = new ort.Tensor('float32', encoderCache[2 * l + p], [
            n,
            this.heads,
            this.frames,
            this.headDim,
          ]);
    }
    const out = await this.session.run(
      this.feeds(inputs, c.encoderStates.subarray(0, n * stateSize), c.decoderCache, first ? null : encoderCache),
      fetches as ort.InferenceSession.FetchesType,
    );
    this.runs++;
    this.steps++;
    this.rowSteps += n;
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
    const decoderCache = Object.keys(fetches)
      .filter((name) => name.includes('.decoder.'))
      .map((name) => out[name].data as Float32Array);
    c.pastLength += seq;

    // What goes on in each slot (row position) of the cohort, and the row whose past it continues (beams swap pasts).
    const bySlot: ({ row: DecodeRow; source: number } | undefined)[] = new Array(n);
    const finished: { row: DecodeRow; slot: number }[] = [];
    const stepped = new Set<BeamGroup>();
    for (let i = 0; i < n; i++) {
      const row = c.rows[i];
      if (row.beam && stepped.has(row.beam)) continue;
      if (row.beam) stepped.add(row.beam);
      if (abandoned?.(row)) {
        row.done = true;
        onRowDropped?.(row); // once for a segment's beams
        continue;
      }
      if (!row.beam) {
        row.sumLogprob += selection.logprobs[i];
        row.tokens.push(selection.tokens[i]);
        row.textProbabilities?.push(selection.textProbabilities[i]);
        if (selection.tokens[i] === ids.eot || row.tokens.length >= rules.maxLength) {
          row.done = true;
          finished.push({ row, slot: i });
        } else bySlot[i] = { row, source: i };
      } else {
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
        if (beams.length === 0) finished.push({ row: bestCandidate(row), slot: i });
        beams.forEach((b, m) => (bySlot[members[m]] = b));
      }
    }
    // Before any row moves: a finished row's cross-attention keys and values are still in its slot.
    for (const { row, slot } of finished)
      onRowDone?.(
        row,
        c.encoderCache.map((t) => t.subarray(slot * cacheSize, (slot + 1) * cacheSize)),
      );
    const kept = bySlot.flatMap((b, i) => (b ? [i] : []));
    if (kept.length === 0) {
      c.rows = [];
      return;
    }
    // The rows that stay fill slots [0, kept): an empty one takes a row from beyond, so one row moves per row that left.
    const movers = kept.filter((i) => i >= kept.length);
    const order = Array.from({ length: kept.length }, (_, p) => {
      if (bySlot[p]) return p;
      const from = movers.shift()!;
      this.rowsMoved++;
      for (const t of c.encoderCache) t.copyWithin(p * cacheSize, from * cacheSize, (from + 1) * cacheSize);
      c.encoderStates.copyWithin(p * stateSize, from * stateSize, (from + 1) * stateSize);
      return from;
    });
    c.rows = order.map((i) => bySlot[i]!.row);
    const sources = order.map((i) => bySlot[i]!.source);
    c.decoderCache =
      sources.every((src, j) => src === j) && kept.length === n ? decoderCache : decoderCache.map((t) => selectRows(t, n, sources));
  }

  /** Joins started cohorts that have reached the same past length: the smaller are copied into the room of the largest. */
  private merge(cohorts: Cohort[]): Cohort[] {
    const groups = new Map<number, Cohort[]>();
    const merged: Cohort[] = [];
    for (const c of cohorts) {
      if (!c.decoderCache) merged.push(c);
      else groups.set(c.pastLength, [...(groups.get(c.pastLength) ?? []), c]);
    }
    const { cacheSize, stateSize } = this;
    for (const group of groups.values()) {
      group.sort((a, b) => b.rows.length - a.rows.length);
      const [into, ...rest] = group;
      const total = group.reduce((n, c) => n + c.rows.length, 0);
      if (into.capacity < total) {
        // Room for a whole batch, so that later joiners copy only themselves.
        const capacity = Math.max(total, this.capacity);
        const n = into.rows.length;
        const grow = (t: Float32Array, size: number) => {
          const bigger = new Float32Array(capacity * size);
          bigger.set(t.subarray(0, n * size));
          return bigger;
        };
        into.encoderCache = into.encoderCache.map((t) => grow(t, cacheSize));
        into.encoderStates = grow(into.encoderStates, stateSize);
        into.capacity = capacity;
      }
      for (const c of rest) {
        const at = into.rows.length;
        const n = c.rows.length;
        into.encoderCache.forEach((t, i) => t.set(c.encoderCache[i].subarray(0, n * cacheSize), at * cacheSize));
        into.encoderStates.set(c.encoderStates.subarray(0, n * stateSize), at * stateSize);
        into.decoderCache = into.decoderCache!.map((t, i) => concat([t, c.decoderCache![i]]));
        into.rows = [...into.rows, ...c.rows];
        this.rowsMerged += n;
      }
      merged.push(into);
    }
    return merged;
  }
}

/** A decoder run that failed, with the rows it held: they have left the running set. */
export class CohortError extends Error {
  constructor(
    readonly reason: unknown,
    readonly rows: DecodeRow[],
  ) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
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
