// The synthetic model generator: writes a Whisper model folder in the
// onnx-community layout with the real architecture and seeded weights.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decoderGraph, encoderGraph } from './graphs.ts';
import { checkPlantedProperties } from './check.ts';
import { DTYPE_SUFFIXES } from '../modelFolder.ts';
import { encodeModel, type WeightFormat } from '../onnxGraph.ts';
import { Rng } from '../rng.ts';
import { textVocabulary, tokenizerJson } from './vocabulary.ts';
import { makeWeights, type SyntheticShape } from './weights.ts';

export type { SyntheticShape } from './weights.ts';
export type { VocabularyKind } from './vocabulary.ts';

export const PRESETS = {
  /** Small enough that the test suite writes and runs several in seconds. */
  test: {
    dModel: 64,
    encoderLayers: 2,
    decoderLayers: 2,
    heads: 4,
    ffnDim: 256,
    nMels: 80,
    vocabulary: 'multilingual',
    textVocabSize: 1000,
    tokensPerWindow: 24,
    maxTargetPositions: 448,
    maxSourcePositions: 1500,
    crossAttentions: true,
  },
  /** whisper-tiny's exact dimensions and vocabulary, for benchmarks. */
  tiny: {
    dModel: 384,
    encoderLayers: 4,
    decoderLayers: 4,
    heads: 6,
    ffnDim: 1536,
    nMels: 80,
    vocabulary: 'multilingual',
    textVocabSize: 50257,
    tokensPerWindow: 100,
    maxTargetPositions: 448,
    maxSourcePositions: 1500,
    crossAttentions: true,
  },
} as const satisfies Record<string, SyntheticShape>;

export type PresetName = keyof typeof PRESETS;

export interface SyntheticModelInfo {
  synthetic: true;
  seed: number;
  tokensPerWindow: number;
  /** Decoder position whose output is <|endoftext|>. */
  stopPosition: number;
}

// Whisper's non-speech symbols that are single bytes in the GPT-2 byte order ("#()*+/:;<=>?[\]^_`{|}~ …).
const SUPPRESSED_BYTES = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93];

/** The variants the generator can write, named as transformers.js names them. */
export const SYNTHETIC_DTYPES = ['fp32', 'fp16', 'q8'] as const satisfies readonly WeightFormat[];

