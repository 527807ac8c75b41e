// Whisper's logit rules as openai/whisper's decoding.py states them
// (SuppressBlank, SuppressTokens, ApplyTimestampRules), on a small vocabulary:
// text 0..9, eot 10, notimestamps 11, timestamps from 12 (0.00 … 1.18 s).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskRow, type RowState } from '../src/whisper/logitRules.ts';
import type { GenerationRules, TokenIds } from '../src/whisper/modelFolder.ts';
import { Rng } from '../src/whisper/rng.ts';
import { TokenSelector } from '../src/whisper/tokenSelector.ts';

const ids: TokenIds = {
  eot: 10,
  sot: 13,
  noTimestamps: 11,
  timestampBegin: 12,
  noSpeech: null,
  startOfPrev: null,
  transcribe: null,
  translate: null,
  languages: new Map(),
};
const V = 12 + 60;
const rules: GenerationRules = { suppressTokens: [3], beginSuppressTokens: [1, 10], maxInitialTimestampIndex: 50, maxLength: 448 };
const ts = (i: number) => 12 + i;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

function logits(fill = 0, overrides: Record<number, number> = {}): Float32Array {
  const x = new Float32Array(V).fill(fill);
  for (const [k, v] of Object.entries(overrides)) x[Number(k)] = v;
  return x;
}
function allowedBy(row: RowState): number[] {
  const mask = new Float32Array(V);
  maskRow(mask, row, ids, rules);
  return range(0, V).filter((i) => mask[i] === 0);
}
const timed = (sampled: number[]): RowState => ({ tokens: [13, ...sampled], sampleBegin: 1, timestamps: true });

describe('masks', () => {
  it('suppress_tokens apply at every step; begin_suppress_tokens only at the first sampled position', () => {
    expect(allowedBy({ tokens: [13], sampleBegin: 1, timestamps: false })).toEqual(range(0, V).filter((i) => ![1, 3, 10].includes(i)));
    expect(allowedBy({ tokens: [13, 4], sampleBegin: 1, timestamps: false })).toEqual(range(0, V).filter((i) => i !== 3));
  });

  it('the first sampled token is a timestamp no later than max_initial_timestamp (1.00 s)', () => {
    expect(allowedBy(timed([]))).toEqual(range(ts(0), ts(51)));
  });

  it('<|notimestamps|> is never sampled with timestamps on', () => {
    expect(allowedBy(timed([ts(0), 4]))).not.toContain(11);
  });

  it('after a timestamp pair comes text (or end-of-text)', () => {
    expect(allowedBy(timed([ts(0), 4, ts(5), ts(5)]))).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('after text and one timestamp comes a timestamp (not earlier) or end-of-text, never text', () => {
    expect(allowedBy(timed([ts(0), 4, ts(5)]))).toEqual([10, ...range(ts(5), ts(60))]);
  });

  it('timestamps never decrease, and a new one after text is later than the last', () => {
    expect(allowedBy(timed([ts(0), 4, ts(7), ts(7), 5])).filter((i) => i >= 12)).toEqual(range(ts(8), ts(60)));
  });
});

describe('TokenSelector', () => {
  let selector: TokenSelector;
  beforeAll(async () => {
    selector = await TokenSelector.create(ids, rules, V);
  });
  afterAll(() => selector.release());

  it('takes the argmax of the masked logits and its log-probability, row by row', async () => {
    const rows: RowState[] = [
      { tokens: [13, 11], sampleBegin: 2, timestamps: false }, // first step: blank and eot suppressed
      { tokens: [13, 11, 4], sampleBegin: 2, timestamps: false },
    ];
    const x = new Float32Array(2 * V);
    x.set(logits(0, { 1: 9, 3: 8, 5: 2 }), 0);
    x.set(logits(0, { 3: 9, 6: 1, 10: 0.5 }), V);
    const { tokens, logprobs } = await selector.select(x, rows);
    expect(tokens).toEqual([5, 6]);
    // log-softmax over the allowed tokens: row 0 allows 69 tokens (one at 2, the rest at 0)
    expect(logprobs[0]).toBeCloseTo(2 - Math.log(Math.exp(2) + 68), 5);
    expect(logprobs[1]).toBeCloseTo(1 - Math.log(Math.exp(1) + Math.exp(0.5) + 69), 5);
  });

  it('takes a timestamp when the timestamps together are likelier than the best text token', async () => {
    const row = timed([ts(0), 4, ts(7), ts(7), 5]);
    // text token 4 at 3; 52 allowed timestamps at 0 each: log(52) ≈ 3.95 > 3
    const a = logits(-Infinity, { 4: 3 });
    for (let i = 8; i < 60; i++) a[ts(i)] = 0;
    expect((await selector.select(a, [row])).tokens[0]).toBeGreaterThanOrEqual(12);
    // text token 4 at 5 > 3.95: text stays
    const b = logits(-Infinity, { 4: 5 });
    for (let i = 8; i < 60; i++) b[ts(i)] = 0;
    expect((await selector.select(b, [row])).tokens[0]).toBe(4);
    // the same logits without timestamps on: no forcing
    expect((await selector.select(a, [{ ...row, timestamps: false }])).tokens[0]).toBe(4);
  });

  it('without timestamps, timestamp tokens are not masked (the prompt asks for none)', async () => {
    const { tokens } = await selector.select(logits(0, { [ts(5)]: 4 }), [{ tokens: [13, 11, 4], sampleBegin: 2, timestamps: false }]);
    expect(tokens).toEqual([ts(5)]);
  });

  it("samples at a temperature in proportion to softmax(logits / T), from each row's own seeded generator", async () => {
    const row = { tokens: [13, 11, 4], sampleBegin: 2, timestamps: false };
    const x = logits(-Infinity, { 0: 1, 2: 0.5, 4: 0, 5: -1 });
    const T = 1.5;
    const counts = new Map<number, number>();
    const draws = 4000;
    for (let from = 0; from < draws; from += 500) {
      const rows = Array.from({ length: 500 }, (_, i) => ({ ...row, temperature: T, sampler: new Rng(from + i) }));
      const batch = new Float32Array(500 * V);
      for (let i = 0; i < 500; i++) batch.set(x, i * V);
      const { tokens, logprobs } = await selector.select(batch, rows);
      tokens.forEach((t, i) => {
        counts.set(t, (counts.get(t) ?? 0) + 1);
        // the log-probability is of the unscaled distribution, as openai/whisper sums it
        expect(logprobs[i]).toBeCloseTo(x[t] - Math.log(Math.exp(1) + Math.exp(0.5) + 1 + Math.exp(-1)), 5);
      });
    }
    const z = [1, 0.5, 0, -1].reduce((sum, v) => sum + Math.exp(v / T), 0);
    expect([...counts.keys()].sort()).toEqual([0, 2, 4, 5]);
    for (const [token, value] of [
      [0, 1],
      [2, 0.5],
      [4, 0],
      [5, -1],
    ]) {
      const p = Math.exp(value / T) / z;
      expect(Math.abs(counts.get(token)! - draws * p)).toBeLessThan(4 * Math.sqrt(draws * p * (1 - p)));
    }
    // the same seed draws the same token, whatever the row's neighbours do
    const again = await selector.select(x, [{ ...row, temperature: T, sampler: new Rng(17) }]);
    const inBatch = await selector.select(Float32Array.from([...x, ...x]), [row, { ...row, temperature: T, sampler: new Rng(17) }]);
    expect(inBatch.tokens[1]).toBe(again.tokens[0]);
    // a greedy row in the same batch keeps its argmax
    expect(inBatch.tokens[0]).toBe(0);
  });
});
