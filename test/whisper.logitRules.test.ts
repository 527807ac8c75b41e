// Whisper's logit rules as openai/whisper's decoding.py states them
// (SuppressBlank, SuppressTokens, ApplyTimestampRules), on a small vocabulary:
// text 0..9, eot 10, notimestamps 11, timestamps from 12.
import { describe, expect, it } from 'vitest';
import { applyLogitRules, applyTimestampRules, argmax } from '../worker/whisper/logitRules.ts';
import type { GenerationRules, TokenIds } from '../worker/whisper/modelFolder.ts';

const ids: TokenIds = { eot: 10, sot: 13, noTimestamps: 11, timestampBegin: 12, noSpeech: null, transcribe: null, translate: null, languages: new Map() };
const V = 12 + 60; // 60 timestamps: 0.00 … 1.18
const rules: GenerationRules = { suppressTokens: [3], beginSuppressTokens: [1, 10], maxInitialTimestampIndex: 50, maxLength: 448 };
const ts = (i: number) => 12 + i;

function logits(fill = 0, overrides: Record<number, number> = {}): Float32Array {
  const x = new Float32Array(V).fill(fill);
  for (const [k, v] of Object.entries(overrides)) x[Number(k)] = v;
  return x;
}
const allowed = (x: Float32Array) => [...x.keys()].filter((i) => x[i] > -Infinity);

describe('suppression', () => {
  it('suppress_tokens apply at every step; begin_suppress_tokens only at the first sampled position', () => {
    const first = logits(0, { 1: 5, 3: 9 });
    applyLogitRules(first, { tokens: [13], sampleBegin: 1, timestamps: false }, ids, rules);
    expect(first[3]).toBe(-Infinity);
    expect(first[1]).toBe(-Infinity);
    expect(first[10]).toBe(-Infinity);
    const later = logits(0, { 1: 5, 3: 9 });
    applyLogitRules(later, { tokens: [13, 4], sampleBegin: 1, timestamps: false }, ids, rules);
    expect(later[3]).toBe(-Infinity);
    expect(argmax(later)).toBe(1);
    expect(later[10]).toBe(0);
  });

  it('without timestamps, timestamp tokens are not masked (the prompt asks for none)', () => {
    const x = logits(0, { [ts(5)]: 4 });
    applyLogitRules(x, { tokens: [13, 11, 4], sampleBegin: 2, timestamps: false }, ids, rules);
    expect(argmax(x)).toBe(ts(5));
  });
});

describe('timestamp rules', () => {
  const row = (sampled: number[]) => ({ tokens: [13, ...sampled], sampleBegin: 1, timestamps: true });

  it('the first sampled token is a timestamp no later than max_initial_timestamp (1.00 s)', () => {
    const x = logits(0, { 4: 20, [ts(55)]: 10 });
    applyTimestampRules(x, row([]), ids, 50);
    expect(allowed(x)).toEqual(Array.from({ length: 51 }, (_, i) => ts(i)));
  });

  it('<|notimestamps|> is never sampled', () => {
    const x = logits(0, { 11: 50 });
    applyTimestampRules(x, row([ts(0), 4]), ids, 50);
    expect(x[11]).toBe(-Infinity);
  });

  it('after a timestamp pair comes text', () => {
    const x = logits(0);
    applyTimestampRules(x, row([ts(0), 4, ts(5), ts(5)]), ids, 50);
    expect(allowed(x).every((i) => i < 12)).toBe(true);
  });

  it('after text and one timestamp comes a timestamp or end-of-text, never text', () => {
    const x = logits(0, { 4: 30, 10: 10 });
    applyTimestampRules(x, row([ts(0), 4, ts(5)]), ids, 50);
    expect(allowed(x)).toEqual([10, ...Array.from({ length: 60 - 5 }, (_, i) => ts(5 + i))]);
  });

  it('timestamps never decrease, and a new one after text is later than the last', () => {
    const x = logits(0, { 4: 5 });
    applyTimestampRules(x, row([ts(0), 4, ts(7), ts(7), 5]), ids, 50);
    expect(allowed(x).filter((i) => i >= 12)).toEqual(Array.from({ length: 60 - 8 }, (_, i) => ts(8 + i)));
  });

  it('when the timestamps together are likelier than the best text token, a timestamp is taken', () => {
    // text token 4 has logit 3; 52 allowed timestamps at 0 each: log(52) ≈ 3.95 > 3
    const x = logits(-Infinity, { 4: 3, 10: -Infinity });
    for (let i = 8; i < 60; i++) x[ts(i)] = 0;
    applyTimestampRules(x, row([ts(0), 4, ts(7), ts(7), 5]), ids, 50);
    expect(argmax(x)).toBeGreaterThanOrEqual(12);
    const y = logits(-Infinity, { 4: 5 });
    for (let i = 8; i < 60; i++) y[ts(i)] = 0;
    applyTimestampRules(y, row([ts(0), 4, ts(7), ts(7), 5]), ids, 50);
    expect(argmax(y)).toBe(4);
  });
});
