// Whisper's encoder and merged decoder as ONNX graphs, with the inputs and
// outputs of the onnx-community exports (see WHISPER-NOTES: "The model folder").
import { DataType, Graph, type WeightFormat } from './onnxGraph.ts';
import { attend, attentionOutput, feedForward, gelu, keyValueHeads, layerNorm, queryHeads, type Shape } from './transformer.ts';
import type { SyntheticShape, WhisperWeights } from './weights.ts';

const NEG_INF = -1e9; // additive causal mask; exp underflows to exactly 0

export function encoderGraph(s: SyntheticShape, w: WhisperWeights['encoder'], format: WeightFormat = 'fp32'): Graph {
  const g = new Graph('encoder', format);
  const shape: Shape = { dModel: s.dModel, heads: s.heads };
  const d = s.dModel;
  const frames = s.maxSourcePositions * 2;
  const features = g.input('input_features', DataType.float, ['batch_size', s.nMels, frames]);
  const conv1 = g.op('Conv', [features, g.weight('model.encoder.conv1.weight', [d, s.nMels, 3], w.conv1), g.weight('model.encoder.conv1.bias', [d], w.conv1Bias)], { pads: [1, 1], kernel_shape: [3] });
  const conv2 = g.op('Conv', [gelu(g, conv1), g.weight('model.encoder.conv2.weight', [d, d, 3], w.conv2), g.weight('model.encoder.conv2.bias', [d], w.conv2Bias)], { pads: [1, 1], strides: [2], kernel_shape: [3] });
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
 * The merged decoder: one graph for the first step (no cache: cross-attention
 * keys and values computed from encoder_hidden_states) and for later steps
 * (cache: they come back in as past_key_values.*.encoder.*), switched by an If
 * on use_cache_branch. In the cache branch present.*.encoder.* are empty.
 */
export function decoderGraph(s: SyntheticShape, w: WhisperWeights['decoder'], vocabSize: number, format: WeightFormat = 'fp32'): Graph {
  const g = new Graph('decoder', format);
  const shape: Shape = { dModel: s.dModel, heads: s.heads };
  const d = s.dModel;
  const hd = d / s.heads;
  const L = w.layers.length;
  const inputIds = g.input('input_ids', DataType.int64, ['batch_size', 'decoder_sequence_length']);
  const encoderStates = g.input('encoder_hidden_states', DataType.float, ['batch_size', 'encoder_sequence_length', d]);
  const past: { dk: string; dv: string; ek: string; ev: string }[] = [];
  for (let i = 0; i < L; i++) {
    const kv = (kind: string, part: string, len: string) => g.input(`past_key_values.${i}.${kind}.${part}`, DataType.float, ['batch_size', s.heads, len, hd]);
    past.push({
      dk: kv('decoder', 'key', 'past_decoder_sequence_length'),
      dv: kv('decoder', 'value', 'past_decoder_sequence_length'),
      ek: kv('encoder', 'key', 'encoder_sequence_length_out'),
      ev: kv('encoder', 'value', 'encoder_sequence_length_out'),
    });
  }
  const useCache = g.input('use_cache_branch', DataType.bool, [1]);

  // Positions continue from the past length; rows decoded together share it.
  const pastLen = g.op('Squeeze', [g.op('Shape', [past[0].dk], { start: 2, end: 3 }), g.ints([0])]);
  const seqLen = g.op('Squeeze', [g.op('Shape', [inputIds], { start: 1, end: 2 }), g.ints([0])]);
  const total = g.op('Add', [pastLen, seqLen]);
  const one = g.intScalar(1);
  const positionIds = g.op('Range', [pastLen, total, one]);
  const tokenTable = g.weight('model.decoder.embed_tokens.weight', [vocabSize, d], w.tokens, true);
  let x = g.op('Add', [g.op('Gather', [tokenTable, inputIds]), g.op('Gather', [g.weight('model.decoder.embed_positions.weight', [s.maxTargetPositions, d], w.positions, true), positionIds])]);
  // Causal mask [seq, past + seq]: query at position p sees keys ≤ p.
  const keyPositions = g.op('Unsqueeze', [g.op('Range', [g.intScalar(0), total, one]), g.ints([0])]);
  const queryPositions = g.op('Unsqueeze', [positionIds, g.ints([1])]);
  const mask = g.op('Where', [g.op('Greater', [keyPositions, queryPositions]), g.scalar(NEG_INF), g.scalar(0)]);

  // Cross-attention keys/values: computed (no cache) or passed through (cache).
  const thenBranch = g.child('decoder_cache');
  const elseBranch = g.child('decoder_no_cache');
  const crossOutputs: string[] = [];
  for (let i = 0; i < L; i++) {
    const name = `model.decoder.layers.${i}.encoder_attn`;
    const [k, v] = keyValueHeads(elseBranch, encoderStates, w.layers[i].crossAttn, shape, name);
    const empty = (src: string) => thenBranch.op('Slice', [src, thenBranch.ints([0]), thenBranch.ints([0]), thenBranch.ints([2])]);
    const outputs: [string, string, string][] = [
      // [If output, no-cache value, cache value]
      [`cross.${i}.key`, k, past[i].ek],
      [`cross.${i}.value`, v, past[i].ev],
      [`present.${i}.encoder.key`, k, empty(past[i].ek)],
      [`present.${i}.encoder.value`, v, empty(past[i].ev)],
    ];
    for (const [name, computed, cached] of outputs) {
      crossOutputs.push(name);
      elseBranch.output(elseBranch.op('Identity', [computed], {}, `${elseBranch.name}/${name}`), DataType.float);
      thenBranch.output(thenBranch.op('Identity', [cached], {}, `${thenBranch.name}/${name}`), DataType.float);
    }
  }
  g.node('If', [useCache], { then_branch: thenBranch, else_branch: elseBranch }, crossOutputs);

  w.layers.forEach((layer, i) => {
    const name = `model.decoder.layers.${i}`;
    const a = layerNorm(g, x, layer.selfAttnNorm, `${name}.self_attn_layer_norm`);
    const q = queryHeads(g, a, layer.selfAttn, shape, `${name}.self_attn`);
    const [kNew, vNew] = keyValueHeads(g, a, layer.selfAttn, shape, `${name}.self_attn`);
    const k = g.op('Concat', [past[i].dk, kNew], { axis: 2 }, `present.${i}.decoder.key`);
    const v = g.op('Concat', [past[i].dv, vNew], { axis: 2 }, `present.${i}.decoder.value`);
    x = g.op('Add', [x, attentionOutput(g, attend(g, q, k, v, mask), layer.selfAttn, shape, `${name}.self_attn`)]);
    const c = layerNorm(g, x, layer.crossAttnNorm, `${name}.encoder_attn_layer_norm`);
    const cq = queryHeads(g, c, layer.crossAttn, shape, `${name}.encoder_attn`);
    const cross = attend(g, cq, `cross.${i}.key`, `cross.${i}.value`);
    x = g.op('Add', [x, attentionOutput(g, cross, layer.crossAttn, shape, `${name}.encoder_attn`)]);
    const f = layerNorm(g, x, layer.ffnNorm, `${name}.final_layer_norm`);
    x = g.op('Add', [x, feedForward(g, f, layer.ffn, shape, name)]);
  });
  const h = layerNorm(g, x, w.norm, 'model.decoder.layer_norm');
  // Tied output projection: logits = h · embed_tokensᵀ, as one Gemm over [batch·seq, d].
  const flat = g.op('Reshape', [h, g.ints([-1, d])]);
  const logits2d = g.op('Gemm', [flat, tokenTable], { transB: 1 });
  const outShape = g.op('Concat', [g.op('Shape', [inputIds]), g.ints([vocabSize])], { axis: 0 });
  g.op('Reshape', [logits2d, outShape], {}, 'logits');

  g.output('logits', DataType.float, ['batch_size', 'decoder_sequence_length', vocabSize]);
  for (let i = 0; i < L; i++) {
    for (const part of ['key', 'value']) g.output(`present.${i}.decoder.${part}`, DataType.float, ['batch_size', s.heads, 'total_sequence_length', hd]);
    for (const part of ['key', 'value']) g.output(`present.${i}.encoder.${part}`, DataType.float, ['batch_size', s.heads, 'encoder_sequence_length_out', hd]);
  }
  return g;
}
