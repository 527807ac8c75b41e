// Whisper's building blocks as ONNX nodes: pre-LN attention and feed-forward
// blocks with the biases Whisper has (no bias on k_proj), exact (erf) GELU.
import type { Graph } from '../onnxGraph.ts';
import type { AttentionWeights, FeedForwardWeights, NormWeights } from './weights.ts';

export interface Shape {
  dModel: number;
  heads: number;
}

export function layerNorm(g: Graph, x: string, w: NormWeights, name: string, output?: string): string {
  const gamma = g.weight(`${name}.weight`, [w.gamma.length], w.gamma);
  const beta = g.weight(`${name}.bias`, [w.beta.length], w.beta);
  return g.op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: 1e-5 } }, output);
}

/** x @ W (+ b), W stored [in, out]. */
export function linear(g: Graph, x: string, w: Float32Array, inDim: number, outDim: number, name: string, bias?: Float32Array): string {
  const y = g.op('MatMul', [x, g.weight(`${name}.weight`, [inDim, outDim], w)]);
  return bias ? g.op('Add', [y, g.weight(`${name}.bias`, [outDim], bias)]) : y;
}

export function gelu(g: Graph, x: string): string {
  const erf = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)])]);
  return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, g.scalar(1)])]), g.scalar(0.5)]);
}

/** [B, T, d] → [B, H, T, hd] */
export function splitHeads(g: Graph, x: string, s: Shape): string {
  const r = g.op('Reshape', [x, g.ints([0, 0, s.heads, s.dModel / s.heads])]);
  return g.op('Transpose', [r], { perm: [0, 2, 1, 3] });
}

/** [B, H, T, hd] → [B, T, d] */
export function mergeHeads(g: Graph, x: string, s: Shape): string {
  const t = g.op('Transpose', [x], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [t, g.ints([0, 0, s.dModel])]);
}

/** softmax(q kᵀ + mask) v over heads; q is already scaled. `weights` names the softmax output, to expose it. */
export function attend(g: Graph, q: string, k: string, v: string, mask?: string, weights?: string): string {
  let scores = g.op('MatMul', [q, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })]);
  if (mask) scores = g.op('Add', [scores, mask]);
  return g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }, weights), v]);
}

/** Whisper scales q (after its bias) by head_dim^-0.5. */
export function queryHeads(g: Graph, x: string, w: AttentionWeights, s: Shape, name: string): string {
  const q = linear(g, x, w.q, s.dModel, s.dModel, `${name}.q_proj`, w.qBias);
  return splitHeads(g, g.op('Mul', [q, g.scalar((s.dModel / s.heads) ** -0.5)]), s);
}

export function keyValueHeads(g: Graph, x: string, w: AttentionWeights, s: Shape, name: string): [string, string] {
  const k = linear(g, x, w.k, s.dModel, s.dModel, `${name}.k_proj`);
  const v = linear(g, x, w.v, s.dModel, s.dModel, `${name}.v_proj`, w.vBias);
  return [splitHeads(g, k, s), splitHeads(g, v, s)];
}

export function attentionOutput(g: Graph, heads: string, w: AttentionWeights, s: Shape, name: string): string {
  return linear(g, mergeHeads(g, heads, s), w.out, s.dModel, s.dModel, `${name}.out_proj`, w.outBias);
}

export function feedForward(g: Graph, x: string, w: FeedForwardWeights, s: Shape, name: string): string {
  const ffn = w.fc1Bias.length;
  const h = gelu(g, linear(g, x, w.fc1, s.dModel, ffn, `${name}.fc1`, w.fc1Bias));
  return linear(g, h, w.fc2, ffn, s.dModel, `${name}.fc2`, w.fc2Bias);
}
