// Whisper's logit rules, in openai/whisper's order (decoding.py): blank
// suppression at the first sampled position, suppress_tokens, then the
// timestamp rules. Each rule masks tokens: it writes -Infinity into an additive
// mask row. The last timestamp rule (take a timestamp when the timestamps
// together are likelier than any text token) needs the masked distribution and
// runs in the token selection graph (tokenSelector.ts).
import type { GenerationRules, TokenIds } from './modelFolder.ts';

export interface RowState {
  /** Every token so far, prompt included. */
  tokens: number[];
  /** Index in `tokens` of the first sampled token (the prompt's length). */
  sampleBegin: number;
  timestamps: boolean;
}

export function maskRow(mask: Float32Array, row: RowState, ids: TokenIds, rules: GenerationRules): void {
  if (row.tokens.length === row.sampleBegin) for (const t of rules.beginSuppressTokens) mask[t] = -Infinity;
  for (const t of rules.suppressTokens) mask[t] = -Infinity;
  if (row.timestamps) maskTimestampRules(mask, row, ids, rules.maxInitialTimestampIndex);
}

export function maskTimestampRules(mask: Float32Array, row: RowState, ids: TokenIds, maxInitialTimestampIndex: number | null): void {
  const begin = ids.timestampBegin;
  mask[ids.noTimestamps] = -Infinity;
  const sampled = row.tokens.slice(row.sampleBegin);
  const n = sampled.length;
  const lastWasTimestamp = n >= 1 && sampled[n - 1] >= begin;
  const penultimateWasTimestamp = n < 2 || sampled[n - 2] >= begin;
  // Timestamps come in pairs, except directly before end-of-text.
  if (lastWasTimestamp) {
    if (penultimateWasTimestamp)
      mask.fill(-Infinity, begin); // has to be text
    else mask.fill(-Infinity, 0, ids.eot); // cannot be text
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
    mask.fill(-Infinity, begin, upTo);
  }
  if (n === 0) {
    mask.fill(-Infinity, 0, begin); // the first sampled token is a timestamp
    if (maxInitialTimestampIndex !== null) mask.fill(-Infinity, begin + maxInitialTimestampIndex + 1);
  }
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
