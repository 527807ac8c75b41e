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
import type { SelectRow, TokenSelector } from './tokenSelector.ts';

const FIRST_RUN_ROWS = 4;

export interface DecodeRow extends SelectRow {
  /** Position of the request in the caller's list. */
  index: number;
  /** Index of <|startoftranscript|> in `tokens` (after the prompt, when there is one). */
  sotIndex: number;
  temperature: number;
  sumLogprob: number;
  noSpeechProb: number;
  done: boolean;
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
      const out = await this.session.run(this.feeds(Array.from({ length: count }, () => prompt), states, null, null), ['logits']);
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
  async decode(rows: DecodeRow[], encoderStates: Float32Array, onRowDone?: (row: DecodeRow) => void): Promise<void> {
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
    for (let start = 0; start < n; ) {
      let end = start + 1;
      while (end < n && end - start < FIRST_RUN_ROWS && sorted[end].tokens.length === sorted[start].tokens.length) end++;
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
      await this.step(cohorts[0], onRowDone);
      cohorts = merge(cohorts.filter((c) => c.rows.length > 0), batch);
    }
  }

  private feeds(inputs: number[][], encoderStates: Float32Array, decoderCache: Float32Array[] | null, encoderCache: Float32Array[] | null): Record<string, ort.Tensor> {
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
        feeds[`past_key_values.${l}.decoder.${part}`] = new ort.Tensor('float32', dec, [n, heads, dec.length / (n * heads * headDim), headDim]);
        const enc = encoderCache?.[2 * l + p] ?? empty;
        feeds[`past_key_values.${l}.encoder.${part}`] = new ort.Tensor('float32', enc, [n, heads, encoderCache ? frames : 0, headDim]);
      });
    }
    return feeds;
  }

  private async step(c: Cohort, onRowDone?: (row: DecodeRow) => void): Promise<void> {
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
        fetches[`present.${l}.encoder.value`] = new ort.Tensor('float32', c.encoderCache![2 * l + 1], [n, this.heads, this.frames, this.headDim]);
      }
    }
    const out = await this.session.run(this.feeds(inputs, c.encoderStates, c.decoderCache, first ? null : c.encoderCache), fetches as ort.InferenceSession.FetchesType);
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
    const { tokens, logprobs } = await this.selector.select(last, c.rows);
    c.rows.forEach((row, i) => {
      row.sumLogprob += logprobs[i];
      row.tokens.push(tokens[i]);
      if (tokens[i] === ids.eot || row.tokens.length >= rules.maxLength) row.done = true;
    });
    c.decoderCache = Object.keys(fetches).filter((name) => name.includes('.decoder.')).map((name) => out[name].data as Float32Array);
    c.pastLength += seq;

    const keep = c.rows.flatMap((r, i) => (r.done ? [] : [i]));
    if (keep.length < c.rows.length) {
      for (const row of c.rows) if (row.done) onRowDone?.(row);
      c.rows = keep.map((i) => c.rows[i]);
      if (keep.length > 0) {
        c.encoderStates = selectRows(c.encoderStates, n, keep);
        c.decoderCache = c.decoderCache.map((t) => selectRows(t, n, keep));
        c.encoderCache = c.encoderCache!.map((t) => selectRows(t, n, keep));
        c.range = null;
      }
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
