// Seeded weights for a generated Whisper, with two properties planted so that
// the model is useful in tests and benchmarks:
//
// (a) it stops by itself: a few residual dimensions are reserved as control
//     directions. The learned decoder positions push ordinary text before
//     position K and <|endoftext|> from K on; with timestamps on they push a
//     timestamp at the first generated position and a closing one at K − 1.
//     "Timestamps are on" is recognised the way a real model could: a
//     self-attention head in decoder layer 0 looks for earlier timestamp tokens.
// (b) its words depend on the audio: the encoder's first convolution computes
//     the loudness of the whole frame and of four mel bands into reserved
//     channels; a cross-attention head in decoder layer 0 attends to the loudest
//     frames and writes their spectral balance into the residual stream.
//
// Everything else is random (N(0, 0.45²/d) so every block contributes at the
// scale of the embeddings), and the final LayerNorm has random signs so that a
// token's own embedding does not make it the likeliest next token.
import { Rng } from '../rng.ts';
import { specialIds, TIMESTAMP_COUNT, type SpecialIds, type TextVocabulary, type VocabularyKind } from './vocabulary.ts';

export interface SyntheticShape {
  dModel: number;
  encoderLayers: number;
  decoderLayers: number;
  heads: number;
  ffnDim: number;
  nMels: 80 | 128;
  vocabulary: VocabularyKind;
  textVocabSize: number;
  /** Text tokens per window when decoding without timestamps; generation then ends by itself. */
  tokensPerWindow: number;
  maxTargetPositions: number;
  maxSourcePositions: number;
  /** The decoder also outputs its cross-attention weights, `cross_attentions.{layer}` (onnx-community's "timestamped" exports), for word timings. */
  crossAttentions?: boolean;
}

export interface NormWeights {
  gamma: Float32Array;
  beta: Float32Array;
}

/** Projections stored [in, out]. Whisper's k_proj has no bias. */
export interface AttentionWeights {
  q: Float32Array;
  qBias: Float32Array;
  k: Float32Array;
  v: Float32Array;
  vBias: Float32Array;
  out: Float32Array;
  outBias: Float32Array;
}

export interface FeedForwardWeights {
  fc1: Float32Array;
  fc1Bias: Float32Array;
  fc2: Float32Array;
  fc2Bias: Float32Array;
}

export interface EncoderLayerWeights {
  selfAttnNorm: NormWeights;
  selfAttn: AttentionWeights;
  ffnNorm: NormWeights;
  ffn: FeedForwardWeights;
}

export interface DecoderLayerWeights extends EncoderLayerWeights {
  crossAttnNorm: NormWeights;
  crossAttn: AttentionWeights;
}

export interface EncoderWeights {
  conv1: Float32Array; // [d, nMels, 3]
  conv1Bias: Float32Array;
  conv2: Float32Array; // [d, d, 3]
  conv2Bias: Float32Array;
  positions: Float32Array; // [1500, d]
  layers: EncoderLayerWeights[];
  norm: NormWeights;
}

export interface DecoderWeights {
  tokens: Float32Array; // [V, d], tied with the output projection
  positions: Float32Array; // [448, d]
  layers: DecoderLayerWeights[];
  norm: NormWeights;
}

export interface WhisperWeights {
  encoder: EncoderWeights;
  decoder: DecoderWeights;
  ids: SpecialIds;
  /** Decoder position whose output is <|endoftext|>. */
  stopPosition: number;
}

// Decoder residual dimensions reserved as control directions (from the top).
const C_BIAS = 1; // constant 1 from the positions; per-token bias from the embeddings
const C_EOT = 2;
const C_TS = 3; // timestamps versus text
const C_TS_POS = 4; // which timestamp: early or late
const C_TS_KEY = 5; // set in timestamp embeddings; the key of the "timestamps seen" head
const CONTROLS = 5;
// Encoder channels reserved for loudness (from the top): overall, then four mel bands.
const A_LOUD = 1;
const BANDS = 4;
const AUDIO_CHANNELS = 1 + BANDS;

const EMBED_STD = 0.1;
const POSITION_STD = 0.5; // larger than the token embeddings, so each position has its own direction
const CONTROL_GAIN = 30; // final LayerNorm gain on control dims: control logits beat the random ones at any width up to whisper-tiny's
const AUDIO_GAIN = 0.5;

export function promptLength(vocabulary: VocabularyKind, timestamps: boolean): number {
  return (vocabulary === 'english' ? 1 : 3) + (timestamps ? 0 : 1);
}

export function makeWeights(shape: SyntheticShape, text: TextVocabulary, rng: Rng): WhisperWeights {
  const ids = specialIds(shape.textVocabSize, shape.vocabulary);
  // The last prompt position already predicts the first text token.
  const stopPosition = promptLength(shape.vocabulary, false) - 1 + shape.tokensPerWindow;
  if (stopPosition >= shape.maxTargetPositions)
    throw new Error(`tokensPerWindow ${shape.tokensPerWindow} leaves no room under ${shape.maxTargetPositions} positions`);
  if (shape.tokensPerWindow < 3) throw new Error('tokensPerWindow must be at least 3');
  if (shape.dModel % shape.heads !== 0) throw new Error(`dModel ${shape.dModel} is not divisible by heads ${shape.heads}`);
  if (shape.dModel / shape.heads < BANDS) throw new Error('head dimension must be at least 4');
  const encoder = makeEncoder(shape, rng);
  const decoder = makeDecoder(shape, ids, text, stopPosition, rng);
  return { encoder, decoder, ids, stopPosition };
}