export async function writeSyntheticModel(
  outDir: string,
  shape: SyntheticShape,
  seed: number,
  dtypes: readonly WeightFormat[] = ['fp32'],
): Promise<SyntheticModelInfo> {
  const rng = new Rng(seed);
  const text = textVocabulary(shape.textVocabSize, rng);
  const weights = makeWeights(shape, text, rng);
  const { ids } = weights;
  const multilingual = shape.vocabulary !== 'english';
  const info: SyntheticModelInfo = { synthetic: true, seed, tokensPerWindow: shape.tokensPerWindow, stopPosition: weights.stopPosition };
  const suppress = [...SUPPRESSED_BYTES, ids.translate, ids.transcribe, ids.startOfLm, ids.startOfPrev, ids.noSpeech];
  const beginSuppress = [220, ids.eot];

  const config = {
    _name_or_path: `murmur/synthetic-whisper-${shape.dModel}`,
    architectures: ['WhisperForConditionalGeneration'],
    model_type: 'whisper',
    activation_function: 'gelu',
    d_model: shape.dModel,
    encoder_layers: shape.encoderLayers,
    decoder_layers: shape.decoderLayers,
    num_hidden_layers: shape.encoderLayers,
    encoder_attention_heads: shape.heads,
    decoder_attention_heads: shape.heads,
    encoder_ffn_dim: shape.ffnDim,
    decoder_ffn_dim: shape.ffnDim,
    num_mel_bins: shape.nMels,
    vocab_size: ids.size,
    max_source_positions: shape.maxSourcePositions,
    max_target_positions: shape.maxTargetPositions,
    scale_embedding: false,
    is_encoder_decoder: true,
    use_cache: true,
    bos_token_id: ids.eot,
    eos_token_id: ids.eot,
    pad_token_id: ids.eot,
    decoder_start_token_id: ids.sot,
    begin_suppress_tokens: beginSuppress,
    suppress_tokens: suppress,
    torch_dtype: 'float32',
    median_filter_width: 7,
    murmur: info,
  };
  const generationConfig = {
    decoder_start_token_id: ids.sot,
    bos_token_id: ids.eot,
    eos_token_id: ids.eot,
    pad_token_id: ids.eot,
    begin_suppress_tokens: beginSuppress,
    suppress_tokens: suppress,
    is_multilingual: multilingual,
    ...(multilingual && { lang_to_id: ids.languages }),
    task_to_id: { transcribe: ids.transcribe, translate: ids.translate },
    no_timestamps_token_id: ids.noTimestamps,
    prev_sot_token_id: ids.startOfPrev,
    max_initial_timestamp_index: 50,
    alignment_heads: alignmentHeads(shape),
    max_length: shape.maxTargetPositions,
    return_timestamps: false,
  };
  const preprocessorConfig = {
    chunk_length: 30,
    feature_extractor_type: 'WhisperFeatureExtractor',
    feature_size: shape.nMels,
    hop_length: 160,
    n_fft: 400,
    n_samples: 480000,
    nb_max_frames: 3000,
    padding_side: 'right',
    padding_value: 0.0,
    processor_class: 'WhisperProcessor',
    return_attention_mask: false,
    sampling_rate: 16000,
  };
  const tokenizerConfig = {
    tokenizer_class: 'WhisperTokenizer',
    model_max_length: 1024,
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    pad_token: '<|endoftext|>',
    add_prefix_space: false,
    errors: 'replace',
    clean_up_tokenization_spaces: true,
  };
  const specialTokensMap = {
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    pad_token: '<|endoftext|>',
  };

  await rm(outDir, { recursive: true, force: true });
  await mkdir(join(outDir, 'onnx'), { recursive: true });
  const json = (name: string, value: object) => writeFile(join(outDir, name), JSON.stringify(value, null, 2) + '\n');
  await json('config.json', config);
  await json('generation_config.json', generationConfig);
  await json('preprocessor_config.json', preprocessorConfig);
  await json('tokenizer.json', tokenizerJson(text, ids));
  await json('tokenizer_config.json', tokenizerConfig);
  await json('special_tokens_map.json', specialTokensMap);
  for (const dtype of dtypes) {
    const suffix = DTYPE_SUFFIXES[dtype];
    await writeFile(
      join(outDir, 'onnx', `encoder_model${suffix}.onnx`),
      encodeModel(encoderGraph(shape, weights.encoder, dtype), 'murmur'),
    );
    await writeFile(
      join(outDir, 'onnx', `decoder_model_merged${suffix}.onnx`),
      encodeModel(decoderGraph(shape, weights.decoder, ids.size, dtype), 'murmur'),
    );
  }
  try {
    await checkPlantedProperties(outDir, shape.tokensPerWindow, dtypes[0]);
  } catch (err) {
    await rm(outDir, { recursive: true, force: true });
    throw new Error(`the generated model (seed ${seed}) failed its check and was not kept: ${(err as Error).message}`, { cause: err });
  }
  return info;
}

export function syntheticShape(preset: PresetName, overrides: Partial<SyntheticShape> = {}): SyntheticShape {
  const shape: SyntheticShape = { ...PRESETS[preset], ...overrides };
  if (overrides.dModel && !overrides.ffnDim) shape.ffnDim = overrides.dModel * 4;
  return shape;
}

/** The heads word timings read, as generation_config.json lists them: every other head of the later half of the decoder's layers. */
export function alignmentHeads(shape: SyntheticShape): [number, number][] {
  const heads: [number, number][] = [];
  for (let l = Math.floor(shape.decoderLayers / 2); l < shape.decoderLayers; l++)
    for (let h = 0; h < shape.heads; h += 2) heads.push([l, h]);
  return heads;
}
