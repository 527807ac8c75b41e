// Token selection for a batch of rows in one small onnxruntime graph:
// logits + rule mask → (openai's "timestamps together beat the best text
// token" rule) → argmax and its log-probability. In JavaScript the
// log-sum-exp over a 51 865-token vocabulary cost 1.5 ms per row and step
// (25 ms of an 80 ms step at batch 16 for whisper-tiny).
//
// Rows at a temperature above 0 sample instead, by the Gumbel-max trick:
// argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T). The
// noise comes from each row's own seeded generator, so a seed replays the same
// tokens whatever else shares the batch. Greedy rows get scale 1 and no noise:
// their argmax is unchanged. The log-probability is of the unscaled
// distribution, as openai/whisper sums it.
//
// Rows that time words also get each token's probability among the text
// tokens alone, from the raw logits (openai/whisper's word probabilities:
// softmax over logits[:, :eot]), for the sampled token and for beam search's
// candidates. Only those rows pay for it.
import ort from 'onnxruntime-node';
import { DataType, encodeModel, Graph } from './onnxGraph.ts';
import { maskRow, type RowState } from './logitRules.ts';
import type { Rng } from './rng.ts';
import type { GenerationRules, TokenIds } from './modelFolder.ts';

function selectionGraph(vocab: number, timestampBegin: number, eot: number): Graph {
  const g = new Graph('select');
  g.input('logits', DataType.float, ['rows', vocab]);
  g.input('mask', DataType.float, ['rows', vocab]);
  g.input('timestamp_rule', DataType.bool, ['rows', 1]);
  g.input('inverse_temperature', DataType.float, ['rows', 1]);
  g.input('noise', DataType.float, ['noise_rows', vocab]);
  g.input('k', DataType.int64, [1]);
  g.input('word_rows', DataType.int64, ['word_rows']);
  const masked = g.op('Add', ['logits', 'mask']);
  const axis = g.ints([1]);
  const text = g.op('Slice', [masked, g.ints([0]), g.ints([timestampBegin]), axis]);
  const stamps = g.op('Slice', [masked, g.ints([timestampBegin]), g.ints([vocab]), axis]);
  // logsumexp(timestamps) > max(text) ⇔ Σ exp(timestamp − max(text)) > 1; compared on
  // logits, since both sides would subtract the same normaliser. (NaN when no text is
  // allowed, at the first timestamp: then nothing is forced, and nothing needs to be.)
  const textMax = g.op('ReduceMax', [text], { axes: [1], keepdims: 1 });
  const mass = g.op('ReduceSum', [g.op('Exp', [g.op('Sub', [stamps, textMax])]), axis], { keepdims: 1 });
  const force = g.op('And', ['timestamp_rule', g.op('Greater', [mass, g.scalar(1)])]);
  const textAfter = g.op('Add', [text, g.op('Where', [force, g.scalar(-Infinity), g.scalar(0)])]);
  const final = g.op('Concat', [textAfter, stamps], { axis: 1 });
  // noise is [rows, vocab] when a row samples, else [1, vocab] of zeros (broadcast)
  const scored = g.op('Add', [g.op('Mul', [final, 'inverse_temperature']), 'noise']);
  const token = g.op('ArgMax', [scored], { axis: 1, keepdims: 1 }, 'token');
  // LogSoftmax and Exp run on onnxruntime's vectorised kernels; ReduceLogSumExp does not.
  const logprobs = g.op('LogSoftmax', [final], { axis: 1 });
  g.op('GatherElements', [logprobs, token], { axis: 1 }, 'logprob');
  // Beam search's candidates: the k likeliest tokens of each row (k = 1 when no row searches).
  g.node('TopK', [logprobs, 'k'], { axis: 1, largest: 1, sorted: 1 }, ['top_logprobs', 'top_tokens']);
  // Text-only probabilities for the word rows (those of tokens that are not text are meaningless: read index eot − 1).
  const textProbabilities = g.op(
    'Softmax',
    [g.op('Slice', [g.op('Gather', ['logits', 'word_rows'], { axis: 0 }), g.ints([0]), g.ints([eot]), axis])],
    { axis: 1 },
  );
  const lastText = g.ints([eot - 1]);
  const wordTokens = g.op('Min', [g.op('Gather', [token, 'word_rows'], { axis: 0 }), lastText]);
  g.op('GatherElements', [textProbabilities, wordTokens], { axis: 1 }, 'text_probability');
  const wordCandidates = g.op('Min', [g.op('Gather', ['top_tokens', 'word_rows'], { axis: 0 }), lastText]);
  g.op('GatherElements', [textProbabilities, wordCandidates], { axis: 1 }, 'top_text_probabilities');
  g.output('token', DataType.int64, ['rows', 1]);
  g.output('logprob', DataType.float, ['rows', 1]);
  g.output('top_tokens', DataType.int64, ['rows', 'k']);
  g.output('top_logprobs', DataType.float, ['rows', 'k']);
  g.output('text_probability', DataType.float, ['word_rows', 1]);
  g.output('top_text_probabilities', DataType.float, ['word_rows', 'k']);
  return g;
}