function norm(d: number): NormWeights {
  return { gamma: new Float32Array(d).fill(1), beta: new Float32Array(d) };
}

/** Random projection [inDim, outDim] whose writes into the protected output dims are zero. */
function projection(rng: Rng, inDim: number, outDim: number, protectedOut: number[]): Float32Array {
  const w = rng.normals(inDim * outDim, 0.45 / Math.sqrt(inDim));
  for (let i = 0; i < inDim; i++) for (const o of protectedOut) w[i * outDim + o] = 0;
  return w;
}

function attention(rng: Rng, d: number, protectedOut: number[]): AttentionWeights {
  return {
    q: projection(rng, d, d, []),
    qBias: rng.normals(d, 0.02),
    k: projection(rng, d, d, []),
    v: projection(rng, d, d, []),
    vBias: new Float32Array(d),
    out: projection(rng, d, d, protectedOut),
    outBias: new Float32Array(d),
  };
}

function feedForward(rng: Rng, d: number, ffn: number, protectedOut: number[]): FeedForwardWeights {
  return {
    fc1: projection(rng, d, ffn, []),
    fc1Bias: new Float32Array(ffn),
    fc2: projection(rng, ffn, d, protectedOut),
    fc2Bias: new Float32Array(d),
  };
}

/** Whisper's sinusoidal encoder positions: [sin | cos] with timescales up to 10000. */
export function sinusoids(length: number, channels: number): Float32Array {
  const half = channels / 2;
  const increment = Math.log(10000) / (half - 1);
  const out = new Float32Array(length * channels);
  for (let t = 0; t < length; t++) {
    for (let i = 0; i < half; i++) {
      const x = t * Math.exp(-increment * i);
      out[t * channels + i] = Math.sin(x);
      out[t * channels + half + i] = Math.cos(x);
    }
  }
  return out;
}

function makeEncoder(s: SyntheticShape, rng: Rng): EncoderWeights {
  const d = s.dModel;
  const audio = Array.from({ length: AUDIO_CHANNELS }, (_, i) => d - 1 - i);
  const conv1 = rng.normals(d * s.nMels * 3, 1 / Math.sqrt(s.nMels * 3));
  const conv1Bias = new Float32Array(d);
  // Loudness channels read the centre tap only: the overall mean, and each band's mean relative to it.
  const bandEdges = Array.from({ length: BANDS + 1 }, (_, j) => Math.round((j * s.nMels) / BANDS));
  for (let c = 0; c < AUDIO_CHANNELS; c++) {
    const row = (d - 1 - c) * s.nMels * 3;
    for (let m = 0; m < s.nMels; m++) {
      conv1[row + m * 3] = 0;
      conv1[row + m * 3 + 2] = 0;
      let w = 1 / s.nMels;
      if (c > 0) {
        const [lo, hi] = [bandEdges[c - 1], bandEdges[c]];
        w = (m >= lo && m < hi ? 1 / (hi - lo) : 0) - 1 / s.nMels;
      }
      conv1[row + m * 3 + 1] = w;
    }
    conv1Bias[d - 1 - c] = 2; // keeps GELU in its near-linear range
  }
  const conv2 = rng.normals(d * d * 3, 1 / Math.sqrt(d * 3));
  for (const ch of audio) {
    conv2.fill(0, ch * d * 3, (ch + 1) * d * 3);
    conv2[ch * d * 3 + ch * 3 + 1] = 1;
  }
  const positions = sinusoids(s.maxSourcePositions, d);
  for (let t = 0; t < s.maxSourcePositions; t++) for (const ch of audio) positions[t * d + ch] = 0;
  const layers = Array.from({ length: s.encoderLayers }, () => ({
    selfAttnNorm: norm(d),
    selfAttn: attention(rng, d, audio),
    ffnNorm: norm(d),
    ffn: feedForward(rng, d, s.ffnDim, audio),
  }));
  return { conv1, conv1Bias, conv2, conv2Bias: new Float32Array(d), positions, layers, norm: norm(d) };
}

