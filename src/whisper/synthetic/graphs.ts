// Whisper's encoder and merged decoder as ONNX graphs, with the inputs and
// outputs of the onnx-community exports (see WHISPER-NOTES: "The model folder").
import { DataType, Graph, type WeightFormat } from '../onnxGraph.ts';
import { attend, attentionOutput, feedForward, gelu, keyValueHeads, layerNorm, queryHeads, type Shape } from './transformer.ts';
import type { SyntheticShape, WhisperWeights } from './weights.ts';

const NEG_INF = -1e9; // additive causal mask; exp underflows to exactly 0

export function encoderGraph(s: SyntheticShape, w: WhisperWeights['encoder'], format: WeightFormat = 'fp32'): Graph {
  const g = new Graph('encoder', format);
  const shape: Shape = { dModel: s.dModel, heads: s.heads };
  const d = s.dModel;
  const frames = s.maxSourcePositions * 2;
  const features = g.input('input_features', DataType.float, ['batch_size', s.nMels, frames]);
  const conv1 = g.op(
    'Conv',
    [features, g.weight('model.encoder.conv1.weight', [d, s.nMels, 3], w.conv1), g.weight('model.encoder.conv1.bias', [d], w.conv1Bias)],
    { pads: [1, 1], kernel_shape: [3] },
  );
  const conv2 = g.op(
    'Conv',
    [gelu(g, conv1), g.weight('model.encoder.conv2.weight', [d, d, 3], w.conv2), g.weight('model.encoder.conv2.bias', [d], w.conv2Bias)],
    { pads: [1, 1], strides: [2], kernel_shape: [3] },
  );
  const hidden = g.op('Transpose', [gelu(g, conv2)], { perm: [0, 2, 1] });
  let x = g.op('Add', [hidden, g.weight('model.encoder.embed_positions.weight', [s.maxSourcePositions, d], w.positions)]);
  w.layers.forEach((layer, i) => {
    const name = `model.encoder.layers.${i}`;
    const a = layerNorm(g, x, layer.selfAttnNorm, `${name}.self_attn_layer_norm`);
    const q = queryHeads(g, a, layer.selfAttn, shape, `${name}.self_attn`);
    const [k, v] = keyValueHeads(g, a, layer.selfAttn, shape, `${name}.self_attn`);
    x = g.op('Add', [x, attentionOutput(g, attend(g, q, k, v), layer.selfAttn, shape, `${name}.self_attn`)]);
    const f = layerNorm(g, x, layer.ffnNorm, `${name}.final_layer_norm`);
    x = g.op('Add', [x, feedForward(g, f, layer.ffn, shape, name)]);
  });
  layerNorm(g, x, w.norm, 'model.encoder.layer_norm', 'last_hidden_state');
  g.output('last_hidden_state', DataType.float, ['batch_size', s.maxSourcePositions, d]);
  return g;
}

/**
 * The merged decoder, laid out as optimum merges its two decoders: an If on
 * use_cache_branch whose branches each hold the whole decoder body and share
 * the weights of the top graph. Without cache (the first step) the branch
 * computes cross-attention keys and values from encoder_hidden_states and
 * returns them as present.*.encoder.*; with cache it reads them from
 * past_key_values.*.encoder.* in place and returns empty ones. (Routing the
 * cached keys and values out through the If instead costs a copy of all of
 * them at every step: 60 of 97 ms per step at batch 16 for whisper-tiny.)
 */
export function decoderGraph(s: SyntheticShape, w: WhisperWeights['decoder'], vocabSize: number, format: WeightFormat = 'fp32'): Graph {
  const g = new Graph('decoder', format);
  const d = s.dModel;
  const hd = d / s.heads;
  const L = w.layers.length;
  g.input('input_ids', DataType.int64, ['batch_size', 'decoder_sequence_length']);
  g.input('encoder_hidden_states', DataType.float, ['batch_size', 'encoder_sequence_length', d]);
  for (let i = 0; i < L; i++) {
    for (const part of ['key', 'value'])
      g.input(`past_key_values.${i}.decoder.${part}`, DataType.float, ['batch_size', s.heads, 'past_decoder_sequence_length', hd]);
    for (const part of ['key', 'value'])
      g.input(`past_key_values.${i}.encoder.${part}`, DataType.float, ['batch_size', s.heads, 'encoder_sequence_length_out', hd]);
  }
  const useCache = g.input('use_cache_branch', DataType.bool, [1]);

  const outputs = ['logits'];
  for (let i = 0; i < L; i++)
    for (const kind of ['decoder', 'encoder']) for (const part of ['key', 'value']) outputs.push(`present.${i}.${kind}.${part}`);
  if (s.crossAttentions) for (let i = 0; i < L; i++) outputs.push(`cross_attentions.${i}`);
  const withPast = g.child('decoder_with_past');
  const withoutPast = g.child('decoder_without_past');
  for (const [branch, cached] of [
    [withPast, true],
    [withoutPast, false],
  ] as const) {
    const produced = decoderBody(branch, s, w, vocabSize, cached);
    for (const name of outputs) branch.output(branch.op('Identity', [produced[name]], {}, `${branch.name}/${name}`), DataType.float);
  }
  g.node('If', [useCache], { then_branch: withPast, else_branch: withoutPast }, outputs);

  g.output('logits', DataType.float, ['batch_size', 'decoder_sequence_length', vocabSize]);
  for (let i = 0; i < L; i++) {
    for (const part of ['key', 'value'])
      g.output(`present.${i}.decoder.${part}`, DataType.float, ['batch_size', s.heads, 'total_sequence_length', hd]);
    for (const part of ['key', 'value'])
      g.output(`present.${i}.encoder.${part}`, DataType.float, ['batch_size', s.heads, 'encoder_sequence_length_out', hd]);
  }
  if (s.crossAttentions)
    for (let i = 0; i < L; i++)
      g.output(`cross_attentions.${i}`, DataType.float, ['batch_size', s.heads, 'decoder_sequence_length', 'encoder_sequence_length_out']);
  return g;
}

