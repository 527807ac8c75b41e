// Batched greedy decoding with the merged decoder's KV cache.
//
// The merged decoder has no attention mask: positions come from the past
// length, so every row in one run must share it. Rows are kept in cohorts of
// equal past length. Prompts differ by at most one token (with or without
// <|notimestamps|>), so the shorter cohort runs alone for a step and then
// joins the longer one. Finished rows leave their cohort at once, so they stop
// costing compute. Cross-attention keys and values are computed in the first
// run (use_cache_branch = false) and passed back in afterwards.
import ort from 'onnxruntime-node';
import { logSumExp, type RowState } from './logitRules.ts';
import type { ModelFolder } from './modelFolder.ts';
import type { TokenSelector } from './tokenSelector.ts';

export interface DecodeRow extends RowState {
  /** Position of the request in the caller's list. */
  index: number;
  sumLogprob: number;
  noSpeechProb: number;
  done: boolean;
}

interface Cohort {
  rows: DecodeRow[];
  pastLength: number;
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

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
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
    const feeds = this.feeds(Array.from({ length: n }, () => prompt), encoderStates, null, null);
    const out = await this.session.run(feeds, ['logits']);
    this.runs++;
    const logits = out.logits.data as Float32Array;
    const seq = prompt.length;
    return Array.from({ length: n }, (_, i) => logits.subarray((i * seq + seq - 1) * this.vocab, (i * seq + seq) * this.vocab));
  }

  /**
   * Decodes every row to end-of-text or the length limit. `encoderStates`
   * holds one [frames, d] block per row, in row order.
   */
  async decode(rows: DecodeRow[], encoderStates: Float32Array, onRowDone?: (row: DecodeRow) => void): Promise<void> {
    const byPrompt = new Map<number, number[]>();
    rows.forEach((row, i) => byPrompt.set(row.tokens.length, [...(byPrompt.get(row.tokens.length) ?? []), i]));
    let cohorts: Cohort[] = [...byPrompt.values()].map((members) => ({
      rows: members.map((i) => rows[i]),
      pastLength: 0,
      encoderStates: selectRows(encoderStates, rows.length, members),
      decoderCache: null,
      encoderCache: null,
    }));
    while (cohorts.length > 0) {
      // Run first what has not started, then the cohort furthest behind.
      cohorts.sort((a, b) => (a.decoderCache ? 1 : 0) - (b.decoderCache ? 1 : 0) || a.pastLength - b.pastLength);
      const cohort = cohorts[0];
      await this.step(cohort, onRowDone);
      cohorts = this.merge(cohorts.filter((c) => c.rows.length > 0));
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
    const fetches = ['logits'];
    for (let l = 0; l < this.layers; l++) {
      fetches.push(`present.${l}.decoder.key`, `present.${l}.decoder.value`);
      if (first) fetches.push(`present.${l}.encoder.key`, `present.${l}.encoder.value`);
    }
    const out = await this.session.run(this.feeds(inputs, c.encoderStates, c.decoderCache, c.encoderCache), fetches);
    this.runs++;
    const logits = out.logits.data as Float32Array;
    const { ids, rules } = this.model;
    const V = this.vocab;
    if (first && ids.noSpeech !== null) {
      c.rows.forEach((row, i) => {
        // openai/whisper: probability of <|nospeech|> at the <|startoftranscript|> position, before any rule.
        const atSot = logits.subarray(i * seq * V, (i * seq + 1) * V);
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
    c.decoderCache = fetches.slice(1).filter((n) => n.includes('.decoder.')).map((n) => out[n].data as Float32Array);
    if (first) c.encoderCache = fetches.filter((n) => n.includes('.encoder.')).map((n) => out[n].data as Float32Array);
    c.pastLength += seq;

    const keep = c.rows.flatMap((r, i) => (r.done ? [] : [i]));
    if (keep.length < c.rows.length) {
      for (const row of c.rows) if (row.done) onRowDone?.(row);
      const n = c.rows.length;
      c.rows = keep.map((i) => c.rows[i]);
      if (keep.length > 0) {
        c.encoderStates = selectRows(c.encoderStates, n, keep);
        c.decoderCache = c.decoderCache.map((t) => selectRows(t, n, keep));
        c.encoderCache = c.encoderCache!.map((t) => selectRows(t, n, keep));
      }
    }
  }

  /** Joins started cohorts that have reached the same past length. */
  private merge(cohorts: Cohort[]): Cohort[] {
    const merged: Cohort[] = [];
    for (const c of cohorts) {
      const into = c.decoderCache && merged.find((m) => m.decoderCache && m.pastLength === c.pastLength);
      if (!into) {
        merged.push(c);
        continue;
      }
      into.rows = [...into.rows, ...c.rows];
      into.encoderStates = concat(into.encoderStates, c.encoderStates);
      into.decoderCache = into.decoderCache!.map((t, i) => concat(t, c.decoderCache![i]));
      into.encoderCache = into.encoderCache!.map((t, i) => concat(t, c.encoderCache![i]));
    }
    return merged;
  }
}
