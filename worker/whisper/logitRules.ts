// Whisper's logit rules, in openai/whisper's order (decoding.py): blank
// suppression at the first sampled position, suppress_tokens, then the
// timestamp rules. They act on one row's logits in place.
import type { GenerationRules, TokenIds } from './modelFolder.ts';

export interface RowState {
  /** Every token so far, prompt included. */
  tokens: number[];
  /** Index in `tokens` of the first sampled token (the prompt's length). */
  sampleBegin: number;
  timestamps: boolean;
}

export function applyLogitRules(logits: Float32Array, row: RowState, ids: TokenIds, rules: GenerationRules): void {
  const { tokens, sampleBegin } = row;
  if (tokens.length === sampleBegin) for (const t of rules.beginSuppressTokens) logits[t] = -Infinity;
  for (const t of rules.suppressTokens) logits[t] = -Infinity;
  if (row.timestamps) applyTimestampRules(logits, row, ids, rules.maxInitialTimestampIndex);
}

export function applyTimestampRules(logits: Float32Array, row: RowState, ids: TokenIds, maxInitialTimestampIndex: number | null): void {
  const begin = ids.timestampBegin;
  logits[ids.noTimestamps] = -Infinity;
  const sampled = row.tokens.slice(row.sampleBegin);
  const n = sampled.length;
  const lastWasTimestamp = n >= 1 && sampled[n - 1] >= begin;
  const penultimateWasTimestamp = n < 2 || sampled[n - 2] >= begin;
  // Timestamps come in pairs, except directly before end-of-text.
  if (lastWasTimestamp) {
    if (penultimateWasTimestamp) logits.fill(-Infinity, begin); // has to be text
    else logits.fill(-Infinity, 0, ids.eot); // cannot be text
  }
  // Timestamps never decrease, and a segment has non-zero length.
  let lastTimestamp = -1;
  for (let i = n - 1; i >= 0; i--) {
    if (sampled[i] >= begin) {
      lastTimestamp = sampled[i];
      break;
    }
  }
  if (lastTimestamp >= 0) {
    const upTo = lastWasTimestamp && !penultimateWasTimestamp ? lastTimestamp : lastTimestamp + 1;
    logits.fill(-Infinity, begin, upTo);
  }
  if (n === 0) {
    logits.fill(-Infinity, 0, begin); // the first sampled token is a timestamp
    if (maxInitialTimestampIndex !== null) logits.fill(-Infinity, begin + maxInitialTimestampIndex + 1);
  }
  // If the timestamps together are likelier than any single text token, take a timestamp.
  const logZ = logSumExp(logits, 0, logits.length);
  const timestampLogprob = logSumExp(logits, begin, logits.length) - logZ;
  let maxText = -Infinity;
  for (let i = 0; i < begin; i++) if (logits[i] > maxText) maxText = logits[i];
  if (timestampLogprob > maxText - logZ) logits.fill(-Infinity, 0, begin);
}

export function logSumExp(x: Float32Array, from: number, to: number): number {
  let max = -Infinity;
  for (let i = from; i < to; i++) if (x[i] > max) max = x[i];
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = from; i < to; i++) sum += Math.exp(x[i] - max);
  return max + Math.log(sum);
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