export interface SelectRow extends RowState {
  /** 0 or absent: greedy. */
  temperature?: number;
  /** The row's own seeded generator, for temperatures above 0. */
  sampler?: Rng | null;
  /** Present when the row times words: each sampled token's probability among the text tokens is asked for. */
  textProbabilities?: number[];
}

export interface Selection {
  tokens: number[];
  logprobs: number[];
  /** [rows, k] */
  topTokens: number[];
  topLogprobs: Float32Array;
  /** For rows with `textProbabilities`: the token's probability among text tokens ([rows]), and the candidates' ([rows, k]); NaN elsewhere. */
  textProbabilities: Float32Array;
  topTextProbabilities: Float32Array;
}

export class TokenSelector {
  private zeros = new Float32Array(0);
  private maskBuffer = new Float32Array(0);
  private maskInUse = false;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly ids: TokenIds,
    private readonly rules: GenerationRules,
    private readonly vocab: number,
  ) {}

  static async create(ids: TokenIds, rules: GenerationRules, vocab: number): Promise<TokenSelector> {
    const bytes = encodeModel(selectionGraph(vocab, ids.timestampBegin, ids.eot), 'murmur');
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      extra: { session: { 'intra_op.allow_spinning': '0' } },
    });
    return new TokenSelector(session, ids, rules, vocab);
  }

  /**
   * `logits` holds one [vocab] row per state, in order; rules are applied for
   * each state. Also the `k` likeliest tokens of each row and their
   * log-probabilities, row after row (beam search's candidates).
   */
  async select(logits: Float32Array, rows: SelectRow[], k = 1): Promise<Selection> {
    const n = rows.length;
    const V = this.vocab;
    // One mask buffer, reused: a fresh 3.3 MB array a step (16 rows) cost ~1 ms in page faults
    // alone. A call that overlaps another (two transcriptions at once) gets its own.
    const reuse = !this.maskInUse;
    if (reuse && this.maskBuffer.length < n * V) this.maskBuffer = new Float32Array(n * V);
    const mask = reuse ? this.maskBuffer.subarray(0, n * V).fill(0) : new Float32Array(n * V);
    this.maskInUse ||= reuse;
    rows.forEach((row, i) => maskRow(mask.subarray(i * V, (i + 1) * V), row, this.ids, this.rules));
    const wordRows = rows.flatMap((r, i) => (r.textProbabilities ? [i] : []));
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run({
        logits: new ort.Tensor('float32', logits, [n, V]),
        mask: new ort.Tensor('float32', mask, [n, V]),
        timestamp_rule: new ort.Tensor(
          'bool',
          Uint8Array.from(rows, (r) => (r.timestamps ? 1 : 0)),
          [n, 1],
        ),
        inverse_temperature: new ort.Tensor(
          'float32',
          Float32Array.from(rows, (r) => (r.temperature ? 1 / r.temperature : 1)),
          [n, 1],
        ),
        noise: this.noise(rows),
        k: new ort.Tensor('int64', BigInt64Array.of(BigInt(k)), [1]),
        word_rows: new ort.Tensor('int64', BigInt64Array.from(wordRows, BigInt), [wordRows.length]),
      });
    } finally {
      if (reuse) this.maskInUse = false;
    }
    const textProbabilities = new Float32Array(n).fill(NaN);
    const topTextProbabilities = new Float32Array(n * k).fill(NaN);
    wordRows.forEach((row, m) => {
      textProbabilities[row] = (out.text_probability.data as Float32Array)[m];
      topTextProbabilities.set((out.top_text_probabilities.data as Float32Array).subarray(m * k, (m + 1) * k), row * k);
    });
    return {
      tokens: Array.from(out.token.data as BigInt64Array, Number),
      logprobs: Array.from(out.logprob.data as Float32Array),
      topTokens: Array.from(out.top_tokens.data as BigInt64Array, Number),
      topLogprobs: out.top_logprobs.data as Float32Array,
      textProbabilities,
      topTextProbabilities,
    };
  }

  /** Gumbel noise for the rows that sample (zeros for greedy rows); one shared zero row when none does. */
  private noise(rows: SelectRow[]): ort.Tensor {
    const V = this.vocab;
    if (!rows.some((r) => r.temperature)) {
      if (this.zeros.length !== V) this.zeros = new Float32Array(V);
      return new ort.Tensor('float32', this.zeros, [1, V]);
    }
    const noise = new Float32Array(rows.length * V);
    rows.forEach((r, i) => {
      if (!r.temperature) return;
      if (!r.sampler) throw new Error('a row sampling at a temperature above 0 needs its generator');
      for (let k = i * V, end = k + V; k < end; k++) noise[k] = -Math.log(-Math.log(r.sampler.next() * (1 - 2e-12) + 1e-12));
    });
    return new ort.Tensor('float32', noise, [rows.length, V]);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