function makeDecoder(s: SyntheticShape, ids: SpecialIds, text: TextVocabulary, stop: number, rng: Rng): DecoderWeights {
  const d = s.dModel;
  const hd = d / s.heads;
  const c = (k: number) => d - k;
  const controls = Array.from({ length: CONTROLS }, (_, i) => d - 1 - i);
  const V = ids.size;

  const tokens = rng.normals(V * d, EMBED_STD);
  for (let v = 0; v < V; v++) {
    const row = v * d;
    for (const ch of controls) tokens[row + ch] = 0;
    // Equal norms: otherwise a few long embeddings win most positions ("hub" tokens).
    let sq = 0;
    for (let k = 0; k < d; k++) sq += tokens[row + k] ** 2;
    const scale = (EMBED_STD * Math.sqrt(d - CONTROLS)) / Math.sqrt(sq);
    for (let k = 0; k < d; k++) tokens[row + k] *= scale;
    const isTimestamp = v >= ids.timestampBegin;
    if (isTimestamp) {
      const i = v - ids.timestampBegin;
      tokens[row + c(C_TS)] = 1;
      tokens[row + c(C_TS_POS)] = (2 * i) / (TIMESTAMP_COUNT - 1) - 1;
      tokens[row + c(C_TS_KEY)] = 1;
    } else if (v === ids.eot) {
      tokens[row + c(C_EOT)] = 1;
    } else if (!text.speakable.has(v)) {
      tokens[row + c(C_BIAS)] = -1; // bytes, punctuation and special tokens: rarely said
    }
  }

  const firstTimestampPosition = promptLength(s.vocabulary, true) - 1;
  const positions = rng.normals(s.maxTargetPositions * d, POSITION_STD);
  for (let p = 0; p < s.maxTargetPositions; p++) {
    const row = p * d;
    positions[row + c(C_BIAS)] = 1;
    positions[row + c(C_EOT)] = p >= stop ? 1 : -1;
    positions[row + c(C_TS)] = p === firstTimestampPosition ? 1 : p === stop - 1 ? -0.5 : p >= stop ? -4 : -2;
    positions[row + c(C_TS_POS)] = p === firstTimestampPosition ? -4 : p === stop - 1 ? 0.15 : 0;
    positions[row + c(C_TS_KEY)] = 0;
  }

  const layers: DecoderLayerWeights[] = Array.from({ length: s.decoderLayers }, () => ({
    selfAttnNorm: norm(d),
    selfAttn: attention(rng, d, controls),
    crossAttnNorm: norm(d),
    crossAttn: attention(rng, d, controls),
    ffnNorm: norm(d),
    ffn: feedForward(rng, d, s.ffnDim, controls),
  }));

  // Layer 0, self-attention head 0: "has a timestamp been said?" → +1 on C_TS.
  const flag = layers[0].selfAttn;
  const keyValue = typicalNormalized(tokens, positions, d, ids.timestampBegin, firstTimestampPosition + 1, c(C_TS_KEY));
  clearHead(flag, d, hd);
  flag.qBias[0] = 1;
  flag.k[c(C_TS_KEY) * d + 0] = (12 * Math.sqrt(hd)) / keyValue;
  flag.v[c(C_TS_KEY) * d + 0] = 1 / keyValue;
  flag.out[0 * d + c(C_TS)] = 1;

  // Layer 0, cross-attention head 0: attend to the loudest frames, write their spectral balance.
  const audio = layers[0].crossAttn;
  clearHead(audio, d, hd);
  audio.qBias[0] = 1;
  audio.k[(d - A_LOUD) * d + 0] = 3 * Math.sqrt(hd);
  const band = (j: number) => d - 1 - 1 - (j % BANDS);
  for (let j = 0; j < BANDS; j++) {
    // differences between neighbouring bands (and loudness minus band 0) cancel the channels' shared offset
    if (j < BANDS - 1) {
      audio.v[band(j) * d + j] = 1;
      audio.v[band(j + 1) * d + j] = -1;
    } else {
      audio.v[(d - A_LOUD) * d + j] = 1;
      audio.v[band(0) * d + j] = -1;
    }
    const direction = rng.normals(d, AUDIO_GAIN);
    for (let k = 0; k < d - CONTROLS; k++) audio.out[j * d + k] = direction[k];
  }

  const gamma = new Float32Array(d);
  for (let k = 0; k < d; k++) gamma[k] = controls.includes(k) ? CONTROL_GAIN : rng.sign();
  gamma[c(C_BIAS)] = 3 * CONTROL_GAIN; // keeps bytes and special tokens out of the text at any width
  return { tokens, positions, layers, norm: { gamma, beta: new Float32Array(d) } };
}

/** Zero head 0's query, key and value columns and its output rows, so it can be written by hand. */
function clearHead(w: AttentionWeights, d: number, hd: number): void {
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < hd; j++) {
      w.q[i * d + j] = 0;
      w.k[i * d + j] = 0;
      w.v[i * d + j] = 0;
    }
  }
  for (let j = 0; j < hd; j++) {
    w.qBias[j] = 0;
    w.vBias[j] = 0;
    w.out.fill(0, j * d, (j + 1) * d);
  }
}

/** LayerNorm(token + position)[dim] for a timestamp token: what the flag head's key reads. */
function typicalNormalized(tokens: Float32Array, positions: Float32Array, d: number, token: number, position: number, dim: number): number {
  const x = new Float32Array(d);
  for (let k = 0; k < d; k++) x[k] = tokens[token * d + k] + positions[position * d + k];
  let mean = 0;
  for (const v of x) mean += v / d;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2 / d;
  return (x[dim] - mean) / Math.sqrt(variance + 1e-5);
}