/** The decoder from input_ids to logits inside one branch; returns the values of the outputs by name. */
function decoderBody(
  g: Graph,
  s: SyntheticShape,
  w: WhisperWeights['decoder'],
  vocabSize: number,
  cached: boolean,
): Record<string, string> {
  const shape: Shape = { dModel: s.dModel, heads: s.heads };
  const d = s.dModel;
  const produced: Record<string, string> = {};
  const past = (i: number, kind: string, part: string) => `past_key_values.${i}.${kind}.${part}`;

  // Positions continue from the past length; rows decoded together share it.
  const pastLen = g.op('Squeeze', [g.op('Shape', [past(0, 'decoder', 'key')], { start: 2, end: 3 }), g.ints([0])]);
  const seqLen = g.op('Squeeze', [g.op('Shape', ['input_ids'], { start: 1, end: 2 }), g.ints([0])]);
  const total = g.op('Add', [pastLen, seqLen]);
  const one = g.intScalar(1);
  const positionIds = g.op('Range', [pastLen, total, one]);
  const tokenTable = g.weight('model.decoder.embed_tokens.weight', [vocabSize, d], w.tokens, true);
  const positionTable = g.weight('model.decoder.embed_positions.weight', [s.maxTargetPositions, d], w.positions, true);
  let x = g.op('Add', [g.op('Gather', [tokenTable, 'input_ids']), g.op('Gather', [positionTable, positionIds])]);
  // Causal mask [seq, past + seq]: query at position p sees keys ≤ p.
  const keyPositions = g.op('Unsqueeze', [g.op('Range', [g.intScalar(0), total, one]), g.ints([0])]);
  const queryPositions = g.op('Unsqueeze', [positionIds, g.ints([1])]);
  const mask = g.op('Where', [g.op('Greater', [keyPositions, queryPositions]), g.scalar(NEG_INF), g.scalar(0)]);

  w.layers.forEach((layer, i) => {
    const name = `model.decoder.layers.${i}`;
    const a = layerNorm(g, x, layer.selfAttnNorm, `${name}.self_attn_layer_norm`);
    const q = queryHeads(g, a, layer.selfAttn, shape, `${name}.self_attn`);
    const [kNew, vNew] = keyValueHeads(g, a, layer.selfAttn, shape, `${name}.self_attn`);
    const k = (produced[`present.${i}.decoder.key`] = g.op('Concat', [past(i, 'decoder', 'key'), kNew], { axis: 2 }));
    const v = (produced[`present.${i}.decoder.value`] = g.op('Concat', [past(i, 'decoder', 'value'), vNew], { axis: 2 }));
    x = g.op('Add', [x, attentionOutput(g, attend(g, q, k, v, mask), layer.selfAttn, shape, `${name}.self_attn`)]);

    const c = layerNorm(g, x, layer.crossAttnNorm, `${name}.encoder_attn_layer_norm`);
    const cq = queryHeads(g, c, layer.crossAttn, shape, `${name}.encoder_attn`);
    let ck: string;
    let cv: string;
    if (cached) {
      [ck, cv] = [past(i, 'encoder', 'key'), past(i, 'encoder', 'value')];
      const empty = (src: string) => g.op('Slice', [src, g.ints([0]), g.ints([0]), g.ints([2])]);
      produced[`present.${i}.encoder.key`] = empty(ck);
      produced[`present.${i}.encoder.value`] = empty(cv);
    } else {
      [ck, cv] = keyValueHeads(g, 'encoder_hidden_states', layer.crossAttn, shape, `${name}.encoder_attn`);
      produced[`present.${i}.encoder.key`] = ck;
      produced[`present.${i}.encoder.value`] = cv;
    }
    const weights = s.crossAttentions ? (produced[`cross_attentions.${i}`] = g.fresh(`cross_attentions_${i}`)) : undefined;
    x = g.op('Add', [x, attentionOutput(g, attend(g, cq, ck, cv, undefined, weights), layer.crossAttn, shape, `${name}.encoder_attn`)]);
    const f = layerNorm(g, x, layer.ffnNorm, `${name}.final_layer_norm`);
    x = g.op('Add', [x, feedForward(g, f, layer.ffn, shape, name)]);
  });
  const h = layerNorm(g, x, w.norm, 'model.decoder.layer_norm');
  // Tied output projection: logits = h · embed_tokensᵀ, as one Gemm over [batch·seq, d].
  const flat = g.op('Reshape', [h, g.ints([-1, d])]);
  const logits2d = g.op('Gemm', [flat, tokenTable], { transB: 1 });
  const outShape = g.op('Concat', [g.op('Shape', ['input_ids']), g.ints([vocabSize])], { axis: 0 });
  produced.logits = g.op('Reshape', [logits2d, outShape]);
  return produced;
}
